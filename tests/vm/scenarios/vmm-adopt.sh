# The library adopting a VMM's own VFIO objects (examples/vmm_adopt, packed as /bin/vmm_adopt):
# the VMM opens the device with vfio-ioctls in its own container (or iommufd), with its own
# KVM VM's KVM-VFIO device, hands the VfioDevice and the container to the library, and maps
# its guest memory for DMA through it. Checked: the adopted device describes itself exactly
# as the raw ioctls do (tests/vm/probe/vfio-probe: flags, regions, IRQs, migration flags),
# the KVM registration, the IOVA ranges mapped (IOVA = guest address, a refused second
# mapping, a shifted one), and a save/restore through the adopted device that brings a
# marker back (mtty: scratch register BAR0+7; vhgpu: 4 KiB at the start of BAR2).
. /etc/vfioh/lib.sh
need MTTY_A
command -v vmm_adopt >/dev/null || fail "vmm_adopt is not in the initramfs"
command -v vfio-probe >/dev/null || fail "vfio-probe is not in the initramfs"

# same_as_raw TAG OUTPUT PROBE-ARGS...: the `raw ` lines of vmm_adopt equal vfio-probe's.
same_as_raw() {
    _t=$1; _o=$2; shift 2
    echo "$_o" | sed -n 's/^raw //p' >/tmp/adopt-$_t
    run_out _raw vfio-probe "$@"
    echo "$_raw" >/tmp/probe-$_t
    grep -q '^region ' /tmp/adopt-$_t || fail "$_t: no regions reported"
    diff /tmp/probe-$_t /tmp/adopt-$_t || fail "$_t: the adopted device differs from the raw ioctls"
    echo "ok: $_t: the adopted device matches the raw ioctls"
}
has() { echo "$1" | grep -qF -- "$2" || fail "$3: output lacks '$2'"; echo "ok: $3"; }

# check_dma TAG OUTPUT MEM-BYTES REFUSAL: what vmm_adopt printed about the DMA mappings
# (REFUSAL: the start of the refused second mapping's report).
check_dma() {
    _t=$1; _o=$2; _m=$3; _r=$4
    has "$_o" "vmm_adopt: OK" "$_t finished"
    has "$_o" "DMA: region 0 guest 0x0 -> IOVA 0x0, $_m bytes" "$_t region 0 at IOVA 0"
    has "$_o" "DMA: region 1 guest 0x100000000 -> IOVA 0x100000000, 0x200000 bytes" "$_t region 1 at IOVA 4 GiB"
    has "$_o" "second identity mapping refused as expected: $_r" "$_t overlap refused"
    has "$_o" "shifted mapping puts guest 0x0 at IOVA 0x400000000" "$_t mapping shifted by 16 GiB"
    has "$_o" "DMA: unmapped" "$_t unmapped"
}

node=/sys/bus/mdev/devices/$MTTY_A
group=$(basename "$(readlink "$node/iommu_group")")

# mtty in the VMM's legacy container, registered through the container's KVM-VFIO handle.
run_out out vmm_adopt "$MTTY_A" --iommu legacy --raw-fd --migrate
same_as_raw mtty-legacy "$out" legacy "$group" "$MTTY_A"
# And the values themselves (mtty-2): BAR0 and BAR1 8-byte read/write port ranges, config
# space 255 bytes, INTx and one MSI, migration STOP_COPY|P2P|PRE_COPY (7).
for l in "flags 2" "region 0 8 3" "region 1 8 3" "region 7 255 3" "irq 0 1 7" "irq 1 1 9" "mig 7"; do
    grep -qx "$l" /tmp/adopt-mtty-legacy || fail "mtty: the adopted device does not report '$l'"
done
echo "ok: mtty: BAR0/BAR1 8 bytes, config 255 bytes, INTx + 1 MSI, migration flags 7"
check_dma mtty "$out" 0x1000000 "region 0, errno Some(17)"
has "$out" "bare fd: same flags" "mtty bare fd describes the same device"
has "$out" "the marker in region 0 at 0x7 came back; state RUNNING" "mtty state restored through the adopted device"
if [ "$HAVE_KVM" = 1 ]; then
    has "$out" "KVM: device registered through the container's KVM-VFIO handle" "mtty registered with the VMM's VM"
fi

# The same device in the VMM's iommufd (its cdev), registered through the library.
if [ "$HAVE_IOMMUFD" = 1 ] && [ -d "$node/vfio-dev" ]; then
    cdev=/dev/vfio/devices/$(ls "$node/vfio-dev")
    run_out out vmm_adopt "$cdev" --explicit-kvm --mem-mib 32
    same_as_raw mtty-iommufd "$out" iommufd "$cdev"
    check_dma mtty-iommufd "$out" 0x2000000 "region 0, errno Some(17)"
    if [ "$HAVE_KVM" = 1 ]; then
        has "$out" "KVM: device registered with the VMM's VM through the library" "mtty cdev registered by the library"
        has "$out" "KVM: device unregistered" "mtty cdev unregistered"
    fi
fi
# The device is left RUNNING for the other scenarios.
expect_eq "mtty state after adoption" "$(vfio-harness state "$MTTY_A" --json | json_str initial)" RUNNING

P=/sys/class/mdev_bus/vhgpu/mdev_supported_types
if [ -d "$P" ] && [ "$(cat /sys/module/vhgpu/parameters/migration_v2)" = Y ]; then
    V=6f1e0c3a-7a1d-4c55-9d2e-00000000f311
    cleanup() { [ -e /sys/bus/mdev/devices/$V ] && echo 1 >/sys/bus/mdev/devices/$V/remove; }
    trap cleanup EXIT
    run sh -c "echo $V >$P/vhgpu-64M/create"
    vgroup=$(basename "$(readlink "/sys/bus/mdev/devices/$V/iommu_group")")
    run_out out vmm_adopt "$V" --iommu legacy --migrate
    same_as_raw vhgpu "$out" legacy "$vgroup" "$V"
    check_dma vhgpu "$out" 0x1000000 "region 0, errno Some(17)"
    # vhgpu-64M: a 4 KiB register BAR0, 64 MiB of mmap-able VRAM in BAR2, 4 MSI-X vectors.
    for l in "flags 3" "region 0 4096 3" "region 2 67108864 7" "region 7 256 3" "irq 2 4 11" "mig 7"; do
        grep -qx "$l" /tmp/adopt-vhgpu || fail "vhgpu: the adopted device does not report '$l'"
    done
    echo "ok: vhgpu: BAR0 4 KiB, BAR2 64 MiB mmap, 4 MSI-X vectors, migration flags 7"
    has "$out" "the marker in region 2 at 0x0 came back; state RUNNING" "vhgpu VRAM restored through the adopted device"
else
    fail "vhgpu with migration v2 is not loaded"
fi
echo PASS
