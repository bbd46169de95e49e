# After unmapping, the IOMMU stops the device. `dma --check --check-unmapped`: edu DMAs the
# pattern round trip byte-exact; then both mappings are removed (the host memory is kept)
# and edu is told to write to the old destination IOVA and to read from the old source IOVA:
# the host memory keeps its 0xa5 fill, and edu does not receive the pattern (its memory,
# cleared first, is DMA-ed out through a fresh mapping and compared). edu itself reports
# nothing (it completes both transfers); the guest kernel's intel-iommu driver logs the two
# DMAR faults, with edu's requester ID and exactly those IOVAs. Both back ends.
. /etc/vfioh/lib.sh
need EDU
bdf=${EDU#0000:}
for b in $(backends); do
    # intel-iommu rate-limits its fault messages (10 per 5 s, about 3 per fault): start
    # each run with a fresh window.
    sleep 6
    dmesg -c >/dev/null
    run_out out vfio-harness --iommu $b dma "$EDU" --size 4K --check --check-unmapped --check-bytes 6K --json
    c=$(echo "$out" | json_obj check)
    u=$(echo "$out" | json_obj unmapped)
    src=$(echo "$c" | json_num src_iova); dst=$(echo "$c" | json_num dst_iova)
    expect_eq "$b: check.matched (mapped)" "$(echo "$c" | json_bool matched)" true
    expect_eq "$b: unmapped.write_iova" "$(echo "$u" | json_num write_iova)" "$dst"
    expect_eq "$b: unmapped.read_iova" "$(echo "$u" | json_num read_iova)" "$src"
    expect_eq "$b: unmapped.bytes" "$(echo "$u" | json_num bytes)" 2048
    expect_eq "$b: unmapped.write_blocked" "$(echo "$u" | json_bool write_blocked)" true
    expect_eq "$b: unmapped.read_blocked" "$(echo "$u" | json_bool read_blocked)" true
    echo "$u" | grep -q '"write_error":null' || fail "$b: edu reported a write error: $u"
    echo "$u" | grep -q '"read_error":null' || fail "$b: edu reported a read error: $u"
    # The IOMMU's own record (fault addresses are page-aligned; these IOVAs are).
    faults=$(dmesg | grep -i "DMAR" | grep "fault addr")
    echo "$faults"
    for x in "Write.*\[$bdf\] fault addr 0x$(printf %x "$dst")" "Read.*\[$bdf\] fault addr 0x$(printf %x "$src")"; do
        echo "$faults" | grep -q "$x" || fail "$b: no DMAR fault /$x/ in the kernel log"
        echo "ok: the kernel logged /$x/"
    done
done
exit 0
