# Stream compression on a kernel device: vhgpu-64M with 16 MiB of pseudo-random VRAM and
# 48 MiB written with zeros (vhgpu saves only the pages written, so untouched VRAM would not
# be in the stream at all; these zeros are, as a mostly empty GPU's memory). `save --compress auto` writes
# format version 2: the bytes on the wire are at most half the device state yet at least the
# random part (which cannot shrink); `--compress none` writes version 1 at full size. Both
# streams restore into a second instance with VRAM equal to the source's, and the source is
# RUNNING with its VRAM unchanged. Both files go through the engine's O_DIRECT writer (the
# guest's /tmp is tmpfs, which takes the flag since Linux 6.6 and writes through its page
# cache anyway: the writer's staging, direct and tail logic runs on real device data, the
# disk's alignment rules are the host's unit tests'); a `--buffered` save of the same state
# says it was not direct, is as long as the uncompressed one and restores the same. Each
# restore reads its file through the page cache (tmpfs holds all of it) and says so.
. /etc/vfioh/lib.sh
P=/sys/class/mdev_bus/vhgpu/mdev_supported_types
[ -d "$P" ] || skip "vhgpu module not loaded"
[ "$(cat /sys/module/vhgpu/parameters/migration_v2)" = Y ] || skip "vhgpu loaded without migration v2"
S=6f1e0c3a-7a1d-4c55-9d2e-00000000e501
D=6f1e0c3a-7a1d-4c55-9d2e-00000000e502
cleanup() { for u in $S $D; do [ -e /sys/bus/mdev/devices/$u ] && echo 1 >/sys/bus/mdev/devices/$u/remove; done; rm -f /tmp/c-auto.vfhs /tmp/c-none.vfhs /tmp/c-buf.vfhs; }
trap cleanup EXIT
run sh -c "echo $S >$P/vhgpu-64M/create"
run sh -c "echo $D >$P/vhgpu-64M/create"
run vfio-harness bar --mmap $S fill BAR2 --offset 0 --len 16M --seed 61 --no-readback
run vfio-harness bar --mmap $S fill BAR2 --offset 0x1000000 --len 48M --zeros --no-readback
run_out c vfio-harness bar $S crc BAR2 --json
src_crc=$(echo "$c" | json_str crc32)

run_out a vfio-harness save $S -o /tmp/c-auto.vfhs --compress auto --json
dev=$(echo "$a" | json_num bytes)
wire=$(echo "$a" | json_num stream_bytes)
echo "auto: $dev bytes of device state, $wire on the wire"
[ "${dev:-0}" -ge 67108864 ] || fail "saved only $dev bytes of 64 MiB of VRAM"
[ "$wire" -le $((dev / 2)) ] || fail "auto wrote $wire bytes for $dev: zero VRAM was not elided"
[ "$wire" -ge $((16 << 20)) ] || fail "auto wrote $wire bytes: less than the 16 MiB of random VRAM"
expect_eq "file size = stream_bytes" "$(wc -c </tmp/c-auto.vfhs | tr -d ' ')" "$wire"
expect_eq "format version of the auto stream" "$(od -An -tu4 -j8 -N4 /tmp/c-auto.vfhs | tr -d ' ')" 2
expect_eq "auto stream written with O_DIRECT" "$(echo "$a" | json_bool direct_io)" true

run_out n vfio-harness save $S -o /tmp/c-none.vfhs --compress none --json
nwire=$(echo "$n" | json_num stream_bytes)
[ "$nwire" -gt "$dev" ] || fail "an uncompressed stream of $dev bytes took only $nwire"
expect_eq "format version of the uncompressed stream" "$(od -An -tu4 -j8 -N4 /tmp/c-none.vfhs | tr -d ' ')" 1
expect_eq "uncompressed stream written with O_DIRECT" "$(echo "$n" | json_bool direct_io)" true
expect_eq "file size = stream_bytes (none)" "$(wc -c </tmp/c-none.vfhs | tr -d ' ')" "$nwire"

run_out b vfio-harness save $S -o /tmp/c-buf.vfhs --buffered --json
expect_eq "buffered save not direct" "$(echo "$b" | json_bool direct_io)" false
expect_eq "buffered stream as long as the direct one" "$(echo "$b" | json_num stream_bytes)" "$nwire"
expect_eq "file size = stream_bytes (buffered)" "$(wc -c </tmp/c-buf.vfhs | tr -d ' ')" "$nwire"

for f in /tmp/c-auto.vfhs /tmp/c-none.vfhs /tmp/c-buf.vfhs; do
    run sh -c "echo 1 >/sys/bus/mdev/devices/$D/remove"
    run sh -c "echo $D >$P/vhgpu-64M/create"
    run_out r vfio-harness restore $D -i $f --json
    expect_eq "restored device bytes ($f)" "$(echo "$r" | json_num bytes)" "$dev"
    # tmpfs holds the whole file in the page cache: restore reads it from there, not direct.
    expect_eq "restore of a cached file not direct ($f)" "$(echo "$r" | json_bool direct_io)" false
    run_out c vfio-harness bar $D crc BAR2 --json
    expect_eq "destination VRAM crc32 = source's ($f)" "$(echo "$c" | json_str crc32)" "$src_crc"
    pattern_ok "destination random part ($f)" $((16 << 20)) \
        vfio-harness bar $D crc BAR2 --offset 0 --len 16M --seed 61 --json
done
run_out c vfio-harness bar $S crc BAR2 --json
expect_eq "source VRAM crc32 unchanged" "$(echo "$c" | json_str crc32)" "$src_crc"
run_out i vfio-harness info $S --json
expect_eq "source state" "$(echo "$i" | json_str state)" RUNNING
echo PASS
