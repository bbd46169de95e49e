# DMA into hugepage-backed memory. The guest reserves 2 MiB hugetlb pages at boot
# (tests/vm/run: hugepages=64). `dma --hugepages` maps a hugetlb buffer at the lowest 2 MiB
# aligned IOVA above the 1 MiB floor (0x200000); `dma --check --hugepages` has edu DMA the
# pattern through two hugetlb buffers (source 0x200000, destination 0x600000: 6 KiB rounded
# to one 2 MiB page plus a 2 MiB guard) byte-exact; while a buffer is mapped its pages are
# taken from the pool (HugePages_Free, sampled during a long map), and afterwards every page
# is back. A request larger than the pool, or one made with the pool emptied, falls back to
# 4 KiB pages and says so. Both back ends.
. /etc/vfioh/lib.sh
need EDU
mi() { awk -v k="$1:" '$1 == k { print $2 }' /proc/meminfo; }
total=$(mi HugePages_Total)
echo "hugepages: $total x $(mi Hugepagesize) kB, free $(mi HugePages_Free)"
[ "${total:-0}" -ge 16 ] || fail "the guest reserved ${total:-0} hugepages (want >= 16: hugepages= on the kernel command line)"
expect_eq "Hugepagesize (kB)" "$(mi Hugepagesize)" 2048
expect_eq "free hugepages before" "$(mi HugePages_Free)" "$total"
restore_pool() { echo "$total" >/proc/sys/vm/nr_hugepages; }
trap restore_pool EXIT

for b in $(backends); do
    run_out out vfio-harness --iommu $b dma "$EDU" --size 16M --hugepages --json
    m=$(echo "$out" | json_obj map)
    expect_eq "$b: map.hugepages" "$(echo "$m" | json_bool hugepages)" true
    expect_eq "$b: map.iova" "$(echo "$m" | json_num iova)" $((0x200000))
    expect_eq "$b: map.size" "$(echo "$m" | json_num size)" $((16 << 20))
    expect_eq "$b: free hugepages after the map" "$(mi HugePages_Free)" "$total"

    run_out out vfio-harness --iommu $b dma "$EDU" --size 2M --hugepages --check --check-bytes 6K --json
    c=$(echo "$out" | json_obj check)
    expect_eq "$b: check.hugepages" "$(echo "$c" | json_bool hugepages)" true
    expect_eq "$b: check.src_iova" "$(echo "$c" | json_num src_iova)" $((0x200000))
    expect_eq "$b: check.dst_iova" "$(echo "$c" | json_num dst_iova)" $((0x600000))
    expect_eq "$b: check.matched" "$(echo "$c" | json_bool matched)" true
    expect_eq "$b: check.guard_intact" "$(echo "$c" | json_bool guard_intact)" true
    expect_eq "$b: free hugepages after the check" "$(mi HugePages_Free)" "$total"

    # More than the pool: normal pages (placed as asked for, 2 MiB-aligned).
    big=$(( (total + 2) * 2 ))M
    run_out out vfio-harness --iommu $b dma "$EDU" --size $big --hugepages --json
    m=$(echo "$out" | json_obj map)
    expect_eq "$b: map.hugepages ($big, pool $total x 2M)" "$(echo "$m" | json_bool hugepages)" false
    expect_eq "$b: map.iova ($big)" "$(echo "$m" | json_num iova)" $((0x200000))
    expect_eq "$b: free hugepages after the fallback" "$(mi HugePages_Free)" "$total"
done

# The pages really come from the pool: sample HugePages_Free while a buffer of the whole
# pool is allocated, touched and mapped.
n=$((total * 2))M
low=$total
vfio-harness dma "$EDU" --size $n --hugepages --json >/tmp/hp-long.json 2>&1 &
pid=$!
while kill -0 $pid 2>/dev/null; do
    f=$(mi HugePages_Free); [ "$f" -lt "$low" ] && low=$f
done
wait $pid || { cat /tmp/hp-long.json; fail "dma --size $n --hugepages failed"; }
expect_eq "map.hugepages ($n: the whole pool)" "$(json_obj map </tmp/hp-long.json | json_bool hugepages)" true
echo "lowest HugePages_Free seen while mapped: $low of $total"
[ "$low" -lt "$total" ] || fail "HugePages_Free never dropped below $total while $n of hugetlb memory was mapped"
expect_eq "free hugepages after the whole-pool map" "$(mi HugePages_Free)" "$total"

# The pool emptied at run time: the same request falls back, and says so.
echo 0 >/proc/sys/vm/nr_hugepages
expect_eq "HugePages_Total emptied" "$(mi HugePages_Total)" 0
run_out out vfio-harness dma "$EDU" --size 16M --hugepages
echo "$out" | grep -q "no 2M hugepages available" || fail "the fallback is not reported"
run_out out vfio-harness dma "$EDU" --size 16M --hugepages --json
expect_eq "map.hugepages with an empty pool" "$(echo "$out" | json_obj map | json_bool hugepages)" false
restore_pool
expect_eq "HugePages_Total restored" "$(mi HugePages_Total)" "$total"
exit 0
