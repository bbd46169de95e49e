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
for b in $(backends); do
    run_out out vfio-harness --iommu $b dma "$EDU" --size 1M --check --check-bytes 4K --json
    expect_eq "edu DMA with KVM ($b)" "$(echo "$out" | json_obj check | json_bool matched)" true
done
run vfio-harness bar "$MTTY_A" write BAR0 7 0x77 --width 1
run_out out vfio-harness migrate "$MTTY_A" "$MTTY_B" --json
run_out out vfio-harness bar "$MTTY_B" read BAR0 7 --width 1 --json
expect_eq "MTTY_B scratch after migrating with KVM registration" "$(echo "$out" | json_num value)" $((0x77))
exit 0
