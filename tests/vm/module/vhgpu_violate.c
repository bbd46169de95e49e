// SPDX-License-Identifier: GPL-2.0
/*
 * vhgpu: seeded contract violations and fault injection, per instance.
 *
 * vendor/violate (written while the device is not open, -EBUSY otherwise;
 * a name below, or "none" / empty) makes the instance break exactly one
 * clause of the migration uAPI (include/uapi/linux/vfio.h, 6.12), so that the
 * harness's conformance check of the same name can be shown to catch it. The
 * device otherwise behaves. Where each one acts (grep VHGPU_V_):
 *
 * v2 (VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE and the data_fd)
 *  state-after-arc      after a SET to STOP from RUNNING, GET reports RUNNING
 *                       (the device is in STOP) until the next SET
 *  new-data-fd          from the 2nd saving session on, entering PRE_COPY /
 *                       PRE_COPY_P2P / STOP_COPY from a non-saving state
 *                       returns the previous session's file again, re-armed
 *                       but not restarted: its stream goes on where the old
 *                       session stopped (usually at its end: read() == 0)
 *  stop-copy-eof        read() at the end of STOP_COPY data fails with ENOMSG
 *                       instead of returning 0
 *  read-size            read() on the saving fd with fewer than 4096 bytes
 *                       fails with EINVAL
 *  session-ends         leaving the saving states does not disable the old
 *                       file: it keeps returning the rest of its stream
 *  precopy-info-state   VFIO_MIG_GET_PRECOPY_INFO is answered in STOP_COPY
 *                       (instead of EINVAL)
 *  precopy-initial      initial_bytes stays at its first reported value
 *  precopy-info-agrees  once read() returned data on the session,
 *                       VFIO_MIG_GET_PRECOPY_INFO reports 0/0 although read()
 *                       still returns data (only seen when the stream holds
 *                       more than one read())
 *  precopy-path         on PRE_COPY_P2P -> STOP_COPY the stream ends at once:
 *                       no dirty pages, no STATE, no END record (a destination
 *                       refuses it as truncated)
 *  write-size           a write() on the resuming fd that does not complete
 *                       the stream (through its END record) fails with
 *                       EINVAL: only the whole stream in one write() works
 *  resume-refuses       RESUMING -> STOP accepts a stream without its END
 *                       record (truncated); bad headers/records still fail
 *  resume-loads         a valid stream is parsed and checked but nothing is
 *                       loaded: VRAM, registers and config stay as they were
 *  reset                VFIO_DEVICE_RESET resets registers but leaves the
 *                       migration state and its open sessions as they are
 *  data-size            VFIO_DEVICE_FEATURE_MIG_DATA_SIZE reports 0
 *  dma-logging          DMA_LOGGING_REPORT succeeds (ranges still checked)
 *                       but sets no bit
 * v1 (the migration region; with migration_v1=1)
 *  v1-state-bits        writing SAVING|RESUMING to device_state succeeds and
 *                       changes nothing (instead of EINVAL)
 *  v1-pending           pending_bytes reads at least 1 while saving, so the
 *                       stream never ends (data_size stays 0 after the end)
 *  v1-data-window       data_offset reads the region size (past its end)
 *  v1-resume-loads      data_size commits are parsed and checked but nothing
 *                       is loaded (like resume-loads, through the v1 region)
 *
 * vendor/fail_next_transition (0/1, writable any time): the next migration
 * arc the device walks (v2 SET or v1 device_state write) fails with EIO and
 * leaves the device in VFIO_DEVICE_STATE_ERROR (v1: device_state reads
 * SAVING|RESUMING); one-shot. VFIO_DEVICE_RESET returns it to RUNNING.
 */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include "vhgpu_priv.h"

static const char *const vhgpu_violation_names[VHGPU_V_COUNT] = {
	[VHGPU_V_NONE] = "none",
	[VHGPU_V_STATE_AFTER_ARC] = "state-after-arc",
	[VHGPU_V_NEW_DATA_FD] = "new-data-fd",
	[VHGPU_V_STOP_COPY_EOF] = "stop-copy-eof",
	[VHGPU_V_READ_SIZE] = "read-size",
	[VHGPU_V_SESSION_ENDS] = "session-ends",
	[VHGPU_V_PRECOPY_INFO_STATE] = "precopy-info-state",
	[VHGPU_V_PRECOPY_INITIAL] = "precopy-initial",
	[VHGPU_V_PRECOPY_INFO_AGREES] = "precopy-info-agrees",
	[VHGPU_V_PRECOPY_PATH] = "precopy-path",
	[VHGPU_V_WRITE_SIZE] = "write-size",
	[VHGPU_V_RESUME_REFUSES] = "resume-refuses",
	[VHGPU_V_RESUME_LOADS] = "resume-loads",
	[VHGPU_V_RESET] = "reset",
	[VHGPU_V_DATA_SIZE] = "data-size",
	[VHGPU_V_DMA_LOGGING] = "dma-logging",
	[VHGPU_V_V1_STATE_BITS] = "v1-state-bits",
	[VHGPU_V_V1_PENDING] = "v1-pending",
	[VHGPU_V_V1_DATA_WINDOW] = "v1-data-window",
	[VHGPU_V_V1_RESUME_LOADS] = "v1-resume-loads",
};

static ssize_t violate_show(struct device *d, struct device_attribute *attr, char *buf)
{
	struct vhgpu_dev *dev = vhgpu_from_device(d);

	if (!dev)
		return -ENODEV;
	return sysfs_emit(buf, "%s\n", vhgpu_violation_names[READ_ONCE(dev->violate)]);
}

static ssize_t violate_store(struct device *d, struct device_attribute *attr, const char *buf,
			     size_t count)
{
	struct vhgpu_dev *dev = vhgpu_from_device(d);
	int v = -1, i, ret = 0;

	if (!dev)
		return -ENODEV;
	if (sysfs_streq(buf, ""))
		v = VHGPU_V_NONE;
	for (i = 0; v < 0 && i < VHGPU_V_COUNT; i++)
		if (sysfs_streq(buf, vhgpu_violation_names[i]))
			v = i;
	if (v < 0)
		return -EINVAL;
	mutex_lock(&dev->lock);
	if (dev->open)
		ret = -EBUSY;	/* chosen between create (or close) and open */
	else
		WRITE_ONCE(dev->violate, v);
	mutex_unlock(&dev->lock);
	if (!ret && v != VHGPU_V_NONE)
		dev_info(d, "seeded contract violation: %s\n", vhgpu_violation_names[v]);
	return ret ? ret : count;
}

struct device_attribute dev_attr_violate = __ATTR_RW(violate);

static ssize_t fail_next_transition_show(struct device *d, struct device_attribute *attr,
					 char *buf)
{
	struct vhgpu_dev *dev = vhgpu_from_device(d);

	return dev ? sysfs_emit(buf, "%d\n", READ_ONCE(dev->fail_next)) : -ENODEV;
}

static ssize_t fail_next_transition_store(struct device *d, struct device_attribute *attr,
					  const char *buf, size_t count)
{
	struct vhgpu_dev *dev = vhgpu_from_device(d);
	bool val;
	int ret;

	if (!dev)
		return -ENODEV;
	ret = kstrtobool(buf, &val);
	if (ret)
		return ret;
	mutex_lock(&dev->state_mutex);
	dev->fail_next = val;
	mutex_unlock(&dev->state_mutex);
	return count;
}

struct device_attribute dev_attr_fail_next_transition = __ATTR_RW(fail_next_transition);
