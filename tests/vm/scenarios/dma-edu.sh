# edu: map/unmap DMA memory inside the reported IOVA ranges, then `--check`: the device DMAs
# a pattern from one mapped buffer into itself and back into another; bytes compare equal,
# the guard after the copy is untouched, and the MSI it raises arrives on the eventfd within
# a second. The buffers sit at the lowest free IOVAs above the 1 MiB floor: the timed 16 MiB
# map at 0x100000, the check's source there too and its destination right after (6 KiB
# rounded to 8 KiB, plus a 4 KiB guard page: 0x103000). Both back ends.
. /etc/vfioh/lib.sh
need EDU
for b in $(backends); do
    run_out out vfio-harness --iommu $b dma "$EDU" --size 16M --check --check-bytes 6K --json
    m=$(echo "$out" | json_obj map)
    c=$(echo "$out" | json_obj check)
    expect_eq "$b: map.iova" "$(echo "$m" | json_num iova)" $((0x100000))
    expect_eq "$b: map.size" "$(echo "$m" | json_num size)" $((16 << 20))
    expect_eq "$b: map.hugepages" "$(echo "$m" | json_bool hugepages)" false
    expect_eq "$b: check.driver" "$(echo "$c" | json_str driver)" edu
    expect_eq "$b: check.bytes" "$(echo "$c" | json_num bytes)" 6144
    expect_eq "$b: check.chunks" "$(echo "$c" | json_num chunks)" 3
    expect_eq "$b: check.src_iova" "$(echo "$c" | json_num src_iova)" $((0x100000))
    expect_eq "$b: check.dst_iova" "$(echo "$c" | json_num dst_iova)" $((0x103000))
    expect_eq "$b: check.matched" "$(echo "$c" | json_bool matched)" true
    expect_eq "$b: check.guard_intact" "$(echo "$c" | json_bool guard_intact)" true
    lat=$(echo "$c" | grep -o '"msi_latency_us":[0-9.e+-]*' | cut -d: -f2)
    echo "MSI latency ($b): $lat us"
    awk -v l="$lat" 'BEGIN { exit !(l > 0 && l < 1000000) }' \
        || fail "$b: MSI latency '$lat' us is not within (0, 1 s)"
done
exit 0
