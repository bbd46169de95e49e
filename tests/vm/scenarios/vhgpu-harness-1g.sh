# vfioh: slow (GiB-scale transfers under TCG; run by tests/vm/run --slow or --only-slow)
# vhgpu through the harness's own commands (migration v2): two vhgpu-1G instances; the
# DMA engine checked end to end (dma --check: IOVA -> VRAM -> IOVA, MSI completion); the
# source's 1 GiB of VRAM written half through the BAR2 mmap (bar fill --mmap) and half by
# the device's DMA engine (dma --fill); migrate (pre-copy + stop-copy); the destination's
# VRAM checked against both patterns (bar crc --seed through the fd, dma --crc --seed
# through DMA); the source, running again, still has the CRC it had before.
. /etc/vfioh/lib.sh
P=/sys/class/mdev_bus/vhgpu/mdev_supported_types
[ -d "$P" ] || skip "vhgpu module not loaded"
[ "$(cat /sys/module/vhgpu/parameters/migration_v2)" = Y ] || skip "vhgpu loaded without migration v2"
[ "$(cat $P/vhgpu-1G/available_instances)" -ge 2 ] || skip "room for fewer than two vhgpu-1G instances"
S=6f1e0c3a-7a1d-4c55-9d2e-00000000e001
D=6f1e0c3a-7a1d-4c55-9d2e-00000000e002
cleanup() { for u in $S $D; do [ -e /sys/bus/mdev/devices/$u ] && echo 1 >/sys/bus/mdev/devices/$u/remove; done; }
trap cleanup EXIT
run sh -c "echo $S >$P/vhgpu-1G/create"
run sh -c "echo $D >$P/vhgpu-1G/create"

run_out out vfio-harness dma $S --size 16M --check --check-bytes 32M --check-offset 0x3000000 --json
c=$(echo "$out" | json_obj check)
expect_eq "check.bytes" "$(echo "$c" | json_num bytes)" $((32 << 20))
expect_eq "check.matched" "$(echo "$c" | json_bool matched)" true
expect_eq "check.guard_intact" "$(echo "$c" | json_bool guard_intact)" true
t0=$(date +%s)
run vfio-harness bar --mmap $S fill BAR2 --offset 0 --len 512M --seed 11 --no-readback
t1=$(date +%s)
run vfio-harness dma $S --fill 512M:512M --seed 12 --no-readback
t2=$(date +%s)
echo "time: mmap fill 512M $((t1 - t0)) s, DMA fill 512M $((t2 - t1)) s"
run_out c vfio-harness bar $S crc BAR2 --json
src_crc=$(echo "$c" | json_str crc32)
t3=$(date +%s)
run_out m vfio-harness migrate $S $D --json
t4=$(date +%s)
echo "time: source crc $((t3 - t2)) s, migrate $((t4 - t3)) s"
bytes=$(echo "$m" | json_num bytes)
[ "$bytes" -ge 1073741824 ] || fail "migrated only $bytes bytes of 1 GiB of VRAM"
pattern_ok "destination, mmap half (fd)" $((512 << 20)) \
    vfio-harness bar $D crc BAR2 --offset 0 --len 512M --seed 11 --json
pattern_ok "destination, DMA half (DMA)" $((512 << 20)) \
    vfio-harness dma $D --crc 512M:512M --seed 12 --json
# The source runs again and is unchanged.
run_out c vfio-harness bar $S crc BAR2 --json
expect_eq "source VRAM crc32 after migrating" "$(echo "$c" | json_str crc32)" "$src_crc"
t5=$(date +%s)
echo "time: destination checks $((t5 - t4)) s"
echo PASS
