# Helpers for scenarios (busybox sh). Source with: . /etc/vfioh/lib.sh
# Devices created at boot (see setup-devices): MTTY_A MTTY_B MTTY_C (mtty-2), MTTY_D (mtty-1),
# MDPY, MBOCHS (mdev UUIDs), EDU (PCI address bound to vfio-pci, alone in its group), EDU2,
# BRIDGE, SERIAL (a second edu, a PCIe-to-PCI bridge and a 16550 sharing one group),
# HAVE_IOMMUFD (0/1), HAVE_KVM (0/1).
. /run/devices.env

# fail MSG: the scenario fails with MSG as its reason.
fail() { echo "FAIL: $*"; exit 1; }
# skip MSG: the scenario is skipped with MSG as its reason.
skip() { echo "SKIP: $*"; exit 77; }
# need VAR...: skip unless every named device variable is set.
need() { for v in "$@"; do eval "[ -n \"\${$v}\" ]" || skip "device $v was not created"; done; }
# run CMD...: echo and run; fail if it fails.
run() { echo "+ $*"; "$@" || fail "command failed (exit $?): $*"; }
# run_out VAR CMD...: like run, but stores stdout in VAR (and echoes it).
run_out() { _v=$1; shift; echo "+ $*"; _o=$("$@") || { _rc=$?; echo "$_o"; fail "command failed (exit $_rc): $*"; }; echo "$_o"; eval "$_v=\$_o"; }
# must_fail CMD...: the command must exit non-zero.
must_fail() { echo "+ (expect failure) $*"; if "$@"; then fail "expected failure: $*"; fi; return 0; }
# expect_eq WHAT GOT WANT
expect_eq() { [ "$2" = "$3" ] || fail "$1: got '$2', want '$3'"; echo "ok: $1 = $2"; }
# json_num KEY: first numeric value of "KEY": in stdin (flat extraction, enough for checks).
json_num() { grep -o "\"$1\": *[0-9]*" | head -n 1 | sed 's/.*: *//'; }
# json_str KEY: first string value of "KEY": in stdin.
json_str() { grep -o "\"$1\": *\"[^\"]*\"" | head -n 1 | sed 's/.*: *"//; s/"$//'; }
# json_bool KEY: first boolean value of "KEY": in stdin.
json_bool() { grep -o "\"$1\": *[a-z]*" | head -n 1 | sed 's/.*: *//'; }
# json_obj KEY: the object "KEY": {...} of stdin, on one line without blanks, up to its first
# closing brace (enough for flat objects, or to take the fields before a nested one).
json_obj() { tr -d ' \n' | grep -o "\"$1\":{[^}]*}" | head -n 1; }
# expect_err WHAT PATTERN CMD...: CMD must fail and its output (stdout+stderr) contain PATTERN
# (a grep -E expression); the output is kept in $ERR.
expect_err() {
    _w=$1; _p=$2; shift 2
    echo "+ (expect failure) $*"
    if ERR=$("$@" 2>&1); then echo "$ERR"; fail "$_w: expected failure: $*"; fi
    echo "$ERR"
    echo "$ERR" | grep -qE -- "$_p" || fail "$_w: the error does not say /$_p/"
    echo "ok: $_w refused: /$_p/"
}
# pattern_ok WHAT LEN CMD...: CMD (`bar DEV crc ... --seed N --json` or `dma DEV --crc
# OFF:LEN --seed N --json`) must succeed and report all LEN bytes compared with the pattern
# and matching it (not only its exit status).
pattern_ok() {
    _pw=$1; _pl=$2; shift 2
    run_out _po "$@"
    expect_eq "$_pw: bytes compared with the pattern" "$(echo "$_po" | json_num len)" "$_pl"
    expect_eq "$_pw: matches the pattern" "$(echo "$_po" | json_bool matched)" true
}
# region_size NAME: the size of region NAME (BAR0, BAR2, ...) in `info --json` on stdin.
region_size() {
    awk -v n="\"$1\"" '$1 == "\"name\":" { f = ($2 == n || $2 == n ",") }
        f && $1 == "\"size\":" { gsub(/[^0-9]/, "", $2); print $2; exit }'
}
# flat: stdin without spaces and newlines (grep JSON objects field by field).
flat() { tr -d ' \n'; }
# backends: the IOMMU back ends this kernel offers.
backends() { if [ "$HAVE_IOMMUFD" = 1 ]; then echo "legacy iommufd"; else echo legacy; fi; }
# info_across_backends DEVICE TAG: `info --json` through every IOMMU back end the kernel
# offers reports the back end it used and is otherwise identical between back ends.
info_across_backends() {
    _dev=$1; _tag=$2; _prev=
    for _b in $(backends); do
        run_out _out vfio-harness --iommu "$_b" info "$_dev" --json
        echo "$_out" >"/tmp/info-$_tag-$_b.json"
        expect_eq "backend reported" "$(echo "$_out" | json_str backend)" "$_b"
        grep -v '"backend"' "/tmp/info-$_tag-$_b.json" >"/tmp/info-$_tag-$_b.cmp"
        if [ -n "$_prev" ]; then
            diff "/tmp/info-$_tag-$_prev.cmp" "/tmp/info-$_tag-$_b.cmp" \
                || fail "info differs between $_prev and $_b"
        fi
        _prev=$_b
    done
}
# vhgpu_v1_only UUID... [-- INSMOD_PARAMS...]: reloads the vhgpu test module as a v1-only
# device (migration_v1=1 migration_v2=0, plus INSMOD_PARAMS), skipping the scenario when that
# cannot be done; on exit the named instances are removed and the module is reloaded with its
# boot parameters. Sets P (the types directory).
vhgpu_v1_only() {
    VHGPU_KO=/lib/modules/extra/vhgpu.ko
    [ -f "$VHGPU_KO" ] || skip "vhgpu module not shipped"
    [ -d /sys/module/vhgpu ] || skip "vhgpu module not loaded"
    P=/sys/class/mdev_bus/vhgpu/mdev_supported_types
    for _d in $P/*/devices/*; do
        [ -e "$_d" ] && skip "vhgpu instance $(basename "$_d") exists; cannot reload the module"
    done
    VHGPU_INSTANCES=
    while [ $# -gt 0 ] && [ "$1" != -- ]; do VHGPU_INSTANCES="$VHGPU_INSTANCES $1"; shift; done
    [ "$1" = -- ] && shift
    trap vhgpu_restore_module EXIT
    run rmmod vhgpu
    run insmod $VHGPU_KO migration_v1=1 migration_v2=0 "$@"
}
vhgpu_restore_module() {
    for _u in $VHGPU_INSTANCES; do
        [ -e /sys/bus/mdev/devices/$_u ] && echo 1 >/sys/bus/mdev/devices/$_u/remove
    done
    rmmod vhgpu 2>/dev/null
    insmod $VHGPU_KO $(cat /lib/modules/extra/vhgpu.params 2>/dev/null) || echo "reloading vhgpu failed"
}
