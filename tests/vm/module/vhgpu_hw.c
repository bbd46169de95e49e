// SPDX-License-Identifier: GPL-2.0
/*
 * vhgpu: the device model: VRAM pages and their dirty tracking (region
 * writes, DMA, mmap write faults), PCI config space, INTx and MSI, the BAR0
 * registers and the DMA engine.
 */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include "vhgpu_priv.h"

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

ssize_t vhgpu_vram_rw(struct vhgpu_dev *dev, char __user *ubuf, size_t count,
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

const struct vm_operations_struct vhgpu_vram_vm_ops = {
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

ssize_t vhgpu_cfg_rw(struct vhgpu_dev *dev, char __user *ubuf, size_t count,
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

void vhgpu_irq_teardown(struct vhgpu_dev *dev)
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

int vhgpu_set_irqs(struct vhgpu_dev *dev, struct vfio_irq_set *hdr, u8 *data)
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

ssize_t vhgpu_bar0_rw(struct vhgpu_dev *dev, char __user *ubuf, size_t count,
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

void vhgpu_reset_regs(struct vhgpu_dev *dev)
{
	memset(&dev->regs, 0, sizeof(dev->regs));
	dev->intx_masked = false;
	vhgpu_msix_reset(dev);
}
