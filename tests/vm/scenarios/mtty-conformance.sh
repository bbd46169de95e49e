# The migration contract on the kernel's own mtty sample (flags STOP_COPY|P2P|PRE_COPY):
# `conformance` passes, walking every arc including the P2P and PRE_COPY ones; and the
# compatibility pre-check refuses an mtty-2 source against an mtty-1 destination and accepts
# two mtty-2s.
. /etc/vfioh/lib.sh
need MTTY_A MTTY_B MTTY_D

run_out out vfio-harness conformance "$MTTY_B"
for arc in "RUNNING->RUNNING_P2P" "RUNNING->PRE_COPY" "PRE_COPY->PRE_COPY_P2P" \
    "PRE_COPY_P2P->STOP_COPY" "RUNNING_P2P->STOP" "STOP->RESUMING" "RESUMING->STOP"; do
    echo "$out" | grep -q "^PASS arc $arc:" || fail "arc $arc not passed"
done
echo "$out" | grep -q "^PASS resume-truncated" || fail "truncated data not refused"
echo "$out" | grep -q "^PASS end-running" || fail "device not left RUNNING"

run_out js vfio-harness conformance "$MTTY_B" --json
expect_eq "conformance failures (json)" "$(echo "$js" | json_num failed)" 0

# Same type: compatible (exit 0); the attributes mtty does not expose are unknown, not ok.
run_out out vfio-harness compat "$MTTY_A" "$MTTY_B"
echo "$out" | grep -q "^  PASS    mdev_type" || fail "mdev_type rule did not pass"
echo "$out" | grep -q "^  UNKNOWN software_version" || fail "software_version should be unknown on mtty"
# --strict counts unknown rules as failures.
must_fail vfio-harness compat "$MTTY_A" "$MTTY_B" --strict
# mtty-2 -> mtty-1: refused on the type rule, exit non-zero.
if out=$(vfio-harness compat "$MTTY_A" "$MTTY_D" --json); then
    fail "compat accepted mtty-2 -> mtty-1"
fi
echo "$out"
echo "$out" | grep -q '"compatible": false' || fail "the JSON report does not say incompatible"
echo "$out" | grep -q '"verdict": "incompatible"' || fail "the JSON verdict is not incompatible"
# And migrate refuses the pair without --force, leaving both devices RUNNING.
must_fail vfio-harness migrate "$MTTY_A" "$MTTY_D"
for d in "$MTTY_A" "$MTTY_D"; do
    run_out st vfio-harness state "$d"
    echo "$st" | grep -q RUNNING || fail "$d not RUNNING after the refused migrate"
done
