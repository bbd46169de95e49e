// SPDX-License-Identifier: GPL-2.0
/*
 * vhgpu: per-instance attributes (the mdev device's "vendor/" group) and
 * the extra mdev type attributes.
 */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include "vhgpu_priv.h"

/* ------------------------------------------------------------------------
 * Per-instance sysfs (mdev device, "vendor/" group)
 */
struct vhgpu_dev *vhgpu_from_device(struct device *d)
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
	&dev_attr_violate.attr,
	&dev_attr_fail_next_transition.attr,
	NULL,
};

static const struct attribute_group vhgpu_dev_group = {
	.name = "vendor",
	.attrs = vhgpu_dev_attrs,
};

const struct attribute_group *vhgpu_dev_groups[] = {
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
	return dst == src || (vhgpu_cross_type && src->vram_mb < dst->vram_mb);
}

static ssize_t software_version_show(struct mdev_type *mtype, struct vhgpu_type_attr *attr,
				     char *buf)
{
	struct vhgpu_sw_version v;

	if (vhgpu_parse_version(vhgpu_software_version, &v))
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

	if (vhgpu_parse_version(vhgpu_software_version, &v))
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

	if (vhgpu_parse_version(vhgpu_software_version, &mine))
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

const struct attribute_group vhgpu_type_group = {
	.attrs = vhgpu_type_attrs,
};
