# Pre-copy across the link with a dirty writer that does not converge: the source guest's
# vhgpu-256M is rewritten (one word per 4 KiB page, over all 256 MiB) faster than the link
# drains it, so a pre-copy round leaves as much pending as it began with: pre-copy ends as
# not converging (before its round limit), unconverged, and the rest goes in stop-copy.
# Checked in the report: `precopy_end` = not-converging, at most the round limit, dirty bytes
# pending after the first round, stop-copy bytes and the measured downtime positive, and the
# engine's predicted downtime (bytes left over the pre-copy drain rate) within a factor of
# 10 of the measured one; afterwards (writer stopped before stop-copy) the destination's VRAM
# CRC equals the source's. Then the same with `--max-downtime 1ms`: the prediction cannot fit,
# so the source is not stopped: `migrate` exits 1 naming the limit, the source is RUNNING with
# its VRAM, the destination reset to RUNNING.
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
    expect_eq "why pre-copy ended" "$(echo "$m" | json_str precopy_end)" not-converging
    rounds=$(echo "$m" | json_num rounds)
    [ "$rounds" -ge 1 ] && [ "$rounds" -le $ROUNDS ] || fail "$rounds pre-copy rounds (limit $ROUNDS)"
    d=$(echo "$m" | tr -d ' \n' | grep -o '"round":1,[^}]*},"bytes":[0-9]*,"pending_after":{"initial_bytes":[0-9]*,"dirty_bytes":[0-9]*' | sed 's/.*://' | head -n 1)
    [ -n "$d" ] && [ "$d" -gt 0 ] || fail "round 1 left no dirty bytes (got '$d')"
    echo "ok: round 1 left $d dirty bytes"
    dirtied=$(echo "$m" | json_num bytes_dirtied)
    [ -n "$dirtied" ] && [ "$dirtied" -gt 0 ] || fail "the writer dirtied nothing"
    stop=$(echo "$m" | json_num stopcopy_bytes)
    [ "$stop" -gt $((1 << 20)) ] || fail "stop-copy moved only $stop bytes: pre-copy converged after all"
    down=$(echo "$m" | grep -o '"downtime_seconds": *[0-9.e-]*' | head -n 1 | sed 's/.*: *//')
    pred=$(echo "$m" | grep -o '"predicted_downtime_seconds": *[0-9.e-]*' | head -n 1 | sed 's/.*: *//')
    [ -n "$down" ] && [ -n "$pred" ] || fail "no downtime_seconds / predicted_downtime_seconds in the report"
    echo "downtime: measured $down s, predicted $pred s"
    awk -v d="$down" -v p="$pred" 'BEGIN { exit !(d > 0 && p > 0 && d < 10 * p && p < 10 * d) }' \
        || fail "measured downtime $down s and predicted $pred s are not within a factor of 10"
    run_out c vfio-harness bar $U crc BAR2 --json
    crc=$(echo "$c" | json_str crc32)
    hear got
    expect_eq "destination receive exit" "$(word 2 "$got")" 0
    expect_eq "destination state" "$(word 3 "$got")" RUNNING
    expect_eq "destination VRAM crc32 = source's" "$(word 4 "$got")" "$crc"
    # A downtime limit the busy device cannot meet: not stopped.
    ship limit -- $U --timeout 60 --precopy-rounds $ROUNDS --dirty-threshold 1M \
        --dirty-writer BAR2:1G --max-downtime 1ms
    expect_eq "migrate exit with an unmeetable --max-downtime" "$RC" 1
    grep -q 'not stopping the device: predicted downtime .* exceeds the limit' /tmp/mig-limit.err \
        || fail "the refusal does not name the predicted downtime and the limit"
    expect_eq "source state after the refusal" "$(state_of $U)" RUNNING
    run_out c vfio-harness bar $U crc BAR2 --json
    lcrc=$(echo "$c" | json_str crc32)
    hear res
    [ "$(word 2 "$res")" != 0 ] || fail "the destination's receive succeeded although the source gave up"
    expect_eq "destination state after the refusal" "$(word 3 "$res")" RUNNING
    echo "source VRAM crc32 after the refusal: $lcrc"
else
    serve busy $U --timeout 60 --json
    st=$(state_of $U)
    run_out c vfio-harness bar $U crc BAR2 --json
    tell "got $RC $st $(echo "$c" | json_str crc32)"
    serve limit $U --timeout 60
    tell "res $RC $(state_of $U)"
fi
echo PASS
