# The conformance suite proven by seeded bugs: for every contract violation the vhgpu module
# can commit (per-instance attribute `vendor/violate`, written between create and first
# open), a fresh instance with that violation must make the suite's check of the same name
# FAIL (exit status 1); the stock instance passes with no FAIL. Protocol v2 first, then the
# module reloaded with migration v1 only for the v1 violations. SKIPs cleanly when the module
# has no `vendor/violate`.
. /etc/vfioh/lib.sh
P=/sys/class/mdev_bus/vhgpu/mdev_supported_types
[ -d "$P" ] || skip "vhgpu module not loaded"
[ "$(cat /sys/module/vhgpu/parameters/migration_v2)" = Y ] || skip "vhgpu loaded without migration v2"
B=6f1e0c3a-7a1d-4c55-9d2e-00000000f1
U=${B}00
cleanup() { [ -e /sys/bus/mdev/devices/$U ] && echo 1 >/sys/bus/mdev/devices/$U/remove; }
trap cleanup EXIT

# One instance per run: create, select the violation, run the suite, remove.
# check_violation VIOLATION [EXPECTED_VERDICT]
check_violation() {
    _v=$1; _want=${2:-FAIL}
    run sh -c "echo $U >$P/vhgpu-64M/create"
    run sh -c "echo $_v >/sys/bus/mdev/devices/$U/vendor/violate"
    expect_eq "violate reads back" "$(cat /sys/bus/mdev/devices/$U/vendor/violate)" "$_v"
    echo "+ vfio-harness conformance $U --time-limit 60 --read-limit 256M   (violate=$_v)"
    _out=$(vfio-harness conformance $U --time-limit 60 --read-limit 256M 2>&1); _rc=$?
    echo "$_out"
    echo "$_out" | grep -q "^$_want  $_v  " || fail "violation $_v: check $_v is not $_want"
    [ "$_want" = FAIL ] && [ $_rc -ne 1 ] && fail "violation $_v: exit status $_rc, want 1"
    if [ "${_v#v1-}" = "$_v" ]; then
        run_out _st vfio-harness state $U
        echo "$_st" | grep -q RUNNING || fail "violation $_v: device not left RUNNING"
    else
        # `state` speaks v2 only; the suite's own last check reads the v1 device_state.
        echo "$_out" | grep -q "^PASS  left-running  " || fail "violation $_v: device not left RUNNING"
    fi
    run sh -c "echo 1 >/sys/bus/mdev/devices/$U/remove"
}

# Stock: no FAIL, exit 0.
run sh -c "echo $U >$P/vhgpu-64M/create"
run_out out vfio-harness conformance $U
echo "$out" | grep -q "^FAIL" && fail "stock vhgpu v2 failed a check"
echo "$out" | grep -q "^perturbation: vhgpu" || fail "the vhgpu perturbation was not used"
# The stock Debian kernel is built without CONFIG_IOMMUFD_DRIVER: the VFIO core's
# iova_bitmap is a stub and REPORT answers EOPNOTSUPP whatever the device does, so there the
# check must SKIP (and say why) and the dma-logging violation cannot be shown.
. /run/flavour.env
LOGGING=dma-logging
if [ "$FLAVOUR" = debian ]; then
    echo "$out" | grep -q "^SKIP  dma-logging  .*CONFIG_IOMMUFD_DRIVER" \
        || fail "dma-logging did not skip for the kernel's stub on the debian flavour"
    LOGGING=
else
    echo "$out" | grep -q "^PASS  dma-logging  " || fail "dma-logging did not pass on stock vhgpu"
fi
_has_violate=no
[ -e /sys/bus/mdev/devices/$U/vendor/violate ] && _has_violate=yes
run sh -c "echo 1 >/sys/bus/mdev/devices/$U/remove"

[ $_has_violate = yes ] && for v in state-after-arc new-data-fd stop-copy-eof read-size session-ends precopy-info-state \
    precopy-initial precopy-info-agrees precopy-path write-size resume-refuses resume-loads \
    reset data-size $LOGGING; do
    check_violation $v
done

# Protocol v1: the module reloaded with migration v1 only.
vhgpu_v1_only $U
run sh -c "echo $U >$P/vhgpu-64M/create"
run_out out vfio-harness conformance $U
echo "$out" | grep -q "^FAIL" && fail "stock vhgpu v1 failed a check"
for id in v1-pending v1-data-window v1-state-bits state-after-arc v1-resume-loads resume-refuses reset; do
    echo "$out" | grep -q "^PASS  $id  " || fail "v1 check $id did not pass on stock vhgpu"
done
run sh -c "echo 1 >/sys/bus/mdev/devices/$U/remove"
[ $_has_violate = yes ] || skip "stock vhgpu v2 and v1 passed; this vhgpu module has no vendor/violate attribute (seeded violations not run)"
for v in v1-state-bits v1-pending v1-data-window v1-resume-loads; do
    check_violation $v
done
echo PASS
