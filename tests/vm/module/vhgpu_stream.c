// SPDX-License-Identifier: GPL-2.0
/*
 * vhgpu: the migration stream (vhgpu.h): producing it from VRAM, registers
 * and config space (save), and parsing, checking and loading it (load). The
 * v2 data files and the v1 region both carry it.
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
void vhgpu_save_pending(struct vhgpu_migf *migf, u64 *initial, u64 *dirty, u64 *final)
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
ssize_t vhgpu_save_copy(struct vhgpu_migf *migf, char __user *ubuf, u8 *kbuf, size_t len)
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
int vhgpu_load_feed(struct vhgpu_migf *migf, const u8 *buf, size_t len)
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
int vhgpu_load_finish(struct vhgpu_dev *dev, struct vhgpu_migf *migf)
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
