/* SPDX-License-Identifier: GPL-2.0 */
/*
 * vhgpu: a simulated GPU exposed as a VFIO mediated device (vfio-pci API).
 *
 * Device-visible layout and the migration stream format. The harness's own
 * tests and the hw-notes describe the same numbers; keep them in sync.
 */
#ifndef VHGPU_H
#define VHGPU_H

#include <linux/types.h>

/* PCI identity */
#define VHGPU_PCI_VENDOR	0x1234
#define VHGPU_PCI_DEVICE	0x7668
#define VHGPU_PCI_REVISION	0x01

/* BAR0: 4 KiB of MMIO registers (32-bit unless noted, little endian) */
#define VHGPU_BAR0_SIZE		0x1000
#define VHGPU_REG_ID		0x00	/* RO  VHGPU_ID */
#define VHGPU_REG_VERSION	0x04	/* RO  major << 16 | minor << 8 | patch */
#define VHGPU_REG_VRAM_LO	0x08	/* RO  VRAM size, bytes */
#define VHGPU_REG_VRAM_HI	0x0c
#define VHGPU_REG_SCRATCH0	0x10	/* RW  4 scratch registers */
#define VHGPU_REG_SCRATCH3	0x1c
#define VHGPU_REG_DOORBELL	0x20	/* W: ring (count++, last = value); R: last */
#define VHGPU_REG_DB_COUNT	0x24	/* RO  doorbells rung */
#define VHGPU_REG_IRQ_STATUS	0x30	/* R; write 1 to clear */
#define VHGPU_REG_IRQ_ENABLE	0x34	/* RW */
#define VHGPU_REG_IRQ_RAISE	0x38	/* W: status |= value (software interrupt) */
#define VHGPU_REG_DMA_IOVA_LO	0x40	/* RW  guest IOVA */
#define VHGPU_REG_DMA_IOVA_HI	0x44
#define VHGPU_REG_DMA_VRAM_LO	0x48	/* RW  VRAM offset */
#define VHGPU_REG_DMA_VRAM_HI	0x4c
#define VHGPU_REG_DMA_LEN	0x50	/* RW  bytes */
#define VHGPU_REG_DMA_DIR	0x54	/* RW  0: IOVA -> VRAM, 1: VRAM -> IOVA */
#define VHGPU_REG_DMA_CTRL	0x58	/* W: 1 = go (synchronous) */
#define VHGPU_REG_DMA_STATUS	0x5c	/* RO  bit0 done, bit1 error */
#define VHGPU_REG_DMA_ERRNO	0x60	/* RO  positive errno of the last failure */
#define VHGPU_REG_DMA_COUNT	0x64	/* RO  transfers completed */
#define VHGPU_REG_MSIX_RAISE	0x70	/* W: raise MSI-X vector N (held pending while masked) */
#define VHGPU_REG_MSIX_PENDING	0x74	/* RO  MSI-X vectors pending (bit N), as the PBA */
#define VHGPU_REG_MSIX_SENT	0x78	/* RO  MSI-X messages signalled on eventfds */
#define VHGPU_REGS_END		0x7c

/* MSI-X: VHGPU_MSIX_VECTORS vectors, table and PBA in BAR0 (the table is storage
 * only: delivery is masked and unmasked through VFIO_DEVICE_SET_IRQS). */
#define VHGPU_MSIX_VECTORS	4
#define VHGPU_MSIX_TABLE	0x800	/* 16 bytes per vector */
#define VHGPU_MSIX_PBA		0xc00	/* 8 bytes: pending bits */

#define VHGPU_ID		0x56484731	/* "VHG1" */
#define VHGPU_DMA_DIR_TO_VRAM	0
#define VHGPU_DMA_DIR_FROM_VRAM	1
#define VHGPU_DMA_MAX_LEN	(16u << 20)
#define VHGPU_DMA_ST_DONE	(1u << 0)
#define VHGPU_DMA_ST_ERROR	(1u << 1)

#define VHGPU_IRQ_DMA_DONE	(1u << 0)
#define VHGPU_IRQ_DMA_ERROR	(1u << 1)
#define VHGPU_IRQ_DOORBELL	(1u << 2)
#define VHGPU_IRQ_SOFT		(1u << 3)
#define VHGPU_IRQ_ALL		0xfu

/* Register state carried in the migration stream. */
struct vhgpu_regs {
	__le32 scratch[4];
	__le32 db_last;
	__le32 db_count;
	__le32 irq_status;
	__le32 irq_enable;
	__le64 dma_iova;
	__le64 dma_vram;
	__le32 dma_len;
	__le32 dma_dir;
	__le32 dma_status;
	__le32 dma_errno;
	__le32 dma_count;
	__le32 reserved;
};

/* Migration stream (v2 data_fd and v1 data section carry the same bytes). */
#define VHGPU_MIG_MAGIC		0x3147504748564d53ULL	/* "SMVHGPG1" little endian */
#define VHGPU_MIG_FORMAT	1

struct vhgpu_mig_header {
	__le64 magic;
	__le32 format;		/* VHGPU_MIG_FORMAT */
	__le32 hdr_size;	/* sizeof(struct vhgpu_mig_header) */
	__le32 sw_major;	/* software_version of the source device */
	__le32 sw_minor;
	__le32 sw_patch;
	__le32 page_size;	/* 4096 */
	__le64 vram_size;	/* bytes */
	__le32 priority;	/* dynamic resource "priority" */
	__le32 reserved;
	char type_name[32];	/* source mdev type, NUL padded */
};

/* Record kinds following the header. */
#define VHGPU_REC_PAGES		1	/* index = first page, count = 1, 4096 bytes follow */
#define VHGPU_REC_ZERO		2	/* index = first page, count = pages that are zero */
#define VHGPU_REC_STATE		3	/* count = sizeof(struct vhgpu_state), state follows */
#define VHGPU_REC_END		4	/* count = records before this one */

struct vhgpu_rec {
	__le32 kind;
	__le32 count;
	__le64 index;
};

/* Device state record: registers + PCI config space. */
struct vhgpu_state {
	struct vhgpu_regs regs;
	__u8 config[256];
};

#endif /* VHGPU_H */
