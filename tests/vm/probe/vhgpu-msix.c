// SPDX-License-Identifier: GPL-2.0
/*
 * vhgpu-msix: raw-ioctl check of vhgpu's MSI-X (tests/vm/module/vhgpu_msix.c), independent
 * of the harness. Legacy container/group + type1.
 *
 *   vhgpu-msix UUID    capability, 4 vectors on eventfds, per-vector mask/unmask with
 *                      pending (register and PBA values), loopback and bool triggers,
 *                      the device's own interrupt cause on vector 0, mode exclusivity
 *
 * Prints "ok: ..." lines; exits 1 with "FAIL: ..." on the first failure.
 */
#include "vhgpu-lib.h"

/* ---- MSI-X ---- */
static int irq_fds(int fd, unsigned int index, unsigned int start, unsigned int count,
		   const int *efds)
{
	char buf[sizeof(struct vfio_irq_set) + 8 * sizeof(int)];
	struct vfio_irq_set *s = (void *)buf;

	s->argsz = sizeof(*s) + count * sizeof(int);
	s->flags = VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER;
	s->index = index;
	s->start = start;
	s->count = count;
	memcpy(s->data, efds, count * sizeof(int));
	return ioctl(fd, VFIO_DEVICE_SET_IRQS, s);
}

static int irq_action(int fd, unsigned int index, unsigned int start, unsigned int count,
		      uint32_t action)
{
	struct vfio_irq_set s = { .argsz = sizeof(s), .index = index, .start = start,
				  .count = count, .flags = VFIO_IRQ_SET_DATA_NONE | action };

	return ioctl(fd, VFIO_DEVICE_SET_IRQS, &s);
}

static void cmd_msix(const char *uuid)
{
	int fd = open_dev(uuid), efd[VHGPU_MSIX_VECTORS], none = -1, v, w;
	struct vfio_irq_info ii = { .argsz = sizeof(ii), .index = VFIO_PCI_MSIX_IRQ_INDEX };
	char bbuf[sizeof(struct vfio_irq_set) + VHGPU_MSIX_VECTORS];
	struct vfio_irq_set *bs = (void *)bbuf;
	uint32_t sent0, cap, ctl;
	uint8_t pos;

	CHECK(!ioctl(fd, VFIO_DEVICE_GET_IRQ_INFO, &ii), "MSI-X IRQ info");
	CHECK(ii.count == VHGPU_MSIX_VECTORS && ii.flags == (VFIO_IRQ_INFO_EVENTFD |
	      VFIO_IRQ_INFO_MASKABLE | VFIO_IRQ_INFO_NORESIZE), "MSI-X info count %u flags %#x",
	      ii.count, ii.flags);
	/* the capability list reaches MSI-X after MSI */
	CHECK(pread(fd, &pos, 1, OFF(VFIO_PCI_CONFIG_REGION_INDEX) + PCI_CAPABILITY_LIST) == 1, "cap");
	while (pos) {
		cap = rd32(fd, OFF(VFIO_PCI_CONFIG_REGION_INDEX) + pos);
		if ((cap & 0xff) == PCI_CAP_ID_MSIX)
			break;
		pos = (cap >> 8) & 0xff;
	}
	CHECK(pos, "no MSI-X capability");
	ctl = cap >> 16;
	CHECK((ctl & PCI_MSIX_FLAGS_QSIZE) + 1 == VHGPU_MSIX_VECTORS, "table size %#x", ctl);
	CHECK(rd32(fd, OFF(VFIO_PCI_CONFIG_REGION_INDEX) + pos + PCI_MSIX_TABLE) == VHGPU_MSIX_TABLE &&
	      rd32(fd, OFF(VFIO_PCI_CONFIG_REGION_INDEX) + pos + PCI_MSIX_PBA) == VHGPU_MSIX_PBA,
	      "table/PBA location");
	CHECK(reg(fd, VHGPU_MSIX_TABLE + 12) == PCI_MSIX_ENTRY_CTRL_MASKBIT, "table entry 0 control");
	printf("ok: MSI-X: IRQ info count %u flags %#x, capability at %#x (table size %u, table BAR0+%#x, PBA BAR0+%#x)\n",
	       ii.count, ii.flags, pos, (ctl & PCI_MSIX_FLAGS_QSIZE) + 1, VHGPU_MSIX_TABLE,
	       VHGPU_MSIX_PBA);

	for (v = 0; v < VHGPU_MSIX_VECTORS; v++) {
		efd[v] = eventfd(0, EFD_NONBLOCK);
		CHECK(efd[v] >= 0, "eventfd");
	}
	CHECK(!irq_fds(fd, VFIO_PCI_MSIX_IRQ_INDEX, 0, VHGPU_MSIX_VECTORS, efd), "MSI-X eventfds");
	CHECK(set_irq(fd, VFIO_PCI_MSI_IRQ_INDEX, efd[0]) && errno == EBUSY,
	      "MSI accepted while MSI-X is on");
	sent0 = reg(fd, VHGPU_REG_MSIX_SENT);
	for (v = 0; v < VHGPU_MSIX_VECTORS; v++) {
		setreg(fd, VHGPU_REG_MSIX_RAISE, v);
		for (w = 0; w < VHGPU_MSIX_VECTORS; w++) {
			uint64_t got = ev_take(efd[w]);

			CHECK(got == (v == w), "raise %d: eventfd %d got %llu", v, w,
			      (unsigned long long)got);
		}
	}
	printf("ok: MSI-X: BAR0 raise of vectors 0..%d each reached its own eventfd only\n",
	       VHGPU_MSIX_VECTORS - 1);

	CHECK(!irq_action(fd, VFIO_PCI_MSIX_IRQ_INDEX, 2, 1, VFIO_IRQ_SET_ACTION_MASK), "mask 2");
	setreg(fd, VHGPU_REG_MSIX_RAISE, 2);
	setreg(fd, VHGPU_REG_MSIX_RAISE, 2);
	CHECK(ev_take(efd[2]) == 0, "masked vector 2 delivered");
	CHECK(reg(fd, VHGPU_REG_MSIX_PENDING) == 0x4 && reg(fd, VHGPU_MSIX_PBA) == 0x4,
	      "pending %#x PBA %#x, want 0x4", reg(fd, VHGPU_REG_MSIX_PENDING),
	      reg(fd, VHGPU_MSIX_PBA));
	setreg(fd, VHGPU_REG_MSIX_RAISE, 1);
	CHECK(ev_take(efd[1]) == 1, "vector 1 held back by the mask of vector 2");
	CHECK(!irq_action(fd, VFIO_PCI_MSIX_IRQ_INDEX, 2, 1, VFIO_IRQ_SET_ACTION_UNMASK), "unmask 2");
	CHECK(ev_take(efd[2]) == 1, "vector 2 not delivered once on unmask");
	CHECK(reg(fd, VHGPU_REG_MSIX_PENDING) == 0, "pending after unmask");
	printf("ok: MSI-X: vector 2 masked: 2 raises held (pending 0x4, PBA 0x4), vector 1 unaffected, one message on unmask\n");

	CHECK(!irq_action(fd, VFIO_PCI_MSIX_IRQ_INDEX, 3, 1, VFIO_IRQ_SET_ACTION_TRIGGER), "loopback 3");
	CHECK(ev_take(efd[3]) == 1, "loopback trigger of vector 3");
	bs->argsz = sizeof(bbuf);
	bs->flags = VFIO_IRQ_SET_DATA_BOOL | VFIO_IRQ_SET_ACTION_TRIGGER;
	bs->index = VFIO_PCI_MSIX_IRQ_INDEX;
	bs->start = 0;
	bs->count = VHGPU_MSIX_VECTORS;
	bs->data[0] = 1; bs->data[1] = 0; bs->data[2] = 1; bs->data[3] = 0;
	CHECK(!ioctl(fd, VFIO_DEVICE_SET_IRQS, bs), "bool trigger");
	CHECK(ev_take(efd[0]) == 1 && ev_take(efd[1]) == 0 && ev_take(efd[2]) == 1 &&
	      ev_take(efd[3]) == 0, "bool trigger 1,0,1,0");
	setreg(fd, VHGPU_REG_IRQ_STATUS, VHGPU_IRQ_ALL);
	setreg(fd, VHGPU_REG_IRQ_ENABLE, VHGPU_IRQ_DOORBELL);
	setreg(fd, VHGPU_REG_DOORBELL, 7);
	CHECK(ev_take(efd[0]) == 1, "doorbell did not reach vector 0");
	setreg(fd, VHGPU_REG_IRQ_STATUS, VHGPU_IRQ_ALL);
	/* 4 raises, vector 1 and the held vector 2, loopback 3, bool 0 and 2, the doorbell */
	CHECK(reg(fd, VHGPU_REG_MSIX_SENT) - sent0 == 10, "messages sent %u, want 10",
	      reg(fd, VHGPU_REG_MSIX_SENT) - sent0);
	printf("ok: MSI-X: loopback and bool triggers, doorbell cause on vector 0; sent counter +10\n");

	CHECK(!irq_fds(fd, VFIO_PCI_MSIX_IRQ_INDEX, 1, 1, &none), "disconnect vector 1");
	setreg(fd, VHGPU_REG_MSIX_RAISE, 1);
	CHECK(ev_take(efd[1]) == 0, "disconnected vector 1 delivered");
	CHECK(irq_action(fd, VFIO_PCI_MSIX_IRQ_INDEX, 0, VHGPU_MSIX_VECTORS + 1,
			 VFIO_IRQ_SET_ACTION_MASK) && errno == EINVAL, "mask of vector 4 accepted");
	irq_off(fd, VFIO_PCI_MSIX_IRQ_INDEX);
	CHECK(!set_irq(fd, VFIO_PCI_MSI_IRQ_INDEX, efd[0]), "MSI after MSI-X off");
	irq_off(fd, VFIO_PCI_MSI_IRQ_INDEX);
	printf("ok: MSI-X: a disconnected vector stays silent, vector 4 refused (EINVAL), MSI usable once MSI-X is off\n");
}


int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc != 2) {
		fprintf(stderr, "usage: vhgpu-msix UUID\n");
		return 2;
	}
	cmd_msix(argv[1]);
	printf("PASS\n");
	return 0;
}
