// SPDX-License-Identifier: GPL-2.0
/*
 * vhgpu: DMA dirty logging (VFIO_DEVICE_FEATURE_DMA_LOGGING_START / REPORT /
 * STOP through struct vfio_log_ops). The device logs the IOVA pages its DMA
 * engine writes (VRAM -> IOVA transfers, after vfio_dma_rw() succeeded for
 * each piece); reads of host memory are not logged, as the uAPI says.
 *
 * START: one session at a time (-EBUSY otherwise). The page size is the
 * hint rounded up to at least 4 KiB (a power of two, else -EINVAL), doubled
 * while the ranges would need more than VHGPU_LOG_MAX_PAGES bits, up to
 * 1 GiB (-E2BIG beyond); the core already refused misaligned, overlapping and
 * overflowing ranges. REPORT: -EINVAL without a session or when any part of
 * the asked range lies outside the logged ranges; otherwise sets the bits of
 * the logged pages in the range (replicated to the report's page size by
 * iova_bitmap_set()) and clears them. STOP: ends the session (also without
 * one); closing the device stops it too.
 */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include "vhgpu_priv.h"

#define VHGPU_LOG_MAX_PAGES	(1UL << 24)	/* 2 MiB of bitmap */
#define VHGPU_LOG_MAX_PAGE	(1ULL << 30)

static unsigned long vhgpu_log_pages(struct rb_root_cached *ranges, u64 psize)
{
	struct interval_tree_node *n;
	unsigned long total = 0;

	for (n = interval_tree_iter_first(ranges, 0, ULONG_MAX); n;
	     n = interval_tree_iter_next(n, 0, ULONG_MAX)) {
		unsigned long pages = n->last / psize - n->start / psize + 1;

		if (check_add_overflow(total, pages, &total))
			return ULONG_MAX;
	}
	return total;
}

static void vhgpu_log_free(struct vhgpu_dev *dev)
{
	u32 i;

	for (i = 0; i < dev->log_nranges; i++)
		kvfree(dev->log_ranges[i].bits);
	kfree(dev->log_ranges);
	dev->log_ranges = NULL;
	dev->log_nranges = 0;
	dev->log_page_size = 0;
	WRITE_ONCE(dev->logging, false);
}

static int vhgpu_log_start(struct vfio_device *vdev, struct rb_root_cached *ranges, u32 nnodes,
			   u64 *page_size)
{
	struct vhgpu_dev *dev = container_of(vdev, struct vhgpu_dev, vdev);
	struct interval_tree_node *n;
	u64 psize = *page_size;
	u32 i = 0;
	int ret = 0;

	if (!psize || !is_power_of_2(psize))
		return -EINVAL;
	for (n = interval_tree_iter_first(ranges, 0, ULONG_MAX); n;
	     n = interval_tree_iter_next(n, 0, ULONG_MAX))
		if (n->last < n->start)
			return -EINVAL;	/* a zero-length range */
	psize = max_t(u64, psize, PAGE_SIZE);
	while (vhgpu_log_pages(ranges, psize) > VHGPU_LOG_MAX_PAGES) {
		if (psize >= VHGPU_LOG_MAX_PAGE)
			return -E2BIG;
		psize <<= 1;
	}

	mutex_lock(&dev->log_lock);
	if (dev->logging) {
		ret = -EBUSY;	/* another START needs a STOP first */
		goto out;
	}
	dev->log_ranges = kcalloc(nnodes, sizeof(*dev->log_ranges), GFP_KERNEL_ACCOUNT);
	if (!dev->log_ranges) {
		ret = -ENOMEM;
		goto out;
	}
	for (n = interval_tree_iter_first(ranges, 0, ULONG_MAX); n && i < nnodes;
	     n = interval_tree_iter_next(n, 0, ULONG_MAX), i++) {
		struct vhgpu_log_range *r = &dev->log_ranges[i];

		r->start = n->start;
		r->last = n->last;
		r->base = n->start / psize * psize;
		r->npages = n->last / psize - n->start / psize + 1;
		r->bits = kvcalloc(BITS_TO_LONGS(r->npages), sizeof(unsigned long),
				   GFP_KERNEL_ACCOUNT);
		dev->log_nranges = i + 1;
		if (!r->bits) {
			vhgpu_log_free(dev);
			ret = -ENOMEM;
			goto out;
		}
	}
	dev->log_page_size = psize;
	WRITE_ONCE(dev->logging, true);
	*page_size = psize;
out:
	mutex_unlock(&dev->log_lock);
	return ret;
}

static int vhgpu_log_stop(struct vfio_device *vdev)
{
	vhgpu_dirty_log_stop(container_of(vdev, struct vhgpu_dev, vdev));
	return 0;
}

/* The part of [lo, hi] inside @r, or false. */
static bool vhgpu_log_clip(const struct vhgpu_log_range *r, unsigned long *lo, unsigned long *hi)
{
	*lo = max(*lo, r->start);
	*hi = min(*hi, r->last);
	return *lo <= *hi;
}

static int vhgpu_log_read_and_clear(struct vfio_device *vdev, unsigned long iova,
				    unsigned long length, struct iova_bitmap *dirty)
{
	struct vhgpu_dev *dev = container_of(vdev, struct vhgpu_dev, vdev);
	unsigned long last = iova + length - 1, covered = 0;
	bool report = !vhgpu_violates(dev, VHGPU_V_DMA_LOGGING);
	int ret = 0;
	u32 i;

	if (!length)
		return -EINVAL;
	mutex_lock(&dev->log_lock);
	if (!dev->logging) {
		ret = -EINVAL;
		goto out;
	}
	for (i = 0; i < dev->log_nranges; i++) {
		unsigned long lo = iova, hi = last;

		if (vhgpu_log_clip(&dev->log_ranges[i], &lo, &hi))
			covered += hi - lo + 1;
	}
	if (covered != length) {
		ret = -EINVAL;	/* part of the range was never logged */
		goto out;
	}
	for (i = 0; i < dev->log_nranges; i++) {
		struct vhgpu_log_range *r = &dev->log_ranges[i];
		unsigned long lo = iova, hi = last, bit, end;

		if (!vhgpu_log_clip(r, &lo, &hi))
			continue;
		end = (hi - r->base) / dev->log_page_size + 1;
		bit = (lo - r->base) / dev->log_page_size;
		for_each_set_bit_from(bit, r->bits, end) {
			unsigned long p = r->base + bit * dev->log_page_size;
			unsigned long s = max(p, lo);
			unsigned long e = hi - p >= dev->log_page_size - 1 ?
					  p + (dev->log_page_size - 1) : hi;

			/* violation dma-logging: REPORT leaves the bitmap empty */
			if (report)
				iova_bitmap_set(dirty, s, e - s + 1);
			clear_bit(bit, r->bits);
		}
	}
out:
	mutex_unlock(&dev->log_lock);
	return ret;
}

const struct vfio_log_ops vhgpu_log_ops = {
	.log_start = vhgpu_log_start,
	.log_stop = vhgpu_log_stop,
	.log_read_and_clear = vhgpu_log_read_and_clear,
};

/* The DMA engine wrote @len bytes at @iova (dev->lock held). */
void vhgpu_dirty_log_write(struct vhgpu_dev *dev, u64 iova, u64 len)
{
	u32 i;

	if (!len || !READ_ONCE(dev->logging))
		return;
	mutex_lock(&dev->log_lock);
	for (i = 0; dev->logging && i < dev->log_nranges; i++) {
		struct vhgpu_log_range *r = &dev->log_ranges[i];
		unsigned long lo = iova, hi = iova + len - 1;

		if (!vhgpu_log_clip(r, &lo, &hi))
			continue;
		bitmap_set(r->bits, (lo - r->base) / dev->log_page_size,
			   (hi - r->base) / dev->log_page_size - (lo - r->base) / dev->log_page_size + 1);
	}
	mutex_unlock(&dev->log_lock);
}

void vhgpu_dirty_log_stop(struct vhgpu_dev *dev)
{
	mutex_lock(&dev->log_lock);
	vhgpu_log_free(dev);
	mutex_unlock(&dev->log_lock);
}
