// SPDX-License-Identifier: GPL-2.0
/*
 * vhgpu: a simulated GPU exposed as a VFIO mediated device.
 *
 * Test device for the vfio-harness real-kernel bed. It offers:
 *  - an mdev parent ("vhgpu") with types of different VRAM sizes drawn from
 *    one pool, plus migration-compatibility attributes in each type dir;
 *  - the vfio-pci device API: config space with an MSI capability, BAR0
 *    registers (ID, scratch, doorbell, interrupts, a DMA engine that copies
 *    between guest IOVA and VRAM through vfio_dma_rw), BAR2 = VRAM
 *    (64-bit prefetchable, read/write and mmap);
 *  - INTx (auto-masked, level) and MSI interrupts signalled on eventfds;
 *  - migration v2 (STOP_COPY | P2P | PRE_COPY) with a versioned stream,
 *    VRAM dirty tracking (region writes, DMA, mmap write faults);
 *  - optionally the deprecated migration v1 region (type 3 / subtype 1)
 *    driving the same state machine;
 *  - per-instance attributes written between create and first open, as
 *    vendor vGPU drivers have them: "aggregate" (VRAM = units x the type's
 *    unit VRAM, drawn from the pool) and "dma_rate_limit_mbps" (a DMA engine
 *    rate limiter), listed with "priority" in the type's dynamic_resources
 *    where they must be copied before migrating.
 */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/anon_inodes.h>
#include <linux/bitmap.h>
#include <linux/delay.h>
#include <linux/device.h>
#include <linux/eventfd.h>
#include <linux/file.h>
#include <linux/fs.h>
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
 * Module parameters
 */
static unsigned int pool_mb = 2048;
module_param(pool_mb, uint, 0444);
MODULE_PARM_DESC(pool_mb, "VRAM pool shared by all instances, MiB (default 2048)");

static char software_version[16] = "1.2.0";
module_param_string(software_version, software_version, sizeof(software_version), 0644);
MODULE_PARM_DESC(software_version,
		 "major.minor.patch of the migration stream; captured by each instance at creation (default 1.2.0)");

static bool migration_v2 = true;
module_param(migration_v2, bool, 0444);
MODULE_PARM_DESC(migration_v2, "Offer migration v2 (VFIO_DEVICE_FEATURE_MIGRATION, default on)");

static bool migration_v1;
module_param(migration_v1, bool, 0444);
MODULE_PARM_DESC(migration_v1, "Offer the deprecated migration v1 region (type 3/subtype 1, default off)");

static unsigned int v1_data_kb = 1024;
module_param(v1_data_kb, uint, 0444);
MODULE_PARM_DESC(v1_data_kb, "Size of the v1 migration data section, KiB (default 1024, page multiple)");

static bool cross_type;
module_param(cross_type, bool, 0444);
MODULE_PARM_DESC(cross_type,
		 "Accept migration streams from smaller types (listed in compatible_type, default off)");

/* ------------------------------------------------------------------------
 * Types and the shared pool
 */
struct vhgpu_type {
	struct mdev_type type;
	unsigned int vram_mb;
	u16 subsys_id;
};

static struct vhgpu_type vhgpu_types[] = {
	{ .type.sysfs_name = "64M",  .type.pretty_name = "vHGPU 64M",  .vram_mb = 64,   .subsys_id = 1 },
	{ .type.sysfs_name = "256M", .type.pretty_name = "vHGPU 256M", .vram_mb = 256,  .subsys_id = 2 },
	{ .type.sysfs_name = "1G",   .type.pretty_name = "vHGPU 1G",   .vram_mb = 1024, .subsys_id = 3 },
};

static struct mdev_type *vhgpu_mdev_types[] = {
	&vhgpu_types[0].type,
	&vhgpu_types[1].type,
	&vhgpu_types[2].type,
};

static DEFINE_MUTEX(vhgpu_pool_lock);
static unsigned int vhgpu_pool_free_mb;

static struct {
	struct class *class;
	struct device dev;
	struct mdev_parent parent;
	bool type_attrs;
} vhgpu_parent;

static inline struct vhgpu_type *to_vhgpu_type(struct mdev_type *mtype)
{
	return container_of(mtype, struct vhgpu_type, type);
}

struct vhgpu_sw_version {
	u32 major, minor, patch;
};

static int vhgpu_parse_version(const char *s, struct vhgpu_sw_version *v)
{
	char tail;

	if (sscanf(s, "%u.%u.%u%c", &v->major, &v->minor, &v->patch, &tail) == 4 &&
	    tail != '\n')
		return -EINVAL;
	if (sscanf(s, "%u.%u.%u", &v->major, &v->minor, &v->patch) != 3)
		return -EINVAL;
	if (v->major > 255 || v->minor > 255 || v->patch > 255)
		return -EINVAL;
	return 0;
}

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

static const struct vfio_device_ops vhgpu_dev_ops;
static const struct vfio_migration_ops vhgpu_mig_ops;

/* The register struct holds CPU-order values; these views keep sparse quiet. */
#define R(dev, field) (*(u32 *)&(dev)->regs.field)
#define R64(dev, field) (*(u64 *)&(dev)->regs.field)

/* ------------------------------------------------------------------------
 * VRAM pages and dirty tracking
 */
static struct page *vhgpu_vram_page(struct vhgpu_dev *dev, unsigned long idx, bool alloc)
{
	struct page *page = READ_ONCE(dev->pages[idx]);
	struct page *old;

	if (page || !alloc)
		return page;
	page = alloc_page(GFP_KERNEL_ACCOUNT | __GFP_ZERO);
	if (!page)
		return NULL;
	old = cmpxchg(&dev->pages[idx], NULL, page);
	if (old) {
		__free_page(page);
		return old;
	}
	return page;
}

/* Called after the data landed in the page. */
static void vhgpu_mark_dirty(struct vhgpu_dev *dev, unsigned long idx)
{
	smp_mb__before_atomic();
	set_bit(idx, dev->dirty);
}

/* Write-protect user mappings of VRAM pages so the next write faults. */
static void vhgpu_zap(struct vhgpu_dev *dev, unsigned long idx, unsigned long n)
{
	if (!atomic_read(&dev->mmapped))
		return;
	unmap_mapping_range(dev->vdev.inode->i_mapping,
			    VHGPU_OFFSET(VFIO_PCI_BAR2_REGION_INDEX) + ((u64)idx << PAGE_SHIFT),
			    (u64)n << PAGE_SHIFT, 1);
}

static ssize_t vhgpu_vram_rw(struct vhgpu_dev *dev, char __user *ubuf, size_t count,
			     u64 off, bool write)
{
	size_t done = 0;

	if (off >= dev->vram_size)
		return -EINVAL;
	count = min_t(u64, count, dev->vram_size - off);
	while (done < count) {
		unsigned long idx = (off + done) >> PAGE_SHIFT;
		size_t poff = (off + done) & ~PAGE_MASK;
		size_t n = min_t(size_t, PAGE_SIZE - poff, count - done);
		struct page *page = vhgpu_vram_page(dev, idx, write);

		if (write) {
			if (!page)
				return done ? done : -ENOMEM;
			if (copy_from_user(page_address(page) + poff, ubuf + done, n))
				return done ? done : -EFAULT;
			vhgpu_mark_dirty(dev, idx);
		} else if (page) {
			if (copy_to_user(ubuf + done, page_address(page) + poff, n))
				return done ? done : -EFAULT;
		} else {
			if (clear_user(ubuf + done, n))
				return done ? done : -EFAULT;
		}
		done += n;
	}
	return done;
}

static vm_fault_t vhgpu_vram_fault(struct vm_fault *vmf)
{
	struct vm_area_struct *vma = vmf->vma;
	struct vhgpu_dev *dev = vma->vm_private_data;
	u64 off = ((u64)vma->vm_pgoff << PAGE_SHIFT) & VHGPU_OFFSET_MASK;
	unsigned long idx = (off >> PAGE_SHIFT) + ((vmf->address - vma->vm_start) >> PAGE_SHIFT);
	struct page *page;

	if (idx >= dev->npages)
		return VM_FAULT_SIGBUS;
	page = vhgpu_vram_page(dev, idx, true);
	if (!page)
		return VM_FAULT_OOM;
	/* vm_page_prot is write-protected (pfn_mkwrite): writes come back to us */
	return vmf_insert_pfn(vma, vmf->address & PAGE_MASK, page_to_pfn(page));
}

static vm_fault_t vhgpu_vram_pfn_mkwrite(struct vm_fault *vmf)
{
	struct vm_area_struct *vma = vmf->vma;
	struct vhgpu_dev *dev = vma->vm_private_data;
	u64 off = ((u64)vma->vm_pgoff << PAGE_SHIFT) & VHGPU_OFFSET_MASK;
	unsigned long idx = (off >> PAGE_SHIFT) + ((vmf->address - vma->vm_start) >> PAGE_SHIFT);

	if (idx >= dev->npages)
		return VM_FAULT_SIGBUS;
	/* the write follows once the PTE is writable; the saver zaps before copying */
	set_bit(idx, dev->dirty);
	return 0;
}

static const struct vm_operations_struct vhgpu_vram_vm_ops = {
	.fault = vhgpu_vram_fault,
	.pfn_mkwrite = vhgpu_vram_pfn_mkwrite,
};

/* ------------------------------------------------------------------------
 * Config space
 */
static void cfg_put16(u8 *cfg, unsigned int off, u16 v)
{
	cfg[off] = v & 0xff;
	cfg[off + 1] = v >> 8;
}

static void cfg_put32(u8 *cfg, unsigned int off, u32 v)
{
	cfg_put16(cfg, off, v & 0xffff);
	cfg_put16(cfg, off + 2, v >> 16);
}

static void vhgpu_init_config(struct vhgpu_dev *dev)
{
	u8 *c = dev->cfg, *m = dev->cfg_wmask;
	u64 bar2_mask = ~(dev->vram_size - 1);

	memset(c, 0, VHGPU_CFG_SIZE);
	memset(m, 0, VHGPU_CFG_SIZE);

	cfg_put16(c, PCI_VENDOR_ID, VHGPU_PCI_VENDOR);
	cfg_put16(c, PCI_DEVICE_ID, VHGPU_PCI_DEVICE);
	cfg_put16(c, PCI_STATUS, PCI_STATUS_CAP_LIST);
	c[PCI_REVISION_ID] = VHGPU_PCI_REVISION;
	c[PCI_CLASS_PROG] = 0x00;
	cfg_put16(c, PCI_CLASS_DEVICE, 0x0302);		/* display: 3D controller */
	c[PCI_HEADER_TYPE] = PCI_HEADER_TYPE_NORMAL;
	cfg_put32(c, PCI_BASE_ADDRESS_0, PCI_BASE_ADDRESS_SPACE_MEMORY |
		  PCI_BASE_ADDRESS_MEM_TYPE_32);
	cfg_put32(c, PCI_BASE_ADDRESS_2, PCI_BASE_ADDRESS_SPACE_MEMORY |
		  PCI_BASE_ADDRESS_MEM_TYPE_64 | PCI_BASE_ADDRESS_MEM_PREFETCH);
	cfg_put16(c, PCI_SUBSYSTEM_VENDOR_ID, VHGPU_PCI_VENDOR);
	cfg_put16(c, PCI_SUBSYSTEM_ID, dev->type->subsys_id);
	c[PCI_CAPABILITY_LIST] = VHGPU_MSI_CAP;
	c[PCI_INTERRUPT_PIN] = 1;
	/* MSI: one vector, 64-bit address */
	c[VHGPU_MSI_CAP + PCI_CAP_LIST_ID] = PCI_CAP_ID_MSI;
	c[VHGPU_MSI_CAP + PCI_CAP_LIST_NEXT] = 0;
	cfg_put16(c, VHGPU_MSI_CAP + PCI_MSI_FLAGS, PCI_MSI_FLAGS_64BIT);

	/* writable bits; BAR sizing falls out of the masks */
	cfg_put16(m, PCI_COMMAND, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER |
		  PCI_COMMAND_PARITY | PCI_COMMAND_SERR | PCI_COMMAND_INTX_DISABLE);
	m[PCI_CACHE_LINE_SIZE] = 0xff;
	m[PCI_LATENCY_TIMER] = 0xff;
	cfg_put32(m, PCI_BASE_ADDRESS_0, ~(u32)(VHGPU_BAR0_SIZE - 1));
	cfg_put32(m, PCI_BASE_ADDRESS_2, (u32)bar2_mask & ~0xfu);
	cfg_put32(m, PCI_BASE_ADDRESS_3, (u32)(bar2_mask >> 32));
	m[PCI_INTERRUPT_LINE] = 0xff;
	cfg_put16(m, VHGPU_MSI_CAP + PCI_MSI_FLAGS, PCI_MSI_FLAGS_ENABLE);
	cfg_put32(m, VHGPU_MSI_CAP + PCI_MSI_ADDRESS_LO, ~3u);
	cfg_put32(m, VHGPU_MSI_CAP + PCI_MSI_ADDRESS_HI, ~0u);
	cfg_put16(m, VHGPU_MSI_CAP + PCI_MSI_DATA_64, 0xffff);
}

static ssize_t vhgpu_cfg_rw(struct vhgpu_dev *dev, char __user *ubuf, size_t count,
			    u64 off, bool write)
{
	u8 buf[VHGPU_CFG_SIZE];
	size_t i;

	if (off >= VHGPU_CFG_SIZE)
		return -EINVAL;
	count = min_t(u64, count, VHGPU_CFG_SIZE - off);
	if (write) {
		if (copy_from_user(buf, ubuf, count))
			return -EFAULT;
		mutex_lock(&dev->lock);
		for (i = 0; i < count; i++) {
			u8 m = dev->cfg_wmask[off + i];

			dev->cfg[off + i] = (dev->cfg[off + i] & ~m) | (buf[i] & m);
		}
		mutex_unlock(&dev->lock);
		return count;
	}
	mutex_lock(&dev->lock);
	memcpy(buf, dev->cfg + off, count);
	mutex_unlock(&dev->lock);
	if (copy_to_user(ubuf, buf, count))
		return -EFAULT;
	return count;
}

/* ------------------------------------------------------------------------
 * Interrupts (dev->lock held)
 */
static bool vhgpu_irq_line(struct vhgpu_dev *dev)
{
	return R(dev, irq_status) & R(dev, irq_enable);
}

static void vhgpu_intx_update(struct vhgpu_dev *dev)
{
	u16 cmd = dev->cfg[PCI_COMMAND] | dev->cfg[PCI_COMMAND + 1] << 8;

	if (dev->irq_mode != VHGPU_IRQ_INTX || !dev->intx_trigger || dev->intx_masked)
		return;
	if ((cmd & PCI_COMMAND_INTX_DISABLE) || !vhgpu_irq_line(dev))
		return;
	/* level-triggered, auto-masked: user unmasks after servicing */
	dev->intx_masked = true;
	eventfd_signal(dev->intx_trigger);
}

/* New status bits were raised. */
static void vhgpu_raise(struct vhgpu_dev *dev, u32 bits)
{
	u32 newly = bits & ~R(dev, irq_status);

	R(dev, irq_status) |= bits;
	if (dev->irq_mode == VHGPU_IRQ_MSI) {
		if ((newly & R(dev, irq_enable)) && dev->msi_trigger)
			eventfd_signal(dev->msi_trigger);
	} else {
		vhgpu_intx_update(dev);
	}
}

static void vhgpu_irq_teardown(struct vhgpu_dev *dev)
{
	if (dev->intx_trigger)
		eventfd_ctx_put(dev->intx_trigger);
	if (dev->msi_trigger)
		eventfd_ctx_put(dev->msi_trigger);
	dev->intx_trigger = NULL;
	dev->msi_trigger = NULL;
	dev->intx_masked = false;
	dev->irq_mode = VHGPU_IRQ_NONE;
}

static int vhgpu_set_trigger(struct eventfd_ctx **slot, int fd)
{
	struct eventfd_ctx *ctx = NULL;

	if (fd >= 0) {
		ctx = eventfd_ctx_fdget(fd);
		if (IS_ERR(ctx))
			return PTR_ERR(ctx);
	}
	if (*slot)
		eventfd_ctx_put(*slot);
	*slot = ctx;
	return 0;
}

static int vhgpu_set_irqs(struct vhgpu_dev *dev, struct vfio_irq_set *hdr, u8 *data)
{
	u32 action = hdr->flags & VFIO_IRQ_SET_ACTION_TYPE_MASK;
	u32 dtype = hdr->flags & VFIO_IRQ_SET_DATA_TYPE_MASK;
	bool flag = dtype == VFIO_IRQ_SET_DATA_NONE || (dtype == VFIO_IRQ_SET_DATA_BOOL && data[0]);
	int ret = 0;

	if (hdr->index != VFIO_PCI_INTX_IRQ_INDEX && hdr->index != VFIO_PCI_MSI_IRQ_INDEX)
		return -EINVAL;
	if (hdr->count && (hdr->start != 0 || hdr->count != 1))
		return -EINVAL;

	mutex_lock(&dev->lock);
	if (hdr->index == VFIO_PCI_INTX_IRQ_INDEX) {
		switch (action) {
		case VFIO_IRQ_SET_ACTION_MASK:
			if (dev->irq_mode != VHGPU_IRQ_INTX || dtype == VFIO_IRQ_SET_DATA_EVENTFD) {
				ret = -EINVAL;
				break;
			}
			if (flag)
				dev->intx_masked = true;
			break;
		case VFIO_IRQ_SET_ACTION_UNMASK:
			if (dev->irq_mode != VHGPU_IRQ_INTX || dtype == VFIO_IRQ_SET_DATA_EVENTFD) {
				ret = -EINVAL;
				break;
			}
			if (flag) {
				dev->intx_masked = false;
				vhgpu_intx_update(dev);
			}
			break;
		case VFIO_IRQ_SET_ACTION_TRIGGER:
			if (!hdr->count) {
				if (dev->irq_mode == VHGPU_IRQ_INTX)
					vhgpu_irq_teardown(dev);
				break;
			}
			if (dtype == VFIO_IRQ_SET_DATA_EVENTFD) {
				int fd = *(s32 *)data;

				if (dev->irq_mode == VHGPU_IRQ_MSI) {
					ret = -EBUSY;
					break;
				}
				ret = vhgpu_set_trigger(&dev->intx_trigger, fd);
				if (ret)
					break;
				dev->intx_masked = false;
				dev->irq_mode = dev->intx_trigger ? VHGPU_IRQ_INTX : VHGPU_IRQ_NONE;
				vhgpu_intx_update(dev);
				break;
			}
			if (dev->irq_mode != VHGPU_IRQ_INTX) {
				ret = -EINVAL;
				break;
			}
			/* loopback trigger for testing the eventfd path */
			if (flag && dev->intx_trigger && !dev->intx_masked) {
				dev->intx_masked = true;
				eventfd_signal(dev->intx_trigger);
			}
			break;
		default:
			ret = -EINVAL;
		}
	} else {
		switch (action) {
		case VFIO_IRQ_SET_ACTION_TRIGGER:
			if (!hdr->count) {
				if (dev->irq_mode == VHGPU_IRQ_MSI)
					vhgpu_irq_teardown(dev);
				break;
			}
			if (dtype == VFIO_IRQ_SET_DATA_EVENTFD) {
				int fd = *(s32 *)data;

				if (dev->irq_mode == VHGPU_IRQ_INTX) {
					ret = -EBUSY;
					break;
				}
				ret = vhgpu_set_trigger(&dev->msi_trigger, fd);
				if (ret)
					break;
				dev->irq_mode = dev->msi_trigger ? VHGPU_IRQ_MSI : VHGPU_IRQ_NONE;
				break;
			}
			if (dev->irq_mode != VHGPU_IRQ_MSI) {
				ret = -EINVAL;
				break;
			}
			if (flag && dev->msi_trigger)
				eventfd_signal(dev->msi_trigger);
			break;
		default:
			ret = -EINVAL;	/* MSI cannot be masked through VFIO */
		}
	}
	mutex_unlock(&dev->lock);
	return ret;
}

/* ------------------------------------------------------------------------
 * BAR0 registers and the DMA engine
 */
static bool vhgpu_dma_allowed(struct vhgpu_dev *dev)
{
	enum vfio_device_mig_state s = READ_ONCE(dev->mig_state);

	return s == VFIO_DEVICE_STATE_RUNNING || s == VFIO_DEVICE_STATE_PRE_COPY;
}

/*
 * The rate limiter (dma_rate_limit_mbps): a transfer of len bytes takes at
 * least len / rate. The engine is synchronous, so the GO write returns (and
 * the completion interrupt is raised) only after that time; dev->lock stays
 * held like a busy engine. Interruptible: a signal ends the wait early.
 */
static void vhgpu_dma_throttle(struct vhgpu_dev *dev, u32 len, ktime_t start)
{
	u32 rate = READ_ONCE(dev->dma_rate_mbps);
	s64 want, spent;
	u64 us;

	if (!rate)
		return;
	want = div64_u64((u64)len * NSEC_PER_SEC, (u64)rate << 20);
	spent = ktime_to_ns(ktime_sub(ktime_get(), start));
	if (spent >= want)
		return;
	us = div_u64(want - spent, NSEC_PER_USEC);
	if (us >= 20000)
		msleep_interruptible(div_u64(us, USEC_PER_MSEC));
	else if (us)
		usleep_range(us, us + us / 16 + 1);
}

/* dev->lock held. Returns 0 or a negative errno. */
static int vhgpu_dma_run(struct vhgpu_dev *dev)
{
	u64 iova = R64(dev, dma_iova), voff = R64(dev, dma_vram);
	u32 len = R(dev, dma_len);
	bool to_vram = R(dev, dma_dir) == VHGPU_DMA_DIR_TO_VRAM;
	u32 done = 0;
	ktime_t start;

	if (R(dev, dma_dir) > VHGPU_DMA_DIR_FROM_VRAM || !len || len > VHGPU_DMA_MAX_LEN)
		return -EINVAL;
	if (voff >= dev->vram_size || len > dev->vram_size - voff)
		return -ERANGE;
	if (!vhgpu_dma_allowed(dev))
		return -EPERM;
	if (!(dev->cfg[PCI_COMMAND] & PCI_COMMAND_MASTER))
		return -EACCES;

	start = ktime_get();
	while (done < len) {
		u64 v = voff + done;
		unsigned long idx = v >> PAGE_SHIFT;
		size_t poff = v & ~PAGE_MASK;
		size_t n = min_t(size_t, PAGE_SIZE - poff, len - done);
		struct page *page = vhgpu_vram_page(dev, idx, to_vram);
		int ret;

		if (to_vram) {
			if (!page)
				return -ENOMEM;
			ret = vfio_dma_rw(&dev->vdev, iova + done, page_address(page) + poff, n, false);
			if (ret)
				return ret;
			vhgpu_mark_dirty(dev, idx);
		} else if (page) {
			ret = vfio_dma_rw(&dev->vdev, iova + done, page_address(page) + poff, n, true);
			if (ret)
				return ret;
		} else {
			ret = vfio_dma_rw(&dev->vdev, iova + done, page_address(ZERO_PAGE(0)), n,
					  true);
			if (ret)
				return ret;
		}
		done += n;
	}
	vhgpu_dma_throttle(dev, len, start);
	return 0;
}

static u32 vhgpu_reg_read(struct vhgpu_dev *dev, unsigned int reg)
{
	switch (reg) {
	case VHGPU_REG_ID: return VHGPU_ID;
	case VHGPU_REG_VERSION: return dev->ver.major << 16 | dev->ver.minor << 8 | dev->ver.patch;
	case VHGPU_REG_VRAM_LO: return lower_32_bits(dev->vram_size);
	case VHGPU_REG_VRAM_HI: return upper_32_bits(dev->vram_size);
	case VHGPU_REG_SCRATCH0 ... VHGPU_REG_SCRATCH3:
		return R(dev, scratch[(reg - VHGPU_REG_SCRATCH0) / 4]);
	case VHGPU_REG_DOORBELL: return R(dev, db_last);
	case VHGPU_REG_DB_COUNT: return R(dev, db_count);
	case VHGPU_REG_IRQ_STATUS: return R(dev, irq_status);
	case VHGPU_REG_IRQ_ENABLE: return R(dev, irq_enable);
	case VHGPU_REG_DMA_IOVA_LO: return lower_32_bits(R64(dev, dma_iova));
	case VHGPU_REG_DMA_IOVA_HI: return upper_32_bits(R64(dev, dma_iova));
	case VHGPU_REG_DMA_VRAM_LO: return lower_32_bits(R64(dev, dma_vram));
	case VHGPU_REG_DMA_VRAM_HI: return upper_32_bits(R64(dev, dma_vram));
	case VHGPU_REG_DMA_LEN: return R(dev, dma_len);
	case VHGPU_REG_DMA_DIR: return R(dev, dma_dir);
	case VHGPU_REG_DMA_STATUS: return R(dev, dma_status);
	case VHGPU_REG_DMA_ERRNO: return R(dev, dma_errno);
	case VHGPU_REG_DMA_COUNT: return R(dev, dma_count);
	default: return 0;
	}
}

static void vhgpu_set_lo(u64 *r, u32 v) { *r = (*r & GENMASK_ULL(63, 32)) | v; }
static void vhgpu_set_hi(u64 *r, u32 v) { *r = (*r & GENMASK_ULL(31, 0)) | ((u64)v << 32); }

static void vhgpu_reg_write(struct vhgpu_dev *dev, unsigned int reg, u32 val)
{
	int ret;

	switch (reg) {
	case VHGPU_REG_SCRATCH0 ... VHGPU_REG_SCRATCH3:
		R(dev, scratch[(reg - VHGPU_REG_SCRATCH0) / 4]) = val;
		break;
	case VHGPU_REG_DOORBELL:
		R(dev, db_last) = val;
		R(dev, db_count)++;
		vhgpu_raise(dev, VHGPU_IRQ_DOORBELL);
		break;
	case VHGPU_REG_IRQ_STATUS:
		R(dev, irq_status) &= ~val;
		break;
	case VHGPU_REG_IRQ_ENABLE:
		R(dev, irq_enable) = val & VHGPU_IRQ_ALL;
		vhgpu_intx_update(dev);
		break;
	case VHGPU_REG_IRQ_RAISE:
		vhgpu_raise(dev, val & VHGPU_IRQ_ALL);
		break;
	case VHGPU_REG_DMA_IOVA_LO: vhgpu_set_lo(&R64(dev, dma_iova), val); break;
	case VHGPU_REG_DMA_IOVA_HI: vhgpu_set_hi(&R64(dev, dma_iova), val); break;
	case VHGPU_REG_DMA_VRAM_LO: vhgpu_set_lo(&R64(dev, dma_vram), val); break;
	case VHGPU_REG_DMA_VRAM_HI: vhgpu_set_hi(&R64(dev, dma_vram), val); break;
	case VHGPU_REG_DMA_LEN: R(dev, dma_len) = val; break;
	case VHGPU_REG_DMA_DIR: R(dev, dma_dir) = val; break;
	case VHGPU_REG_DMA_CTRL:
		if (!(val & 1))
			break;
		ret = vhgpu_dma_run(dev);
		if (ret) {
			R(dev, dma_status) = VHGPU_DMA_ST_ERROR;
			R(dev, dma_errno) = -ret;
			dev_dbg(dev->vdev.dev, "DMA failed: %d\n", ret);
			vhgpu_raise(dev, VHGPU_IRQ_DMA_ERROR);
		} else {
			R(dev, dma_status) = VHGPU_DMA_ST_DONE;
			R(dev, dma_errno) = 0;
			R(dev, dma_count)++;
			vhgpu_raise(dev, VHGPU_IRQ_DMA_DONE);
		}
		break;
	default:
		break;	/* RO or unimplemented: ignored */
	}
}

static ssize_t vhgpu_bar0_rw(struct vhgpu_dev *dev, char __user *ubuf, size_t count,
			     u64 off, bool write)
{
	u8 buf[8];

	if (off >= VHGPU_BAR0_SIZE || count > 8 || off + count > VHGPU_BAR0_SIZE)
		return -EINVAL;
	if (write) {
		/* registers take aligned 32- or 64-bit writes */
		if ((count != 4 && count != 8) || (off & 3))
			return -EINVAL;
		if (copy_from_user(buf, ubuf, count))
			return -EFAULT;
		mutex_lock(&dev->lock);
		vhgpu_reg_write(dev, off, get_unaligned_le32(buf));
		if (count == 8)
			vhgpu_reg_write(dev, off + 4, get_unaligned_le32(buf + 4));
		mutex_unlock(&dev->lock);
	} else {
		unsigned int first = off & ~3ULL;
		__le32 w[3];
		unsigned int i;

		mutex_lock(&dev->lock);
		for (i = 0; i < 3; i++)
			w[i] = cpu_to_le32(first + 4 * i < VHGPU_BAR0_SIZE ?
					   vhgpu_reg_read(dev, first + 4 * i) : 0);
		mutex_unlock(&dev->lock);
		memcpy(buf, (u8 *)w + (off - first), count);
		if (copy_to_user(ubuf, buf, count))
			return -EFAULT;
	}
	return count;
}

static void vhgpu_reset_regs(struct vhgpu_dev *dev)
{
	memset(&dev->regs, 0, sizeof(dev->regs));
	dev->intx_masked = false;
}

/* ------------------------------------------------------------------------
 * Migration stream: save side
 */
static void vhgpu_fill_state(struct vhgpu_dev *dev, struct vhgpu_state *st)
{
	const u32 *src = (const u32 *)&dev->regs;
	__le32 *dst = (__le32 *)&st->regs;
	unsigned int i;

	BUILD_BUG_ON(sizeof(struct vhgpu_regs) % 4);
	/* u64 fields are stored as two CPU-order u32 halves (x86: little endian) */
	for (i = 0; i < sizeof(struct vhgpu_regs) / 4; i++)
		dst[i] = cpu_to_le32(src[i]);
	memcpy(st->config, dev->cfg, VHGPU_CFG_SIZE);
}

static void vhgpu_apply_state(struct vhgpu_dev *dev, const struct vhgpu_state *st)
{
	const __le32 *src = (const __le32 *)&st->regs;
	u32 *dst = (u32 *)&dev->regs;
	unsigned int i;

	for (i = 0; i < sizeof(struct vhgpu_regs) / 4; i++)
		dst[i] = le32_to_cpu(src[i]);
	/* only writable config bits come from the stream; identity stays ours */
	for (i = 0; i < VHGPU_CFG_SIZE; i++)
		dev->cfg[i] = (dev->cfg[i] & ~dev->cfg_wmask[i]) |
			      (st->config[i] & dev->cfg_wmask[i]);
	R(dev, irq_enable) &= VHGPU_IRQ_ALL;
	R(dev, irq_status) &= VHGPU_IRQ_ALL;
}

static void vhgpu_fill_header(struct vhgpu_dev *dev, struct vhgpu_mig_header *h)
{
	memset(h, 0, sizeof(*h));
	h->magic = cpu_to_le64(VHGPU_MIG_MAGIC);
	h->format = cpu_to_le32(VHGPU_MIG_FORMAT);
	h->hdr_size = cpu_to_le32(sizeof(*h));
	h->sw_major = cpu_to_le32(dev->ver.major);
	h->sw_minor = cpu_to_le32(dev->ver.minor);
	h->sw_patch = cpu_to_le32(dev->ver.patch);
	h->page_size = cpu_to_le32(PAGE_SIZE);
	h->vram_size = cpu_to_le64(dev->vram_size);
	h->priority = cpu_to_le32(dev->priority);
	strscpy(h->type_name, dev->type->type.sysfs_name, sizeof(h->type_name));
}

static void vhgpu_put_rec(struct vhgpu_migf *migf, u32 kind, u32 count, u64 index)
{
	struct vhgpu_rec *rec = (struct vhgpu_rec *)migf->obj;

	rec->kind = cpu_to_le32(kind);
	rec->count = cpu_to_le32(count);
	rec->index = cpu_to_le64(index);
	migf->obj_len = sizeof(*rec);
	migf->obj_pos = 0;
	migf->nrecs++;
}

static void vhgpu_put_page(struct vhgpu_migf *migf, unsigned long idx)
{
	struct vhgpu_dev *dev = migf->dev;
	struct page *page;

	/* order matters: clear the bit, write-protect, then copy */
	clear_bit(idx, dev->dirty);
	smp_mb__after_atomic();
	vhgpu_zap(dev, idx, 1);
	vhgpu_put_rec(migf, VHGPU_REC_PAGES, 1, idx);
	page = READ_ONCE(dev->pages[idx]);
	if (page)
		memcpy(migf->obj + sizeof(struct vhgpu_rec), page_address(page), PAGE_SIZE);
	else
		memset(migf->obj + sizeof(struct vhgpu_rec), 0, PAGE_SIZE);
	migf->obj_len += PAGE_SIZE;
}

/* Produces the next object; false when nothing is available now. migf->lock held. */
static bool vhgpu_save_next(struct vhgpu_migf *migf)
{
	struct vhgpu_dev *dev = migf->dev;
	unsigned long idx;

	for (;;) {
		switch (migf->phase) {
		case SAVE_HEADER:
			vhgpu_fill_header(dev, (struct vhgpu_mig_header *)migf->obj);
			migf->obj_len = sizeof(struct vhgpu_mig_header);
			migf->obj_pos = 0;
			migf->phase = SAVE_INITIAL;
			return true;
		case SAVE_INITIAL:
			if (migf->scan >= dev->npages) {
				migf->phase = SAVE_DIRTY;
				continue;
			}
			if (!READ_ONCE(dev->pages[migf->scan])) {
				unsigned long start = migf->scan, n = 0;

				while (start + n < dev->npages && n < VHGPU_ZERO_RUN_MAX &&
				       !READ_ONCE(dev->pages[start + n]))
					n++;
				vhgpu_put_rec(migf, VHGPU_REC_ZERO, n, start);
				migf->scan += n;
				return true;
			}
			vhgpu_put_page(migf, migf->scan);
			migf->scan++;
			return true;
		case SAVE_DIRTY:
			idx = find_first_bit(dev->dirty, dev->npages);
			if (idx < dev->npages) {
				vhgpu_put_page(migf, idx);
				return true;
			}
			if (!migf->stop_mode)
				return false;
			migf->phase = SAVE_STATE;
			continue;
		case SAVE_STATE:
			vhgpu_put_rec(migf, VHGPU_REC_STATE, sizeof(struct vhgpu_state), 0);
			mutex_lock(&dev->lock);
			vhgpu_fill_state(dev, (struct vhgpu_state *)(migf->obj + migf->obj_len));
			mutex_unlock(&dev->lock);
			migf->obj_len += sizeof(struct vhgpu_state);
			migf->phase = SAVE_END;
			return true;
		case SAVE_END:
			vhgpu_put_rec(migf, VHGPU_REC_END, migf->nrecs, 0);
			migf->phase = SAVE_DONE;
			return true;
		case SAVE_DONE:
			return false;
		}
	}
}

/* Bytes still to come, split as the precopy ioctl reports them. migf->lock held. */
static void vhgpu_save_pending(struct vhgpu_migf *migf, u64 *initial, u64 *dirty, u64 *final)
{
	struct vhgpu_dev *dev = migf->dev;
	u64 obj_left = migf->obj_len - migf->obj_pos;
	unsigned long i;

	*initial = 0;
	*dirty = 0;
	*final = 0;
	switch (migf->phase) {
	case SAVE_HEADER:
		*initial += sizeof(struct vhgpu_mig_header);
		fallthrough;
	case SAVE_INITIAL:
		*initial += obj_left;
		for (i = migf->scan; i < dev->npages;) {
			unsigned long n = 0;

			if (READ_ONCE(dev->pages[i])) {
				*initial += VHGPU_PAGE_REC;
				i++;
				continue;
			}
			/* same run cut as vhgpu_save_next() */
			while (i + n < dev->npages && n < VHGPU_ZERO_RUN_MAX &&
			       !READ_ONCE(dev->pages[i + n]))
				n++;
			*initial += sizeof(struct vhgpu_rec);
			i += n;
		}
		*dirty = (u64)bitmap_weight(dev->dirty, migf->scan) * VHGPU_PAGE_REC;
		break;
	case SAVE_DIRTY:
		*dirty = obj_left + (u64)bitmap_weight(dev->dirty, dev->npages) * VHGPU_PAGE_REC;
		break;
	default:
		*final = obj_left;
		break;
	}
	if (migf->stop_mode && migf->phase <= SAVE_STATE)
		*final += 2 * sizeof(struct vhgpu_rec) + sizeof(struct vhgpu_state);
	else if (migf->stop_mode && migf->phase == SAVE_END)
		*final += sizeof(struct vhgpu_rec);
}


/* Copies up to len bytes of stream into kbuf (kernel) or ubuf (user). migf->lock held. */
static ssize_t vhgpu_save_copy(struct vhgpu_migf *migf, char __user *ubuf, u8 *kbuf, size_t len)
{
	size_t done = 0;

	while (done < len) {
		size_t n;

		if (migf->obj_pos == migf->obj_len && !vhgpu_save_next(migf))
			break;
		n = min(len - done, migf->obj_len - migf->obj_pos);
		if (ubuf) {
			if (copy_to_user(ubuf + done, migf->obj + migf->obj_pos, n))
				return done ? done : -EFAULT;
		} else {
			memcpy(kbuf + done, migf->obj + migf->obj_pos, n);
		}
		migf->obj_pos += n;
		done += n;
	}
	return done;
}

/* ------------------------------------------------------------------------
 * Migration stream: load side
 */
static int vhgpu_check_header(struct vhgpu_dev *dev, struct vhgpu_migf *migf,
			      const struct vhgpu_mig_header *h)
{
	u64 vram = le64_to_cpu(h->vram_size);

	if (le64_to_cpu(h->magic) != VHGPU_MIG_MAGIC ||
	    le32_to_cpu(h->hdr_size) != sizeof(*h) ||
	    le32_to_cpu(h->page_size) != PAGE_SIZE) {
		dev_warn(dev->vdev.dev, "migration stream: bad magic or header\n");
		return -EINVAL;
	}
	if (le32_to_cpu(h->format) != VHGPU_MIG_FORMAT ||
	    le32_to_cpu(h->sw_major) != dev->ver.major ||
	    le32_to_cpu(h->sw_minor) > dev->ver.minor) {
		dev_warn(dev->vdev.dev,
			 "migration stream: version %u.%u.%u (format %u) not accepted by %u.%u.%u\n",
			 le32_to_cpu(h->sw_major), le32_to_cpu(h->sw_minor),
			 le32_to_cpu(h->sw_patch), le32_to_cpu(h->format),
			 dev->ver.major, dev->ver.minor, dev->ver.patch);
		return -EPROTO;
	}
	if (vram != dev->vram_size && !(cross_type && vram && vram < dev->vram_size &&
					 !(vram & ~PAGE_MASK))) {
		dev_warn(dev->vdev.dev,
			 "migration stream: VRAM %llu bytes, device has %llu (aggregate %u; copy dynamic_resources first)\n",
			 vram, dev->vram_size, dev->aggregate);
		return -ERANGE;
	}
	if (le32_to_cpu(h->priority) != dev->priority) {
		dev_warn(dev->vdev.dev,
			 "migration stream: priority %u, device has %u (copy dynamic_resources first)\n",
			 le32_to_cpu(h->priority), dev->priority);
		return -ERANGE;
	}
	migf->src_pages = vram >> PAGE_SHIFT;
	return 0;
}

static void vhgpu_zero_pages(struct vhgpu_dev *dev, u64 first, u64 n)
{
	u64 i;

	for (i = first; i < first + n; i++) {
		struct page *page = READ_ONCE(dev->pages[i]);

		if (page)
			clear_page(page_address(page));
	}
}

static size_t vhgpu_load_need(struct vhgpu_migf *migf)
{
	switch (migf->lphase) {
	case LOAD_HEADER: return sizeof(struct vhgpu_mig_header);
	case LOAD_REC: return sizeof(struct vhgpu_rec);
	case LOAD_PAGE: return PAGE_SIZE;
	case LOAD_STATE: return sizeof(struct vhgpu_state);
	default: return 0;
	}
}

/* Handles one complete object in migf->obj. */
static int vhgpu_load_obj(struct vhgpu_migf *migf)
{
	struct vhgpu_dev *dev = migf->dev;
	const struct vhgpu_rec *rec = (const void *)migf->obj;
	struct page *page;
	u32 kind, count;
	u64 index;
	int ret;

	switch (migf->lphase) {
	case LOAD_HEADER:
		ret = vhgpu_check_header(dev, migf, (const void *)migf->obj);
		if (ret)
			return ret;
		/* a smaller source leaves the rest of our VRAM zero */
		if (migf->src_pages < dev->npages)
			vhgpu_zero_pages(dev, migf->src_pages, dev->npages - migf->src_pages);
		migf->lphase = LOAD_REC;
		return 0;
	case LOAD_REC:
		kind = le32_to_cpu(rec->kind);
		count = le32_to_cpu(rec->count);
		index = le64_to_cpu(rec->index);
		migf->nrecs++;
		switch (kind) {
		case VHGPU_REC_PAGES:
			if (count != 1 || index >= migf->src_pages)
				return -EINVAL;
			migf->cur_page = index;
			migf->lphase = LOAD_PAGE;
			return 0;
		case VHGPU_REC_ZERO:
			if (!count || index >= migf->src_pages || count > migf->src_pages - index)
				return -EINVAL;
			vhgpu_zero_pages(dev, index, count);
			return 0;
		case VHGPU_REC_STATE:
			if (count != sizeof(struct vhgpu_state))
				return -EINVAL;
			migf->lphase = LOAD_STATE;
			return 0;
		case VHGPU_REC_END:
			if (count != migf->nrecs - 1)
				return -EINVAL;
			migf->lphase = LOAD_END;
			return 0;
		default:
			return -EINVAL;
		}
	case LOAD_PAGE:
		page = READ_ONCE(dev->pages[migf->cur_page]);
		if (!page && !memchr_inv(migf->obj, 0, PAGE_SIZE)) {
			migf->lphase = LOAD_REC;
			return 0;	/* zero page stays unallocated */
		}
		page = vhgpu_vram_page(dev, migf->cur_page, true);
		if (!page)
			return -ENOMEM;
		memcpy(page_address(page), migf->obj, PAGE_SIZE);
		migf->lphase = LOAD_REC;
		return 0;
	case LOAD_STATE:
		memcpy(&migf->state, migf->obj, sizeof(migf->state));
		migf->have_state = true;
		migf->lphase = LOAD_REC;
		return 0;
	default:
		return -EINVAL;	/* data after END */
	}
}

/* Feeds stream bytes (kernel buffer) into the parser. migf->lock held. */
static int vhgpu_load_feed(struct vhgpu_migf *migf, const u8 *buf, size_t len)
{
	while (len) {
		size_t need = vhgpu_load_need(migf), n;
		int ret;

		if (!need) {
			migf->error = -EINVAL;
			dev_warn(migf->dev->vdev.dev, "migration stream: data after end record\n");
			return migf->error;
		}
		n = min(need - migf->obj_len, len);
		memcpy(migf->obj + migf->obj_len, buf, n);
		migf->obj_len += n;
		buf += n;
		len -= n;
		if (migf->obj_len < need)
			break;
		migf->obj_len = 0;
		ret = vhgpu_load_obj(migf);
		if (ret) {
			if (ret == -EINVAL && migf->lphase != LOAD_HEADER)
				dev_warn(migf->dev->vdev.dev, "migration stream: malformed record\n");
			migf->error = ret;
			return ret;
		}
	}
	return 0;
}

/* RESUMING -> STOP: the stream must be complete and valid. */
static int vhgpu_load_finish(struct vhgpu_dev *dev, struct vhgpu_migf *migf)
{
	int ret = 0;

	mutex_lock(&migf->lock);
	if (migf->error) {
		ret = migf->error;
	} else if (migf->lphase != LOAD_END || !migf->have_state || migf->obj_len) {
		dev_warn(dev->vdev.dev, "migration stream: truncated (no end record)\n");
		ret = -ENODATA;
	} else {
		mutex_lock(&dev->lock);
		vhgpu_apply_state(dev, &migf->state);
		mutex_unlock(&dev->lock);
	}
	mutex_unlock(&migf->lock);
	return ret;
}

/* ------------------------------------------------------------------------
 * Migration files
 */
static int vhgpu_migf_release(struct inode *inode, struct file *filp)
{
	struct vhgpu_migf *migf = filp->private_data;

	mutex_destroy(&migf->lock);
	kvfree(migf->obj);
	kfree(migf);
	return 0;
}

static ssize_t vhgpu_save_read(struct file *filp, char __user *buf, size_t len, loff_t *pos)
{
	struct vhgpu_migf *migf = filp->private_data;
	ssize_t ret;

	if (pos)
		return -ESPIPE;
	mutex_lock(&migf->lock);
	if (migf->disabled) {
		ret = -ENODEV;
	} else {
		ret = vhgpu_save_copy(migf, buf, NULL, len);
		if (ret == 0 && len && !migf->stop_mode)
			ret = -ENOMSG;	/* temporary end of precopy data */
	}
	mutex_unlock(&migf->lock);
	return ret;
}

static long vhgpu_save_ioctl(struct file *filp, unsigned int cmd, unsigned long arg)
{
	struct vhgpu_migf *migf = filp->private_data;
	unsigned long minsz = offsetofend(struct vfio_precopy_info, dirty_bytes);
	struct vfio_precopy_info info;
	u64 final;
	int ret = 0;

	if (cmd != VFIO_MIG_GET_PRECOPY_INFO)
		return -ENOTTY;
	if (copy_from_user(&info, (void __user *)arg, minsz))
		return -EFAULT;
	if (info.argsz < minsz)
		return -EINVAL;

	mutex_lock(&migf->lock);
	if (migf->disabled)
		ret = -ENODEV;
	else if (migf->stop_mode)
		ret = -EINVAL;	/* only in PRE_COPY / PRE_COPY_P2P */
	else
		vhgpu_save_pending(migf, &info.initial_bytes, &info.dirty_bytes, &final);
	mutex_unlock(&migf->lock);
	if (ret)
		return ret;
	info.flags = 0;
	return copy_to_user((void __user *)arg, &info, minsz) ? -EFAULT : 0;
}

static const struct file_operations vhgpu_save_fops = {
	.owner = THIS_MODULE,
	.read = vhgpu_save_read,
	.unlocked_ioctl = vhgpu_save_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
	.release = vhgpu_migf_release,
};

static ssize_t vhgpu_resume_write(struct file *filp, const char __user *buf, size_t len,
				  loff_t *pos)
{
	struct vhgpu_migf *migf = filp->private_data;
	size_t done = 0;
	u8 *chunk;
	int ret = 0;

	if (pos)
		return -ESPIPE;
	chunk = kvmalloc(SZ_64K, GFP_KERNEL);
	if (!chunk)
		return -ENOMEM;
	mutex_lock(&migf->lock);
	if (migf->disabled)
		ret = -ENODEV;
	else if (migf->error)
		ret = migf->error;
	while (!ret && done < len) {
		size_t n = min_t(size_t, SZ_64K, len - done);

		if (copy_from_user(chunk, buf + done, n)) {
			ret = -EFAULT;
			break;
		}
		ret = vhgpu_load_feed(migf, chunk, n);
		if (!ret)
			done += n;
	}
	mutex_unlock(&migf->lock);
	kvfree(chunk);
	if (done)
		return done;
	return ret;
}

static const struct file_operations vhgpu_resume_fops = {
	.owner = THIS_MODULE,
	.write = vhgpu_resume_write,
	.release = vhgpu_migf_release,
};

static struct vhgpu_migf *vhgpu_migf_new(struct vhgpu_dev *dev, bool saving)
{
	struct vhgpu_migf *migf;

	migf = kzalloc(sizeof(*migf), GFP_KERNEL_ACCOUNT);
	if (!migf)
		return ERR_PTR(-ENOMEM);
	migf->obj = kvzalloc(VHGPU_OBJ_MAX, GFP_KERNEL_ACCOUNT);
	if (!migf->obj) {
		kfree(migf);
		return ERR_PTR(-ENOMEM);
	}
	BUILD_BUG_ON(sizeof(struct vhgpu_mig_header) > VHGPU_OBJ_MAX);
	BUILD_BUG_ON(sizeof(struct vhgpu_rec) + sizeof(struct vhgpu_state) > VHGPU_OBJ_MAX);
	migf->filp = anon_inode_getfile("vhgpu_mig", saving ? &vhgpu_save_fops : &vhgpu_resume_fops,
					migf, saving ? O_RDONLY : O_WRONLY);
	if (IS_ERR(migf->filp)) {
		int ret = PTR_ERR(migf->filp);

		kvfree(migf->obj);
		kfree(migf);
		return ERR_PTR(ret);
	}
	stream_open(migf->filp->f_inode, migf->filp);
	mutex_init(&migf->lock);
	migf->dev = dev;
	migf->saving = saving;
	if (saving)
		bitmap_zero(dev->dirty, dev->npages);
	return migf;
}

static void vhgpu_migf_disable(struct vhgpu_migf *migf)
{
	mutex_lock(&migf->lock);
	migf->disabled = true;
	mutex_unlock(&migf->lock);
	fput(migf->filp);
}

/* state_mutex held */
static void vhgpu_disable_files(struct vhgpu_dev *dev)
{
	if (dev->saving)
		vhgpu_migf_disable(dev->saving);
	if (dev->resuming)
		vhgpu_migf_disable(dev->resuming);
	dev->saving = NULL;
	dev->resuming = NULL;
	dev->v1_chunk = 0;
}

/* ------------------------------------------------------------------------
 * Migration state machine (shared by v2 and v1). state_mutex held.
 */
static struct file *vhgpu_step(struct vhgpu_dev *dev, enum vfio_device_mig_state next)
{
	enum vfio_device_mig_state cur = dev->mig_state;
	struct vhgpu_migf *migf;
	int ret;

	/* arcs without device work: the DMA engine is synchronous, nothing to quiesce */
	if ((cur == VFIO_DEVICE_STATE_RUNNING && next == VFIO_DEVICE_STATE_RUNNING_P2P) ||
	    (cur == VFIO_DEVICE_STATE_RUNNING_P2P && next == VFIO_DEVICE_STATE_RUNNING) ||
	    (cur == VFIO_DEVICE_STATE_RUNNING_P2P && next == VFIO_DEVICE_STATE_STOP) ||
	    (cur == VFIO_DEVICE_STATE_STOP && next == VFIO_DEVICE_STATE_RUNNING_P2P) ||
	    (cur == VFIO_DEVICE_STATE_PRE_COPY && next == VFIO_DEVICE_STATE_PRE_COPY_P2P) ||
	    (cur == VFIO_DEVICE_STATE_PRE_COPY_P2P && next == VFIO_DEVICE_STATE_PRE_COPY))
		return NULL;

	if (cur == VFIO_DEVICE_STATE_RESUMING && next == VFIO_DEVICE_STATE_STOP) {
		ret = vhgpu_load_finish(dev, dev->resuming);
		if (ret)
			return ERR_PTR(ret);
		vhgpu_disable_files(dev);
		return NULL;
	}

	if ((cur == VFIO_DEVICE_STATE_PRE_COPY && next == VFIO_DEVICE_STATE_RUNNING) ||
	    (cur == VFIO_DEVICE_STATE_PRE_COPY_P2P && next == VFIO_DEVICE_STATE_RUNNING_P2P) ||
	    (cur == VFIO_DEVICE_STATE_STOP_COPY && next == VFIO_DEVICE_STATE_STOP)) {
		vhgpu_disable_files(dev);
		return NULL;
	}

	if (cur == VFIO_DEVICE_STATE_PRE_COPY_P2P && next == VFIO_DEVICE_STATE_STOP_COPY) {
		/* the precopy data_fd continues into stop-copy */
		mutex_lock(&dev->saving->lock);
		dev->saving->stop_mode = true;
		mutex_unlock(&dev->saving->lock);
		return NULL;
	}

	if ((cur == VFIO_DEVICE_STATE_RUNNING && next == VFIO_DEVICE_STATE_PRE_COPY) ||
	    (cur == VFIO_DEVICE_STATE_RUNNING_P2P && next == VFIO_DEVICE_STATE_PRE_COPY_P2P) ||
	    (cur == VFIO_DEVICE_STATE_STOP && next == VFIO_DEVICE_STATE_STOP_COPY)) {
		migf = vhgpu_migf_new(dev, true);
		if (IS_ERR(migf))
			return ERR_CAST(migf);
		migf->stop_mode = next == VFIO_DEVICE_STATE_STOP_COPY;
		dev->saving = migf;
		return get_file(migf->filp);
	}

	if (cur == VFIO_DEVICE_STATE_STOP && next == VFIO_DEVICE_STATE_RESUMING) {
		migf = vhgpu_migf_new(dev, false);
		if (IS_ERR(migf))
			return ERR_CAST(migf);
		dev->resuming = migf;
		return get_file(migf->filp);
	}

	WARN_ON_ONCE(1);
	return ERR_PTR(-EINVAL);
}

/* Walks to new_state; returns the data_fd file of the last arc, if any. */
static struct file *vhgpu_goto_state(struct vhgpu_dev *dev, enum vfio_device_mig_state new_state)
{
	struct file *res = NULL;

	while (dev->mig_state != new_state) {
		enum vfio_device_mig_state next;
		int ret = vfio_mig_get_next_state(&dev->vdev, dev->mig_state, new_state, &next);

		if (ret)
			return ERR_PTR(ret);
		res = vhgpu_step(dev, next);
		if (IS_ERR(res))
			return res;
		WRITE_ONCE(dev->mig_state, next);
		if (WARN_ON(res && next != new_state)) {
			fput(res);
			return ERR_PTR(-EINVAL);
		}
	}
	return res;
}

static struct file *vhgpu_set_state(struct vfio_device *vdev, enum vfio_device_mig_state new_state)
{
	struct vhgpu_dev *dev = container_of(vdev, struct vhgpu_dev, vdev);
	struct file *res;

	mutex_lock(&dev->state_mutex);
	res = vhgpu_goto_state(dev, new_state);
	mutex_unlock(&dev->state_mutex);
	return res;
}

static int vhgpu_get_state(struct vfio_device *vdev, enum vfio_device_mig_state *state)
{
	struct vhgpu_dev *dev = container_of(vdev, struct vhgpu_dev, vdev);

	mutex_lock(&dev->state_mutex);
	*state = dev->mig_state;
	mutex_unlock(&dev->state_mutex);
	return 0;
}

static int vhgpu_get_data_size(struct vfio_device *vdev, unsigned long *len)
{
	struct vhgpu_dev *dev = container_of(vdev, struct vhgpu_dev, vdev);

	/* upper bound: header, every page, state, end */
	*len = sizeof(struct vhgpu_mig_header) + dev->npages * VHGPU_PAGE_REC +
	       2 * sizeof(struct vhgpu_rec) + sizeof(struct vhgpu_state);
	return 0;
}

static const struct vfio_migration_ops vhgpu_mig_ops = {
	.migration_set_state = vhgpu_set_state,
	.migration_get_state = vhgpu_get_state,
	.migration_get_data_size = vhgpu_get_data_size,
};

/* ------------------------------------------------------------------------
 * Migration v1 region
 */
static u32 vhgpu_v1_state(struct vhgpu_dev *dev)
{
	if (dev->v1_error)
		return VFIO_DEVICE_STATE_V1_SAVING | VFIO_DEVICE_STATE_V1_RESUMING;
	switch (dev->mig_state) {
	case VFIO_DEVICE_STATE_RUNNING:
	case VFIO_DEVICE_STATE_RUNNING_P2P:
		return VFIO_DEVICE_STATE_V1_RUNNING;
	case VFIO_DEVICE_STATE_PRE_COPY:
	case VFIO_DEVICE_STATE_PRE_COPY_P2P:
		return VFIO_DEVICE_STATE_V1_RUNNING | VFIO_DEVICE_STATE_V1_SAVING;
	case VFIO_DEVICE_STATE_STOP_COPY:
		return VFIO_DEVICE_STATE_V1_SAVING;
	case VFIO_DEVICE_STATE_RESUMING:
		return VFIO_DEVICE_STATE_V1_RESUMING;
	default:
		return VFIO_DEVICE_STATE_V1_STOP;
	}
}

/* state_mutex held */
static int vhgpu_v1_set_state(struct vhgpu_dev *dev, u32 v1)
{
	enum vfio_device_mig_state target;
	struct file *f;

	if (dev->v1_error)
		return -EIO;	/* reset recovers */
	switch (v1) {
	case VFIO_DEVICE_STATE_V1_RUNNING:
		target = VFIO_DEVICE_STATE_RUNNING;
		break;
	case VFIO_DEVICE_STATE_V1_RUNNING | VFIO_DEVICE_STATE_V1_SAVING:
		target = VFIO_DEVICE_STATE_PRE_COPY;
		break;
	case VFIO_DEVICE_STATE_V1_SAVING:
		target = VFIO_DEVICE_STATE_STOP_COPY;
		break;
	case VFIO_DEVICE_STATE_V1_RESUMING:
		target = VFIO_DEVICE_STATE_RESUMING;
		break;
	case VFIO_DEVICE_STATE_V1_STOP:
		target = VFIO_DEVICE_STATE_STOP;
		break;
	default:
		return -EINVAL;	/* SAVING|RESUMING and unknown bits */
	}
	if (target == dev->mig_state)
		return 0;
	f = vhgpu_goto_state(dev, target);
	if (IS_ERR(f)) {
		if (dev->mig_state == VFIO_DEVICE_STATE_RESUMING)
			dev->v1_error = true;	/* load refused */
		return PTR_ERR(f);
	}
	if (f)
		fput(f);	/* v1 has no data_fd; dev->saving/resuming keep theirs */
	dev->v1_chunk = 0;
	return 0;
}

/* state_mutex held */
static u64 vhgpu_v1_pending(struct vhgpu_dev *dev)
{
	u64 initial, dirty, final;

	if (!dev->saving)
		return 0;
	mutex_lock(&dev->saving->lock);
	vhgpu_save_pending(dev->saving, &initial, &dirty, &final);
	mutex_unlock(&dev->saving->lock);
	return initial + dirty + final;
}

static ssize_t vhgpu_v1_rw(struct vhgpu_dev *dev, char __user *ubuf, size_t count,
			   u64 off, bool write)
{
	struct vfio_device_migration_info info;
	u64 region_size = VHGPU_V1_DATA_OFFSET + dev->v1_data_size;
	ssize_t ret = count;
	u64 val = 0;

	if (off >= region_size || count > region_size - off)
		return -EINVAL;

	if (off >= VHGPU_V1_DATA_OFFSET) {
		u64 doff = off - VHGPU_V1_DATA_OFFSET;

		if (write ? copy_from_user(dev->v1_data + doff, ubuf, count) :
			    copy_to_user(ubuf, dev->v1_data + doff, count))
			return -EFAULT;
		return count;
	}

	/* the header takes naturally aligned accesses of its fields */
	switch (off) {
	case offsetof(struct vfio_device_migration_info, device_state):
	case offsetof(struct vfio_device_migration_info, reserved):
		if (count != 4)
			return -EINVAL;
		break;
	case offsetof(struct vfio_device_migration_info, pending_bytes):
	case offsetof(struct vfio_device_migration_info, data_offset):
	case offsetof(struct vfio_device_migration_info, data_size):
		if (count != 8)
			return -EINVAL;
		break;
	default:
		return -EINVAL;
	}

	if (write) {
		if (copy_from_user(&val, ubuf, count))
			return -EFAULT;
	}

	mutex_lock(&dev->state_mutex);
	memset(&info, 0, sizeof(info));
	switch (off) {
	case offsetof(struct vfio_device_migration_info, device_state):
		if (write) {
			int r = vhgpu_v1_set_state(dev, (u32)val);

			if (r)
				ret = r;
		} else {
			val = vhgpu_v1_state(dev);
		}
		break;
	case offsetof(struct vfio_device_migration_info, reserved):
		if (write)
			ret = -EINVAL;
		break;
	case offsetof(struct vfio_device_migration_info, pending_bytes):
		if (write)
			ret = -EINVAL;
		else if (dev->v1_error)
			ret = -EIO;
		else
			val = vhgpu_v1_pending(dev);
		break;
	case offsetof(struct vfio_device_migration_info, data_offset):
		if (write) {
			ret = -EINVAL;
			break;
		}
		val = VHGPU_V1_DATA_OFFSET;
		/* saving: reading data_offset prepares the next chunk */
		if (dev->saving) {
			ssize_t n;

			mutex_lock(&dev->saving->lock);
			n = vhgpu_save_copy(dev->saving, NULL, dev->v1_data, dev->v1_data_size);
			mutex_unlock(&dev->saving->lock);
			if (n < 0)
				ret = n;
			else
				dev->v1_chunk = n;
		} else if (!dev->resuming) {
			ret = -EINVAL;
		}
		break;
	case offsetof(struct vfio_device_migration_info, data_size):
		if (!write) {
			if (!dev->saving)
				ret = -EINVAL;
			else
				val = dev->v1_chunk;
			break;
		}
		/* resuming: writing data_size commits that much of the data section */
		if (!dev->resuming || val > dev->v1_data_size) {
			ret = -EINVAL;
			break;
		}
		mutex_lock(&dev->resuming->lock);
		if (dev->resuming->error) {
			ret = dev->resuming->error;
		} else {
			int r = vhgpu_load_feed(dev->resuming, dev->v1_data, val);

			if (r)
				ret = r;
		}
		mutex_unlock(&dev->resuming->lock);
		break;
	}
	mutex_unlock(&dev->state_mutex);

	if (ret >= 0 && !write && copy_to_user(ubuf, &val, count))
		return -EFAULT;
	return ret;
}

/* ------------------------------------------------------------------------
 * vfio_device_ops
 */
static int vhgpu_init_dev(struct vfio_device *vdev)
{
	struct vhgpu_dev *dev = container_of(vdev, struct vhgpu_dev, vdev);
	struct mdev_device *mdev = to_mdev_device(vdev->dev);
	struct vhgpu_type *type = to_vhgpu_type(mdev->type);
	int ret;

	ret = vhgpu_parse_version(software_version, &dev->ver);
	if (ret) {
		pr_warn("software_version \"%s\" is not major.minor.patch\n", software_version);
		return ret;
	}

	mutex_lock(&vhgpu_pool_lock);
	if (vhgpu_pool_free_mb < type->vram_mb) {
		mutex_unlock(&vhgpu_pool_lock);
		return -ENOSPC;
	}
	vhgpu_pool_free_mb -= type->vram_mb;
	mutex_unlock(&vhgpu_pool_lock);

	dev->mdev = mdev;
	dev->type = type;
	dev->aggregate = 1;
	dev->pool_mb = type->vram_mb;
	dev->vram_size = (u64)type->vram_mb << 20;
	dev->npages = dev->vram_size >> PAGE_SHIFT;
	ret = -ENOMEM;
	dev->pages = kvcalloc(dev->npages, sizeof(*dev->pages), GFP_KERNEL_ACCOUNT);
	if (!dev->pages)
		goto err_pool;
	dev->dirty = bitmap_zalloc(dev->npages, GFP_KERNEL_ACCOUNT);
	if (!dev->dirty)
		goto err_pages;
	if (migration_v1) {
		dev->v1_data_size = PAGE_ALIGN(max(v1_data_kb, 4u) << 10);
		dev->v1_data = vmalloc_user(dev->v1_data_size);
		if (!dev->v1_data)
			goto err_dirty;
	}
	mutex_init(&dev->lock);
	mutex_init(&dev->state_mutex);
	vhgpu_init_config(dev);
	dev->mig_state = VFIO_DEVICE_STATE_RUNNING;
	/* the FSM walker needs the flags even when only v1 is offered */
	vdev->migration_flags = VFIO_MIGRATION_STOP_COPY | VFIO_MIGRATION_P2P |
				VFIO_MIGRATION_PRE_COPY;
	if (migration_v2)
		vdev->mig_ops = &vhgpu_mig_ops;
	return 0;

err_dirty:
	bitmap_free(dev->dirty);
err_pages:
	kvfree(dev->pages);
err_pool:
	mutex_lock(&vhgpu_pool_lock);
	vhgpu_pool_free_mb += type->vram_mb;
	mutex_unlock(&vhgpu_pool_lock);
	return ret;
}

static void vhgpu_release_dev(struct vfio_device *vdev)
{
	struct vhgpu_dev *dev = container_of(vdev, struct vhgpu_dev, vdev);
	unsigned long i;

	for (i = 0; i < dev->npages; i++)
		if (dev->pages[i])
			__free_page(dev->pages[i]);
	kvfree(dev->pages);
	bitmap_free(dev->dirty);
	vfree(dev->v1_data);
	mutex_destroy(&dev->lock);
	mutex_destroy(&dev->state_mutex);
	mutex_lock(&vhgpu_pool_lock);
	vhgpu_pool_free_mb += dev->pool_mb;
	mutex_unlock(&vhgpu_pool_lock);
}

static int vhgpu_open_device(struct vfio_device *vdev)
{
	struct vhgpu_dev *dev = container_of(vdev, struct vhgpu_dev, vdev);

	mutex_lock(&dev->lock);
	dev->open = true;
	dev->opened = true;
	mutex_unlock(&dev->lock);
	return 0;
}

static void vhgpu_close_device(struct vfio_device *vdev)
{
	struct vhgpu_dev *dev = container_of(vdev, struct vhgpu_dev, vdev);

	mutex_lock(&dev->state_mutex);
	vhgpu_disable_files(dev);
	WRITE_ONCE(dev->mig_state, VFIO_DEVICE_STATE_RUNNING);
	dev->v1_error = false;
	mutex_unlock(&dev->state_mutex);
	mutex_lock(&dev->lock);
	vhgpu_irq_teardown(dev);
	dev->open = false;
	mutex_unlock(&dev->lock);
}

static int vhgpu_reset(struct vhgpu_dev *dev)
{
	mutex_lock(&dev->state_mutex);
	vhgpu_disable_files(dev);
	WRITE_ONCE(dev->mig_state, VFIO_DEVICE_STATE_RUNNING);
	dev->v1_error = false;
	mutex_lock(&dev->lock);
	vhgpu_reset_regs(dev);
	vhgpu_init_config(dev);
	mutex_unlock(&dev->lock);
	mutex_unlock(&dev->state_mutex);
	return 0;
}

static ssize_t vhgpu_rw(struct vhgpu_dev *dev, char __user *buf, size_t count, loff_t *ppos,
			bool write)
{
	u64 pos = *ppos;
	u64 off = pos & VHGPU_OFFSET_MASK;
	ssize_t ret;

	if (!count)
		return 0;
	switch (VHGPU_INDEX(pos)) {
	case VFIO_PCI_CONFIG_REGION_INDEX:
		ret = vhgpu_cfg_rw(dev, buf, count, off, write);
		break;
	case VFIO_PCI_BAR0_REGION_INDEX:
		ret = vhgpu_bar0_rw(dev, buf, count, off, write);
		break;
	case VFIO_PCI_BAR2_REGION_INDEX:
		ret = vhgpu_vram_rw(dev, buf, count, off, write);
		break;
	case VHGPU_V1_REGION:
		ret = dev->v1_data ? vhgpu_v1_rw(dev, buf, count, off, write) : -EINVAL;
		break;
	default:
		ret = -EINVAL;
	}
	if (ret > 0)
		*ppos += ret;
	return ret;
}

static ssize_t vhgpu_read(struct vfio_device *vdev, char __user *buf, size_t count, loff_t *ppos)
{
	return vhgpu_rw(container_of(vdev, struct vhgpu_dev, vdev), buf, count, ppos, false);
}

static ssize_t vhgpu_write(struct vfio_device *vdev, const char __user *buf, size_t count,
			   loff_t *ppos)
{
	return vhgpu_rw(container_of(vdev, struct vhgpu_dev, vdev), (char __user *)buf, count,
			ppos, true);
}

static int vhgpu_mmap(struct vfio_device *vdev, struct vm_area_struct *vma)
{
	struct vhgpu_dev *dev = container_of(vdev, struct vhgpu_dev, vdev);
	u64 pos = (u64)vma->vm_pgoff << PAGE_SHIFT;
	u64 off = pos & VHGPU_OFFSET_MASK;
	u64 len = vma->vm_end - vma->vm_start;

	if (!(vma->vm_flags & VM_SHARED))
		return -EINVAL;
	switch (VHGPU_INDEX(pos)) {
	case VFIO_PCI_BAR2_REGION_INDEX:
		if (off >= dev->vram_size || len > dev->vram_size - off)
			return -EINVAL;
		vm_flags_set(vma, VM_PFNMAP | VM_IO | VM_DONTEXPAND | VM_DONTDUMP);
		vma->vm_ops = &vhgpu_vram_vm_ops;
		vma->vm_private_data = dev;
		atomic_inc(&dev->mmapped);
		return 0;
	case VHGPU_V1_REGION:
		if (!dev->v1_data || off < VHGPU_V1_DATA_OFFSET ||
		    off - VHGPU_V1_DATA_OFFSET >= dev->v1_data_size ||
		    len > dev->v1_data_size - (off - VHGPU_V1_DATA_OFFSET))
			return -EINVAL;
		return remap_vmalloc_range(vma, dev->v1_data,
					   (off - VHGPU_V1_DATA_OFFSET) >> PAGE_SHIFT);
	default:
		return -EINVAL;
	}
}

static int vhgpu_region_info(struct vhgpu_dev *dev, struct vfio_region_info *info,
			     struct vfio_info_cap *caps)
{
	info->offset = VHGPU_OFFSET(info->index);
	info->size = 0;
	info->flags = 0;

	switch (info->index) {
	case VFIO_PCI_CONFIG_REGION_INDEX:
		info->size = VHGPU_CFG_SIZE;
		info->flags = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE;
		return 0;
	case VFIO_PCI_BAR0_REGION_INDEX:
		info->size = VHGPU_BAR0_SIZE;
		info->flags = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE;
		return 0;
	case VFIO_PCI_BAR2_REGION_INDEX:
		info->size = dev->vram_size;
		info->flags = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE |
			      VFIO_REGION_INFO_FLAG_MMAP;
		return 0;
	case VHGPU_V1_REGION: {
		struct vfio_region_info_cap_type type = {
			.header.id = VFIO_REGION_INFO_CAP_TYPE,
			.header.version = 1,
			.type = VFIO_REGION_TYPE_MIGRATION_DEPRECATED,
			.subtype = VFIO_REGION_SUBTYPE_MIGRATION_DEPRECATED,
		};
		struct vfio_region_info_cap_sparse_mmap *sparse;
		size_t ssize = struct_size(sparse, areas, 1);
		int ret;

		if (!dev->v1_data)
			return -EINVAL;
		info->size = VHGPU_V1_DATA_OFFSET + dev->v1_data_size;
		info->flags = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE |
			      VFIO_REGION_INFO_FLAG_MMAP | VFIO_REGION_INFO_FLAG_CAPS;
		ret = vfio_info_add_capability(caps, &type.header, sizeof(type));
		if (ret)
			return ret;
		sparse = kzalloc(ssize, GFP_KERNEL);
		if (!sparse)
			return -ENOMEM;
		sparse->header.id = VFIO_REGION_INFO_CAP_SPARSE_MMAP;
		sparse->header.version = 1;
		sparse->nr_areas = 1;
		sparse->areas[0].offset = VHGPU_V1_DATA_OFFSET;
		sparse->areas[0].size = dev->v1_data_size;
		ret = vfio_info_add_capability(caps, &sparse->header, ssize);
		kfree(sparse);
		return ret;
	}
	default:
		if (info->index < VFIO_PCI_NUM_REGIONS)
			return 0;	/* absent BARs, ROM, VGA: size 0 */
		return -EINVAL;
	}
}

static long vhgpu_ioctl(struct vfio_device *vdev, unsigned int cmd, unsigned long arg)
{
	struct vhgpu_dev *dev = container_of(vdev, struct vhgpu_dev, vdev);
	void __user *uarg = (void __user *)arg;
	unsigned long minsz;

	switch (cmd) {
	case VFIO_DEVICE_GET_INFO: {
		struct vfio_device_info info;

		minsz = offsetofend(struct vfio_device_info, num_irqs);
		if (copy_from_user(&info, uarg, minsz))
			return -EFAULT;
		if (info.argsz < minsz)
			return -EINVAL;
		info.flags = VFIO_DEVICE_FLAGS_PCI | VFIO_DEVICE_FLAGS_RESET;
		info.num_regions = VFIO_PCI_NUM_REGIONS + (dev->v1_data ? 1 : 0);
		info.num_irqs = VFIO_PCI_NUM_IRQS;
		return copy_to_user(uarg, &info, minsz) ? -EFAULT : 0;
	}
	case VFIO_DEVICE_GET_REGION_INFO: {
		struct vfio_info_cap caps = { .buf = NULL, .size = 0 };
		struct vfio_region_info info;
		int ret;

		minsz = offsetofend(struct vfio_region_info, offset);
		if (copy_from_user(&info, uarg, minsz))
			return -EFAULT;
		if (info.argsz < minsz)
			return -EINVAL;
		ret = vhgpu_region_info(dev, &info, &caps);
		if (ret) {
			kfree(caps.buf);
			return ret;
		}
		info.cap_offset = 0;
		if (caps.size) {
			info.flags |= VFIO_REGION_INFO_FLAG_CAPS;
			if (info.argsz < sizeof(info) + caps.size) {
				info.argsz = sizeof(info) + caps.size;
			} else {
				vfio_info_cap_shift(&caps, sizeof(info));
				if (copy_to_user(uarg + sizeof(info), caps.buf, caps.size)) {
					kfree(caps.buf);
					return -EFAULT;
				}
				info.cap_offset = sizeof(info);
			}
			kfree(caps.buf);
		}
		return copy_to_user(uarg, &info, minsz) ? -EFAULT : 0;
	}
	case VFIO_DEVICE_GET_IRQ_INFO: {
		struct vfio_irq_info info;

		minsz = offsetofend(struct vfio_irq_info, count);
		if (copy_from_user(&info, uarg, minsz))
			return -EFAULT;
		if (info.argsz < minsz || info.index >= VFIO_PCI_NUM_IRQS)
			return -EINVAL;
		info.flags = 0;
		info.count = 0;
		if (info.index == VFIO_PCI_INTX_IRQ_INDEX) {
			info.flags = VFIO_IRQ_INFO_EVENTFD | VFIO_IRQ_INFO_MASKABLE |
				     VFIO_IRQ_INFO_AUTOMASKED;
			info.count = 1;
		} else if (info.index == VFIO_PCI_MSI_IRQ_INDEX) {
			info.flags = VFIO_IRQ_INFO_EVENTFD | VFIO_IRQ_INFO_NORESIZE;
			info.count = 1;
		}
		return copy_to_user(uarg, &info, minsz) ? -EFAULT : 0;
	}
	case VFIO_DEVICE_SET_IRQS: {
		struct vfio_irq_set hdr;
		size_t data_size = 0;
		u8 *data = NULL;
		int max, ret;

		minsz = offsetofend(struct vfio_irq_set, count);
		if (copy_from_user(&hdr, uarg, minsz))
			return -EFAULT;
		max = (hdr.index == VFIO_PCI_INTX_IRQ_INDEX ||
		       hdr.index == VFIO_PCI_MSI_IRQ_INDEX) ? 1 : 0;
		ret = vfio_set_irqs_validate_and_prepare(&hdr, max, VFIO_PCI_NUM_IRQS, &data_size);
		if (ret)
			return ret;
		if (data_size) {
			data = memdup_user(uarg + minsz, data_size);
			if (IS_ERR(data))
				return PTR_ERR(data);
		}
		ret = vhgpu_set_irqs(dev, &hdr, data);
		kfree(data);
		return ret;
	}
	case VFIO_DEVICE_RESET:
		return vhgpu_reset(dev);
	}
	return -ENOTTY;
}

static const struct vfio_device_ops vhgpu_dev_ops = {
	.name = "vfio-vhgpu",
	.init = vhgpu_init_dev,
	.release = vhgpu_release_dev,
	.open_device = vhgpu_open_device,
	.close_device = vhgpu_close_device,
	.read = vhgpu_read,
	.write = vhgpu_write,
	.mmap = vhgpu_mmap,
	.ioctl = vhgpu_ioctl,
	.bind_iommufd = vfio_iommufd_emulated_bind,
	.unbind_iommufd = vfio_iommufd_emulated_unbind,
	.attach_ioas = vfio_iommufd_emulated_attach_ioas,
	.detach_ioas = vfio_iommufd_emulated_detach_ioas,
};

/* ------------------------------------------------------------------------
 * Per-instance sysfs (mdev device, "vendor/" group)
 */
static struct vhgpu_dev *vhgpu_from_device(struct device *d)
{
	return dev_get_drvdata(d);
}

static ssize_t vram_size_show(struct device *d, struct device_attribute *attr, char *buf)
{
	struct vhgpu_dev *dev = vhgpu_from_device(d);

	return dev ? sysfs_emit(buf, "%llu\n", dev->vram_size) : -ENODEV;
}
static DEVICE_ATTR_RO(vram_size);

static ssize_t instance_software_version_show(struct device *d, struct device_attribute *attr,
					      char *buf)
{
	struct vhgpu_dev *dev = vhgpu_from_device(d);

	if (!dev)
		return -ENODEV;
	return sysfs_emit(buf, "%u.%u.%u\n", dev->ver.major, dev->ver.minor, dev->ver.patch);
}
static struct device_attribute dev_attr_instance_software_version =
	__ATTR(software_version, 0444, instance_software_version_show, NULL);

static ssize_t priority_show(struct device *d, struct device_attribute *attr, char *buf)
{
	struct vhgpu_dev *dev = vhgpu_from_device(d);

	return dev ? sysfs_emit(buf, "%u\n", dev->priority) : -ENODEV;
}

static ssize_t priority_store(struct device *d, struct device_attribute *attr,
			      const char *buf, size_t count)
{
	struct vhgpu_dev *dev = vhgpu_from_device(d);
	unsigned int val;
	int ret;

	if (!dev)
		return -ENODEV;
	ret = kstrtouint(buf, 0, &val);
	if (ret)
		return ret;
	if (val > 15)
		return -ERANGE;
	mutex_lock(&dev->lock);
	if (dev->open)
		ret = -EBUSY;	/* a dynamic resource: set between create and first open */
	else
		dev->priority = val;
	mutex_unlock(&dev->lock);
	return ret ? ret : count;
}
static DEVICE_ATTR_RW(priority);

static ssize_t aggregate_show(struct device *d, struct device_attribute *attr, char *buf)
{
	struct vhgpu_dev *dev = vhgpu_from_device(d);

	return dev ? sysfs_emit(buf, "%u\n", dev->aggregate) : -ENODEV;
}

/*
 * aggregate = N: the instance holds N VRAM units of its type (VRAM = N x the
 * type's size, a power of two so BAR2 stays a valid PCI BAR), taken from the
 * shared pool, so available_instances of every type moves. Only before the
 * first open (VRAM may hold data afterwards): -EBUSY then, even once closed;
 * -ENOSPC when the pool lacks the extra units; -EINVAL for 0, a non power of
 * two or more than VHGPU_AGGREGATE_MAX.
 */
static ssize_t aggregate_store(struct device *d, struct device_attribute *attr,
			       const char *buf, size_t count)
{
	struct vhgpu_dev *dev = vhgpu_from_device(d);
	struct page **pages = NULL, **old_pages;
	unsigned long *dirty = NULL, *old_dirty;
	unsigned long npages, old_npages, i;
	unsigned int val, new_mb;
	int ret;

	if (!dev)
		return -ENODEV;
	ret = kstrtouint(buf, 0, &val);
	if (ret)
		return ret;
	if (!val || val > VHGPU_AGGREGATE_MAX || !is_power_of_2(val))
		return -EINVAL;
	new_mb = val * dev->type->vram_mb;
	npages = ((u64)new_mb << 20) >> PAGE_SHIFT;

	mutex_lock(&dev->lock);
	if (dev->open || dev->opened) {
		ret = -EBUSY;	/* fixed at first open */
		goto out_unlock;
	}
	if (val == dev->aggregate)
		goto out_unlock;
	ret = -ENOMEM;
	pages = kvcalloc(npages, sizeof(*pages), GFP_KERNEL_ACCOUNT);
	if (!pages)
		goto out_unlock;
	dirty = bitmap_zalloc(npages, GFP_KERNEL_ACCOUNT);
	if (!dirty)
		goto out_unlock;

	mutex_lock(&vhgpu_pool_lock);
	if (new_mb > dev->pool_mb && vhgpu_pool_free_mb < new_mb - dev->pool_mb) {
		mutex_unlock(&vhgpu_pool_lock);
		ret = -ENOSPC;
		goto out_unlock;
	}
	vhgpu_pool_free_mb = vhgpu_pool_free_mb + dev->pool_mb - new_mb;
	mutex_unlock(&vhgpu_pool_lock);

	old_pages = dev->pages;
	old_dirty = dev->dirty;
	old_npages = dev->npages;
	dev->pages = pages;
	dev->dirty = dirty;
	dev->npages = npages;
	dev->vram_size = (u64)new_mb << 20;
	dev->pool_mb = new_mb;
	dev->aggregate = val;
	vhgpu_init_config(dev);		/* BAR2 size mask */
	pages = old_pages;
	dirty = old_dirty;
	/* never opened: nothing can have touched VRAM, but be exact */
	for (i = 0; i < old_npages; i++)
		if (pages[i])
			__free_page(pages[i]);
	ret = 0;
out_unlock:
	mutex_unlock(&dev->lock);
	kvfree(pages);
	bitmap_free(dirty);
	return ret ? ret : count;
}
static DEVICE_ATTR_RW(aggregate);

static ssize_t dma_rate_limit_mbps_show(struct device *d, struct device_attribute *attr,
					char *buf)
{
	struct vhgpu_dev *dev = vhgpu_from_device(d);

	return dev ? sysfs_emit(buf, "%u\n", READ_ONCE(dev->dma_rate_mbps)) : -ENODEV;
}

/* MiB/s, 0 = off; like a frame-rate limiter, changed only while the device is closed. */
static ssize_t dma_rate_limit_mbps_store(struct device *d, struct device_attribute *attr,
					 const char *buf, size_t count)
{
	struct vhgpu_dev *dev = vhgpu_from_device(d);
	unsigned int val;
	int ret;

	if (!dev)
		return -ENODEV;
	ret = kstrtouint(buf, 0, &val);
	if (ret)
		return ret;
	if (val > VHGPU_DMA_RATE_MAX)
		return -ERANGE;
	mutex_lock(&dev->lock);
	if (dev->open)
		ret = -EBUSY;
	else
		WRITE_ONCE(dev->dma_rate_mbps, val);
	mutex_unlock(&dev->lock);
	return ret ? ret : count;
}
static DEVICE_ATTR_RW(dma_rate_limit_mbps);

static struct attribute *vhgpu_dev_attrs[] = {
	&dev_attr_vram_size.attr,
	&dev_attr_instance_software_version.attr,
	&dev_attr_priority.attr,
	&dev_attr_aggregate.attr,
	&dev_attr_dma_rate_limit_mbps.attr,
	NULL,
};

static const struct attribute_group vhgpu_dev_group = {
	.name = "vendor",
	.attrs = vhgpu_dev_attrs,
};

static const struct attribute_group *vhgpu_dev_groups[] = {
	&vhgpu_dev_group,
	NULL,
};

/* ------------------------------------------------------------------------
 * Extra type attributes.
 *
 * 6.12 gives drivers no hook for type attributes. The type kobject's
 * sysfs_ops cast every attribute to the core's private struct
 * mdev_type_attribute { attribute; show(mtype, attr, buf); store(...) };
 * this struct has the same layout, so groups added to type->kobj work.
 */
struct vhgpu_type_attr {
	struct attribute attr;
	ssize_t (*show)(struct mdev_type *mtype, struct vhgpu_type_attr *attr, char *buf);
	ssize_t (*store)(struct mdev_type *mtype, struct vhgpu_type_attr *attr,
			 const char *buf, size_t count);
};

#define VHGPU_TYPE_ATTR_RO(_name) \
	static struct vhgpu_type_attr vhgpu_type_attr_##_name = __ATTR_RO(_name)
#define VHGPU_TYPE_ATTR_RW(_name) \
	static struct vhgpu_type_attr vhgpu_type_attr_##_name = __ATTR_RW(_name)

static bool vhgpu_accepts_type(const struct vhgpu_type *dst, const struct vhgpu_type *src)
{
	return dst == src || (cross_type && src->vram_mb < dst->vram_mb);
}

static ssize_t software_version_show(struct mdev_type *mtype, struct vhgpu_type_attr *attr,
				     char *buf)
{
	struct vhgpu_sw_version v;

	if (vhgpu_parse_version(software_version, &v))
		return -EINVAL;
	return sysfs_emit(buf, "%u.%u.%u\n", v.major, v.minor, v.patch);
}
VHGPU_TYPE_ATTR_RO(software_version);

static ssize_t compatible_type_show(struct mdev_type *mtype, struct vhgpu_type_attr *attr,
				    char *buf)
{
	struct vhgpu_type *t = to_vhgpu_type(mtype);
	int len = 0;
	size_t i;

	for (i = 0; i < ARRAY_SIZE(vhgpu_types); i++) {
		if (!vhgpu_accepts_type(t, &vhgpu_types[i]))
			continue;
		len += sysfs_emit_at(buf, len, "%s%s-%s", len ? "," : "", VHGPU_NAME,
				     vhgpu_types[i].type.sysfs_name);
	}
	len += sysfs_emit_at(buf, len, "\n");
	return len;
}
VHGPU_TYPE_ATTR_RO(compatible_type);

static ssize_t dynamic_resources_show(struct mdev_type *mtype, struct vhgpu_type_attr *attr,
				      char *buf)
{
	return sysfs_emit(buf, "priority,aggregate\n");
}
VHGPU_TYPE_ATTR_RO(dynamic_resources);

static ssize_t vram_size_mb_show(struct mdev_type *mtype, struct vhgpu_type_attr *attr, char *buf)
{
	return sysfs_emit(buf, "%u\n", to_vhgpu_type(mtype)->vram_mb);
}
VHGPU_TYPE_ATTR_RO(vram_size_mb);

/*
 * The 2020 "migration_version" proposal: read an opaque string on the source
 * type, write it to the destination type; the write fails when incompatible.
 * Format: "vhgpu-<type>:<major>.<minor>.<patch>".
 */
static ssize_t migration_version_show(struct mdev_type *mtype, struct vhgpu_type_attr *attr,
				      char *buf)
{
	struct vhgpu_sw_version v;

	if (vhgpu_parse_version(software_version, &v))
		return -EINVAL;
	return sysfs_emit(buf, "%s-%s:%u.%u.%u\n", VHGPU_NAME, mtype->sysfs_name,
			  v.major, v.minor, v.patch);
}

static ssize_t migration_version_store(struct mdev_type *mtype, struct vhgpu_type_attr *attr,
				       const char *buf, size_t count)
{
	struct vhgpu_type *dst = to_vhgpu_type(mtype), *src = NULL;
	struct vhgpu_sw_version mine, theirs;
	char name[32];
	const char *colon;
	size_t i, nlen, plen = strlen(VHGPU_NAME "-");

	if (vhgpu_parse_version(software_version, &mine))
		return -EINVAL;
	colon = strnchr(buf, count, ':');
	if (!colon || strncmp(buf, VHGPU_NAME "-", plen))
		return -EINVAL;
	nlen = colon - buf - plen;
	if (nlen >= sizeof(name))
		return -EINVAL;
	memcpy(name, buf + plen, nlen);
	name[nlen] = '\0';
	for (i = 0; i < ARRAY_SIZE(vhgpu_types); i++)
		if (!strcmp(vhgpu_types[i].type.sysfs_name, name))
			src = &vhgpu_types[i];
	if (!src || vhgpu_parse_version(colon + 1, &theirs))
		return -EINVAL;
	if (!vhgpu_accepts_type(dst, src) || theirs.major != mine.major ||
	    theirs.minor > mine.minor)
		return -EINVAL;
	return count;
}
VHGPU_TYPE_ATTR_RW(migration_version);

static struct attribute *vhgpu_type_attrs[] = {
	&vhgpu_type_attr_software_version.attr,
	&vhgpu_type_attr_compatible_type.attr,
	&vhgpu_type_attr_dynamic_resources.attr,
	&vhgpu_type_attr_vram_size_mb.attr,
	&vhgpu_type_attr_migration_version.attr,
	NULL,
};

static const struct attribute_group vhgpu_type_group = {
	.attrs = vhgpu_type_attrs,
};

/* ------------------------------------------------------------------------
 * mdev driver and parent
 */
static int vhgpu_probe(struct mdev_device *mdev)
{
	struct vhgpu_dev *dev;
	int ret;

	dev = vfio_alloc_device(vhgpu_dev, vdev, &mdev->dev, &vhgpu_dev_ops);
	if (IS_ERR(dev))
		return PTR_ERR(dev);
	dev_set_drvdata(&mdev->dev, dev);
	ret = vfio_register_emulated_iommu_dev(&dev->vdev);
	if (ret) {
		dev_set_drvdata(&mdev->dev, NULL);
		vfio_put_device(&dev->vdev);
		return ret;
	}
	return 0;
}

static void vhgpu_remove(struct mdev_device *mdev)
{
	struct vhgpu_dev *dev = dev_get_drvdata(&mdev->dev);

	vfio_unregister_group_dev(&dev->vdev);
	dev_set_drvdata(&mdev->dev, NULL);
	vfio_put_device(&dev->vdev);
}

static unsigned int vhgpu_get_available(struct mdev_type *mtype)
{
	unsigned int free;

	mutex_lock(&vhgpu_pool_lock);
	free = vhgpu_pool_free_mb;
	mutex_unlock(&vhgpu_pool_lock);
	return free / to_vhgpu_type(mtype)->vram_mb;
}

static ssize_t vhgpu_show_description(struct mdev_type *mtype, char *buf)
{
	struct vhgpu_type *t = to_vhgpu_type(mtype);

	return sysfs_emit(buf, "simulated GPU, VRAM %u MiB (BAR2), 4 KiB MMIO (BAR0), DMA engine, INTx/MSI, migration%s%s\n",
			  t->vram_mb, migration_v2 ? " v2" : "", migration_v1 ? " v1" : "");
}

static struct mdev_driver vhgpu_driver = {
	.device_api = VFIO_DEVICE_API_PCI_STRING,
	.driver = {
		.name = VHGPU_NAME,
		.owner = THIS_MODULE,
		.mod_name = KBUILD_MODNAME,
		.dev_groups = vhgpu_dev_groups,
	},
	.probe = vhgpu_probe,
	.remove = vhgpu_remove,
	.get_available = vhgpu_get_available,
	.show_description = vhgpu_show_description,
};

static void vhgpu_parent_release(struct device *dev)
{
}

static void vhgpu_remove_type_attrs(void)
{
	size_t i;

	if (!vhgpu_parent.type_attrs)
		return;
	for (i = 0; i < ARRAY_SIZE(vhgpu_types); i++)
		sysfs_remove_group(&vhgpu_types[i].type.kobj, &vhgpu_type_group);
	vhgpu_parent.type_attrs = false;
}

static int __init vhgpu_init(void)
{
	struct vhgpu_sw_version v;
	size_t i;
	int ret;

	if (vhgpu_parse_version(software_version, &v)) {
		pr_err("software_version \"%s\" is not major.minor.patch\n", software_version);
		return -EINVAL;
	}
	if (!pool_mb) {
		pr_err("pool_mb must be > 0\n");
		return -EINVAL;
	}
	vhgpu_pool_free_mb = pool_mb;

	ret = mdev_register_driver(&vhgpu_driver);
	if (ret)
		return ret;

	vhgpu_parent.class = class_create(VHGPU_NAME);
	if (IS_ERR(vhgpu_parent.class)) {
		ret = PTR_ERR(vhgpu_parent.class);
		goto err_driver;
	}
	vhgpu_parent.dev.class = vhgpu_parent.class;
	vhgpu_parent.dev.release = vhgpu_parent_release;
	dev_set_name(&vhgpu_parent.dev, "%s", VHGPU_NAME);
	ret = device_register(&vhgpu_parent.dev);
	if (ret)
		goto err_put;

	ret = mdev_register_parent(&vhgpu_parent.parent, &vhgpu_parent.dev, &vhgpu_driver,
				   vhgpu_mdev_types, ARRAY_SIZE(vhgpu_mdev_types));
	if (ret)
		goto err_device;

	for (i = 0; i < ARRAY_SIZE(vhgpu_types); i++) {
		ret = sysfs_create_group(&vhgpu_types[i].type.kobj, &vhgpu_type_group);
		if (ret) {
			while (i--)
				sysfs_remove_group(&vhgpu_types[i].type.kobj, &vhgpu_type_group);
			goto err_parent;
		}
	}
	vhgpu_parent.type_attrs = true;

	pr_info("pool %u MiB, software_version %u.%u.%u, migration%s%s\n", pool_mb,
		v.major, v.minor, v.patch, migration_v2 ? " v2" : "", migration_v1 ? " v1" : "");
	return 0;

err_parent:
	mdev_unregister_parent(&vhgpu_parent.parent);
err_device:
	device_del(&vhgpu_parent.dev);
err_put:
	put_device(&vhgpu_parent.dev);
	class_destroy(vhgpu_parent.class);
err_driver:
	mdev_unregister_driver(&vhgpu_driver);
	return ret;
}

static void __exit vhgpu_exit(void)
{
	vhgpu_remove_type_attrs();
	mdev_unregister_parent(&vhgpu_parent.parent);
	device_unregister(&vhgpu_parent.dev);
	class_destroy(vhgpu_parent.class);
	mdev_unregister_driver(&vhgpu_driver);
}

module_init(vhgpu_init);
module_exit(vhgpu_exit);

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("vhgpu: simulated GPU mediated device for the vfio-harness test bed");
MODULE_AUTHOR("vfio-harness");
