# vhgpu DMA dirty logging (VFIO_DEVICE_FEATURE_DMA_LOGGING_START/REPORT/STOP) through the
# harness's `dirty-log`, every IOVA back end: over a 1 MiB IOVA range the device's DMA engine
# writes three pieces (5 pages of 4 KiB: 0x1000-0x2fff, 0x10000, 0x7f000-0x80fff) and reads
# one more page (0x40000: DMA reads are not logged). The REPORT must show exactly the 5
# written pages (none missing, no extra: the read page and every other page clean), a second
# REPORT nothing (REPORT clears), and every bad request is refused. The same writes reported
# in 64 KiB pages give the 64 KiB pages holding them; a 64 KiB page-size hint is taken as is.
. /etc/vfioh/lib.sh
P=/sys/class/mdev_bus/vhgpu/mdev_supported_types
[ -d "$P" ] || skip "vhgpu module not loaded"
. /run/flavour.env
[ "$FLAVOUR" = debian ] && skip "the stock Debian kernel is built without CONFIG_IOMMUFD_DRIVER: its VFIO core answers DMA_LOGGING_REPORT with EOPNOTSUPP (iova_bitmap stub)"
U=6f1e0c3a-7a1d-4c55-9d2e-00000000f201
trap '[ -e /sys/bus/mdev/devices/$U ] && echo 1 >/sys/bus/mdev/devices/$U/remove' EXIT
run sh -c "echo $U >$P/vhgpu-64M/create"
W="--write 0x1000:0x2000 --write 0x10010:0x20 --write 0x7f800:0x1000 --read 0x40000:0x1000"
for b in $(backends); do
    run_out out vfio-harness --iommu $b dirty-log $U --len 1M --page-size 4K $W --refusals --json
    o=$(echo "$out" | flat)
    iova=$(echo "$out" | json_num iova)
    expect_eq "page size chosen ($b)" "$(echo "$out" | json_num page_size)" 4096
    expect_eq "pages written ($b)" "$(echo "$out" | json_num written_pages)" 5
    expect_eq "pages reported dirty ($b)" "$(echo "$out" | json_num pages_dirty)" 5
    expect_eq "first dirty IOVA ($b)" "$(echo "$out" | json_num first_dirty_iova)" $((iova + 0x1000))
    expect_eq "last dirty IOVA ($b)" "$(echo "$out" | json_num last_dirty_iova)" $((iova + 0x80000))
    echo "$o" | grep -q '"missing":\[\]' || fail "written pages not reported ($b)"
    echo "$o" | grep -q '"extra":\[\]' || fail "pages reported that the device did not write ($b)"
    expect_eq "second REPORT ($b)" "$(echo "$out" | json_num second_report_pages)" 0
    n=$(echo "$o" | grep -o '"refused":true' | wc -l)
    expect_eq "bad requests refused ($b)" "$n" 8
    echo "$o" | grep -q '"refused":false' && fail "a bad request was accepted ($b)"
    echo "$o" | grep -q '"passed":true' || fail "dirty-log did not pass ($b)"
    # bits: pages 1, 2, 16 in word 0; pages 127 and 128 straddle words 1 and 2
    echo "$o" | grep -q '"bitmap":\["0000000000010006","8000000000000000","0000000000000001","0000000000000000"\]' \
        || fail "bitmap words differ ($b)"
done
# Reported in 64 KiB pages: 0x0 (pages 1-2), 0x10000, 0x70000 and 0x80000.
run_out out vfio-harness dirty-log $U --len 1M --page-size 4K --report-page-size 64K $W --json
expect_eq "dirty 64 KiB pages" "$(echo "$out" | json_num pages_dirty)" 4
echo "$out" | flat | grep -q '"missing":\[\]' || fail "64 KiB report missed pages"
# A 64 KiB hint is kept, the writes land in 4 of its pages.
run_out out vfio-harness dirty-log $U --len 1M --page-size 64K $W --json
expect_eq "page size chosen for a 64K hint" "$(echo "$out" | json_num page_size)" 65536
expect_eq "dirty pages at 64K" "$(echo "$out" | json_num pages_dirty)" 4
# Nothing written, nothing reported (the read alone).
run_out out vfio-harness dirty-log $U --len 1M --read 0x40000:0x1000 --json
expect_eq "dirty pages without writes" "$(echo "$out" | json_num pages_dirty)" 0
# Human-readable, for the log.
run vfio-harness dirty-log $U --len 1M $W --refusals
echo PASS
