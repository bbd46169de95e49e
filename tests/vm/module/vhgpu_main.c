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

#include "vhgpu_priv.h"

/* ------------------------------------------------------------------------
 * Module parameters
 */
static unsigned int pool_mb = 2048;
module_param(pool_mb, uint, 0444);
MODULE_PARM_DESC(pool_mb, "VRAM pool shared by all instances, MiB (default 2048)");

char vhgpu_software_version[16] = "1.2.0";
module_param_string(software_version, vhgpu_software_version, sizeof(vhgpu_software_version),
		    0644);
MODULE_PARM_DESC(software_version,
		 "major.minor.patch of the migration stream; captured by each instance at creation (default 1.2.0)");

bool vhgpu_migration_v2 = true;
module_param_named(migration_v2, vhgpu_migration_v2, bool, 0444);
MODULE_PARM_DESC(migration_v2, "Offer migration v2 (VFIO_DEVICE_FEATURE_MIGRATION, default on)");

bool vhgpu_migration_v1;
module_param_named(migration_v1, vhgpu_migration_v1, bool, 0444);
MODULE_PARM_DESC(migration_v1, "Offer the deprecated migration v1 region (type 3/subtype 1, default off)");

static unsigned int v1_data_kb = 1024;
module_param(v1_data_kb, uint, 0444);
MODULE_PARM_DESC(v1_data_kb, "Size of the v1 migration data section, KiB (default 1024, page multiple)");

bool vhgpu_v1_mmap = true;
module_param_named(v1_mmap, vhgpu_v1_mmap, bool, 0444);
MODULE_PARM_DESC(v1_mmap,
		 "The v1 data section is mmap-able (sparse-mmap capability, default on); off: pread/pwrite only");

bool vhgpu_cross_type;
module_param_named(cross_type, vhgpu_cross_type, bool, 0444);
MODULE_PARM_DESC(cross_type,
		 "Accept migration streams from smaller types (listed in compatible_type, default off)");

/* ------------------------------------------------------------------------
 * Types and the shared pool
 */
struct vhgpu_type vhgpu_types[VHGPU_NTYPES] = {
	{ .type.sysfs_name = "64M",  .type.pretty_name = "vHGPU 64M",  .vram_mb = 64,   .subsys_id = 1 },
	{ .type.sysfs_name = "256M", .type.pretty_name = "vHGPU 256M", .vram_mb = 256,  .subsys_id = 2 },
	{ .type.sysfs_name = "1G",   .type.pretty_name = "vHGPU 1G",   .vram_mb = 1024, .subsys_id = 3 },
};

static struct mdev_type *vhgpu_mdev_types[] = {
	&vhgpu_types[0].type,
	&vhgpu_types[1].type,
	&vhgpu_types[2].type,
};

DEFINE_MUTEX(vhgpu_pool_lock);
unsigned int vhgpu_pool_free_mb;

static struct {
	struct class *class;
	struct device dev;
	struct mdev_parent parent;
	bool type_attrs;
} vhgpu_parent;

int vhgpu_parse_version(const char *s, struct vhgpu_sw_version *v)
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
 * VRAM pages and dirty tracking
 */
struct page *vhgpu_vram_page(struct vhgpu_dev *dev, unsigned long idx, bool alloc)
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
void vhgpu_zap(struct vhgpu_dev *dev, unsigned long idx, unsigned long n)
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
void vhgpu_cfg_put16(u8 *cfg, unsigned int off, u16 v)
{
	cfg[off] = v & 0xff;
	cfg[off + 1] = v >> 8;
}

void vhgpu_cfg_put32(u8 *cfg, unsigned int off, u32 v)
{
	vhgpu_cfg_put16(cfg, off, v & 0xffff);
	vhgpu_cfg_put16(cfg, off + 2, v >> 16);
}

void vhgpu_init_config(struct vhgpu_dev *dev)
{
	u8 *c = dev->cfg, *m = dev->cfg_wmask;
	u64 bar2_mask = ~(dev->vram_size - 1);

	memset(c, 0, VHGPU_CFG_SIZE);
	memset(m, 0, VHGPU_CFG_SIZE);

	vhgpu_cfg_put16(c, PCI_VENDOR_ID, VHGPU_PCI_VENDOR);
	vhgpu_cfg_put16(c, PCI_DEVICE_ID, VHGPU_PCI_DEVICE);
	vhgpu_cfg_put16(c, PCI_STATUS, PCI_STATUS_CAP_LIST);
	c[PCI_REVISION_ID] = VHGPU_PCI_REVISION;
	c[PCI_CLASS_PROG] = 0x00;
	vhgpu_cfg_put16(c, PCI_CLASS_DEVICE, 0x0302);		/* display: 3D controller */
	c[PCI_HEADER_TYPE] = PCI_HEADER_TYPE_NORMAL;
	vhgpu_cfg_put32(c, PCI_BASE_ADDRESS_0, PCI_BASE_ADDRESS_SPACE_MEMORY |
		  PCI_BASE_ADDRESS_MEM_TYPE_32);
	vhgpu_cfg_put32(c, PCI_BASE_ADDRESS_2, PCI_BASE_ADDRESS_SPACE_MEMORY |
		  PCI_BASE_ADDRESS_MEM_TYPE_64 | PCI_BASE_ADDRESS_MEM_PREFETCH);
	vhgpu_cfg_put16(c, PCI_SUBSYSTEM_VENDOR_ID, VHGPU_PCI_VENDOR);
	vhgpu_cfg_put16(c, PCI_SUBSYSTEM_ID, dev->type->subsys_id);
	c[PCI_CAPABILITY_LIST] = VHGPU_MSI_CAP;
	c[PCI_INTERRUPT_PIN] = 1;
	/* MSI: one vector, 64-bit address */
	c[VHGPU_MSI_CAP + PCI_CAP_LIST_ID] = PCI_CAP_ID_MSI;
	c[VHGPU_MSI_CAP + PCI_CAP_LIST_NEXT] = 0;
	vhgpu_cfg_put16(c, VHGPU_MSI_CAP + PCI_MSI_FLAGS, PCI_MSI_FLAGS_64BIT);

	/* writable bits; BAR sizing falls out of the masks */
	vhgpu_cfg_put16(m, PCI_COMMAND, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER |
		  PCI_COMMAND_PARITY | PCI_COMMAND_SERR | PCI_COMMAND_INTX_DISABLE);
	m[PCI_CACHE_LINE_SIZE] = 0xff;
	m[PCI_LATENCY_TIMER] = 0xff;
	vhgpu_cfg_put32(m, PCI_BASE_ADDRESS_0, ~(u32)(VHGPU_BAR0_SIZE - 1));
	vhgpu_cfg_put32(m, PCI_BASE_ADDRESS_2, (u32)bar2_mask & ~0xfu);
	vhgpu_cfg_put32(m, PCI_BASE_ADDRESS_3, (u32)(bar2_mask >> 32));
	m[PCI_INTERRUPT_LINE] = 0xff;
	vhgpu_cfg_put16(m, VHGPU_MSI_CAP + PCI_MSI_FLAGS, PCI_MSI_FLAGS_ENABLE);
	vhgpu_cfg_put32(m, VHGPU_MSI_CAP + PCI_MSI_ADDRESS_LO, ~3u);
	vhgpu_cfg_put32(m, VHGPU_MSI_CAP + PCI_MSI_ADDRESS_HI, ~0u);
	vhgpu_cfg_put16(m, VHGPU_MSI_CAP + PCI_MSI_DATA_64, 0xffff);
	vhgpu_msix_init_config(dev);
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
	} else if (dev->irq_mode == VHGPU_IRQ_MSIX) {
		if (newly & R(dev, irq_enable))
			vhgpu_msix_fire(dev, 0);	/* vector 0: the device's own causes */
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
	vhgpu_msix_teardown(dev);
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

	if (hdr->index == VFIO_PCI_MSIX_IRQ_INDEX) {
		mutex_lock(&dev->lock);
		ret = vhgpu_msix_set_irqs(dev, hdr, data);
		mutex_unlock(&dev->lock);
		return ret;
	}
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

				if (dev->irq_mode != VHGPU_IRQ_NONE &&
				    dev->irq_mode != VHGPU_IRQ_INTX) {
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

				if (dev->irq_mode != VHGPU_IRQ_NONE &&
				    dev->irq_mode != VHGPU_IRQ_MSI) {
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
		} else {
			void *src = page ? page_address(page) + poff : page_address(ZERO_PAGE(0));

			ret = vfio_dma_rw(&dev->vdev, iova + done, src, n, true);
			if (ret)
				return ret;
			/* a DMA write into host memory: DMA dirty logging sees it */
			vhgpu_dirty_log_write(dev, iova + done, n);
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
	default: {
		u32 v;

		return vhgpu_msix_reg_read(dev, reg, &v) ? v : 0;
	}
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
		vhgpu_msix_reg_write(dev, reg, val);	/* else RO or unimplemented: ignored */
		break;
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
	vhgpu_msix_reset(dev);
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

	ret = vhgpu_parse_version(vhgpu_software_version, &dev->ver);
	if (ret) {
		pr_warn("software_version \"%s\" is not major.minor.patch\n",
			vhgpu_software_version);
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
	if (vhgpu_migration_v1) {
		dev->v1_data_size = PAGE_ALIGN(max(v1_data_kb, 4u) << 10);
		dev->v1_data = vmalloc_user(dev->v1_data_size);
		if (!dev->v1_data)
			goto err_dirty;
	}
	mutex_init(&dev->lock);
	mutex_init(&dev->state_mutex);
	mutex_init(&dev->log_lock);
	vhgpu_init_config(dev);
	vhgpu_msix_reset(dev);
	dev->mig_state = VFIO_DEVICE_STATE_RUNNING;
	/* the FSM walker needs the flags even when only v1 is offered */
	vdev->migration_flags = VFIO_MIGRATION_STOP_COPY | VFIO_MIGRATION_P2P |
				VFIO_MIGRATION_PRE_COPY;
	if (vhgpu_migration_v2)
		vdev->mig_ops = &vhgpu_mig_ops;
	vdev->log_ops = &vhgpu_log_ops;
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
	mutex_destroy(&dev->log_lock);
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
	vhgpu_drop_stale_save(dev);
	WRITE_ONCE(dev->mig_state, VFIO_DEVICE_STATE_RUNNING);
	dev->v1_error = false;
	mutex_unlock(&dev->state_mutex);
	mutex_lock(&dev->lock);
	vhgpu_irq_teardown(dev);
	dev->open = false;
	mutex_unlock(&dev->lock);
	vhgpu_dirty_log_stop(dev);
}

static int vhgpu_reset(struct vhgpu_dev *dev)
{
	mutex_lock(&dev->state_mutex);
	/* violation reset: the migration state and its sessions survive the reset */
	if (!vhgpu_violates(dev, VHGPU_V_RESET)) {
		vhgpu_disable_files(dev);
		WRITE_ONCE(dev->mig_state, VFIO_DEVICE_STATE_RUNNING);
		dev->v1_error = false;
	}
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
		if (!dev->v1_data || !vhgpu_v1_mmap || off < VHGPU_V1_DATA_OFFSET ||
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
			      VFIO_REGION_INFO_FLAG_CAPS;
		ret = vfio_info_add_capability(caps, &type.header, sizeof(type));
		if (ret || !vhgpu_v1_mmap)
			return ret;	/* v1_mmap=0: no mmap flag, no sparse areas */
		info->flags |= VFIO_REGION_INFO_FLAG_MMAP;
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
		} else if (info.index == VFIO_PCI_MSIX_IRQ_INDEX) {
			info.flags = VFIO_IRQ_INFO_EVENTFD | VFIO_IRQ_INFO_MASKABLE |
				     VFIO_IRQ_INFO_NORESIZE;
			info.count = VHGPU_MSIX_VECTORS;
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
		if (hdr.index == VFIO_PCI_MSIX_IRQ_INDEX)
			max = VHGPU_MSIX_VECTORS;
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

	return sysfs_emit(buf, "simulated GPU, VRAM %u MiB (BAR2), 4 KiB MMIO (BAR0), DMA engine with dirty logging, INTx/MSI/MSI-X, migration%s%s\n",
			  t->vram_mb, vhgpu_migration_v2 ? " v2" : "",
			  vhgpu_migration_v1 ? " v1" : "");
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

	if (vhgpu_parse_version(vhgpu_software_version, &v)) {
		pr_err("software_version \"%s\" is not major.minor.patch\n",
		       vhgpu_software_version);
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
		v.major, v.minor, v.patch, vhgpu_migration_v2 ? " v2" : "",
		vhgpu_migration_v1 ? " v1" : "");
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
MODULE_IMPORT_NS(IOMMUFD);	/* iova_bitmap_set() for DMA dirty logging */
MODULE_DESCRIPTION("vhgpu: simulated GPU mediated device for the vfio-harness test bed");
MODULE_AUTHOR("vfio-harness");
