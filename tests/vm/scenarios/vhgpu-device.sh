# vhgpu (tests/vm/module): the vfio-pci device through raw ioctls (vhgpu-probe): config
# space and BAR sizing, BAR0 registers, VRAM read/write/mmap, the DMA engine both ways
# through type1, MSI and INTx on eventfds, reset. Then the harness's own view of the same
# registers, through every back end: the ID register reads "VHG1" (0x56484731), the VRAM
# size registers give the type's 64 MiB, a scratch register keeps what was written, and
# info reports the PCI id 1234:7668.
. /etc/vfioh/lib.sh
P=/sys/class/mdev_bus/vhgpu/mdev_supported_types
[ -d "$P" ] || skip "vhgpu module not loaded"
U=6f1e0c3a-7a1d-4c55-9d2e-00000000b001
trap '[ -e /sys/bus/mdev/devices/$U ] && echo 1 >/sys/bus/mdev/devices/$U/remove' EXIT
run sh -c "echo $U >$P/vhgpu-64M/create"
run vhgpu-probe basic $U

reg() { vfio-harness --iommu $1 bar "$U" read BAR0 "$2" --width 4 --json | json_num value; }
for b in $(backends); do
    expect_eq "$b: ID register" "$(reg $b 0x0)" $((0x56484731))
    expect_eq "$b: VRAM size (low)" "$(reg $b 0x8)" $((64 << 20))
    expect_eq "$b: VRAM size (high)" "$(reg $b 0xc)" 0
    run vfio-harness --iommu $b bar "$U" write BAR0 0x10 0x12345678 --width 4 --readback
    expect_eq "$b: scratch 0" "$(reg $b 0x10)" $((0x12345678))
    run_out out vfio-harness --iommu $b info "$U" --json
    expect_eq "$b: PCI id" "$(echo "$out" | json_str pci_id)" 1234:7668
done
echo PASS
