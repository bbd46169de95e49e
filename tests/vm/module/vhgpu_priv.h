/* SPDX-License-Identifier: GPL-2.0 */
/*
 * vhgpu: the module's internal state, shared by its source files
 * (vhgpu_main.c: parameters, types, vfio_device_ops, mdev parent;
 * vhgpu_hw.c: VRAM, config space, INTx/MSI, BAR0 registers, DMA engine;
 * vhgpu_msix.c: MSI-X; vhgpu_dirty.c: DMA dirty logging; vhgpu_stream.c:
 * the migration stream; vhgpu_mig.c: v2 data files and the state machine;
 * vhgpu_v1.c: the v1 region; vhgpu_sysfs.c: attributes; vhgpu_violate.c:
 * seeded contract violations, fault injection). The device-visible layout
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
#define VHGPU_MSIX_CAP		0x60
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
extern bool vhgpu_v1_mmap;

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
enum vhgpu_irq_mode { VHGPU_IRQ_NONE, VHGPU_IRQ_INTX, VHGPU_IRQ_MSI, VHGPU_IRQ_MSIX };

/*
 * Seeded violations of the migration uAPI contract (vendor/violate), one per
 * check of the harness's conformance suite; see vhgpu_violate.c for what each
 * does and /work/conformance-contract.md for the names.
 */
enum vhgpu_violation {
	VHGPU_V_NONE,
	VHGPU_V_STATE_AFTER_ARC,
	VHGPU_V_NEW_DATA_FD,
	VHGPU_V_STOP_COPY_EOF,
	VHGPU_V_READ_SIZE,
	VHGPU_V_SESSION_ENDS,
	VHGPU_V_PRECOPY_INFO_STATE,
	VHGPU_V_PRECOPY_INITIAL,
	VHGPU_V_PRECOPY_INFO_AGREES,
	VHGPU_V_PRECOPY_PATH,
	VHGPU_V_WRITE_SIZE,
	VHGPU_V_RESUME_REFUSES,
	VHGPU_V_RESUME_LOADS,
	VHGPU_V_RESET,
	VHGPU_V_DATA_SIZE,
	VHGPU_V_DMA_LOGGING,
	VHGPU_V_V1_STATE_BITS,
	VHGPU_V_V1_PENDING,
	VHGPU_V_V1_DATA_WINDOW,
	VHGPU_V_V1_RESUME_LOADS,
	VHGPU_V_COUNT,
};

/* One IOVA range of a DMA logging session (VFIO_DEVICE_FEATURE_DMA_LOGGING_START). */
struct vhgpu_log_range {
	unsigned long start, last;	/* inclusive, as the core's interval nodes */
	unsigned long base;		/* start rounded down to the logging page size */
	unsigned long npages;		/* bits in @bits */
	unsigned long *bits;		/* pages written by the device since the last report */
};

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
	bool no_load;			/* violation resume-loads / v1-resume-loads */
	/* violations precopy-initial / precopy-info-agrees */
	bool read_any;
	bool initial0_set;
	u64 initial0;
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
	/* MSI-X (vhgpu_msix.c) */
	struct eventfd_ctx *msix_trigger[VHGPU_MSIX_VECTORS];
	u32 msix_masked;		/* VFIO_IRQ_SET_ACTION_MASK, bit per vector */
	u32 msix_pending;		/* raised while masked */
	u32 msix_sent;			/* messages signalled */
	u32 msix_table[VHGPU_MSIX_VECTORS * 4];	/* BAR0 table, CPU order */

	/* DMA dirty logging (vhgpu_dirty.c) */
	struct mutex log_lock;		/* below; taken inside lock */
	bool logging;
	u64 log_page_size;
	u32 log_nranges;
	struct vhgpu_log_range *log_ranges;

	/* seeded violations and fault injection (vhgpu_violate.c) */
	enum vhgpu_violation violate;
	bool fail_next;			/* the next migration arc fails into ERROR */
	bool in_v1;			/* a v1 device_state write is walking the FSM */
	enum vfio_device_mig_state set_from;	/* state before the last v2 SET */
	struct vhgpu_migf *stale_save;	/* violation new-data-fd: the last save file */

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
/* vhgpu_hw.c */
struct page *vhgpu_vram_page(struct vhgpu_dev *dev, unsigned long idx, bool alloc);
void vhgpu_zap(struct vhgpu_dev *dev, unsigned long idx, unsigned long n);
ssize_t vhgpu_vram_rw(struct vhgpu_dev *dev, char __user *ubuf, size_t count, u64 off,
		      bool write);
extern const struct vm_operations_struct vhgpu_vram_vm_ops;
void vhgpu_init_config(struct vhgpu_dev *dev);
void vhgpu_cfg_put16(u8 *cfg, unsigned int off, u16 v);
void vhgpu_cfg_put32(u8 *cfg, unsigned int off, u32 v);
ssize_t vhgpu_cfg_rw(struct vhgpu_dev *dev, char __user *ubuf, size_t count, u64 off,
		     bool write);
int vhgpu_set_irqs(struct vhgpu_dev *dev, struct vfio_irq_set *hdr, u8 *data);
void vhgpu_irq_teardown(struct vhgpu_dev *dev);	/* dev->lock held */
ssize_t vhgpu_bar0_rw(struct vhgpu_dev *dev, char __user *ubuf, size_t count, u64 off,
		      bool write);
void vhgpu_reset_regs(struct vhgpu_dev *dev);		/* dev->lock held */

/* vhgpu_msix.c (dev->lock held unless noted) */
void vhgpu_msix_init_config(struct vhgpu_dev *dev);
void vhgpu_msix_reset(struct vhgpu_dev *dev);
int vhgpu_msix_set_irqs(struct vhgpu_dev *dev, struct vfio_irq_set *hdr, u8 *data);
void vhgpu_msix_fire(struct vhgpu_dev *dev, unsigned int vector);
void vhgpu_msix_teardown(struct vhgpu_dev *dev);
bool vhgpu_msix_reg_read(struct vhgpu_dev *dev, unsigned int reg, u32 *val);
bool vhgpu_msix_reg_write(struct vhgpu_dev *dev, unsigned int reg, u32 val);

/* vhgpu_dirty.c */
extern const struct vfio_log_ops vhgpu_log_ops;
void vhgpu_dirty_log_write(struct vhgpu_dev *dev, u64 iova, u64 len);
void vhgpu_dirty_log_stop(struct vhgpu_dev *dev);

/* vhgpu_stream.c (migf->lock held) */
void vhgpu_save_pending(struct vhgpu_migf *migf, u64 *initial, u64 *dirty, u64 *final);
ssize_t vhgpu_save_copy(struct vhgpu_migf *migf, char __user *ubuf, u8 *kbuf, size_t len);
int vhgpu_load_feed(struct vhgpu_migf *migf, const u8 *buf, size_t len);
int vhgpu_load_finish(struct vhgpu_dev *dev, struct vhgpu_migf *migf);	/* takes migf->lock */

/* vhgpu_mig.c (state_mutex held) */
extern const struct vfio_migration_ops vhgpu_mig_ops;
struct file *vhgpu_goto_state(struct vhgpu_dev *dev, enum vfio_device_mig_state new_state);
void vhgpu_disable_files(struct vhgpu_dev *dev);
void vhgpu_drop_stale_save(struct vhgpu_dev *dev);

/* vhgpu_v1.c */
ssize_t vhgpu_v1_rw(struct vhgpu_dev *dev, char __user *ubuf, size_t count, u64 off,
		    bool write);

/* vhgpu_violate.c */
extern struct device_attribute dev_attr_violate;
extern struct device_attribute dev_attr_fail_next_transition;

static inline bool vhgpu_violates(struct vhgpu_dev *dev, enum vhgpu_violation v)
{
	return READ_ONCE(dev->violate) == v;
}

/* vhgpu_sysfs.c */
struct vhgpu_dev *vhgpu_from_device(struct device *d);
extern const struct attribute_group *vhgpu_dev_groups[];
extern const struct attribute_group vhgpu_type_group;

#endif /* VHGPU_PRIV_H */
