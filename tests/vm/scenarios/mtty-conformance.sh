# The migration contract on the kernel's own mtty sample (flags STOP_COPY|P2P|PRE_COPY):
# `conformance` passes every clause (arcs including the P2P and PRE_COPY ones); and the
# compatibility pre-check refuses an mtty-2 source against an mtty-1 destination and accepts
# two mtty-2s.
. /etc/vfioh/lib.sh
need MTTY_A MTTY_B MTTY_D

# Every clause checked; none fails (mtty's 0 at the pre-copy temporary end of stream is a
# WARN, dma-logging a SKIP); the perturbation is mtty's own (UART FIFO and scratch).
run_out out vfio-harness conformance "$MTTY_B"
for id in state-after-arc stop-copy-eof read-size new-data-fd session-ends precopy-info-state \
    precopy-initial precopy-path write-size resume-refuses resume-loads reset data-size left-running; do
    echo "$out" | grep -q "^PASS  $id  " || fail "check $id did not pass"
done
echo "$out" | grep -q "^\(PASS\|WARN\)  precopy-info-agrees  " || fail "precopy-info-agrees failed"
echo "$out" | grep -q "^perturbation: mtty" || fail "the mtty perturbation was not used"
echo "$out" | grep -q "^FAIL" && fail "a check failed"

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
