// SPDX-License-Identifier: GPL-2.0
/*
 * vhgpu: the migration stream (save and load), the data files, the migration
 * state machine shared by v2 and v1, and the v1 migration region.
 */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include "vhgpu_priv.h"

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
	if (vram != dev->vram_size && !(vhgpu_cross_type && vram && vram < dev->vram_size &&
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
		if (migf->src_pages < dev->npages && !migf->no_load)
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
			if (!migf->no_load)
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
		if (migf->no_load || (!page && !memchr_inv(migf->obj, 0, PAGE_SIZE))) {
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
	} else if ((migf->lphase != LOAD_END || !migf->have_state || migf->obj_len) &&
		   !(vhgpu_violates(dev, VHGPU_V_RESUME_REFUSES) && !dev->in_v1)) {
		dev_warn(dev->vdev.dev, "migration stream: truncated (no end record)\n");
		ret = -ENODATA;
	} else if (migf->have_state && !migf->no_load) {
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
static struct file *vhgpu_goto_state(struct vhgpu_dev *dev, enum vfio_device_mig_state new_state)
{
	struct file *res = NULL;

	while (dev->mig_state != new_state) {
		enum vfio_device_mig_state next;
		int ret = vfio_mig_get_next_state(&dev->vdev, dev->mig_state, new_state, &next);

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
