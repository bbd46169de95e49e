# The library as a VMM embeds it (examples/vmm_handoff, packed as /bin/vmm_handoff): a
# step-by-step handoff with the session API (pre-copy, vCPUs paused, stop-copy, source left
# STOP, destination RUNNING), on mtty (a marker in the scratch register, BAR0+7) and on
# vhgpu (a 4 KiB marker at the start of BAR2, its VRAM), each read back from the destination.
. /etc/vfioh/lib.sh
need MTTY_A MTTY_B
command -v vmm_handoff >/dev/null || fail "vmm_handoff is not in the initramfs"
state_of() { vfio-harness state "$1" --json | json_str initial; }

run_out out vmm_handoff "$MTTY_A" "$MTTY_B"
echo "$out" | grep -q "source STOP, destination RUNNING" || fail "mtty: end states not reported"
echo "$out" | grep -q "verified by a marker in BAR0 offset 7" || fail "mtty: marker not verified"
# Whatever the device fd's close left, the shared devices go back to RUNNING for the others.
run vfio-harness state "$MTTY_A" RUNNING
expect_eq "mtty destination" "$(state_of "$MTTY_B")" RUNNING

P=/sys/class/mdev_bus/vhgpu/mdev_supported_types
if [ -d "$P" ] && [ "$(cat /sys/module/vhgpu/parameters/migration_v2)" = Y ]; then
    S=6f1e0c3a-7a1d-4c55-9d2e-00000000f301
    D=6f1e0c3a-7a1d-4c55-9d2e-00000000f302
    cleanup() { for u in $S $D; do [ -e /sys/bus/mdev/devices/$u ] && echo 1 >/sys/bus/mdev/devices/$u/remove; done; }
    trap cleanup EXIT
    run sh -c "echo $S >$P/vhgpu-64M/create"
    run sh -c "echo $D >$P/vhgpu-64M/create"
    run_out out vmm_handoff $S $D
    echo "$out" | grep -q "source STOP, destination RUNNING" || fail "vhgpu: end states not reported"
    echo "$out" | grep -q "verified by a 4 KiB marker in BAR2" || fail "vhgpu: marker not verified"
else
    fail "vhgpu with migration v2 is not loaded"
fi
echo PASS
