/*
 * vfio-probe: an independent reference for `vfio-harness info`. Opens a device with raw
 * VFIO ioctls (legacy container/group, or iommufd + cdev) and prints what the kernel says:
 *
 *   flags <device flags>
 *   region <index> <size> <flags> [<type>/<subtype>]
 *   irq <index> <count> <flags>
 *   mig <v2 migration flags> | mig none
 *
 * Usage: vfio-probe legacy GROUP DEVICE-NAME
 *        vfio-probe iommufd /dev/vfio/devices/vfioN
 * Regions/IRQs whose info query fails with EINVAL are not printed (unimplemented indexes).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>
#include <linux/vfio.h>

/*
 * The iommufd/cdev uAPI (6.6+) as in the 6.12 headers, spelled out here so the probe builds
 * against older installed headers too (the runner may fall back to the host's).
 */
struct probe_bind_iommufd {
	__u32 argsz;
	__u32 flags;
	__s32 iommufd;
	__u32 out_devid;
};
struct probe_attach_pt {
	__u32 argsz;
	__u32 flags;
	__u32 pt_id;
};
struct probe_ioas_alloc {
	__u32 size;
	__u32 flags;
	__u32 out_ioas_id;
};
#define PROBE_BIND_IOMMUFD _IO(VFIO_TYPE, VFIO_BASE + 18)
#define PROBE_ATTACH_PT _IO(VFIO_TYPE, VFIO_BASE + 19)
#define PROBE_IOAS_ALLOC _IO(';', 0x81)

static void die(const char *what)
{
	fprintf(stderr, "vfio-probe: %s: %s\n", what, strerror(errno));
	exit(1);
}

static int open_legacy(const char *group, const char *name)
{
	char path[64];
	struct vfio_group_status st = { .argsz = sizeof(st) };
	int c = open("/dev/vfio/vfio", O_RDWR);
	if (c < 0)
		die("open /dev/vfio/vfio");
	snprintf(path, sizeof(path), "/dev/vfio/%s", group);
	int g = open(path, O_RDWR);
	if (g < 0)
		die(path);
	if (ioctl(g, VFIO_GROUP_GET_STATUS, &st) < 0)
		die("VFIO_GROUP_GET_STATUS");
	if (!(st.flags & VFIO_GROUP_FLAGS_VIABLE)) {
		fprintf(stderr, "vfio-probe: group %s not viable\n", group);
		exit(1);
	}
	if (ioctl(g, VFIO_GROUP_SET_CONTAINER, &c) < 0)
		die("VFIO_GROUP_SET_CONTAINER");
	if (ioctl(c, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU) < 0)
		die("VFIO_SET_IOMMU");
	int d = ioctl(g, VFIO_GROUP_GET_DEVICE_FD, name);
	if (d < 0)
		die("VFIO_GROUP_GET_DEVICE_FD");
	return d;
}

static int open_iommufd(const char *cdev)
{
	int d = open(cdev, O_RDWR);
	if (d < 0)
		die(cdev);
	int i = open("/dev/iommu", O_RDWR);
	if (i < 0)
		die("open /dev/iommu");
	struct probe_bind_iommufd bind = { .argsz = sizeof(bind), .iommufd = i };
	if (ioctl(d, PROBE_BIND_IOMMUFD, &bind) < 0)
		die("VFIO_DEVICE_BIND_IOMMUFD");
	struct probe_ioas_alloc alloc = { .size = sizeof(alloc) };
	if (ioctl(i, PROBE_IOAS_ALLOC, &alloc) < 0)
		die("IOMMU_IOAS_ALLOC");
	struct probe_attach_pt at = { .argsz = sizeof(at), .pt_id = alloc.out_ioas_id };
	if (ioctl(d, PROBE_ATTACH_PT, &at) < 0)
		die("VFIO_DEVICE_ATTACH_IOMMUFD_PT");
	return d;
}

static void region(int d, unsigned int index)
{
	struct vfio_region_info hdr = { .argsz = sizeof(hdr), .index = index };
	if (ioctl(d, VFIO_DEVICE_GET_REGION_INFO, &hdr) < 0) {
		if (errno == EINVAL)
			return;
		die("VFIO_DEVICE_GET_REGION_INFO");
	}
	struct vfio_region_info *ri = calloc(1, hdr.argsz);
	if (!ri)
		die("calloc");
	ri->argsz = hdr.argsz;
	ri->index = index;
	if (ioctl(d, VFIO_DEVICE_GET_REGION_INFO, ri) < 0)
		die("VFIO_DEVICE_GET_REGION_INFO (caps)");
	printf("region %u %llu %u", index, (unsigned long long)ri->size, ri->flags);
	if (ri->flags & VFIO_REGION_INFO_FLAG_CAPS) {
		uint32_t off = ri->cap_offset;
		int hops = 0;
		while (off >= sizeof(*ri) && off + sizeof(struct vfio_info_cap_header) <= ri->argsz &&
		       hops++ < 32) {
			struct vfio_info_cap_header *h = (void *)((char *)ri + off);
			if (h->id == VFIO_REGION_INFO_CAP_TYPE) {
				struct vfio_region_info_cap_type *t = (void *)h;
				printf(" %u/%u", t->type, t->subtype);
			}
			if (h->next <= off)
				break;
			off = h->next;
		}
	}
	printf("\n");
	free(ri);
}

int main(int argc, char **argv)
{
	int d;
	if (argc == 4 && !strcmp(argv[1], "legacy"))
		d = open_legacy(argv[2], argv[3]);
	else if (argc == 3 && !strcmp(argv[1], "iommufd"))
		d = open_iommufd(argv[2]);
	else {
		fprintf(stderr, "usage: vfio-probe legacy GROUP NAME | iommufd /dev/vfio/devices/vfioN\n");
		return 2;
	}
	struct vfio_device_info di = { .argsz = sizeof(di) };
	if (ioctl(d, VFIO_DEVICE_GET_INFO, &di) < 0)
		die("VFIO_DEVICE_GET_INFO");
	printf("flags %u\n", di.flags);
	for (unsigned int i = 0; i < di.num_regions; i++)
		region(d, i);
	for (unsigned int i = 0; i < di.num_irqs; i++) {
		struct vfio_irq_info ii = { .argsz = sizeof(ii), .index = i };
		if (ioctl(d, VFIO_DEVICE_GET_IRQ_INFO, &ii) < 0) {
			if (errno == EINVAL)
				continue;
			die("VFIO_DEVICE_GET_IRQ_INFO");
		}
		printf("irq %u %u %u\n", i, ii.count, ii.flags);
	}
	struct {
		struct vfio_device_feature f;
		struct vfio_device_feature_migration m;
	} feat;
	memset(&feat, 0, sizeof(feat));
	feat.f.argsz = sizeof(feat);
	feat.f.flags = VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_MIGRATION;
	if (ioctl(d, VFIO_DEVICE_FEATURE, &feat) < 0) {
		if (errno != ENOTTY && errno != EINVAL)
			die("VFIO_DEVICE_FEATURE MIGRATION");
		printf("mig none\n");
	} else {
		printf("mig %llu\n", (unsigned long long)feat.m.flags);
	}
	return 0;
}
