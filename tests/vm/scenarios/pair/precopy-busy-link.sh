# Pre-copy across the link with a dirty writer that does not converge: the source guest's
# vhgpu-256M is rewritten (one word per 4 KiB page, over all 256 MiB) faster than the link
# drains it, so every pre-copy round still finds dirty bytes and pre-copy ends on its round
# limit, unconverged, and the rest goes in stop-copy. Checked in the report: rounds = the
# limit, converged false, dirty bytes pending before every round after the first, stop-copy
# bytes and the measured downtime present and positive, and a downtime predicted from the
# pre-copy drain rate (stop-copy bytes / pre-copy bytes per second) within a factor of 10 of
# the measured one; afterwards (writer stopped before stop-copy) the destination's VRAM CRC
# equals the source's.
. /etc/vfioh/lib.sh
. /etc/vfioh/pair.sh
P=/sys/class/mdev_bus/vhgpu/mdev_supported_types
[ -d "$P" ] || skip "vhgpu module not loaded"
[ "$(cat /sys/module/vhgpu/parameters/migration_v2)" = Y ] || skip "vhgpu loaded without migration v2"
U=6f1e0c3a-7a1d-4c55-9d2e-00000000f101
cleanup() { [ -e /sys/bus/mdev/devices/$U ] && echo 1 >/sys/bus/mdev/devices/$U/remove; }
trap cleanup EXIT
run sh -c "echo $U >$P/vhgpu-256M/create"
ROUNDS=3
if [ "$ROLE" = source ]; then
    run vfio-harness bar --mmap $U fill BAR2 --len 256M --seed 41 --no-readback
    ship busy -- $U --timeout 60 --precopy-rounds $ROUNDS --dirty-threshold 1M \
        --dirty-writer BAR2:1G --json
    expect_eq "migrate exit" "$RC" 0
    m=$(cat /tmp/mig-busy.out); echo "$m"
    expect_eq "converged" "$(echo "$m" | json_bool converged)" false
    expect_eq "pre-copy rounds (the limit)" "$(echo "$m" | json_num rounds)" $ROUNDS
    r=2
    while [ $r -le $ROUNDS ]; do
        d=$(echo "$m" | tr -d ' \n' | grep -o "\"round\":$r,\"pending_before\":{\"initial_bytes\":[0-9]*,\"dirty_bytes\":[0-9]*" | sed 's/.*://' | head -n 1)
        [ -n "$d" ] && [ "$d" -gt 0 ] || fail "round $r started with no dirty bytes (got '$d')"
        echo "ok: round $r started with $d dirty bytes"
        r=$((r + 1))
    done
    dirtied=$(echo "$m" | json_num bytes_dirtied)
    [ -n "$dirtied" ] && [ "$dirtied" -gt 0 ] || fail "the writer dirtied nothing"
    stop=$(echo "$m" | json_num stopcopy_bytes)
    pre=$(echo "$m" | json_num precopy_bytes)
    [ "$stop" -gt $((1 << 20)) ] || fail "stop-copy moved only $stop bytes: pre-copy converged after all"
    pres=$(echo "$m" | grep -o '"precopy_seconds": *[0-9.e-]*' | head -n 1 | sed 's/.*: *//')
    down=$(echo "$m" | grep -o '"downtime_seconds": *[0-9.e-]*' | head -n 1 | sed 's/.*: *//')
    [ -n "$down" ] && [ -n "$pres" ] || fail "no downtime_seconds / precopy_seconds in the report"
    pred=$(awk -v s="$stop" -v p="$pre" -v t="$pres" 'BEGIN { if (t > 0 && p > 0) printf "%.3f", s / (p / t); else print "none" }')
    echo "downtime: measured $down s, predicted $pred s (stop-copy $stop bytes at the pre-copy drain rate: $pre bytes in $pres s)"
    awk -v d="$down" -v p="$pred" 'BEGIN { exit !(d > 0 && p != "none" && p > 0 && d < 10 * p && p < 10 * d) }' \
        || fail "measured downtime $down s and predicted $pred s are not within a factor of 10"
    run_out c vfio-harness bar $U crc BAR2 --json
    crc=$(echo "$c" | json_str crc32)
    hear got
    expect_eq "destination receive exit" "$(word 2 "$got")" 0
    expect_eq "destination state" "$(word 3 "$got")" RUNNING
    expect_eq "destination VRAM crc32 = source's" "$(word 4 "$got")" "$crc"
else
    serve busy $U --timeout 60 --json
    st=$(state_of $U)
    run_out c vfio-harness bar $U crc BAR2 --json
    tell "got $RC $st $(echo "$c" | json_str crc32)"
fi
echo PASS
