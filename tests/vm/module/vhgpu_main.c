// SPDX-License-Identifier: GPL-2.0
/*
 * vhgpu: a simulated GPU exposed as a VFIO mediated device.
 *
 * Test device for the vfio-harness real-kernel bed. It offers:
 *  - an mdev parent ("vhgpu") with types of different VRAM sizes drawn from
 *    one pool, plus migration-compatibility attributes in each type dir;
 *  - the vfio-pci device API: config space with MSI and MSI-X capabilities,
 *    BAR0 registers (ID, scratch, doorbell, interrupts, a DMA engine that
 *    copies between guest IOVA and VRAM through vfio_dma_rw), BAR2 = VRAM
 *    (64-bit prefetchable, read/write and mmap);
 *  - INTx (auto-masked, level), MSI and 4 maskable MSI-X vectors signalled on
 *    eventfds (vhgpu_hw.c, vhgpu_msix.c);
 *  - DMA dirty logging of the IOVA pages the DMA engine writes
 *    (VFIO_DEVICE_FEATURE_DMA_LOGGING_*, vhgpu_dirty.c);
 *  - migration v2 (STOP_COPY | P2P | PRE_COPY) with a versioned stream,
 *    VRAM dirty tracking (region writes, DMA, mmap write faults)
 *    (vhgpu_stream.c, vhgpu_mig.c);
 *  - optionally the deprecated migration v1 region (type 3 / subtype 1)
 *    driving the same state machine, its data section mmap-able or not
 *    (vhgpu_v1.c);
 *  - per-instance attributes written between create and first open, as
 *    vendor vGPU drivers have them: "aggregate" (VRAM = units x the type's
 *    unit VRAM, drawn from the pool) and "dma_rate_limit_mbps" (a DMA engine
 *    rate limiter), listed with "priority" in the type's dynamic_resources
 *    where they must be copied before migrating (vhgpu_sysfs.c);
 *  - for the harness's own tests: seeded violations of the migration uAPI,
 *    one per conformance check ("violate"), and fault injection into the
 *    ERROR state ("fail_next_transition") (vhgpu_violate.c), and, with
 *    require_kvm=1, a refusal to open a device not registered with a KVM VM
 *    (as vGPU drivers that need the KVM refuse), which makes the harness's
 *    KVM-VFIO registration observable.
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

static bool vhgpu_require_kvm;
module_param_named(require_kvm, vhgpu_require_kvm, bool, 0644);
MODULE_PARM_DESC(require_kvm,
		 "Refuse to open (EPERM) unless the device is registered with a KVM VM through KVM-VFIO, as vGPU drivers that need the KVM do (default off)");

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

	/* The VFIO core passes the KVM of the group or cdev registered with KVM-VFIO. */
	if (READ_ONCE(vhgpu_require_kvm) && !vdev->kvm)
		return -EPERM;
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
