// SPDX-License-Identifier: GPL-2.0
/*
 * vhgpu-clauses: the migration uAPI clauses the harness's conformance checks cover, on vhgpu
 * through raw ioctls, independent of the harness. Legacy container/group + type1.
 *
 *   vhgpu-clauses NAME held|broken DEV SRC
 *       the clause of conformance check NAME on DEV (SRC: a second, stock instance of the
 *       same type, the other end of streams). "held": DEV must honour the clause; "broken":
 *       DEV must show exactly the symptom vendor/violate=NAME seeds
 *       (tests/vm/module/vhgpu_violate.c). v1 names need the module with migration_v1=1.
 *
 * Prints "ok: NAME held|broken: <what was seen>"; exits 1 with "FAIL: ..." otherwise.
 */
#include "vhgpu-lib.h"

#define ST_ERROR 0
#define ST_STOP 1
#define ST_RUNNING 2
#define ST_STOP_COPY 3
#define ST_RESUMING 4
#define ST_PRE_COPY 6
#define V1_RUNNING 1
#define V1_SAVING 2
#define V1_RESUMING 4
#define V1_REGION 9
#define PREP_BYTES (256 << 10)	/* VRAM filled before each clause: a stream of 64 pages */

/* ---- migration helpers ---- */
static const char *st_name(uint32_t s)
{
	static const char *const n[] = { "ERROR", "STOP", "RUNNING", "STOP_COPY", "RESUMING",
					 "RUNNING_P2P", "PRE_COPY", "PRE_COPY_P2P" };

	return s < 8 ? n[s] : "?";
}

/* SET: 0 or -errno; *dfd gets the data_fd (-1 without). */
static int mig_set(int fd, uint32_t state, int *dfd)
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
	if (dfd)
		*dfd = ms->data_fd;
	else if (ms->data_fd >= 0)
		close(ms->data_fd);
	return 0;
}

static void must_set(int fd, uint32_t state, int *dfd)
{
	int r = mig_set(fd, state, dfd);

	errno = -r;
	CHECK(!r, "SET %s", st_name(state));
}

static uint32_t mig_get(int fd)
{
	char buf[sizeof(struct vfio_device_feature) + sizeof(struct vfio_device_feature_mig_state)];
	struct vfio_device_feature *f = (void *)buf;
	struct vfio_device_feature_mig_state *ms = (void *)f->data;

	memset(buf, 0, sizeof(buf));
	f->argsz = sizeof(buf);
	f->flags = VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE;
	CHECK(!ioctl(fd, VFIO_DEVICE_FEATURE, f), "GET state");
	return ms->device_state;
}

/* Back to RUNNING, sessions ended (a reset, as the uAPI's recovery). */
static void to_running(int fd)
{
	CHECK(!ioctl(fd, VFIO_DEVICE_RESET), "RESET");
	if (mig_get(fd) != ST_RUNNING)
		must_set(fd, ST_RUNNING, NULL);
}

static int precopy_info(int dfd, struct probe_precopy_info *pi)
{
	memset(pi, 0, sizeof(*pi));
	pi->argsz = sizeof(*pi);
	return ioctl(dfd, PROBE_MIG_GET_PRECOPY_INFO, pi) ? -errno : 0;
}

struct stream {
	uint8_t *p;
	size_t len, cap;
	int end;	/* 0: read() == 0, else the errno that ended it */
};

/* Reads until read() returns 0 or fails; the stream grows. */
static void read_all(int dfd, struct stream *s)
{
	for (;;) {
		ssize_t n;

		if (s->cap - s->len < (64 << 10)) {
			s->cap = s->cap * 2 + (1 << 20);
			s->p = realloc(s->p, s->cap);
			CHECK(s->p, "realloc");
		}
		n = read(dfd, s->p + s->len, 64 << 10);
		if (n <= 0) {
			s->end = n ? errno : 0;
			return;
		}
		s->len += n;
	}
}

/* A stock device's whole STOP_COPY stream; the device ends RUNNING. */
static struct stream save_all(int fd)
{
	struct stream s = { 0 };
	int dfd;

	must_set(fd, ST_STOP_COPY, &dfd);
	CHECK(dfd >= 0, "no data_fd for STOP_COPY");
	read_all(dfd, &s);
	CHECK(!s.end && s.len, "save ended with errno %d after %zu bytes", s.end, s.len);
	close(dfd);
	must_set(fd, ST_RUNNING, NULL);
	return s;
}

/* RESUMING with @len bytes in pieces of @piece; returns the RESUMING -> STOP answer. */
static int resume(int fd, const uint8_t *p, size_t len, size_t piece)
{
	size_t off = 0;
	int dfd, r;

	must_set(fd, ST_STOP, NULL);
	must_set(fd, ST_RESUMING, &dfd);
	while (off < len) {
		ssize_t n = write(dfd, p + off, len - off < piece ? len - off : piece);

		CHECK(n > 0, "write of the stream at %zu", off);
		off += n;
	}
	r = mig_set(fd, ST_STOP, NULL);
	close(dfd);
	return r;
}

/* A byte pattern where every seed gives different bytes (vhgpu-lib.h's pat() barely
 * depends on its seed). */
static uint8_t spat(uint64_t off, uint32_t seed)
{
	uint64_t x = (off + 1) * 0x9e3779b97f4a7c15ULL ^ (seed + 1) * 0xbf58476d1ce4e5b9ULL;

	return (uint8_t)(x >> 32 ^ x >> 56);
}

static void fill_vram(int fd, uint32_t seed)
{
	uint8_t *b = malloc(PREP_BYTES);
	size_t i;

	CHECK(b, "malloc");
	for (i = 0; i < PREP_BYTES; i++)
		b[i] = spat(i, seed);
	CHECK(pwrite(fd, b, PREP_BYTES, OFF(VFIO_PCI_BAR2_REGION_INDEX)) == PREP_BYTES, "VRAM fill");
	free(b);
}

/* Whether the first PREP_BYTES of VRAM hold the pattern of @seed. */
static int vram_is(int fd, uint32_t seed)
{
	uint8_t *b = malloc(PREP_BYTES);
	size_t i;
	int ok = 1;

	CHECK(b, "malloc");
	CHECK(pread(fd, b, PREP_BYTES, OFF(VFIO_PCI_BAR2_REGION_INDEX)) == PREP_BYTES, "VRAM read");
	for (i = 0; i < PREP_BYTES && ok; i++)
		ok = b[i] == spat(i, seed);
	free(b);
	return ok;
}

/* ---- v1 helpers ---- */
static int v1_set(int fd, uint32_t bits)
{
	return pwrite(fd, &bits, 4, OFF(V1_REGION)) == 4 ? 0 : -errno;
}

static uint32_t v1_get(int fd)
{
	return rd32(fd, OFF(V1_REGION));
}

static uint64_t v1_rd64(int fd, uint64_t field)
{
	uint64_t v;

	CHECK(pread(fd, &v, 8, OFF(V1_REGION) + field) == 8, "v1 read @%llu",
	      (unsigned long long)field);
	return v;
}

static uint64_t v1_region_size(int fd)
{
	struct vfio_region_info ri = { .argsz = sizeof(ri), .index = V1_REGION };

	CHECK(!ioctl(fd, VFIO_DEVICE_GET_REGION_INFO, &ri), "v1 region info");
	return ri.size;
}

#define V1_PENDING offsetof(struct vfio_device_migration_info, pending_bytes)
#define V1_DATA_OFFSET offsetof(struct vfio_device_migration_info, data_offset)
#define V1_DATA_SIZE offsetof(struct vfio_device_migration_info, data_size)

/* A stock v1 device's stop-copy stream through the region (pread of the data section). */
static struct stream v1_save(int fd)
{
	struct stream s = { 0 };

	CHECK(!v1_set(fd, V1_SAVING), "v1 SAVING");
	while (v1_rd64(fd, V1_PENDING)) {
		uint64_t off = v1_rd64(fd, V1_DATA_OFFSET), n = v1_rd64(fd, V1_DATA_SIZE);

		if (s.cap - s.len < n) {
			s.cap = s.cap * 2 + n;
			s.p = realloc(s.p, s.cap);
			CHECK(s.p, "realloc");
		}
		CHECK(pread(fd, s.p + s.len, n, OFF(V1_REGION) + off) == (ssize_t)n, "v1 chunk");
		s.len += n;
	}
	CHECK(!v1_set(fd, 0) && !v1_set(fd, V1_RUNNING), "v1 STOP, RUNNING");
	return s;
}


/* Whether the device is RUNNING, through v2 GET or, on a v1-only device, the v1 region. */
static int mig_get_or_v1_running(int fd)
{
	char buf[sizeof(struct vfio_device_feature) + sizeof(struct vfio_device_feature_mig_state)];
	struct vfio_device_feature *f = (void *)buf;
	struct vfio_device_feature_mig_state *ms = (void *)f->data;

	memset(buf, 0, sizeof(buf));
	f->argsz = sizeof(buf);
	f->flags = VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE;
	if (!ioctl(fd, VFIO_DEVICE_FEATURE, f))
		return ms->device_state == ST_RUNNING;
	return v1_get(fd) == V1_RUNNING;
}

/* ---- the clauses ---- */
struct seen {
	int broken;
	char what[256];
};

#define SEEN(b, ...) do { r->broken = (b); snprintf(r->what, sizeof(r->what), __VA_ARGS__); } while (0)

static void c_state_after_arc(int fd, int src, struct seen *r)
{
	uint32_t g;

	(void)src;
	must_set(fd, ST_STOP, NULL);
	g = mig_get(fd);
	SEEN(g == ST_RUNNING, "SET STOP from RUNNING, then GET reads %s", st_name(g));
	must_set(fd, ST_RUNNING, NULL);
}

static void c_new_data_fd(int fd, int src, struct seen *r)
{
	struct stream a = { 0 }, b = { 0 };
	int d1, d2;

	(void)src;
	must_set(fd, ST_STOP_COPY, &d1);
	read_all(d1, &a);
	must_set(fd, ST_STOP, NULL);
	close(d1);
	must_set(fd, ST_STOP_COPY, &d2);
	if (d2 >= 0)
		read_all(d2, &b);
	SEEN(d2 < 0 || b.len != a.len, "1st save: %zu bytes; 2nd save: data_fd %s, %zu bytes",
	     a.len, d2 >= 0 ? "returned" : "missing", b.len);
	if (d2 >= 0)
		close(d2);
	to_running(fd);
}

static void c_stop_copy_eof(int fd, int src, struct seen *r)
{
	struct stream s = { 0 };
	int d;

	(void)src;
	must_set(fd, ST_STOP_COPY, &d);
	read_all(d, &s);
	SEEN(s.end == ENOMSG, "STOP_COPY stream of %zu bytes ends with %s", s.len,
	     s.end ? strerror(s.end) : "read() == 0");
	close(d);
	to_running(fd);
}

static void c_read_size(int fd, int src, struct seen *r)
{
	uint8_t buf[100];
	ssize_t n;
	int d, e;

	(void)src;
	must_set(fd, ST_STOP_COPY, &d);
	n = read(d, buf, sizeof(buf));
	e = errno;
	SEEN(n < 0 && e == EINVAL, "read() of 100 bytes in STOP_COPY: %zd%s%s", n,
	     n < 0 ? ", " : "", n < 0 ? strerror(e) : "");
	close(d);
	to_running(fd);
}

static void c_session_ends(int fd, int src, struct seen *r)
{
	uint8_t buf[4096];
	ssize_t n;
	int d, e;

	(void)src;
	must_set(fd, ST_STOP_COPY, &d);
	CHECK(read(d, buf, sizeof(buf)) == sizeof(buf), "first read");
	must_set(fd, ST_STOP, NULL);
	n = read(d, buf, sizeof(buf));
	e = errno;
	SEEN(n > 0, "read() on the old data_fd after STOP_COPY -> STOP: %zd%s%s", n,
	     n < 0 ? ", " : "", n < 0 ? strerror(e) : " bytes");
	close(d);
	to_running(fd);
}

static void c_precopy_info_state(int fd, int src, struct seen *r)
{
	struct probe_precopy_info pi;
	int d, ret;

	(void)src;
	must_set(fd, ST_STOP_COPY, &d);
	ret = precopy_info(d, &pi);
	SEEN(!ret, "VFIO_MIG_GET_PRECOPY_INFO in STOP_COPY: %s", ret ? strerror(-ret) : "answered");
	close(d);
	to_running(fd);
}

static void c_precopy_initial(int fd, int src, struct seen *r)
{
	struct probe_precopy_info a, b;
	uint8_t buf[64 << 10];
	int d;

	(void)src;
	must_set(fd, ST_PRE_COPY, &d);
	CHECK(!precopy_info(d, &a), "precopy info");
	CHECK(read(d, buf, sizeof(buf)) == sizeof(buf), "pre-copy read");
	CHECK(!precopy_info(d, &b), "precopy info");
	SEEN(b.initial_bytes >= a.initial_bytes,
	     "initial_bytes %llu, after reading %zu bytes %llu", (unsigned long long)a.initial_bytes,
	     sizeof(buf), (unsigned long long)b.initial_bytes);
	close(d);
	to_running(fd);
}

static void c_precopy_info_agrees(int fd, int src, struct seen *r)
{
	struct probe_precopy_info pi;
	uint8_t buf[64 << 10];
	ssize_t n;
	int d;

	(void)src;
	must_set(fd, ST_PRE_COPY, &d);
	CHECK(read(d, buf, sizeof(buf)) == sizeof(buf), "pre-copy read");
	CHECK(!precopy_info(d, &pi), "precopy info");
	n = read(d, buf, sizeof(buf));
	SEEN(!pi.initial_bytes && !pi.dirty_bytes && n > 0,
	     "after one read: info %llu/%llu, the next read() %zd", (unsigned long long)pi.initial_bytes,
	     (unsigned long long)pi.dirty_bytes, n);
	close(d);
	to_running(fd);
}

static void c_precopy_path(int fd, int src, struct seen *r)
{
	struct stream pre = { 0 }, post = { 0 };
	int d, d2 = -1;

	(void)src;
	must_set(fd, ST_PRE_COPY, &d);
	read_all(d, &pre);
	CHECK(pre.end == ENOMSG, "pre-copy did not end with ENOMSG");
	must_set(fd, ST_STOP_COPY, &d2);
	CHECK(d2 < 0, "PRE_COPY -> STOP_COPY returned a new data_fd");
	read_all(d, &post);
	SEEN(!post.len, "pre-copy part %zu bytes, stop-copy part %zu bytes", pre.len, post.len);
	close(d);
	to_running(fd);
}

static void c_write_size(int fd, int src, struct seen *r)
{
	struct stream s = save_all(src);
	ssize_t n;
	int d, e;

	must_set(fd, ST_STOP, NULL);
	must_set(fd, ST_RESUMING, &d);
	n = write(d, s.p, 4096);
	e = errno;
	SEEN(n < 0 && e == EINVAL, "first write() of 4096 of %zu stream bytes: %zd%s%s", s.len, n,
	     n < 0 ? ", " : "", n < 0 ? strerror(e) : "");
	close(d);
	to_running(fd);
	if (!r->broken)
		CHECK(!resume(fd, s.p, s.len, 4096), "resume in 4 KiB writes");
	to_running(fd);
}

static void c_resume_refuses(int fd, int src, struct seen *r)
{
	struct stream s = save_all(src);
	int ret = resume(fd, s.p, s.len - sizeof(struct vhgpu_rec), 1 << 20);

	SEEN(!ret, "RESUMING -> STOP with the END record cut off: %s",
	     ret ? strerror(-ret) : "accepted");
	to_running(fd);
}

static void c_resume_loads(int fd, int src, struct seen *r)
{
	struct stream s = save_all(src);
	int ret = resume(fd, s.p, s.len, 1 << 20), theirs, mine;

	errno = -ret;
	CHECK(!ret, "RESUMING -> STOP of a valid stream");
	theirs = vram_is(fd, 11);
	mine = vram_is(fd, 22);
	SEEN(!theirs && mine, "after RESUMING -> STOP the VRAM holds %s", theirs ? "the source's" :
	     mine ? "its own data still" : "neither");
	to_running(fd);
}

static void c_reset(int fd, int src, struct seen *r)
{
	uint8_t buf[4096];
	uint32_t g;
	ssize_t n;
	int d;

	(void)src;
	must_set(fd, ST_STOP_COPY, &d);
	CHECK(!ioctl(fd, VFIO_DEVICE_RESET), "RESET");
	g = mig_get(fd);
	n = read(d, buf, sizeof(buf));
	SEEN(g == ST_STOP_COPY, "VFIO_DEVICE_RESET in STOP_COPY: GET %s, the data_fd reads %zd",
	     st_name(g), n);
	close(d);
	if (g != ST_RUNNING) {
		must_set(fd, ST_STOP, NULL);
		must_set(fd, ST_RUNNING, NULL);
	}
}

static void c_data_size(int fd, int src, struct seen *r)
{
	char buf[sizeof(struct vfio_device_feature) + sizeof(struct vfio_device_feature_mig_data_size)];
	struct vfio_device_feature *f = (void *)buf;
	struct vfio_device_feature_mig_data_size *ds = (void *)f->data;

	(void)src;
	memset(buf, 0, sizeof(buf));
	f->argsz = sizeof(buf);
	f->flags = VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_MIG_DATA_SIZE;
	CHECK(!ioctl(fd, VFIO_DEVICE_FEATURE, f), "MIG_DATA_SIZE");
	SEEN(!ds->stop_copy_length, "VFIO_DEVICE_FEATURE_MIG_DATA_SIZE: %llu bytes",
	     (unsigned long long)ds->stop_copy_length);
}

static int log_feature(int fd, uint32_t flags, void *payload, size_t len)
{
	char buf[sizeof(struct vfio_device_feature) + 64];
	struct vfio_device_feature *f = (void *)buf;

	memset(buf, 0, sizeof(buf));
	f->argsz = sizeof(*f) + len;
	f->flags = flags;
	memcpy(f->data, payload, len);
	if (ioctl(fd, VFIO_DEVICE_FEATURE, f))
		return -errno;
	memcpy(payload, f->data, len);
	return 0;
}

static void c_dma_logging(int fd, int src, struct seen *r)
{
	uint64_t iova = 0x100000, bits = 0;
	struct vfio_device_feature_dma_logging_range range = { .iova = iova, .length = 64 << 10 };
	struct vfio_device_feature_dma_logging_control ctl = {
		.page_size = 4096, .num_ranges = 1, .ranges = (uintptr_t)&range };
	struct vfio_device_feature_dma_logging_report rep = {
		.iova = iova, .length = 64 << 10, .page_size = 4096, .bitmap = (uintptr_t)&bits };
	struct vfio_iommu_type1_dma_map m = { .argsz = sizeof(m),
		.flags = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE, .iova = iova,
		.size = 64 << 10 };
	struct vfio_iommu_type1_dma_unmap u = { .argsz = sizeof(u), .iova = iova,
		.size = 64 << 10 };
	void *buf = mmap(NULL, 64 << 10, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	int ret;

	(void)src;
	CHECK(buf != MAP_FAILED, "mmap");
	memset(buf, 0, 64 << 10);
	m.vaddr = (uintptr_t)buf;
	CHECK(!ioctl(container, VFIO_IOMMU_MAP_DMA, &m), "MAP_DMA");
	ret = log_feature(fd, VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_DMA_LOGGING_START,
			  &ctl, sizeof(ctl));
	errno = -ret;
	CHECK(!ret && ctl.page_size == 4096, "DMA_LOGGING_START (page size %llu)",
	      (unsigned long long)ctl.page_size);
	set_master(fd);
	setreg(fd, VHGPU_REG_DMA_IOVA_LO, iova + 0x1000);
	setreg(fd, VHGPU_REG_DMA_IOVA_HI, 0);
	setreg(fd, VHGPU_REG_DMA_VRAM_LO, 0);
	setreg(fd, VHGPU_REG_DMA_VRAM_HI, 0);
	setreg(fd, VHGPU_REG_DMA_LEN, 4096);
	setreg(fd, VHGPU_REG_DMA_DIR, VHGPU_DMA_DIR_FROM_VRAM);
	setreg(fd, VHGPU_REG_DMA_CTRL, 1);
	CHECK(reg(fd, VHGPU_REG_DMA_STATUS) == VHGPU_DMA_ST_DONE, "DMA VRAM -> IOVA");
	ret = log_feature(fd, VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT,
			  &rep, sizeof(rep));
	errno = -ret;
	CHECK(!ret, "DMA_LOGGING_REPORT");
	SEEN(!bits, "the device wrote IOVA %#llx+4096; REPORT bitmap %#llx",
	     (unsigned long long)iova + 0x1000, (unsigned long long)bits);
	rep.iova = iova + (64 << 10);
	ret = log_feature(fd, VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT,
			  &rep, sizeof(rep));
	CHECK(ret == -EINVAL, "REPORT outside the logged range: %d", ret);
	ret = log_feature(fd, VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP,
			  NULL, 0);
	CHECK(!ret, "DMA_LOGGING_STOP");
	CHECK(!ioctl(container, VFIO_IOMMU_UNMAP_DMA, &u), "UNMAP_DMA");
}

static void c_v1_state_bits(int fd, int src, struct seen *r)
{
	int ret = v1_set(fd, V1_SAVING | V1_RESUMING);

	(void)src;
	SEEN(!ret, "device_state = SAVING|RESUMING: %s; reads back %#x",
	     ret ? strerror(-ret) : "accepted", v1_get(fd));
	CHECK(!ioctl(fd, VFIO_DEVICE_RESET), "RESET");
}

static void c_v1_pending(int fd, int src, struct seen *r)
{
	uint64_t pending = 0, total = 0;
	int rounds = 0, empty = 0;

	(void)src;
	CHECK(!v1_set(fd, V1_SAVING), "v1 SAVING");
	while (rounds < 100000 && empty < 4) {
		uint64_t n;

		pending = v1_rd64(fd, V1_PENDING);
		if (!pending)
			break;
		(void)v1_rd64(fd, V1_DATA_OFFSET);
		n = v1_rd64(fd, V1_DATA_SIZE);
		total += n;
		empty = n ? 0 : empty + 1;
		rounds++;
	}
	SEEN(pending != 0, "pending_bytes after %llu bytes in %d chunk(s): %llu%s",
	     (unsigned long long)total, rounds, (unsigned long long)pending,
	     pending ? " (empty chunks since)" : "");
	CHECK(!v1_set(fd, 0) && !v1_set(fd, V1_RUNNING), "v1 STOP, RUNNING");
}

static void c_v1_data_window(int fd, int src, struct seen *r)
{
	uint64_t off, size = v1_region_size(fd);

	(void)src;
	CHECK(!v1_set(fd, V1_SAVING), "v1 SAVING");
	off = v1_rd64(fd, V1_DATA_OFFSET);
	SEEN(off >= size, "data_offset %llu in a region of %llu bytes", (unsigned long long)off,
	     (unsigned long long)size);
	CHECK(!ioctl(fd, VFIO_DEVICE_RESET), "RESET");
}

static void c_v1_resume_loads(int fd, int src, struct seen *r)
{
	struct stream s = v1_save(src);
	uint64_t section = v1_region_size(fd) - 4096;
	size_t done = 0;
	int theirs, mine;

	CHECK(!v1_set(fd, 0) && !v1_set(fd, V1_RESUMING), "v1 RESUMING");
	while (done < s.len) {
		uint64_t off = v1_rd64(fd, V1_DATA_OFFSET), n = s.len - done;

		if (n > section)
			n = section;
		CHECK(pwrite(fd, s.p + done, n, OFF(V1_REGION) + off) == (ssize_t)n, "v1 chunk");
		CHECK(pwrite(fd, &n, 8, OFF(V1_REGION) + V1_DATA_SIZE) == 8, "v1 data_size");
		done += n;
	}
	CHECK(!v1_set(fd, V1_RUNNING), "v1 RESUMING -> RUNNING");
	theirs = vram_is(fd, 11);
	mine = vram_is(fd, 22);
	SEEN(!theirs && mine, "after the v1 resume the VRAM holds %s", theirs ? "the source's" :
	     mine ? "its own data still" : "neither");
}

static const struct clause {
	const char *name;
	void (*check)(int fd, int src, struct seen *r);
} clauses[] = {
	{ "state-after-arc", c_state_after_arc },
	{ "new-data-fd", c_new_data_fd },
	{ "stop-copy-eof", c_stop_copy_eof },
	{ "read-size", c_read_size },
	{ "session-ends", c_session_ends },
	{ "precopy-info-state", c_precopy_info_state },
	{ "precopy-initial", c_precopy_initial },
	{ "precopy-info-agrees", c_precopy_info_agrees },
	{ "precopy-path", c_precopy_path },
	{ "write-size", c_write_size },
	{ "resume-refuses", c_resume_refuses },
	{ "resume-loads", c_resume_loads },
	{ "reset", c_reset },
	{ "data-size", c_data_size },
	{ "dma-logging", c_dma_logging },
	{ "v1-state-bits", c_v1_state_bits },
	{ "v1-pending", c_v1_pending },
	{ "v1-data-window", c_v1_data_window },
	{ "v1-resume-loads", c_v1_resume_loads },
};

static void cmd_clause(const char *name, const char *want, const char *dev, const char *src)
{
	int fd = open_dev(dev), sfd = open_dev(src), broken = !strcmp(want, "broken");
	struct seen r = { 0 };
	size_t i;

	CHECK(broken || !strcmp(want, "held"), "want held or broken, not %s", want);
	for (i = 0; i < sizeof(clauses) / sizeof(clauses[0]); i++)
		if (!strcmp(clauses[i].name, name))
			break;
	CHECK(i < sizeof(clauses) / sizeof(clauses[0]), "no clause %s", name);
	fill_vram(fd, 22);
	fill_vram(sfd, 11);
	clauses[i].check(fd, sfd, &r);
	errno = 0;
	CHECK(r.broken == broken, "%s: %s, want the clause %s", name, r.what, want);
	printf("ok: %s %s: %s\n", name, want, r.what);
	CHECK(mig_get_or_v1_running(fd), "%s: the device did not end RUNNING", name);
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc != 5) {
		fprintf(stderr, "usage: vhgpu-clauses NAME held|broken DEV SRC\n");
		return 2;
	}
	cmd_clause(argv[1], argv[2], argv[3], argv[4]);
	printf("PASS\n");
	return 0;
}
