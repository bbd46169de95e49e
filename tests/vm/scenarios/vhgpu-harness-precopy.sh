# vhgpu through the harness: live migration with a writer dirtying the source's VRAM while
# it pre-copies (`migrate --dirty-writer`): pre-copy must converge under the policy (dirty
# threshold reached before the round limit), the report shows the rounds, dirty bytes per
# round and the downtime, and afterwards (writer stopped, source RUNNING again) the source
# and destination VRAM CRCs are equal.
. /etc/vfioh/lib.sh
P=/sys/class/mdev_bus/vhgpu/mdev_supported_types
[ -d "$P" ] || skip "vhgpu module not loaded"
[ "$(cat /sys/module/vhgpu/parameters/migration_v2)" = Y ] || skip "vhgpu loaded without migration v2"
S=6f1e0c3a-7a1d-4c55-9d2e-00000000e201
D=6f1e0c3a-7a1d-4c55-9d2e-00000000e202
cleanup() { for u in $S $D; do [ -e /sys/bus/mdev/devices/$u ] && echo 1 >/sys/bus/mdev/devices/$u/remove; done; }
trap cleanup EXIT
run sh -c "echo $S >$P/vhgpu-256M/create"
run sh -c "echo $D >$P/vhgpu-256M/create"
run vfio-harness bar --mmap $S fill BAR2 --len 256M --seed 31 --no-readback
ROUNDS=10
run_out m vfio-harness migrate $S $D --precopy-rounds $ROUNDS --dirty-threshold 2M \
    --dirty-writer BAR2:8M --json
expect_eq "converged" "$(echo "$m" | grep -o '"converged": *[a-z]*' | sed 's/.*: *//')" true
rounds=$(echo "$m" | json_num rounds)
[ "$rounds" -ge 2 ] && [ "$rounds" -lt $ROUNDS ] || fail "pre-copy took $rounds round(s) (want 2..$((ROUNDS - 1)))"
dirtied=$(echo "$m" | json_num bytes_dirtied)
[ "$dirtied" -gt 0 ] || fail "the writer dirtied nothing"
# Round 2 started with what the writer dirtied during round 1.
d2=$(echo "$m" | tr -d ' \n' | grep -o '"round":2,"pending_before":{"initial_bytes":[0-9]*,"dirty_bytes":[0-9]*' | sed 's/.*://')
[ -n "$d2" ] && [ "$d2" -gt 0 ] || fail "round 2 had no dirty bytes pending (got '$d2')"
stop=$(echo "$m" | json_num stopcopy_bytes)
[ "$stop" -le $((4 << 20)) ] || fail "stop-copy moved $stop bytes after converging under 2M"
echo "$m" | grep -q '"downtime_seconds"' || fail "no downtime in the report"
run_out c vfio-harness bar $S crc BAR2 --json
src_crc=$(echo "$c" | json_str crc32)
run_out c vfio-harness bar $D crc BAR2 --json
expect_eq "destination VRAM crc32 = source's" "$(echo "$c" | json_str crc32)" "$src_crc"
# Human-readable report (rounds, dirty bytes, downtime), for the log.
run vfio-harness migrate $D $S --precopy-rounds $ROUNDS --dirty-threshold 2M --dirty-writer BAR2:8M:0:64M
echo PASS
