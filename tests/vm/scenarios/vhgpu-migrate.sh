# vhgpu (tests/vm/module): migration v2 between two instances through raw ioctls
# (vhgpu-probe): stop-copy and pre-copy (precopy info, dirty pages from mmap and pwrite,
# fd kept into STOP_COPY), VRAM byte-exact and registers restored; the destination refuses
# another type's stream, a bad magic, another major version and a truncated stream.
# Then the harness's conformance suite on the device: no check fails.
. /etc/vfioh/lib.sh
P=/sys/class/mdev_bus/vhgpu/mdev_supported_types
[ -d "$P" ] || skip "vhgpu module not loaded"
[ "$(cat /sys/module/vhgpu/parameters/migration_v2)" = Y ] || skip "vhgpu loaded without migration v2"
B=6f1e0c3a-7a1d-4c55-9d2e-00000000c00
US="${B}1 ${B}2 ${B}3 ${B}4 ${B}5 ${B}6"
cleanup() { for u in $US; do [ -e /sys/bus/mdev/devices/$u ] && echo 1 >/sys/bus/mdev/devices/$u/remove; done; }
trap cleanup EXIT
for n in 1 2 3 4 6; do run sh -c "echo ${B}$n >$P/vhgpu-64M/create"; done
run sh -c "echo ${B}5 >$P/vhgpu-256M/create"

run vhgpu-probe migrate ${B}1 ${B}2 stopcopy
run vhgpu-probe migrate ${B}3 ${B}4 precopy
run vhgpu-probe refuse ${B}5 ${B}2

# The harness's migration conformance suite against this device: every check passes.
run_out out vfio-harness conformance ${B}6 --json
expect_eq "conformance failures on vhgpu" "$(echo "$out" | json_num failed)" 0
[ "$(echo "$out" | grep -c '"verdict": "PASS"')" -ge 10 ] || fail "fewer than 10 conformance checks passed"
echo PASS
