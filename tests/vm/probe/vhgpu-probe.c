// SPDX-License-Identifier: GPL-2.0
/*
 * vhgpu-probe: raw-ioctl checks of the vhgpu test device (tests/vm/module), independent of
 * the harness. Legacy container/group + type1.
 *
 *   vhgpu-probe basic UUID              config space, regions, registers, VRAM rw/mmap,
 *                                       DMA both ways, MSI and INTx
 *   vhgpu-probe migrate SRC DST MODE    MODE = stopcopy | precopy: v2 migration of VRAM +
 *                                       registers, byte-exact check
 *   vhgpu-probe refuse SRC DST          DST refuses a bad magic, a truncated stream and a
 *                                       stream from a different VRAM size (SRC)
 *   vhgpu-probe v1 SRC DST              the same migration through the v1 region
 *
 * Prints "ok: ..." lines; exits 1 with "FAIL: ..." on the first failure.
 */
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

/* Newer than the host's uapi header. */
#ifndef VFIO_MIGRATION_PRE_COPY
#define VFIO_MIGRATION_PRE_COPY (1 << 2)
#endif
#define ST_ERROR 0
#define ST_STOP 1
#define ST_RUNNING 2
#define ST_STOP_COPY 3
#define ST_RESUMING 4
#define ST_RUNNING_P2P 5
#define ST_PRE_COPY 6
#define ST_PRE_COPY_P2P 7
struct probe_precopy_info {
	uint32_t argsz, flags;
	uint64_t initial_bytes, dirty_bytes;
};
#define PROBE_MIG_GET_PRECOPY_INFO _IO(VFIO_TYPE, VFIO_BASE + 21)
#define OFF(idx) ((uint64_t)(idx) << 40)

static void fail(const char *fmt, ...)
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

static int container = -1;

static int open_dev(const char *uuid)
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

static uint32_t rd32(int fd, uint64_t off)
{
	uint32_t v;

	CHECK(pread(fd, &v, 4, off) == 4, "pread32 @%#llx", (unsigned long long)off);
	return v;
}

static void wr32(int fd, uint64_t off, uint32_t v)
{
	CHECK(pwrite(fd, &v, 4, off) == 4, "pwrite32 @%#llx", (unsigned long long)off);
}

static uint32_t reg(int fd, uint32_t r) { return rd32(fd, OFF(VFIO_PCI_BAR0_REGION_INDEX) + r); }
static void setreg(int fd, uint32_t r, uint32_t v) { wr32(fd, OFF(VFIO_PCI_BAR0_REGION_INDEX) + r, v); }

static uint64_t vram_size(int fd)
{
	struct vfio_region_info ri = { .argsz = sizeof(ri), .index = VFIO_PCI_BAR2_REGION_INDEX };

	CHECK(!ioctl(fd, VFIO_DEVICE_GET_REGION_INFO, &ri), "REGION_INFO bar2");
	return ri.size;
}

static uint8_t *map_vram(int fd, uint64_t size)
{
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd,
		       OFF(VFIO_PCI_BAR2_REGION_INDEX));

	CHECK(p != MAP_FAILED, "mmap VRAM");
	return p;
}

static uint8_t pat(uint64_t off, uint32_t seed)
{
	uint64_t x = off * 0x9e3779b97f4a7c15ULL + seed;

	return (uint8_t)(x >> 29);
}

static void set_master(int fd)
{
	uint16_t cmd;

	CHECK(pread(fd, &cmd, 2, OFF(VFIO_PCI_CONFIG_REGION_INDEX) + PCI_COMMAND) == 2, "cfg rd");
	cmd |= PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER;
	CHECK(pwrite(fd, &cmd, 2, OFF(VFIO_PCI_CONFIG_REGION_INDEX) + PCI_COMMAND) == 2, "cfg wr");
}

static int set_irq(int fd, unsigned int index, int efd)
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

static void irq_off(int fd, unsigned int index)
{
	struct vfio_irq_set s = { .argsz = sizeof(s), .index = index, .count = 0,
				  .flags = VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER };

	CHECK(!ioctl(fd, VFIO_DEVICE_SET_IRQS, &s), "irq off %u", index);
}

static void intx_unmask(int fd)
{
	struct vfio_irq_set s = { .argsz = sizeof(s), .index = VFIO_PCI_INTX_IRQ_INDEX,
				  .count = 1, .flags = VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_UNMASK };

	CHECK(!ioctl(fd, VFIO_DEVICE_SET_IRQS, &s), "intx unmask");
}

/* eventfd counter now (0 if nothing pending); never blocks */
static uint64_t ev_take(int efd)
{
	uint64_t v = 0;
	struct pollfd p = { .fd = efd, .events = POLLIN };

	if (poll(&p, 1, 0) == 1)
		CHECK(read(efd, &v, 8) == 8, "eventfd read");
	return v;
}

static void cmd_basic(const char *uuid)
{
	int fd = open_dev(uuid);
	struct vfio_device_info di = { .argsz = sizeof(di) };
	struct vfio_region_info ri = { .argsz = sizeof(ri) };
	uint64_t vs, iova = 0x100000, len = 3 * 4096 + 123, i;
	uint32_t v, lo, hi;
	uint8_t *vram, *buf, *buf2, *chk;
	int efd;

	CHECK(!ioctl(fd, VFIO_DEVICE_GET_INFO, &di), "GET_INFO");
	CHECK(di.flags & VFIO_DEVICE_FLAGS_PCI, "not a PCI device");
	CHECK(di.num_regions >= VFIO_PCI_NUM_REGIONS && di.num_irqs == VFIO_PCI_NUM_IRQS,
	      "regions %u irqs %u", di.num_regions, di.num_irqs);
	printf("ok: device info: %u regions, %u irqs\n", di.num_regions, di.num_irqs);

	ri.index = VFIO_PCI_BAR0_REGION_INDEX;
	CHECK(!ioctl(fd, VFIO_DEVICE_GET_REGION_INFO, &ri) && ri.size == 4096, "BAR0 info");
	vs = vram_size(fd);
	CHECK(vs >= (64 << 20), "VRAM size %llu", (unsigned long long)vs);

	v = rd32(fd, OFF(VFIO_PCI_CONFIG_REGION_INDEX));
	CHECK(v == (VHGPU_PCI_DEVICE << 16 | VHGPU_PCI_VENDOR), "vendor/device %#x", v);
	v = rd32(fd, OFF(VFIO_PCI_CONFIG_REGION_INDEX) + PCI_CLASS_REVISION);
	CHECK(v >> 16 == 0x0302, "class %#x", v >> 16);
	/* BAR sizing */
	wr32(fd, OFF(VFIO_PCI_CONFIG_REGION_INDEX) + PCI_BASE_ADDRESS_0, ~0u);
	v = rd32(fd, OFF(VFIO_PCI_CONFIG_REGION_INDEX) + PCI_BASE_ADDRESS_0);
	CHECK(v == 0xfffff000, "BAR0 sizing %#x", v);
	wr32(fd, OFF(VFIO_PCI_CONFIG_REGION_INDEX) + PCI_BASE_ADDRESS_2, ~0u);
	wr32(fd, OFF(VFIO_PCI_CONFIG_REGION_INDEX) + PCI_BASE_ADDRESS_3, ~0u);
	lo = rd32(fd, OFF(VFIO_PCI_CONFIG_REGION_INDEX) + PCI_BASE_ADDRESS_2);
	hi = rd32(fd, OFF(VFIO_PCI_CONFIG_REGION_INDEX) + PCI_BASE_ADDRESS_3);
	CHECK((lo & 0xf) == 0xc, "BAR2 flags %#x", lo & 0xf);
	CHECK(~((uint64_t)hi << 32 | (lo & ~0xfu)) + 1 == vs, "BAR2 sizing %#x:%#x", hi, lo);
	printf("ok: config space: %04x:%04x class 0302, BAR0 4 KiB, BAR2 %llu bytes 64-bit pref\n",
	       VHGPU_PCI_VENDOR, VHGPU_PCI_DEVICE, (unsigned long long)vs);

	CHECK(reg(fd, VHGPU_REG_ID) == VHGPU_ID, "ID %#x", reg(fd, VHGPU_REG_ID));
	CHECK(((uint64_t)reg(fd, VHGPU_REG_VRAM_HI) << 32 | reg(fd, VHGPU_REG_VRAM_LO)) == vs,
	      "VRAM size register");
	setreg(fd, VHGPU_REG_SCRATCH0 + 4, 0xdeadbeef);
	CHECK(reg(fd, VHGPU_REG_SCRATCH0 + 4) == 0xdeadbeef, "scratch");
	printf("ok: registers: ID %#x, version %#x, scratch\n", VHGPU_ID, reg(fd, VHGPU_REG_VERSION));

	/* VRAM: pwrite -> mmap, mmap -> pread */
	vram = map_vram(fd, vs);
	chk = malloc(8192);
	for (i = 0; i < 8192; i++)
		chk[i] = pat(i, 1);
	CHECK(pwrite(fd, chk, 8192, OFF(VFIO_PCI_BAR2_REGION_INDEX) + vs - 8192) == 8192, "VRAM pwrite");
	CHECK(!memcmp(vram + vs - 8192, chk, 8192), "VRAM mmap does not see pwrite");
	for (i = 0; i < 8192; i++)
		vram[4096 + i] = pat(i, 2);
	CHECK(pread(fd, chk, 8192, OFF(VFIO_PCI_BAR2_REGION_INDEX) + 4096) == 8192, "VRAM pread");
	for (i = 0; i < 8192; i++)
		CHECK(chk[i] == pat(i, 2), "pread does not see mmap write at %llu", (unsigned long long)i);
	printf("ok: VRAM read/write and mmap agree\n");

	/* DMA: IOVA -> VRAM -> IOVA */
	buf = mmap(NULL, 4 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	buf2 = mmap(NULL, 4 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(buf != MAP_FAILED && buf2 != MAP_FAILED, "mmap buffers");
	struct vfio_iommu_type1_dma_map m = { .argsz = sizeof(m),
		.flags = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE,
		.vaddr = (uintptr_t)buf, .iova = iova, .size = 4 * 4096 };
	CHECK(!ioctl(container, VFIO_IOMMU_MAP_DMA, &m), "MAP_DMA 1");
	m.vaddr = (uintptr_t)buf2;
	m.iova = iova + 0x100000;
	CHECK(!ioctl(container, VFIO_IOMMU_MAP_DMA, &m), "MAP_DMA 2");
	for (i = 0; i < len; i++)
		buf[i] = pat(i, 3);

	efd = eventfd(0, EFD_NONBLOCK);
	CHECK(!set_irq(fd, VFIO_PCI_MSI_IRQ_INDEX, efd), "MSI eventfd");
	set_master(fd);
	setreg(fd, VHGPU_REG_IRQ_ENABLE, VHGPU_IRQ_DMA_DONE | VHGPU_IRQ_DMA_ERROR);
	setreg(fd, VHGPU_REG_DMA_IOVA_LO, iova + 100);	/* unaligned on purpose */
	setreg(fd, VHGPU_REG_DMA_IOVA_HI, 0);
	setreg(fd, VHGPU_REG_DMA_VRAM_LO, 0x200000 + 7);
	setreg(fd, VHGPU_REG_DMA_VRAM_HI, 0);
	setreg(fd, VHGPU_REG_DMA_LEN, len - 100);
	setreg(fd, VHGPU_REG_DMA_DIR, VHGPU_DMA_DIR_TO_VRAM);
	setreg(fd, VHGPU_REG_DMA_CTRL, 1);
	CHECK(reg(fd, VHGPU_REG_DMA_STATUS) == VHGPU_DMA_ST_DONE, "DMA to VRAM status %#x errno %u",
	      reg(fd, VHGPU_REG_DMA_STATUS), reg(fd, VHGPU_REG_DMA_ERRNO));
	CHECK(!memcmp(vram + 0x200000 + 7, buf + 100, len - 100), "DMA to VRAM data");
	CHECK(ev_take(efd) == 1, "no MSI after DMA");
	CHECK(reg(fd, VHGPU_REG_IRQ_STATUS) & VHGPU_IRQ_DMA_DONE, "IRQ status");
	setreg(fd, VHGPU_REG_IRQ_STATUS, VHGPU_IRQ_ALL);
	setreg(fd, VHGPU_REG_DMA_IOVA_LO, iova + 0x100000 + 5);
	setreg(fd, VHGPU_REG_DMA_DIR, VHGPU_DMA_DIR_FROM_VRAM);
	setreg(fd, VHGPU_REG_DMA_CTRL, 1);
	CHECK(reg(fd, VHGPU_REG_DMA_STATUS) == VHGPU_DMA_ST_DONE, "DMA from VRAM status");
	CHECK(!memcmp(buf2 + 5, buf + 100, len - 100), "DMA round trip data");
	CHECK(ev_take(efd) == 1, "no MSI after second DMA");
	CHECK(reg(fd, VHGPU_REG_DMA_COUNT) >= 2, "DMA count");
	/* an unmapped IOVA fails with an error interrupt */
	setreg(fd, VHGPU_REG_IRQ_STATUS, VHGPU_IRQ_ALL);
	setreg(fd, VHGPU_REG_DMA_IOVA_LO, 0x40000000);
	setreg(fd, VHGPU_REG_DMA_CTRL, 1);
	CHECK(reg(fd, VHGPU_REG_DMA_STATUS) == VHGPU_DMA_ST_ERROR, "DMA to unmapped IOVA did not fail");
	CHECK(reg(fd, VHGPU_REG_IRQ_STATUS) & VHGPU_IRQ_DMA_ERROR, "DMA error status");
	CHECK(ev_take(efd) == 1, "no MSI after DMA error");
	printf("ok: DMA IOVA->VRAM->IOVA byte-exact (%llu bytes), MSI on completion and on error (errno %u)\n",
	       (unsigned long long)(len - 100), reg(fd, VHGPU_REG_DMA_ERRNO));
	irq_off(fd, VFIO_PCI_MSI_IRQ_INDEX);

	/* INTx: level, auto-masked */
	setreg(fd, VHGPU_REG_IRQ_STATUS, VHGPU_IRQ_ALL);
	CHECK(!set_irq(fd, VFIO_PCI_INTX_IRQ_INDEX, efd), "INTx eventfd");
	setreg(fd, VHGPU_REG_IRQ_ENABLE, VHGPU_IRQ_DOORBELL);
	setreg(fd, VHGPU_REG_DOORBELL, 42);
	CHECK(ev_take(efd) == 1, "no INTx after doorbell");
	setreg(fd, VHGPU_REG_DOORBELL, 43);
	CHECK(ev_take(efd) == 0, "INTx fired while masked");
	intx_unmask(fd);
	CHECK(ev_take(efd) == 1, "INTx not re-asserted on unmask with status pending");
	setreg(fd, VHGPU_REG_IRQ_STATUS, VHGPU_IRQ_DOORBELL);
	intx_unmask(fd);
	CHECK(ev_take(efd) == 0, "INTx fired after status was cleared");
	CHECK(reg(fd, VHGPU_REG_DB_COUNT) >= 2 && reg(fd, VHGPU_REG_DOORBELL) == 43, "doorbell regs");
	irq_off(fd, VFIO_PCI_INTX_IRQ_INDEX);
	printf("ok: INTx: doorbell asserts, auto-masked, re-asserted on unmask while pending\n");

	CHECK(!ioctl(fd, VFIO_DEVICE_RESET), "RESET");
	CHECK(reg(fd, VHGPU_REG_SCRATCH0 + 4) == 0, "scratch survived reset");
	CHECK(vram[4096] == pat(0, 2), "VRAM lost on reset");
	printf("ok: reset clears registers, keeps VRAM\n");
}

/* ---- v2 migration ---- */
static int mig_set(int fd, uint32_t state)
{
	char buf[sizeof(struct vfio_device_feature) + sizeof(struct vfio_device_feature_mig_state)];
	struct vfio_device_feature *f = (void *)buf;
	struct vfio_device_feature_mig_state *ms = (void *)f->data;

	memset(buf, 0, sizeof(buf));
	f->argsz = sizeof(buf);
	f->flags = VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE;
	ms->device_state = state;
	ms->data_fd = -1;
	if (ioctl(fd, VFIO_DEVICE_FEATURE, f))
		return -errno;
	return ms->data_fd;
}

static uint32_t mig_get(int fd)
{
	char buf[sizeof(struct vfio_device_feature) + sizeof(struct vfio_device_feature_mig_state)];
	struct vfio_device_feature *f = (void *)buf;
	struct vfio_device_feature_mig_state *ms = (void *)f->data;

	memset(buf, 0, sizeof(buf));
	f->argsz = sizeof(buf);
	f->flags = VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE;
	CHECK(!ioctl(fd, VFIO_DEVICE_FEATURE, f), "get state");
	return ms->device_state;
}

struct stream {
	uint8_t *p;
	size_t len, cap;
};

/* Reads until EOF (0) or, when precopy, ENOMSG. Returns bytes read in this call. */
static size_t drain(int dfd, struct stream *s, int precopy)
{
	size_t start = s->len;

	for (;;) {
		ssize_t n;

		if (s->cap - s->len < (1 << 20)) {
			s->cap = s->cap * 2 + (4 << 20);
			s->p = realloc(s->p, s->cap);
			CHECK(s->p, "realloc");
		}
		n = read(dfd, s->p + s->len, 1 << 20);
		if (n < 0 && precopy && errno == ENOMSG)
			break;
		CHECK(n >= 0, "data_fd read");
		if (n == 0) {
			CHECK(!precopy, "precopy read returned 0, want ENOMSG");
			break;
		}
		s->len += n;
	}
	return s->len - start;
}

static int resume_into(int fd, const uint8_t *p, size_t len)
{
	int dfd, r;
	size_t off = 0;

	CHECK(mig_set(fd, ST_STOP) == -1, "dst -> STOP");
	dfd = mig_set(fd, ST_RESUMING);
	CHECK(dfd >= 0, "dst -> RESUMING");
	while (off < len) {
		ssize_t n = write(dfd, p + off, len - off > 32768 ? 32768 : len - off);

		if (n < 0) {
			r = -errno;
			close(dfd);
			return r;
		}
		off += n;
	}
	r = mig_set(fd, ST_STOP);
	close(dfd);
	return r == -1 ? 0 : r;
}

static void fill_vram(int fd, uint8_t *vram, uint64_t vs, uint32_t seed, uint64_t skip_from)
{
	uint64_t i;

	(void)fd;
	for (i = 0; i < skip_from && i < vs; i++)
		vram[i] = pat(i, seed);
}

static void cmd_migrate(const char *su, const char *du, const char *mode)
{
	int sfd = open_dev(su), dfd = open_dev(du), data;
	uint64_t vs = vram_size(sfd), i;
	uint8_t *sv, *dv;
	struct stream s = { 0 };
	int precopy = !strcmp(mode, "precopy");

	CHECK(vram_size(dfd) == vs, "source and destination VRAM differ");
	sv = map_vram(sfd, vs);
	dv = map_vram(dfd, vs);
	/* source (fresh instance): pattern in all but the last MiB, which stays unallocated
	 * (zero-run records); destination: other junk everywhere */
	fill_vram(sfd, sv, vs, 11, vs - (1 << 20));
	fill_vram(dfd, dv, vs, 99, vs);
	setreg(sfd, VHGPU_REG_SCRATCH0, 0x12345678);
	setreg(sfd, VHGPU_REG_SCRATCH3, 0xcafef00d);
	setreg(sfd, VHGPU_REG_IRQ_ENABLE, VHGPU_IRQ_DOORBELL);
	setreg(dfd, VHGPU_REG_SCRATCH0, 0);

	if (precopy) {
		struct probe_precopy_info pi = { .argsz = sizeof(pi) };
		size_t n;

		data = mig_set(sfd, ST_PRE_COPY);
		CHECK(data >= 0, "src -> PRE_COPY");
		CHECK(!ioctl(data, PROBE_MIG_GET_PRECOPY_INFO, &pi), "PRECOPY_INFO");
		CHECK(pi.initial_bytes >= vs - (1 << 20), "initial_bytes %llu", (unsigned long long)pi.initial_bytes);
		printf("ok: PRE_COPY initial_bytes %llu dirty_bytes %llu\n",
		       (unsigned long long)pi.initial_bytes, (unsigned long long)pi.dirty_bytes);
		n = drain(data, &s, 1);
		CHECK(n == pi.initial_bytes, "read %zu initial bytes, info said %llu", n,
		      (unsigned long long)pi.initial_bytes);
		CHECK(!ioctl(data, PROBE_MIG_GET_PRECOPY_INFO, &pi) && !pi.initial_bytes && !pi.dirty_bytes,
		      "after initial: %llu/%llu", (unsigned long long)pi.initial_bytes,
		      (unsigned long long)pi.dirty_bytes);
		/* dirty 3 pages through mmap, 1 through pwrite, 1 by DMA-free register path */
		sv[5 * 4096 + 1] ^= 0xff;
		sv[100 * 4096] ^= 0x5a;
		sv[vs - 4096] = 0x77;	/* was zero and never sent as a page */
		CHECK(pwrite(sfd, "hello", 5, OFF(VFIO_PCI_BAR2_REGION_INDEX) + 7 * 4096) == 5, "pwrite");
		CHECK(!ioctl(data, PROBE_MIG_GET_PRECOPY_INFO, &pi), "PRECOPY_INFO 2");
		CHECK(pi.dirty_bytes == 4 * (4096 + sizeof(struct vhgpu_rec)),
		      "dirty_bytes %llu, want 4 pages", (unsigned long long)pi.dirty_bytes);
		printf("ok: 4 pages dirtied (mmap + pwrite): dirty_bytes %llu\n",
		       (unsigned long long)pi.dirty_bytes);
		n = drain(data, &s, 1);
		CHECK(n == pi.dirty_bytes, "read %zu dirty bytes", n);
		sv[9 * 4096] ^= 1;	/* dirtied again after being sent: goes with stop-copy */
		CHECK(mig_set(sfd, ST_STOP_COPY) == -1, "src PRE_COPY -> STOP_COPY keeps the fd");
		drain(data, &s, 0);
	} else {
		CHECK(mig_set(sfd, ST_STOP) == -1, "src -> STOP");
		data = mig_set(sfd, ST_STOP_COPY);
		CHECK(data >= 0, "src -> STOP_COPY");
		drain(data, &s, 0);
	}
	close(data);
	CHECK(mig_get(sfd) == ST_STOP_COPY, "src state");
	CHECK(mig_set(sfd, ST_RUNNING) == -1, "src -> RUNNING");
	printf("ok: %s stream %zu bytes (VRAM %llu)\n", mode, s.len, (unsigned long long)vs);

	CHECK(resume_into(dfd, s.p, s.len) == 0, "resume refused a good stream");
	CHECK(mig_set(dfd, ST_RUNNING) == -1, "dst -> RUNNING");
	for (i = 0; i < vs; i++)
		if (dv[i] != sv[i])
			fail("VRAM differs at %llu: %#x vs %#x", (unsigned long long)i, dv[i], sv[i]);
	CHECK(reg(dfd, VHGPU_REG_SCRATCH0) == 0x12345678 && reg(dfd, VHGPU_REG_SCRATCH3) == 0xcafef00d,
	      "registers not migrated");
	CHECK(reg(dfd, VHGPU_REG_IRQ_ENABLE) == VHGPU_IRQ_DOORBELL, "irq_enable not migrated");
	printf("ok: destination VRAM byte-exact (%llu bytes) and registers restored\n",
	       (unsigned long long)vs);
}

static void cmd_refuse(const char *su, const char *du)
{
	int sfd = open_dev(su), dfd = open_dev(du), data, r;
	struct stream s = { 0 };
	struct vhgpu_mig_header h;

	CHECK(vram_size(sfd) != vram_size(dfd), "refuse needs two different VRAM sizes");
	/* a real stream from a different type */
	CHECK(mig_set(sfd, ST_STOP) == -1, "src -> STOP");
	data = mig_set(sfd, ST_STOP_COPY);
	CHECK(data >= 0, "src -> STOP_COPY");
	drain(data, &s, 0);
	close(data);
	CHECK(mig_set(sfd, ST_RUNNING) == -1, "src -> RUNNING");
	r = resume_into(dfd, s.p, s.len);
	CHECK(r == -ERANGE, "wrong VRAM size: got %d, want -ERANGE", r);
	CHECK(!ioctl(dfd, VFIO_DEVICE_RESET), "reset");
	printf("ok: stream of another VRAM size refused early (ERANGE)\n");

	memcpy(&h, s.p, sizeof(h));
	h.magic ^= 1;
	r = resume_into(dfd, (void *)&h, sizeof(h));
	CHECK(r == -EINVAL, "bad magic: got %d, want -EINVAL", r);
	CHECK(!ioctl(dfd, VFIO_DEVICE_RESET), "reset");
	printf("ok: bad magic refused at the first write (EINVAL)\n");

	memcpy(&h, s.p, sizeof(h));
	h.sw_major = 99;
	r = resume_into(dfd, (void *)&h, sizeof(h));
	CHECK(r == -EPROTO, "bad version: got %d, want -EPROTO", r);
	CHECK(!ioctl(dfd, VFIO_DEVICE_RESET), "reset");
	printf("ok: other major version refused (EPROTO)\n");

	/* truncated: a valid stream of the destination cut short */
	s.len = 0;
	CHECK(mig_set(dfd, ST_STOP) == -1, "dst -> STOP");
	data = mig_set(dfd, ST_STOP_COPY);
	CHECK(data >= 0, "dst -> STOP_COPY");
	drain(data, &s, 0);
	close(data);
	CHECK(mig_set(dfd, ST_RUNNING) == -1, "dst -> RUNNING");
	r = resume_into(dfd, s.p, s.len - 10);
	CHECK(r == -ENODATA, "truncated: got %d, want -ENODATA", r);
	CHECK(mig_get(dfd) == ST_RESUMING, "device left RESUMING after refusal");
	CHECK(!ioctl(dfd, VFIO_DEVICE_RESET) && mig_get(dfd) == ST_RUNNING, "reset -> RUNNING");
	printf("ok: truncated stream refused at RESUMING -> STOP (ENODATA), reset recovers\n");
	CHECK(resume_into(dfd, s.p, s.len) == 0, "full stream refused");
	CHECK(mig_set(dfd, ST_RUNNING) == -1, "dst -> RUNNING");
	printf("ok: the same stream complete is accepted\n");
}

/* ---- v1 ---- */
struct v1 {
	int fd;
	uint64_t off, size, data_off, data_size;
	uint8_t *data;
};

static void v1_find(int fd, struct v1 *v)
{
	struct vfio_device_info di = { .argsz = sizeof(di) };
	unsigned int i;

	CHECK(!ioctl(fd, VFIO_DEVICE_GET_INFO, &di), "GET_INFO");
	for (i = VFIO_PCI_NUM_REGIONS; i < di.num_regions; i++) {
		char buf[1024];
		struct vfio_region_info *ri = (void *)buf;
		struct vfio_info_cap_header *h;
		uint32_t co;
		int type_ok = 0;

		memset(buf, 0, sizeof(buf));
		ri->argsz = sizeof(buf);
		ri->index = i;
		CHECK(!ioctl(fd, VFIO_DEVICE_GET_REGION_INFO, ri), "REGION_INFO %u", i);
		if (!(ri->flags & VFIO_REGION_INFO_FLAG_CAPS))
			continue;
		v->data_size = 0;
		for (co = ri->cap_offset; co; co = h->next) {
			h = (void *)(buf + co);
			if (h->id == VFIO_REGION_INFO_CAP_TYPE) {
				struct vfio_region_info_cap_type *t = (void *)h;

				type_ok = t->type == 3 && t->subtype == 1;
			} else if (h->id == VFIO_REGION_INFO_CAP_SPARSE_MMAP) {
				struct vfio_region_info_cap_sparse_mmap *sm = (void *)h;

				CHECK(sm->nr_areas == 1, "sparse areas %u", sm->nr_areas);
				v->data_off = sm->areas[0].offset;
				v->data_size = sm->areas[0].size;
			}
		}
		if (!type_ok)
			continue;
		CHECK(v->data_size, "v1 region without sparse mmap area");
		v->fd = fd;
		v->off = ri->offset;
		v->size = ri->size;
		v->data = mmap(NULL, v->data_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd,
			       v->off + v->data_off);
		CHECK(v->data != MAP_FAILED, "mmap v1 data section");
		return;
	}
	fail("no v1 migration region (load with migration_v1=1)");
}

static uint64_t v1_rd64(struct v1 *v, size_t field)
{
	uint64_t x;

	CHECK(pread(v->fd, &x, 8, v->off + field) == 8, "v1 read field %zu", field);
	return x;
}

static int v1_state(struct v1 *v, uint32_t st)
{
	return pwrite(v->fd, &st, 4, v->off) == 4 ? 0 : -errno;
}

static uint32_t v1_get(struct v1 *v)
{
	return rd32(v->fd, v->off);
}

static void cmd_v1(const char *su, const char *du)
{
	int sfd = open_dev(su), dfd = open_dev(du);
	struct v1 s, d;
	uint64_t vs = vram_size(sfd), i, pending, rounds = 0;
	uint8_t *sv, *dv;
	struct stream st = { 0 };
	size_t off;

	v1_find(sfd, &s);
	v1_find(dfd, &d);
	printf("ok: v1 region: offset %#llx size %llu, data section @%llu (%llu bytes, mmap)\n",
	       (unsigned long long)s.off, (unsigned long long)s.size,
	       (unsigned long long)s.data_off, (unsigned long long)s.data_size);
	sv = map_vram(sfd, vs);
	dv = map_vram(dfd, vs);
	fill_vram(sfd, sv, vs, 21, vs / 2);
	fill_vram(dfd, dv, vs, 77, vs);
	setreg(sfd, VHGPU_REG_SCRATCH0 + 8, 0xa5a5a5a5);
	CHECK(v1_get(&s) == VFIO_DEVICE_STATE_V1_RUNNING, "v1 initial state");
	CHECK(v1_state(&s, VFIO_DEVICE_STATE_V1_SAVING | VFIO_DEVICE_STATE_V1_RESUMING) == -EINVAL,
	      "SAVING|RESUMING accepted");

	/* pre-copy: _SAVING|_RUNNING until pending is small, then stop-copy: _SAVING */
	CHECK(!v1_state(&s, VFIO_DEVICE_STATE_V1_SAVING | VFIO_DEVICE_STATE_V1_RUNNING), "-> SAVING|RUNNING");
	for (;;) {
		uint64_t dsz;

		pending = v1_rd64(&s, offsetof(struct vfio_device_migration_info, pending_bytes));
		if (v1_get(&s) == VFIO_DEVICE_STATE_V1_SAVING && pending == 0)
			break;
		if (v1_get(&s) != VFIO_DEVICE_STATE_V1_SAVING && pending == 0) {
			sv[3 * 4096] ^= 0xff;	/* dirtied during pre-copy */
			CHECK(!v1_state(&s, VFIO_DEVICE_STATE_V1_SAVING), "-> SAVING");
			continue;
		}
		CHECK(v1_rd64(&s, offsetof(struct vfio_device_migration_info, data_offset)) == s.data_off,
		      "data_offset");
		dsz = v1_rd64(&s, offsetof(struct vfio_device_migration_info, data_size));
		CHECK(dsz && dsz <= s.data_size, "data_size %llu with pending %llu",
		      (unsigned long long)dsz, (unsigned long long)pending);
		if (st.cap - st.len < dsz) {
			st.cap = st.cap * 2 + dsz + (4 << 20);
			st.p = realloc(st.p, st.cap);
		}
		memcpy(st.p + st.len, s.data, dsz);
		st.len += dsz;
		rounds++;
	}
	CHECK(!v1_state(&s, VFIO_DEVICE_STATE_V1_STOP), "src -> STOP");
	printf("ok: v1 save: %zu bytes in %llu chunks\n", st.len, (unsigned long long)rounds);

	CHECK(!v1_state(&d, VFIO_DEVICE_STATE_V1_RESUMING), "dst -> RESUMING");
	for (off = 0; off < st.len;) {
		uint64_t n = st.len - off < d.data_size ? st.len - off : d.data_size;

		CHECK(v1_rd64(&d, offsetof(struct vfio_device_migration_info, data_offset)) == d.data_off,
		      "dst data_offset");
		memcpy(d.data, st.p + off, n);
		CHECK(pwrite(dfd, &n, 8, d.off + offsetof(struct vfio_device_migration_info, data_size)) == 8,
		      "dst data_size commit");
		off += n;
	}
	CHECK(!v1_state(&d, VFIO_DEVICE_STATE_V1_RUNNING), "dst RESUMING -> RUNNING refused");
	for (i = 0; i < vs; i++)
		if (dv[i] != sv[i])
			fail("v1: VRAM differs at %llu", (unsigned long long)i);
	CHECK(reg(dfd, VHGPU_REG_SCRATCH0 + 8) == 0xa5a5a5a5, "v1: registers not migrated");
	printf("ok: v1 restore byte-exact, registers restored\n");

	/* a truncated v1 stream: error state, reset recovers */
	CHECK(!v1_state(&d, VFIO_DEVICE_STATE_V1_RESUMING), "dst -> RESUMING 2");
	memcpy(d.data, st.p, 100);
	{
		uint64_t n = 100;

		CHECK(pwrite(dfd, &n, 8, d.off + offsetof(struct vfio_device_migration_info, data_size)) == 8,
		      "commit 100");
	}
	CHECK(v1_state(&d, VFIO_DEVICE_STATE_V1_RUNNING) < 0, "truncated v1 stream accepted");
	CHECK(v1_get(&d) == (VFIO_DEVICE_STATE_V1_SAVING | VFIO_DEVICE_STATE_V1_RESUMING),
	      "v1 error state %#x", v1_get(&d));
	CHECK(!ioctl(dfd, VFIO_DEVICE_RESET) && v1_get(&d) == VFIO_DEVICE_STATE_V1_RUNNING, "reset");
	CHECK(!v1_state(&s, VFIO_DEVICE_STATE_V1_RUNNING), "src -> RUNNING");
	printf("ok: v1 truncated stream -> error state (SAVING|RESUMING), reset recovers\n");
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc == 3 && !strcmp(argv[1], "basic"))
		cmd_basic(argv[2]);
	else if (argc == 5 && !strcmp(argv[1], "migrate"))
		cmd_migrate(argv[2], argv[3], argv[4]);
	else if (argc == 4 && !strcmp(argv[1], "refuse"))
		cmd_refuse(argv[2], argv[3]);
	else if (argc == 4 && !strcmp(argv[1], "v1"))
		cmd_v1(argv[2], argv[3]);
	else {
		fprintf(stderr, "usage: vhgpu-probe basic UUID | migrate SRC DST stopcopy|precopy | refuse SRC DST | v1 SRC DST\n");
		return 2;
	}
	printf("PASS\n");
	return 0;
}
