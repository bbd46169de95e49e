# vhgpu 1 GiB across the link: the source guest's vhgpu-1G VRAM, filled with a seeded pattern
# through the BAR2 mmap, migrates (pre-copy + stop-copy) over the virtio-net link through the
# fault proxy (no fault) into the destination guest's vhgpu-1G; the destination's VRAM CRC
# equals the source's, and the source, RUNNING again, still has it.
. /etc/vfioh/lib.sh
. /etc/vfioh/pair.sh
P=/sys/class/mdev_bus/vhgpu/mdev_supported_types
[ -d "$P" ] || skip "vhgpu module not loaded"
[ "$(cat /sys/module/vhgpu/parameters/migration_v2)" = Y ] || skip "vhgpu loaded without migration v2"
U=6f1e0c3a-7a1d-4c55-9d2e-00000000f001
cleanup() { [ -e /sys/bus/mdev/devices/$U ] && echo 1 >/sys/bus/mdev/devices/$U/remove; }
trap cleanup EXIT
run sh -c "echo $U >$P/vhgpu-1G/create"
if [ "$ROLE" = source ]; then
    t0=$(date +%s)
    run vfio-harness bar --mmap $U fill BAR2 --len 1G --seed 21 --no-readback
    run_out c vfio-harness bar $U crc BAR2 --json
    crc=$(echo "$c" | json_str crc32)
    t1=$(date +%s)
    echo "time: fill + crc $((t1 - t0)) s"
    ship big -- $U --timeout 60 --precopy-rounds 2 --json
    t2=$(date +%s)
    expect_eq "migrate exit" "$RC" 0
    cat /tmp/mig-big.out
    bytes=$(json_num bytes </tmp/mig-big.out)
    [ "$bytes" -ge 1073741824 ] || fail "migrated only $bytes bytes of 1 GiB of VRAM"
    secs=$(grep '^  "seconds":' /tmp/mig-big.out | head -n 1 | sed 's/.*: *//; s/,$//')
    down=$(grep -o '"downtime_seconds": *[0-9.]*' /tmp/mig-big.out | head -n 1 | sed 's/.*: *//')
    hs=$(grep -o '"handshake_seconds": *[0-9.]*' /tmp/mig-big.out | head -n 1 | sed 's/.*: *//')
    [ -n "$hs" ] || fail "no handshake_seconds in the report"
    echo "link: $bytes bytes in $secs s ($(awk -v b="$bytes" -v s="$secs" 'BEGIN{printf "%.1f", b / s / 1048576}') MiB/s) after a $hs s handshake, downtime $down s, wall $((t2 - t1)) s"
    grep '^total' /tmp/mig-big.err
    expect_eq "source state" "$(state_of $U)" RUNNING
    run_out c vfio-harness bar $U crc BAR2 --json
    expect_eq "source VRAM crc32 after migrating" "$(echo "$c" | json_str crc32)" "$crc"
    hear got
    expect_eq "destination receive exit" "$(word 2 "$got")" 0
    expect_eq "destination state" "$(word 3 "$got")" RUNNING
    expect_eq "destination VRAM crc32 = source's" "$(word 4 "$got")" "$crc"
    echo "VRAM crc32: source $crc, destination $(word 4 "$got")"
else
    serve big $U --timeout 60 --json
    cat /tmp/recv-big.out
    st=$(state_of $U)
    run_out c vfio-harness bar $U crc BAR2 --json
    dcrc=$(echo "$c" | json_str crc32)
    # The pattern itself, independently of the source's CRC.
    run vfio-harness bar $U crc BAR2 --len 1G --seed 21
    tell "got $RC $st $dcrc"
fi
echo PASS
