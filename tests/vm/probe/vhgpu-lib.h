/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Helpers of the vhgpu raw-ioctl checkers (vhgpu-msix.c, vhgpu-clauses.c): opening mdevs
 * through a legacy container, register and config access, eventfds, the migration uAPI
 * bits Debian 12's 6.1 uapi header lacks.
 */
#ifndef VHGPU_LIB_H
#define VHGPU_LIB_H

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>
#include <linux/pci_regs.h>
#include <linux/vfio.h>

#include "../module/vhgpu.h"

/* Newer than Debian 12's uapi header (6.1). */
#ifndef VFIO_DEVICE_FEATURE_MIG_DATA_SIZE
#define VFIO_DEVICE_FEATURE_MIG_DATA_SIZE 9
struct vfio_device_feature_mig_data_size {
	__aligned_u64 stop_copy_length;
};
#endif
struct probe_precopy_info {
	uint32_t argsz, flags;
	uint64_t initial_bytes, dirty_bytes;
};
#define PROBE_MIG_GET_PRECOPY_INFO _IO(VFIO_TYPE, VFIO_BASE + 21)
#define OFF(idx) ((uint64_t)(idx) << 40)

static inline void fail(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	printf("FAIL: ");
	vprintf(fmt, ap);
	printf(" (errno %d: %s)\n", errno, strerror(errno));
	va_end(ap);
	exit(1);
}

#define CHECK(cond, ...) do { if (!(cond)) fail(__VA_ARGS__); } while (0)

static int container = -1;	/* shared by every device opened */

static inline int open_dev(const char *uuid)
{
	char path[256], link[256];
	struct vfio_group_status st = { .argsz = sizeof(st) };
	ssize_t n;
	int group, fd;

	snprintf(path, sizeof(path), "/sys/bus/mdev/devices/%s/iommu_group", uuid);
	n = readlink(path, link, sizeof(link) - 1);
	CHECK(n > 0, "readlink %s", path);
	link[n] = 0;
	snprintf(path, sizeof(path), "/dev/vfio/%s", strrchr(link, '/') + 1);
	group = open(path, O_RDWR);
	CHECK(group >= 0, "open %s", path);
	CHECK(!ioctl(group, VFIO_GROUP_GET_STATUS, &st), "GROUP_GET_STATUS");
	CHECK(st.flags & VFIO_GROUP_FLAGS_VIABLE, "group not viable");
	if (container < 0) {
		container = open("/dev/vfio/vfio", O_RDWR);
		CHECK(container >= 0, "open /dev/vfio/vfio");
		CHECK(!ioctl(group, VFIO_GROUP_SET_CONTAINER, &container), "SET_CONTAINER");
		CHECK(!ioctl(container, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU), "SET_IOMMU");
	} else {
		CHECK(!ioctl(group, VFIO_GROUP_SET_CONTAINER, &container), "SET_CONTAINER");
	}
	fd = ioctl(group, VFIO_GROUP_GET_DEVICE_FD, uuid);
	CHECK(fd >= 0, "GET_DEVICE_FD %s", uuid);
	return fd;
}

static inline uint32_t rd32(int fd, uint64_t off)
{
	uint32_t v;

	CHECK(pread(fd, &v, 4, off) == 4, "pread32 @%#llx", (unsigned long long)off);
	return v;
}

static inline void wr32(int fd, uint64_t off, uint32_t v)
{
	CHECK(pwrite(fd, &v, 4, off) == 4, "pwrite32 @%#llx", (unsigned long long)off);
}

static inline uint32_t reg(int fd, uint32_t r) { return rd32(fd, OFF(VFIO_PCI_BAR0_REGION_INDEX) + r); }
static inline void setreg(int fd, uint32_t r, uint32_t v) { wr32(fd, OFF(VFIO_PCI_BAR0_REGION_INDEX) + r, v); }

static inline uint8_t pat(uint64_t off, uint32_t seed)
{
	uint64_t x = off * 0x9e3779b97f4a7c15ULL + seed;

	return (uint8_t)(x >> 29);
}

static inline void set_master(int fd)
{
	uint16_t cmd;

	CHECK(pread(fd, &cmd, 2, OFF(VFIO_PCI_CONFIG_REGION_INDEX) + PCI_COMMAND) == 2, "cfg rd");
	cmd |= PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER;
	CHECK(pwrite(fd, &cmd, 2, OFF(VFIO_PCI_CONFIG_REGION_INDEX) + PCI_COMMAND) == 2, "cfg wr");
}

static inline int set_irq(int fd, unsigned int index, int efd)
{
	char buf[sizeof(struct vfio_irq_set) + sizeof(int)];
	struct vfio_irq_set *s = (void *)buf;

	s->argsz = sizeof(buf);
	s->flags = VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER;
	s->index = index;
	s->start = 0;
	s->count = 1;
	memcpy(s->data, &efd, sizeof(int));
	return ioctl(fd, VFIO_DEVICE_SET_IRQS, s);
}

static inline void irq_off(int fd, unsigned int index)
{
	struct vfio_irq_set s = { .argsz = sizeof(s), .index = index, .count = 0,
				  .flags = VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER };

	CHECK(!ioctl(fd, VFIO_DEVICE_SET_IRQS, &s), "irq off %u", index);
}

/* eventfd counter now (0 if nothing pending); never blocks */
static inline uint64_t ev_take(int efd)
{
	uint64_t v = 0;
	struct pollfd p = { .fd = efd, .events = POLLIN };

	if (poll(&p, 1, 0) == 1)
		CHECK(read(efd, &v, 8) == 8, "eventfd read");
	return v;
}


#endif /* VHGPU_LIB_H */
