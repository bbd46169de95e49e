// SPDX-License-Identifier: GPL-2.0
/*
 * vhgpu: migration v2: the data files (read/write/PRECOPY_INFO) and the
 * state machine shared by v2 and v1 (struct vfio_migration_ops).
 */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include "vhgpu_priv.h"

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
	if (len < SZ_4K && vhgpu_violates(migf->dev, VHGPU_V_READ_SIZE))
		return -EINVAL;
	mutex_lock(&migf->lock);
	if (migf->disabled) {
		ret = -ENODEV;
	} else {
		ret = vhgpu_save_copy(migf, buf, NULL, len);
		if (ret == 0 && len && !migf->stop_mode)
			ret = -ENOMSG;	/* temporary end of precopy data */
		else if (ret == 0 && len && vhgpu_violates(migf->dev, VHGPU_V_STOP_COPY_EOF))
			ret = -ENOMSG;
		if (ret > 0)
			migf->read_any = true;
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
	else if (migf->stop_mode && !vhgpu_violates(migf->dev, VHGPU_V_PRECOPY_INFO_STATE))
		ret = -EINVAL;	/* only in PRE_COPY / PRE_COPY_P2P */
	else
		vhgpu_save_pending(migf, &info.initial_bytes, &info.dirty_bytes, &final);
	if (!ret && vhgpu_violates(migf->dev, VHGPU_V_PRECOPY_INITIAL)) {
		if (!migf->initial0_set)
			migf->initial0 = info.initial_bytes;
		migf->initial0_set = true;
		info.initial_bytes = migf->initial0;
	}
	if (!ret && migf->read_any && vhgpu_violates(migf->dev, VHGPU_V_PRECOPY_INFO_AGREES)) {
		info.initial_bytes = 0;
		info.dirty_bytes = 0;
	}
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
	/* violation write-size: only a write() that completes the stream is taken */
	if (!ret && migf->lphase != LOAD_END && vhgpu_violates(migf->dev, VHGPU_V_WRITE_SIZE)) {
		migf->error = -EINVAL;
		ret = -EINVAL;
		done = 0;
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
	else
		migf->no_load = vhgpu_violates(dev, dev->in_v1 ? VHGPU_V_V1_RESUME_LOADS :
							    VHGPU_V_RESUME_LOADS);
	return migf;
}

static void vhgpu_migf_disable(struct vhgpu_migf *migf, bool disable)
{
	mutex_lock(&migf->lock);
	migf->disabled = disable;
	mutex_unlock(&migf->lock);
}

/* state_mutex held. Drops the file kept by violation new-data-fd. */
void vhgpu_drop_stale_save(struct vhgpu_dev *dev)
{
	if (dev->stale_save)
		fput(dev->stale_save->filp);
	dev->stale_save = NULL;
}

/* state_mutex held. Ends the sessions: their files fail from now on. */
void vhgpu_disable_files(struct vhgpu_dev *dev)
{
	if (dev->saving) {
		/* violation session-ends: the old file goes on streaming */
		vhgpu_migf_disable(dev->saving, !vhgpu_violates(dev, VHGPU_V_SESSION_ENDS));
		if (vhgpu_violates(dev, VHGPU_V_NEW_DATA_FD)) {
			/* kept to be handed out again by the next saving arc */
			vhgpu_drop_stale_save(dev);
			dev->stale_save = dev->saving;
		} else {
			fput(dev->saving->filp);
		}
	}
	if (dev->resuming) {
		vhgpu_migf_disable(dev->resuming, true);
		fput(dev->resuming->filp);
	}
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
		/* violation precopy-path: the stop-copy part of the stream is empty */
		if (vhgpu_violates(dev, VHGPU_V_PRECOPY_PATH) && !dev->in_v1)
			dev->saving->phase = SAVE_DONE;
		mutex_unlock(&dev->saving->lock);
		return NULL;
	}

	if ((cur == VFIO_DEVICE_STATE_RUNNING && next == VFIO_DEVICE_STATE_PRE_COPY) ||
	    (cur == VFIO_DEVICE_STATE_RUNNING_P2P && next == VFIO_DEVICE_STATE_PRE_COPY_P2P) ||
	    (cur == VFIO_DEVICE_STATE_STOP && next == VFIO_DEVICE_STATE_STOP_COPY)) {
		if (dev->stale_save && vhgpu_violates(dev, VHGPU_V_NEW_DATA_FD) && !dev->in_v1) {
			/* violation new-data-fd: the previous session's file, not restarted */
			migf = dev->stale_save;
			dev->stale_save = NULL;
			mutex_lock(&migf->lock);
			migf->disabled = false;
			migf->stop_mode = next == VFIO_DEVICE_STATE_STOP_COPY;
			mutex_unlock(&migf->lock);
			dev->saving = migf;
			return get_file(migf->filp);
		}
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
struct file *vhgpu_goto_state(struct vhgpu_dev *dev, enum vfio_device_mig_state new_state)
{
	struct file *res = NULL;

	while (dev->mig_state != new_state) {
		enum vfio_device_mig_state next;
		int ret;

		/* no arc leaves ERROR (and the core helper WARNs when asked from it) */
		if (dev->mig_state == VFIO_DEVICE_STATE_ERROR)
			return ERR_PTR(-EINVAL);
		ret = vfio_mig_get_next_state(&dev->vdev, dev->mig_state, new_state, &next);
		if (ret)
			return ERR_PTR(ret);
		if (dev->fail_next) {
			/* fault injection (vendor/fail_next_transition): this arc breaks the device */
			dev_warn(dev->vdev.dev, "injected failure: arc %u -> %u, device in ERROR\n",
				 dev->mig_state, next);
			dev->fail_next = false;
			vhgpu_disable_files(dev);
			WRITE_ONCE(dev->mig_state, VFIO_DEVICE_STATE_ERROR);
			if (dev->in_v1)
				dev->v1_error = true;
			return ERR_PTR(-EIO);
		}
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

	enum vfio_device_mig_state from;

	mutex_lock(&dev->state_mutex);
	from = dev->mig_state;
	res = vhgpu_goto_state(dev, new_state);
	dev->set_from = IS_ERR(res) ? VFIO_DEVICE_STATE_ERROR : from;
	mutex_unlock(&dev->state_mutex);
	return res;
}

static int vhgpu_get_state(struct vfio_device *vdev, enum vfio_device_mig_state *state)
{
	struct vhgpu_dev *dev = container_of(vdev, struct vhgpu_dev, vdev);

	mutex_lock(&dev->state_mutex);
	*state = dev->mig_state;
	/* violation state-after-arc: RUNNING -> STOP is not reflected */
	if (*state == VFIO_DEVICE_STATE_STOP && dev->set_from == VFIO_DEVICE_STATE_RUNNING &&
	    vhgpu_violates(dev, VHGPU_V_STATE_AFTER_ARC))
		*state = VFIO_DEVICE_STATE_RUNNING;
	mutex_unlock(&dev->state_mutex);
	return 0;
}

static int vhgpu_get_data_size(struct vfio_device *vdev, unsigned long *len)
{
	struct vhgpu_dev *dev = container_of(vdev, struct vhgpu_dev, vdev);

	/* upper bound: header, every page, state, end */
	*len = sizeof(struct vhgpu_mig_header) + dev->npages * VHGPU_PAGE_REC +
	       2 * sizeof(struct vhgpu_rec) + sizeof(struct vhgpu_state);
	if (vhgpu_violates(dev, VHGPU_V_DATA_SIZE))
		*len = 0;
	return 0;
}

const struct vfio_migration_ops vhgpu_mig_ops = {
	.migration_set_state = vhgpu_set_state,
	.migration_get_state = vhgpu_get_state,
	.migration_get_data_size = vhgpu_get_data_size,
};
