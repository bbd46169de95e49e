# KVM-VFIO with a real VM. QEMU's TCG `-cpu max` is an AMD CPU with SVM and NPT, so the
# guest's kvm_amd loads and /dev/kvm exists next to VFIO (no vCPU ever runs). The raw probe
# registers a group (legacy) and a device cdev (iommufd) with a KVM-VFIO pseudo device and
# the kernel answers for its list of files: added, a second add EEXIST, a non-VFIO file
# EINVAL, deleted, a second delete ENOENT. The harness registers every device it opens the
# same way (vfio-ioctls: KVM_DEV_VFIO_FILE_ADD of the group, or of the cdev before binding
# it): info reports it, for mtty and edu, through every back end; --no-kvm opens without it;
# edu's DMA and mtty's migration work with the devices registered. (A VM held by init
# for the whole run keeps the kernel's preempt-notifier static key from being patched at
# every command: see tests/vm/probe/kvm-vfio-probe.c.)
# The harness's own registration is not visible from userspace (info's kvm.registered is the
# harness's word), so a vhgpu instance with the module's require_kvm=1 checks it: vhgpu then
# refuses to open (EPERM) unless the VFIO core hands it the KVM of a registered group or
# cdev, as vGPU drivers that need the KVM do. It opens through every back end; with
# --no-kvm it is refused.
. /etc/vfioh/lib.sh
need MTTY_A MTTY_B EDU
[ "$HAVE_KVM" = 1 ] || skip "no /dev/kvm in this guest (kvm_amd did not load)"
grep -q "holding a VM" /run/kvm-hold.log || fail "init's VM holder is not running: $(cat /run/kvm-hold.log)"
dmesg | grep -i -E "kvm|svm" | head -n 5
for pair in "$MTTY_A mdev" "$EDU pci"; do
    set -- $pair
    node=/sys/bus/$2/devices/$1
    g=$(basename "$(readlink $node/iommu_group)")
    files=/dev/vfio/$g
    c=/dev/vfio/devices/$(ls $node/vfio-dev)
    [ -c "$c" ] && files="$files $c"
    for f in $files; do
        run_out raw kvm-vfio-probe "$f"
        expect_eq "KVM-VFIO answers for $f" "$(echo "$raw" | tr '\n' ' ')" \
            "create-device ok add ok add-again EEXIST add-not-vfio EINVAL del ok del-again ENOENT "
    done
    for b in $(backends); do
        run_out out vfio-harness --iommu $b info "$1" --json
        k=$(echo "$out" | json_obj kvm)
        expect_eq "$1 via $b: kvm.registered" "$(echo "$k" | json_bool registered)" true
        echo "$k" | grep -q '"note":"registeredwithaKVM-VFIOdevice"' || fail "$1 via $b: note: $k"
        run_out out vfio-harness --iommu $b --no-kvm info "$1" --json
        expect_eq "$1 via $b --no-kvm: kvm.registered" "$(echo "$out" | json_obj kvm | json_bool registered)" false
    done
done
P=/sys/class/mdev_bus/vhgpu/mdev_supported_types
RK=/sys/module/vhgpu/parameters/require_kvm
[ -d "$P" ] || fail "vhgpu module not loaded"
[ -e "$RK" ] || fail "vhgpu has no require_kvm parameter"
V=6f1e0c3a-7a1d-4c55-9d2e-00000000f701
trap 'echo N >$RK; [ -e /sys/bus/mdev/devices/$V ] && echo 1 >/sys/bus/mdev/devices/$V/remove' EXIT
run sh -c "echo $V >$P/vhgpu-64M/create"
run sh -c "echo Y >$RK"
for b in $(backends); do
    run_out out vfio-harness --iommu $b info "$V" --json
    expect_eq "vhgpu (require_kvm) via $b: opened, kvm.registered" "$(echo "$out" | json_obj kvm | json_bool registered)" true
    expect_err "vhgpu (require_kvm) via $b --no-kvm" "Operation not permitted \(os error 1\)" \
        vfio-harness --iommu $b --no-kvm info "$V"
done
run sh -c "echo N >$RK"
run vfio-harness --no-kvm info "$V"
for b in $(backends); do
    run_out out vfio-harness --iommu $b dma "$EDU" --size 1M --check --check-bytes 4K --json
    expect_eq "edu DMA with KVM ($b)" "$(echo "$out" | json_obj check | json_bool matched)" true
done
run vfio-harness bar "$MTTY_A" write BAR0 7 0x77 --width 1
run_out out vfio-harness migrate "$MTTY_A" "$MTTY_B" --json
run_out out vfio-harness bar "$MTTY_B" read BAR0 7 --width 1 --json
expect_eq "MTTY_B scratch after migrating with KVM registration" "$(echo "$out" | json_num value)" $((0x77))
exit 0
