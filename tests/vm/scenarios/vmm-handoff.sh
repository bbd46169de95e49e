# The library as a VMM embeds it (examples/vmm_handoff, packed as /bin/vmm_handoff): a
# step-by-step handoff with the session API (pre-copy, vCPUs paused, stop-copy, source left
# STOP, destination RUNNING), on mtty (a marker in the scratch register, BAR0+7) and on
# vhgpu (a 4 KiB marker at the start of BAR2, its VRAM), each read back from the destination.
# The VMM hands the library its own VM (the KVM-VFIO device of its VmFd, in
# OpenOptions::kvm_device: the devices are registered with that VM) and its guest memory
# (two 32 MiB regions at 0 and 4 GiB, mapped for the devices' DMA at IOVA = guest address).
. /etc/vfioh/lib.sh
need MTTY_A MTTY_B
command -v vmm_handoff >/dev/null || fail "vmm_handoff is not in the initramfs"
state_of() { vfio-harness state "$1" --json | json_str initial; }
# vmm_owned TAG OUTPUT: the VMM's VM and guest memory were taken by the library.
vmm_owned() {
    if [ "$HAVE_KVM" = 1 ]; then
        echo "$2" | grep -q "KVM VM: yes" || fail "$1: the VMM had no VM"
        echo "$2" | grep -qF "KVM: registered with the caller's KVM-VFIO device" \
            || fail "$1: the devices were not registered with the VMM's VM"
        echo "ok: $1: registered with the VMM's VM"
    fi
    echo "$2" | grep -qF "DMA: guest memory mapped: guest 0x0 -> IOVA 0x0 len 0x2000000, guest 0x100000000 -> IOVA 0x100000000 len 0x2000000" \
        || fail "$1: the guest memory was not mapped at IOVA = guest address"
    echo "ok: $1: guest memory mapped at IOVA 0x0 and 0x100000000, 32 MiB each"
}

run_out out vmm_handoff "$MTTY_A" "$MTTY_B"
echo "$out" | grep -q "source STOP, destination RUNNING" || fail "mtty: end states not reported"
echo "$out" | grep -q "verified by a marker in BAR0 offset 7" || fail "mtty: marker not verified"
vmm_owned mtty "$out"
# Whatever the device fd's close left, the shared devices go back to RUNNING for the others.
run vfio-harness state "$MTTY_A" RUNNING
expect_eq "mtty destination" "$(state_of "$MTTY_B")" RUNNING

P=/sys/class/mdev_bus/vhgpu/mdev_supported_types
if [ -d "$P" ] && [ "$(cat /sys/module/vhgpu/parameters/migration_v2)" = Y ]; then
    S=6f1e0c3a-7a1d-4c55-9d2e-00000000f301
    D=6f1e0c3a-7a1d-4c55-9d2e-00000000f302
    cleanup() { for u in $S $D; do [ -e /sys/bus/mdev/devices/$u ] && echo 1 >/sys/bus/mdev/devices/$u/remove; done; }
    trap cleanup EXIT
    run sh -c "echo $S >$P/vhgpu-64M/create"
    run sh -c "echo $D >$P/vhgpu-64M/create"
    run_out out vmm_handoff $S $D
    echo "$out" | grep -q "source STOP, destination RUNNING" || fail "vhgpu: end states not reported"
    echo "$out" | grep -q "verified by a 4 KiB marker in BAR2" || fail "vhgpu: marker not verified"
    vmm_owned vhgpu "$out"
else
    fail "vhgpu with migration v2 is not loaded"
fi
echo PASS
