/*
 * kvm-vfio-probe: an independent reference for the harness's KVM-VFIO registration. Creates
 * a VM (no vCPUs) and its KVM-VFIO pseudo device with raw KVM ioctls, then registers a VFIO
 * file (a group, or a device cdev) with it and prints what the kernel answered, one step a
 * line (`<step> ok` or `<step> <ERRNO-NAME>`):
 *
 *   create-device   KVM_CREATE_DEVICE(KVM_DEV_TYPE_VFIO)
 *   add             KVM_DEV_VFIO_FILE_ADD of the VFIO file
 *   add-again       the same file again: EEXIST (the pseudo device keeps a list of files)
 *   add-not-vfio    /dev/null: EINVAL (only VFIO files are accepted)
 *   del             KVM_DEV_VFIO_FILE_DEL of the VFIO file
 *   del-again       again: ENOENT (it is off the list)
 *
 * Usage: kvm-vfio-probe /dev/vfio/GROUP | /dev/vfio/devices/vfioN
 * Exit status 0 when every step answered as expected, 1 otherwise.
 *
 *        kvm-vfio-probe hold
 * creates a VM and keeps it until killed. The guest's init runs one for the whole bed: the
 * first VM enables the kernel's preempt-notifier static key (text patching through int3 on
 * every CPU), the last one disables it again, and under TCG a CPU can still hit the int3
 * after the patch completed (observed: "Oops: int3" in __schedule on the debian kernel,
 * with every harness command creating and destroying a VM). With one VM held, the key is
 * flipped once at boot and never again.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>
#include <linux/kvm.h>

/* 6.5 renamed the GROUP attributes to FILE (same numbers) when cdevs became accepted. */
#ifndef KVM_DEV_VFIO_FILE
#define KVM_DEV_VFIO_FILE KVM_DEV_VFIO_GROUP
#define KVM_DEV_VFIO_FILE_ADD KVM_DEV_VFIO_GROUP_ADD
#define KVM_DEV_VFIO_FILE_DEL KVM_DEV_VFIO_GROUP_DEL
#endif

static const char *errname(int e)
{
	switch (e) {
	case 0: return "ok";
	case EEXIST: return "EEXIST";
	case EINVAL: return "EINVAL";
	case ENOENT: return "ENOENT";
	case EBADF: return "EBADF";
	case EBUSY: return "EBUSY";
	case ENXIO: return "ENXIO";
	case ENODEV: return "ENODEV";
	case ENOTTY: return "ENOTTY";
	case EPERM: return "EPERM";
	default: return strerror(e);
	}
}

static int failed;

static void step(const char *name, int rc, int want)
{
	int e = rc < 0 ? errno : 0;
	printf("%s %s\n", name, errname(e));
	if (e != want)
		failed = 1;
}

static int file_attr(int dev, uint64_t op, int fd)
{
	int32_t f = fd;
	struct kvm_device_attr a = {
		.group = KVM_DEV_VFIO_FILE,
		.attr = op,
		.addr = (uint64_t)(uintptr_t)&f,
	};
	return ioctl(dev, KVM_SET_DEVICE_ATTR, &a);
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: kvm-vfio-probe /dev/vfio/GROUP | /dev/vfio/devices/vfioN | hold\n");
		return 2;
	}
	int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm < 0) {
		printf("open-kvm %s\n", errname(errno));
		return 1;
	}
	int vm = ioctl(kvm, KVM_CREATE_VM, 0);
	if (vm < 0) {
		printf("create-vm %s\n", errname(errno));
		return 1;
	}
	if (!strcmp(argv[1], "hold")) {
		printf("holding a VM\n");
		fflush(stdout);
		for (;;)
			pause();
	}
	struct kvm_create_device cd = { .type = KVM_DEV_TYPE_VFIO };
	step("create-device", ioctl(vm, KVM_CREATE_DEVICE, &cd), 0);
	if (failed)
		return 1;
	int vf = open(argv[1], O_RDWR | O_CLOEXEC);
	if (vf < 0) {
		printf("open %s\n", errname(errno));
		return 1;
	}
	int null = open("/dev/null", O_RDWR | O_CLOEXEC);
	step("add", file_attr(cd.fd, KVM_DEV_VFIO_FILE_ADD, vf), 0);
	step("add-again", file_attr(cd.fd, KVM_DEV_VFIO_FILE_ADD, vf), EEXIST);
	step("add-not-vfio", file_attr(cd.fd, KVM_DEV_VFIO_FILE_ADD, null), EINVAL);
	step("del", file_attr(cd.fd, KVM_DEV_VFIO_FILE_DEL, vf), 0);
	step("del-again", file_attr(cd.fd, KVM_DEV_VFIO_FILE_DEL, vf), ENOENT);
	return failed;
}
