# `reset` and `state` on mtty: walk v2 arcs one by one; an unreachable arc fails with the
# errno and the device is put back to RUNNING.
. /etc/vfioh/lib.sh
need MTTY_A
run vfio-harness reset "$MTTY_A"
run_out out vfio-harness state "$MTTY_A" --json
expect_eq "initial state" "$(echo "$out" | json_str initial)" RUNNING
run_out out vfio-harness state "$MTTY_A" RUNNING_P2P STOP STOP_COPY STOP RUNNING --json
expect_eq "final state" "$(echo "$out" | json_str final)" RUNNING
run_out out vfio-harness state "$MTTY_A" PRE_COPY PRE_COPY_P2P STOP_COPY STOP RUNNING --json
expect_eq "final state (pre-copy walk)" "$(echo "$out" | json_str final)" RUNNING
echo "+ (expect failure) vfio-harness state $MTTY_A STOP_COPY PRE_COPY --json"
if out=$(vfio-harness state "$MTTY_A" STOP_COPY PRE_COPY --json); then fail "STOP_COPY -> PRE_COPY accepted"; fi
echo "$out"
expect_eq "state after failed arc" "$(echo "$out" | json_str final)" RUNNING
echo "$out" | grep -q '"errno": 22' || fail "the failed arc did not report EINVAL"
exit 0
