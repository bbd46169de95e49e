# vhgpu through the harness on one thread (`--no-overlap`: the engine's device I/O not
# overlapped with framing, hashing and the stream's I/O, for a machine with fewer CPUs than
# busy threads). `save | restore` through a pipe and an in-process `migrate` leave the
# destination's VRAM byte-exact (all 64 MiB compared with the source's pattern) and both
# devices RUNNING. A stream with one byte of its first payload flipped, fed through a pipe, is
# refused by the one-thread reader (which verifies each payload as its reads return) as
# corrupt data in chunk 0, the destination RUNNING and still restorable.
. /etc/vfioh/lib.sh
P=/sys/class/mdev_bus/vhgpu/mdev_supported_types
[ -d "$P" ] || skip "vhgpu module not loaded"
[ "$(cat /sys/module/vhgpu/parameters/migration_v2)" = Y ] || skip "vhgpu loaded without migration v2"
S=6f1e0c3a-7a1d-4c55-9d2e-00000000f501
D=6f1e0c3a-7a1d-4c55-9d2e-00000000f502
H=vfio-harness
cleanup() { for u in $S $D; do [ -e /sys/bus/mdev/devices/$u ] && echo 1 >/sys/bus/mdev/devices/$u/remove; done; }
trap cleanup EXIT
run sh -c "echo $S >$P/vhgpu-64M/create"
run sh -c "echo $D >$P/vhgpu-64M/create"
state_of() { $H state "$1" --json | json_str initial; }
vram_is() { pattern_ok "$1" $((64 << 20)) $H bar "$2" crc BAR2 --len 64M --seed "$3" --json; }

# 1. save | restore through a pipe, both on one thread.
run $H bar --mmap $S fill BAR2 --len 64M --seed 51 --no-readback
run $H bar --mmap $D fill BAR2 --len 64M --seed 52 --no-readback
echo "+ $H save $S -o - --no-overlap | $H restore $D -i - --no-overlap --json"
$H save $S -o - --no-overlap | $H restore $D -i - --no-overlap --json >/tmp/ot-r.json \
    || { cat /tmp/ot-r.json; fail "save | restore on one thread"; }
cat /tmp/ot-r.json
[ "$(json_num bytes </tmp/ot-r.json)" -ge $((64 << 20)) ] || fail "the restore moved less than the VRAM"
vram_is "D's VRAM after a one-thread restore from a pipe" $D 51
expect_eq "S after saving" "$(state_of $S)" RUNNING
expect_eq "D after restoring" "$(state_of $D)" RUNNING

# 2. migrate on one thread (in process).
run $H bar --mmap $S fill BAR2 --len 64M --seed 53 --no-readback
run_out m $H migrate $S $D --no-overlap --json
[ "$(echo "$m" | json_num bytes)" -ge $((64 << 20)) ] || fail "the migration moved less than the VRAM"
vram_is "D's VRAM after a one-thread migrate" $D 53
expect_eq "D after migrating" "$(state_of $D)" RUNNING

# 3. One byte of the first payload flipped: refused as corrupt data in chunk 0.
run $H save $S -o /tmp/ot.vfs --no-overlap
jlen=$(od -An -tu4 -j12 -N4 /tmp/ot.vfs | tr -d ' ')
version=$(od -An -tu4 -j8 -N4 /tmp/ot.vfs | tr -d ' ')
expect_eq "format version of the uncompressed stream" "$version" 1
# Stream header (16 + JSON + 8), then chunk 0's 24-byte header, then its payload.
at=$((16 + jlen + 8 + 24 + 1000))
cp /tmp/ot.vfs /tmp/ot-flip.vfs
b=$(od -An -tu1 -j "$at" -N1 /tmp/ot-flip.vfs | tr -d ' ')
printf "\\$(printf %o $((b ^ 255)))" | dd of=/tmp/ot-flip.vfs bs=1 seek="$at" conv=notrunc 2>/dev/null
cmp -s /tmp/ot.vfs /tmp/ot-flip.vfs && fail "the byte flip did not change the file"
echo "+ (expect failure) cat /tmp/ot-flip.vfs | $H restore $D -i - --no-overlap --json"
if cat /tmp/ot-flip.vfs | $H restore $D -i - --no-overlap --json >/tmp/ot-e.json; then
    fail "a corrupt stream was restored"
fi
cat /tmp/ot-e.json
expect_eq "error kind" "$(json_str kind </tmp/ot-e.json)" stream-corrupt
grep -q '"message": *"[^"]*corrupt data in chunk 0 ' /tmp/ot-e.json \
    || fail "the error does not name the corrupt payload of chunk 0"
expect_eq "D after the refusal" "$(state_of $D)" RUNNING
# Still restorable: the good stream on one thread.
run $H restore $D -i /tmp/ot.vfs --no-overlap
vram_is "D's VRAM after the refusal and a good restore" $D 53
rm -f /tmp/ot.vfs /tmp/ot-flip.vfs
echo PASS
