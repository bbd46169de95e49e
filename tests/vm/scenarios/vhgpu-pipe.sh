# vhgpu saved into a pipe and a FIFO by the engine's two threads (the default overlap),
# which share the device in turns and put the chunks in stream order. `save -o - |
# restore -i -` in 64 KiB chunks (1024 of them for the 64 MiB VRAM), and a save into a FIFO a
# restore reads, leave the destination's VRAM byte-exact (all 64 MiB against the source's
# pattern) and both devices RUNNING; the save's report says the pipe held a chunk or more.
. /etc/vfioh/lib.sh
P=/sys/class/mdev_bus/vhgpu/mdev_supported_types
[ -d "$P" ] || skip "vhgpu module not loaded"
[ "$(cat /sys/module/vhgpu/parameters/migration_v2)" = Y ] || skip "vhgpu loaded without migration v2"
S=6f1e0c3a-7a1d-4c55-9d2e-00000000f601
D=6f1e0c3a-7a1d-4c55-9d2e-00000000f602
H=vfio-harness
cleanup() {
    rm -f /tmp/vp.fifo
    for u in $S $D; do [ -e /sys/bus/mdev/devices/$u ] && echo 1 >/sys/bus/mdev/devices/$u/remove; done
}
trap cleanup EXIT
run sh -c "echo $S >$P/vhgpu-64M/create"
run sh -c "echo $D >$P/vhgpu-64M/create"
state_of() { $H state "$1" --json | json_str initial; }
vram_is() { pattern_ok "$1" $((64 << 20)) $H bar "$2" crc BAR2 --len 64M --seed "$3" --json; }

# 1. save | restore through a pipe, the save in 64 KiB chunks, both overlapped.
run $H bar --mmap $S fill BAR2 --len 64M --seed 61 --no-readback
run $H bar --mmap $D fill BAR2 --len 64M --seed 62 --no-readback
echo "+ $H save $S -o - --buffer 64K --json | $H restore $D -i - --json"
$H save $S -o - --buffer 64K --json 2>/tmp/vp-s.json \
    | $H restore $D -i - --json >/tmp/vp-r.json \
    || { cat /tmp/vp-s.json /tmp/vp-r.json; fail "save | restore through a pipe"; }
cat /tmp/vp-s.json /tmp/vp-r.json
# At least one chunk: the restore may have grown the pipe to its own 1 MiB buffer first.
[ "$(json_num pipe_capacity_bytes </tmp/vp-s.json)" -ge 65536 ] || fail "the save's pipe held less than a chunk"
[ "$(json_num chunks </tmp/vp-s.json)" -ge 1024 ] || fail "the save wrote fewer than 1024 chunks"
[ "$(json_num bytes </tmp/vp-r.json)" -ge $((64 << 20)) ] || fail "the restore moved less than the VRAM"
vram_is "D's VRAM after save | restore" $D 61
expect_eq "S after saving into a pipe" "$(state_of $S)" RUNNING
expect_eq "D after restoring from a pipe" "$(state_of $D)" RUNNING

# 2. save into a FIFO that a restore reads (1 MiB chunks).
run $H bar --mmap $S fill BAR2 --len 64M --seed 63 --no-readback
rm -f /tmp/vp.fifo; mkfifo /tmp/vp.fifo
$H restore $D -i /tmp/vp.fifo --json >/tmp/vp-fr.json &
reader=$!
run $H save $S -o /tmp/vp.fifo
wait $reader || { cat /tmp/vp-fr.json; fail "the restore from the FIFO"; }
vram_is "D's VRAM after a save into a FIFO" $D 63
expect_eq "D after restoring from a FIFO" "$(state_of $D)" RUNNING
echo PASS
