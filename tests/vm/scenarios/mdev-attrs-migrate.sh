# migrate copies dynamic resources (compat rule 5): vhgpu lists priority,aggregate in
# dynamic_resources. The source is an aggregate=2 vhgpu-64M (128 MiB of VRAM) with data in
# its upper half; the destination a plain vhgpu-64M. migrate writes aggregate=2 and the
# priority to the destination before opening it (the report lists both as copied, the pool
# gives the destination its second unit), and the data arrives. With --no-copy-attrs a
# differing aggregate is refused before either device is touched, naming the attribute; a
# destination that has been opened refuses the copy (EBUSY, named); with --force
# --no-copy-attrs vhgpu itself refuses the stream and both devices stay RUNNING.
. /etc/vfioh/lib.sh
P=/sys/class/mdev_bus/vhgpu/mdev_supported_types
[ -d "$P" ] || skip "vhgpu module not loaded"
[ "$(cat /sys/module/vhgpu/parameters/migration_v2)" = Y ] || skip "vhgpu loaded without migration v2"
[ "$(cat $P/vhgpu-64M/available_instances)" -ge 6 ] || skip "room for fewer than six vhgpu-64M units"
B=6f1e0c3a-7a1d-4c55-9d2e-0000000a72
S=${B}01; D=${B}02; N=${B}03; W=${B}04
cleanup() { for u in $S $D $N $W; do [ -e /sys/bus/mdev/devices/$u ] && echo 1 >/sys/bus/mdev/devices/$u/remove; done; }
trap cleanup EXIT
avail() { cat "$P/vhgpu-$1/available_instances"; }
vattr() { cat "/sys/bus/mdev/devices/$1/vendor/$2"; }
state_of() { vfio-harness state "$1" --json | json_str initial; }

run vfio-harness mdev create --type vhgpu-64M --uuid $S --attr aggregate=2 --attr priority=4
run vfio-harness mdev create --type vhgpu-64M --uuid $D
expect_eq "source VRAM" "$(vattr $S vram_size)" $((128 << 20))
expect_eq "destination aggregate before" "$(vattr $D aggregate)" 1
expect_eq "destination priority before" "$(vattr $D priority)" 0
# Data in the source's second unit (beyond what a plain 64M instance has).
run vfio-harness bar --mmap $S fill BAR2 --offset 0x6000000 --len 16M --seed 21 --no-readback
run vfio-harness bar $S fill BAR2 --offset 0 --len 1M --seed 22 --no-readback
a64=$(avail 64M)

run_out m vfio-harness migrate $S $D --json
echo "$m" | flat | grep -q '"resource":"aggregate","attribute":"vendor/aggregate","source":"2","destination_before":"1","destination_after":"2","action":"copied"' \
    || fail "the report does not list aggregate 1 -> 2 as copied"
echo "$m" | flat | grep -q '"resource":"priority","attribute":"vendor/priority","source":"4","destination_before":"0","destination_after":"4","action":"copied"' \
    || fail "the report does not list priority 0 -> 4 as copied"
expect_eq "destination aggregate after" "$(vattr $D aggregate)" 2
expect_eq "destination priority after" "$(vattr $D priority)" 4
expect_eq "destination VRAM after" "$(vattr $D vram_size)" $((128 << 20))
expect_eq "64M available after the copy (one more unit taken)" "$(avail 64M)" $((a64 - 1))
run_out i vfio-harness info $D --json
expect_eq "destination BAR2 through VFIO" "$(echo "$i" | region_size BAR2)" $((128 << 20))
pattern_ok "destination's second unit" $((16 << 20)) \
    vfio-harness bar $D crc BAR2 --offset 0x6000000 --len 16M --seed 21 --json
pattern_ok "destination's first MiB" $((1 << 20)) \
    vfio-harness bar $D crc BAR2 --offset 0 --len 1M --seed 22 --json
# The text report says it too.
run vfio-harness mdev set-attr $D priority=4
run_out t vfio-harness migrate $S $D
echo "$t" | grep -q "dynamic resources: priority 4 (equal), aggregate 2 (equal)" \
    || fail "the text report does not show the dynamic resources as equal"

# --- refused: copying not allowed ---------------------------------------------------------
run vfio-harness mdev create --type vhgpu-64M --uuid $N --attr priority=4
a64=$(avail 64M)
echo "+ (expect refusal) vfio-harness migrate $S $N --no-copy-attrs"
if e=$(vfio-harness migrate $S $N --no-copy-attrs 2>&1); then echo "$e"; fail "migrated with a differing aggregate"; fi
echo "$e"
echo "$e" | grep -q "dynamic resource aggregate differs: source \"2\", destination $N has \"1\" (vendor/aggregate)" \
    || fail "the refusal does not name aggregate and both values"
expect_eq "destination aggregate after the refusal" "$(vattr $N aggregate)" 1
expect_eq "64M available after the refusal" "$(avail 64M)" "$a64"
# Nothing opened the destination: aggregate can still be set (vhgpu fixes it at first open).
run vfio-harness mdev set-attr $N aggregate=1

# --- refused: the destination was opened before, so vhgpu will not change aggregate --------
run vfio-harness info $N
echo "+ (expect refusal) vfio-harness migrate $S $N"
if e=$(vfio-harness migrate $S $N 2>&1); then echo "$e"; fail "migrated into a destination whose aggregate is fixed"; fi
echo "$e"
echo "$e" | grep -q "copying dynamic resource aggregate to $N failed: the kernel refused vendor/aggregate=\"2\" on $N: Device or resource busy (os error 16) \[EBUSY\]" \
    || fail "the refusal does not name vendor/aggregate and EBUSY"
expect_eq "destination aggregate after EBUSY" "$(vattr $N aggregate)" 1

# --- forced without copying: the device refuses the stream (VRAM size differs) ------------
echo "+ (expect device refusal) vfio-harness migrate $S $N --no-copy-attrs --force"
if e=$(vfio-harness migrate $S $N --no-copy-attrs --force 2>&1); then echo "$e"; fail "vhgpu accepted a 128 MiB stream into 64 MiB"; fi
echo "$e"
expect_eq "source state after the device refused" "$(state_of $S)" RUNNING
expect_eq "destination state after the device refused" "$(state_of $N)" RUNNING

# --- failed after the copy: what was copied is written back -------------------------------
# Both devices open, then the migration fails (a dirty writer on a region that does not
# exist). priority goes back to 0 (vhgpu takes it whenever the device is closed); aggregate
# cannot (vhgpu fixes it at first open, and the failed migration opened the destination),
# and migrate says so.
echo 1 > /sys/bus/mdev/devices/$D/remove
run vfio-harness mdev create --type vhgpu-64M --uuid $W
echo "+ (expect failure) vfio-harness migrate $S $W --dirty-writer BAR9:1M"
if e=$(vfio-harness migrate $S $W --dirty-writer BAR9:1M 2>&1); then echo "$e"; fail "migrated with a dirty writer on BAR9"; fi
echo "$e"
expect_eq "priority written back after the failure" "$(vattr $W priority)" 0
expect_eq "aggregate, fixed at the failed migration's open" "$(vattr $W aggregate)" 2
echo "$e" | grep -q "warning: after the failure reported below, $W: could not write back the earlier value of vendor/aggregate" \
    || fail "migrate does not say that aggregate could not be written back"
echo "$e" | grep -q "BAR9" || fail "the failure itself is not reported"
expect_eq "source state after the failure" "$(state_of $S)" RUNNING
expect_eq "destination state after the failure" "$(state_of $W)" RUNNING
echo PASS
