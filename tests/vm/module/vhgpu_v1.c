// SPDX-License-Identifier: GPL-2.0
/*
 * vhgpu: the deprecated migration v1 region (type 3 / subtype 1, region
 * index VHGPU_V1_REGION): struct vfio_device_migration_info over the v2
 * state machine, and its data section.
 */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include "vhgpu_priv.h"

/* ------------------------------------------------------------------------
 * Migration v1 region
 */
static u32 vhgpu_v1_state(struct vhgpu_dev *dev)
{
	if (dev->v1_error || dev->mig_state == VFIO_DEVICE_STATE_ERROR)
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

	if (dev->v1_error || dev->mig_state == VFIO_DEVICE_STATE_ERROR)
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
	case VFIO_DEVICE_STATE_V1_SAVING | VFIO_DEVICE_STATE_V1_RESUMING:
		if (vhgpu_violates(dev, VHGPU_V_V1_STATE_BITS))
			return 0;	/* violation v1-state-bits: accepted, ignored */
		return -EINVAL;
	default:
		return -EINVAL;	/* SAVING|RESUMING and unknown bits */
	}
	if (target == dev->mig_state)
		return 0;
	dev->in_v1 = true;
	f = vhgpu_goto_state(dev, target);
	dev->in_v1 = false;
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

ssize_t vhgpu_v1_rw(struct vhgpu_dev *dev, char __user *ubuf, size_t count,
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
		/* violation v1-pending: never drops below 1 while saving (endless) */
		if (!val && dev->saving && vhgpu_violates(dev, VHGPU_V_V1_PENDING))
			val = 1;
		break;
	case offsetof(struct vfio_device_migration_info, data_offset):
		if (write) {
			ret = -EINVAL;
			break;
		}
		val = VHGPU_V1_DATA_OFFSET;
		/* violation v1-data-window: the offset lies past the end of the region */
		if (vhgpu_violates(dev, VHGPU_V_V1_DATA_WINDOW))
			val = region_size;
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
