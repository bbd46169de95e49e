# `--iommu auto` when iommufd is there but refuses to open: the harness opens the device
# through the legacy container instead and says why (info: kernel.iommu_fallback), while
# `--iommu iommufd` fails with the kernel's error. Two failures, made with bind mounts of
# /dev/null (undone on exit):
# - over /dev/iommu: the iommufd opens, but the kernel refuses the IOAS allocation ioctl
#   (ENOTTY);
# - over the device's cdev /dev/vfio/devices/vfioN: the kernel refuses
#   VFIO_DEVICE_BIND_IOMMUFD (ENOTTY). (--no-kvm: otherwise the KVM-VFIO device refuses the
#   cdev first, with EINVAL.)
# With both undone, auto opens through iommufd again with no fallback. Needs iommufd and
# cdevs (auto never tries iommufd without them: the debian flavour).
. /etc/vfioh/lib.sh
need MTTY_A
[ "$HAVE_IOMMUFD" = 1 ] || skip "no iommufd in this kernel: auto picks legacy without trying"
[ -d /sys/bus/mdev/devices/$MTTY_A/vfio-dev ] || skip "no VFIO cdevs: auto picks legacy without trying"
cdev=/dev/vfio/devices/$(ls /sys/bus/mdev/devices/$MTTY_A/vfio-dev)
undo() { umount /dev/iommu 2>/dev/null; umount "$cdev" 2>/dev/null; }
trap undo EXIT
fallback_of() { echo "$1" | grep -o '"iommu_fallback": .*'; }

run_out out vfio-harness --iommu auto info "$MTTY_A" --json
expect_eq "auto, iommufd working: backend" "$(echo "$out" | json_str backend)" iommufd
echo "$out" | grep -q '"iommu_fallback": null' || fail "a fallback reported while iommufd works"

for target in /dev/iommu "$cdev"; do
    case $target in
    /dev/iommu) step="allocate an IOAS"; kvm= ;;
    *) step="open the device"; kvm=--no-kvm ;;
    esac
    run mount -o bind /dev/null "$target"
    run_out out vfio-harness --iommu auto $kvm info "$MTTY_A" --json
    expect_eq "auto, $target broken: backend" "$(echo "$out" | json_str backend)" legacy
    f=$(fallback_of "$out")
    echo "$f"
    echo "$f" | grep -q "iommufd failed (.*cannot $step.*Inappropriate ioctl for device (os error 25).*); opened through the legacy container" \
        || fail "auto with $target broken: the fallback does not give iommufd's error ($step, ENOTTY)"
    expect_err "explicit iommufd, $target broken" "cannot $step.*Inappropriate ioctl for device \(os error 25\)" \
        vfio-harness --iommu iommufd $kvm info "$MTTY_A"
    # The fallback is a real legacy open: the device works.
    run_out out vfio-harness --iommu auto $kvm bar "$MTTY_A" write BAR0 7 0x42 --width 1 --readback --json
    run umount "$target"
done
run_out out vfio-harness --iommu auto info "$MTTY_A" --json
expect_eq "auto, iommufd restored: backend" "$(echo "$out" | json_str backend)" iommufd
echo "$out" | grep -q '"iommu_fallback": null' || fail "a fallback reported after restoring iommufd"
exit 0
