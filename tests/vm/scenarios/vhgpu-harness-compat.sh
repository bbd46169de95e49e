# vhgpu through the harness: compat and migrate's compatibility gate on software_version.
# vhgpu instances keep the software_version the module had when they were created (the
# parameter is writable), so instances of 1.2.0, 1.3.0 and 2.0.0 coexist. compat accepts
# same-type same-major pairs (and an older minor into a newer one), refuses a different
# major (and a newer minor into an older one); migrate refuses the incompatible pair without
# --force and leaves both devices RUNNING; with --force the device itself refuses the
# stream (EPROTO) and the harness recovers both devices. Then the conformance suite (v2).
. /etc/vfioh/lib.sh
P=/sys/class/mdev_bus/vhgpu/mdev_supported_types
SV=/sys/module/vhgpu/parameters/software_version
[ -d "$P" ] || skip "vhgpu module not loaded"
[ -w "$SV" ] || skip "vhgpu software_version is not writable"
[ "$(cat /sys/module/vhgpu/parameters/migration_v2)" = Y ] || skip "vhgpu loaded without migration v2"
B=6f1e0c3a-7a1d-4c55-9d2e-00000000e30
A=${B}1; A2=${B}2; M=${B}3; N=${B}4; K=${B}5
orig=$(cat $SV)
cleanup() {
    for u in $A $A2 $M $N $K; do [ -e /sys/bus/mdev/devices/$u ] && echo 1 >/sys/bus/mdev/devices/$u/remove; done
    echo "$orig" >$SV
}
trap cleanup EXIT
run sh -c "echo 1.2.0 >$SV"
run sh -c "echo $A >$P/vhgpu-64M/create"
run sh -c "echo $A2 >$P/vhgpu-64M/create"
run sh -c "echo $K >$P/vhgpu-64M/create"
run sh -c "echo 1.3.0 >$SV"
run sh -c "echo $N >$P/vhgpu-64M/create"
run sh -c "echo 2.0.0 >$SV"
run sh -c "echo $M >$P/vhgpu-64M/create"
run sh -c "echo $orig >$SV"
expect_eq "A's software_version" "$(cat /sys/bus/mdev/devices/$A/vendor/software_version)" 1.2.0
expect_eq "M's software_version" "$(cat /sys/bus/mdev/devices/$M/vendor/software_version)" 2.0.0

# verdict SRC DST: the JSON verdict and the software_version rule's verdict (exit ignored).
verdict() {
    _o=$(vfio-harness compat "$1" "$2" --json); echo "$_o" >&2
    echo "$(echo "$_o" | grep -o '"verdict": *"[^"]*"' | tail -n 1 | sed 's/.*: *"//; s/"$//') $(echo "$_o" | tr -d ' \n' | grep -o '"reason":"[^"]*","rule":"software_version","verdict":"[a-z]*"' | sed 's/.*"verdict":"//; s/"$//')"
}
run vfio-harness compat $A $A2
expect_eq "compat 1.2.0 -> 1.2.0" "$(verdict $A $A2)" "compatible pass"
run vfio-harness compat $A $N
expect_eq "compat 1.2.0 -> 1.3.0" "$(verdict $A $N)" "compatible pass"
must_fail vfio-harness compat $N $A
expect_eq "compat 1.3.0 -> 1.2.0" "$(verdict $N $A)" "incompatible fail"
echo "+ (expect refusal) vfio-harness compat $A $M --json"
if out=$(vfio-harness compat $A $M --json); then echo "$out"; fail "compat accepted major 1 -> 2"; fi
echo "$out"
echo "$out" | tr -d ' \n' | grep -q '"rule":"software_version","verdict":"fail"' \
    || echo "$out" | tr -d ' \n' | grep -q '"verdict":"fail","reason":"major differs' \
    || fail "compat did not fail the software_version rule"

run vfio-harness bar --mmap $A fill BAR2 --len 4M --seed 41
echo "+ (expect refusal) vfio-harness migrate $A $M"
if out=$(vfio-harness migrate $A $M 2>&1); then echo "$out"; fail "migrate accepted major 1 -> 2 without --force"; fi
echo "$out"
echo "$out" | grep -q "software_version" || fail "migrate's refusal does not name software_version"
for u in $A $M; do
    run_out s vfio-harness state $u --json
    expect_eq "$u state after the refusal" "$(echo "$s" | json_str initial)" RUNNING
done
echo "+ (expect device refusal) vfio-harness migrate $A $M --force"
if out=$(vfio-harness migrate $A $M --force 2>&1); then echo "$out"; fail "vhgpu accepted a major-2 destination for a major-1 stream"; fi
echo "$out"
for u in $A $M; do
    run_out s vfio-harness state $u --json
    expect_eq "$u state after the device refused" "$(echo "$s" | json_str initial)" RUNNING
done
run_out out vfio-harness migrate $A $A2 --json
[ "$(echo "$out" | json_num bytes)" -ge $((4 << 20)) ] || fail "migrated fewer bytes than the 4 MiB written"
run_out out vfio-harness bar $A2 crc BAR2 --len 4M --seed 41 --json
expect_eq "A2 holds A's pattern after migrating" "$(echo "$out" | json_bool matched)" true

run_out out vfio-harness conformance $K --json
expect_eq "conformance failures on vhgpu" "$(echo "$out" | json_num failed)" 0
[ "$(echo "$out" | grep -c '"verdict": "PASS"')" -ge 10 ] || fail "fewer than 10 conformance checks passed"
echo PASS
