# IOVA ranges and placement on edu, against what the kernel says elsewhere:
# - the reported ranges are exactly the IOMMU's address space (2^MGAW from the DMAR unit's
#   capability register in sysfs) minus the group's reserved regions (sysfs
#   reserved_regions: the MSI window);
# - a check placed at a chosen IOVA (--iova 0xff00000, just under edu's 28-bit DMA mask) is
#   where edu's DMA finds the pattern;
# - maps the kernel refuses fail with the kernel's errno, not a harness pre-check: an IOVA
#   in the MSI window, one beyond the address width, a misaligned one (EINVAL);
# - an IOVA whose buffers would cross edu's DMA mask is refused by the harness (device
#   knowledge) before anything is mapped;
# - a container holding only an mdev (mtty: an emulated IOMMU, no reserved regions) is
#   unrestricted: type1 reports no IOVA range capability at all, which the harness reads
#   as the whole 64-bit space, and the kernel maps at an IOVA inside the x86 MSI window.
# Both back ends.
. /etc/vfioh/lib.sh
need EDU MTTY_A
g=$(basename "$(readlink /sys/bus/pci/devices/$EDU/iommu_group)")
echo "reserved regions of group $g:"; cat /sys/kernel/iommu_groups/$g/reserved_regions
cap=$(cat /sys/class/iommu/dmar0/intel-iommu/cap)
mgaw=$(( ((0x$cap >> 16) & 0x3f) + 1 ))
echo "DMAR cap $cap: MGAW $mgaw bits"
# The complement of the reserved regions in [0, 2^MGAW - 1], as "start last" pairs (decimal).
want=$(sort /sys/kernel/iommu_groups/$g/reserved_regions | {
    next=0
    while read -r s e t; do
        s=$((s)); e=$((e))
        [ "$s" -gt "$next" ] && echo "$next $((s - 1))"
        [ $((e + 1)) -gt "$next" ] && next=$((e + 1))
    done
    top=$(( (1 << mgaw) - 1 ))
    [ "$next" -le "$top" ] && echo "$next $top"
} | tr '\n' ' ')
echo "expected IOVA ranges: $want"
[ -n "$want" ] || fail "no expected ranges computed"

for b in $(backends); do
    run_out out vfio-harness --iommu $b dma "$EDU" --size 1M --json
    got=$(echo "$out" | tr -d ' \n' | grep -o '"iova_ranges":\[[^]]*\]' | grep -o '[0-9][0-9]*' | tr '\n' ' ')
    expect_eq "$b: iova_ranges (start last ...)" "$got" "$want"
    expect_eq "$b: iova_granule" "$(echo "$out" | json_num iova_granule)" 4096

    # Placed where asked, and edu's DMA finds it there.
    run_out out vfio-harness --iommu $b dma "$EDU" --size 1M --check \
        --iova 0xff00000 --check-bytes 6K --json
    c=$(echo "$out" | json_obj check)
    expect_eq "$b: map.iova" "$(echo "$out" | json_obj map | json_num iova)" $((0xff00000))
    expect_eq "$b: check.src_iova" "$(echo "$c" | json_num src_iova)" $((0xff00000))
    expect_eq "$b: check.dst_iova" "$(echo "$c" | json_num dst_iova)" $((0xff03000))
    expect_eq "$b: check.matched at 0xff00000" "$(echo "$c" | json_bool matched)" true

    # The kernel refuses (errno 22 from the map ioctl itself).
    for iova in 0xfee00000 0x$(printf %x $((1 << mgaw))) 0x100800; do
        expect_err "$b: map at $iova" \
            "DMA map of 0x[0-9a-f]+ byte\(s\) at IOVA $iova failed: Invalid argument \(os error 22\)" \
            vfio-harness --iommu $b dma "$EDU" --size 8K --iova $iova
    done
    # The harness refuses: edu cannot address 0x10000000 (28-bit DMA mask); nothing reaches
    # the kernel, so no errno.
    expect_err "$b: check at 0x10000000" "beyond the device's DMA limit 0x10000000" \
        vfio-harness --iommu $b dma "$EDU" --size 8K --check --iova 0x10000000
    echo "$ERR" | grep -q "os error" && fail "$b: the DMA-limit refusal came from the kernel"

    run_out out vfio-harness --iommu $b dma "$MTTY_A" --size 1M --iova 0xfee00000 --json
    got=$(echo "$out" | tr -d ' \n' | grep -o '"iova_ranges":\[[^]]*\]' | grep -o '[0-9][0-9]*' | tr '\n' ' ')
    expect_eq "$b: mtty's iova_ranges" "$got" "0 18446744073709551615 "
    expect_eq "$b: mtty map.iova (in the MSI window)" "$(echo "$out" | json_obj map | json_num iova)" $((0xfee00000))
done
exit 0
