/* SPDX-License-Identifier: GPL-2.0 */
/*
 * vhgpu: the module's internal state, shared by its source files
 * (vhgpu_main.c: device, registers, DMA, vfio_device_ops, mdev parent;
 * vhgpu_mig.c: migration stream, state machine, v1 region; vhgpu_sysfs.c:
 * attributes; vhgpu_msix.c: MSI-X; vhgpu_dirty.c: DMA dirty logging;
 * vhgpu_violate.c: seeded contract violations). The device-visible layout
 * is in vhgpu.h.
 */
#ifndef VHGPU_PRIV_H
#define VHGPU_PRIV_H

#include <linux/anon_inodes.h>
#include <linux/bitmap.h>
#include <linux/delay.h>
#include <linux/device.h>
#include <linux/eventfd.h>
#include <linux/file.h>
#include <linux/fs.h>
#include <linux/interval_tree.h>
#include <linux/iova_bitmap.h>
#include <linux/kernel.h>
#include <linux/ktime.h>
#include <linux/log2.h>
#include <linux/mdev.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/pci_regs.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/sysfs.h>
#include <linux/uaccess.h>
#include <linux/unaligned.h>
#include <linux/vfio.h>
#include <linux/vmalloc.h>

#include "vhgpu.h"

#define VHGPU_NAME		"vhgpu"
#define VHGPU_OFFSET_SHIFT	40
#define VHGPU_OFFSET_MASK	((1ULL << VHGPU_OFFSET_SHIFT) - 1)
#define VHGPU_INDEX(off)	((off) >> VHGPU_OFFSET_SHIFT)
#define VHGPU_OFFSET(idx)	((u64)(idx) << VHGPU_OFFSET_SHIFT)
#define VHGPU_CFG_SIZE		256
#define VHGPU_MSI_CAP		0x50
#define VHGPU_V1_REGION		VFIO_PCI_NUM_REGIONS
#define VHGPU_V1_DATA_OFFSET	PAGE_SIZE
#define VHGPU_PAGE_REC		(sizeof(struct vhgpu_rec) + PAGE_SIZE)
#define VHGPU_ZERO_RUN_MAX	(1u << 20)
#define VHGPU_AGGREGATE_MAX	64	/* units per instance (a power of two) */
#define VHGPU_DMA_RATE_MAX	1000000	/* dma_rate_limit_mbps ceiling, MiB/s */

/* ------------------------------------------------------------------------
 * Module parameters (vhgpu_main.c)
 */
extern char vhgpu_software_version[16];
extern bool vhgpu_migration_v2;
extern bool vhgpu_migration_v1;
extern bool vhgpu_cross_type;

/* ------------------------------------------------------------------------
 * Types and the shared pool (vhgpu_main.c)
 */
struct vhgpu_type {
	struct mdev_type type;
	unsigned int vram_mb;
	u16 subsys_id;
};

#define VHGPU_NTYPES	3
extern struct vhgpu_type vhgpu_types[VHGPU_NTYPES];
extern struct mutex vhgpu_pool_lock;
extern unsigned int vhgpu_pool_free_mb;

static inline struct vhgpu_type *to_vhgpu_type(struct mdev_type *mtype)
{
	return container_of(mtype, struct vhgpu_type, type);
}

struct vhgpu_sw_version {
	u32 major, minor, patch;
};

int vhgpu_parse_version(const char *s, struct vhgpu_sw_version *v);

/* ------------------------------------------------------------------------
 * Per-instance state
 */
enum vhgpu_irq_mode { VHGPU_IRQ_NONE, VHGPU_IRQ_INTX, VHGPU_IRQ_MSI };

struct vhgpu_dev;

enum vhgpu_save_phase {
	SAVE_HEADER, SAVE_INITIAL, SAVE_DIRTY, SAVE_STATE, SAVE_END, SAVE_DONE,
};

enum vhgpu_load_phase {
	LOAD_HEADER, LOAD_REC, LOAD_PAGE, LOAD_STATE, LOAD_END,
};

#define VHGPU_OBJ_MAX	(sizeof(struct vhgpu_rec) + PAGE_SIZE)

struct vhgpu_migf {
	struct file *filp;
	struct vhgpu_dev *dev;
	struct mutex lock;		/* everything below */
	bool disabled;
	bool saving;
	bool stop_mode;			/* STOP_COPY: end of stream is final */
	u8 *obj;			/* VHGPU_OBJ_MAX bytes */
	size_t obj_len, obj_pos;
	/* save */
	enum vhgpu_save_phase phase;
	unsigned long scan;		/* initial pass position (pages) */
	u32 nrecs;
	/* load */
	enum vhgpu_load_phase lphase;
	int error;			/* latched load error */
	u64 cur_page;
	u64 src_pages;
	struct vhgpu_state state;
	bool have_state;
};

struct vhgpu_dev {
	struct vfio_device vdev;
	struct mdev_device *mdev;
	struct vhgpu_type *type;
	struct vhgpu_sw_version ver;
	u32 priority;
	bool open;
	bool opened;			/* opened at least once: aggregate is fixed */
	u32 aggregate;			/* VRAM units (dynamic resource) */
	unsigned int pool_mb;		/* taken from the pool: aggregate x type */
	u32 dma_rate_mbps;		/* DMA engine limit, MiB/s; 0 = off */

	/* VRAM: lazily allocated pages; never freed before release */
	u64 vram_size;
	unsigned long npages;
	struct page **pages;
	unsigned long *dirty;		/* pages written since sent */
	atomic_t mmapped;		/* VRAM mmaps ever made (zap needed) */

	struct mutex lock;		/* config, registers, irqs */
	u8 cfg[VHGPU_CFG_SIZE];
	u8 cfg_wmask[VHGPU_CFG_SIZE];
	struct vhgpu_regs regs;		/* kept in CPU order, converted on save */
	enum vhgpu_irq_mode irq_mode;
	struct eventfd_ctx *intx_trigger;
	struct eventfd_ctx *msi_trigger;
	bool intx_masked;

	struct mutex state_mutex;	/* migration state; taken before lock */
	enum vfio_device_mig_state mig_state;
	struct vhgpu_migf *saving;
	struct vhgpu_migf *resuming;

	/* migration v1 */
	u8 *v1_data;			/* vmalloc_user, data section */
	size_t v1_data_size;
	bool v1_error;
	u64 v1_chunk;			/* bytes prepared in the data section */
};

/* The register struct holds CPU-order values; these views keep sparse quiet. */
#define R(dev, field) (*(u32 *)&(dev)->regs.field)
#define R64(dev, field) (*(u64 *)&(dev)->regs.field)

/* ------------------------------------------------------------------------
 * Across files
 */
/* vhgpu_main.c */
struct page *vhgpu_vram_page(struct vhgpu_dev *dev, unsigned long idx, bool alloc);
void vhgpu_zap(struct vhgpu_dev *dev, unsigned long idx, unsigned long n);
void vhgpu_init_config(struct vhgpu_dev *dev);

/* vhgpu_mig.c */
extern const struct vfio_migration_ops vhgpu_mig_ops;
void vhgpu_disable_files(struct vhgpu_dev *dev);
ssize_t vhgpu_v1_rw(struct vhgpu_dev *dev, char __user *ubuf, size_t count, u64 off,
		    bool write);

/* vhgpu_sysfs.c */
extern const struct attribute_group *vhgpu_dev_groups[];
extern const struct attribute_group vhgpu_type_group;

#endif /* VHGPU_PRIV_H */
