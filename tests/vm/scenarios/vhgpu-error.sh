# vhgpu fault injection into VFIO_DEVICE_STATE_ERROR (vendor/fail_next_transition, one-shot):
# the next migration arc fails with EIO and leaves the device in ERROR. Through the
# harness: `state` reports the failed arc with its errno and ERROR read back after it, and
# its recovery resets the device (ERROR has no arcs) back to RUNNING;
# the knob is consumed, so the next walk works. `save` with the knob armed fails and leaves the
# device RUNNING, with its VRAM intact.
. /etc/vfioh/lib.sh
P=/sys/class/mdev_bus/vhgpu/mdev_supported_types
[ -d "$P" ] || skip "vhgpu module not loaded"
[ "$(cat /sys/module/vhgpu/parameters/migration_v2)" = Y ] || skip "vhgpu loaded without migration v2"
U=6f1e0c3a-7a1d-4c55-9d2e-00000000f301
K=/sys/bus/mdev/devices/$U/vendor/fail_next_transition
warnings() { dmesg | grep -c 'WARNING:'; }
w0=$(warnings)
trap '[ -e /sys/bus/mdev/devices/$U ] && echo 1 >/sys/bus/mdev/devices/$U/remove' EXIT
run sh -c "echo $U >$P/vhgpu-64M/create"
expect_eq "fail_next_transition at create" "$(cat $K)" 0
run sh -c "echo 1 >$K"
expect_eq "fail_next_transition armed" "$(cat $K)" 1
echo "+ (expect failure) vfio-harness state $U STOP --json"
if out=$(vfio-harness state $U STOP --json); then fail "the injected arc succeeded"; fi
echo "$out"
o=$(echo "$out" | flat)
echo "$o" | grep -q '"from":"RUNNING","to":"STOP","ok":false' || fail "the STOP step is not reported failed"
echo "$o" | grep -q '"errno":5' || fail "the failed arc did not report EIO"
echo "$o" | grep -q '"now":"ERROR"' || fail "the state read back after the failed arc is not ERROR"
rec=$(echo "$out" | json_str recovery)
case "$rec" in
    # The harness's recovery rules (migration::recovery): ERROR has no arcs, only a reset
    # leaves it, so the device is reset straight away.
    *"ERROR"*"reset"*) echo "ok: recovery: $rec" ;;
    *) fail "recovery from ERROR did not reset the device: $rec" ;;
esac
expect_eq "final state" "$(echo "$out" | json_str final)" RUNNING
expect_eq "fail_next_transition consumed" "$(cat $K)" 0
# One-shot: the next walk is clean.
run_out out vfio-harness state $U STOP STOP_COPY STOP RUNNING --json
expect_eq "final state after a clean walk" "$(echo "$out" | json_str final)" RUNNING
echo "$out" | grep -q '"ok": false' && fail "a step failed after the injection was consumed"

# save with the knob armed: the save fails, the device ends RUNNING, VRAM intact.
run vfio-harness bar $U fill BAR2 --len 1M --seed 9
run sh -c "echo 1 >$K"
echo "+ (expect failure) vfio-harness save $U -o /tmp/vhgpu-error.bin"
if err=$(vfio-harness save $U -o /tmp/vhgpu-error.bin 2>&1); then fail "save succeeded with the failure armed"; fi
echo "$err"
echo "$err" | grep -q "os error 5" || fail "save did not report the injected EIO"
run_out out vfio-harness state $U --json
expect_eq "state after the failed save" "$(echo "$out" | json_str initial)" RUNNING
expect_eq "fail_next_transition consumed by save" "$(cat $K)" 0
pattern_ok "VRAM after the failed save" $((1 << 20)) vfio-harness bar $U crc BAR2 --len 1M --seed 9 --json
run_out out vfio-harness save $U -o /tmp/vhgpu-error.bin --json
[ "$(echo "$out" | json_num bytes)" -ge $((1 << 20)) ] || fail "the save after the failure moved fewer bytes than the 1 MiB written"
# Human-readable, for the log.
run sh -c "echo 1 >$K"
vfio-harness state $U PRE_COPY
# No kernel warning on the way (asking the core's FSM helper for an arc out of ERROR WARNs).
expect_eq "kernel warnings during the scenario" "$(warnings)" "$w0"
echo PASS
