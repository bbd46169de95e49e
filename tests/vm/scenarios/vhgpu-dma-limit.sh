# vhgpu's vendor knob dma_rate_limit_mbps (MiB/s, 0 = off), set at create with
# `mdev create --attr`: the DMA engine of a limited instance never beats the limit as the
# harness measures it (`dma --fill --json` bytes_per_second), the data still arrives
# byte-exact, and the knob is changed again with `mdev set-attr` on the closed instance.
# The unlimited rate is printed for comparison only (TCG speed is not a gate).
. /etc/vfioh/lib.sh
P=/sys/class/mdev_bus/vhgpu/mdev_supported_types
[ -d "$P" ] || skip "vhgpu module not loaded"
[ "$(cat $P/vhgpu-64M/available_instances)" -ge 2 ] || skip "room for fewer than two vhgpu-64M instances"
L=6f1e0c3a-7a1d-4c55-9d2e-0000000a7101
F=6f1e0c3a-7a1d-4c55-9d2e-0000000a7102
cleanup() { for u in $L $F; do [ -e /sys/bus/mdev/devices/$u ] && echo 1 >/sys/bus/mdev/devices/$u/remove; done; }
trap cleanup EXIT
LIMIT=8
run vfio-harness mdev create --type vhgpu-64M --uuid $L --attr dma_rate_limit_mbps=$LIMIT
run vfio-harness mdev create --type vhgpu-64M --uuid $F
expect_eq "dma_rate_limit_mbps" "$(cat /sys/bus/mdev/devices/$L/vendor/dma_rate_limit_mbps)" $LIMIT
expect_eq "default dma_rate_limit_mbps" "$(cat /sys/bus/mdev/devices/$F/vendor/dma_rate_limit_mbps)" 0

run_out f vfio-harness dma $F --fill 0:16M --seed 5 --no-readback --json
free=$(echo "$f" | json_num bytes_per_second)
run_out l vfio-harness dma $L --fill 0:16M --seed 5 --no-readback --json
lim=$(echo "$l" | json_num bytes_per_second)
secs=$(echo "$l" | grep -o '"seconds": *[0-9.]*' | head -n 1 | sed 's/.*: *//')
echo "DMA fill 16 MiB: unlimited $((free >> 20)) MiB/s, limited to $LIMIT MiB/s: $((lim >> 10)) KiB/s in $secs s"
[ "$lim" -le $((LIMIT << 20)) ] || fail "limited DMA ran at $lim B/s, above $LIMIT MiB/s"
[ "$lim" -gt 0 ] || fail "no rate measured"
# The limited engine still moves the right bytes.
pattern_ok "limited DMA fill" $((16 << 20)) vfio-harness dma $L --crc 0:16M --seed 5 --json

# Lower the limit on the closed instance: the next transfer obeys the new one.
run vfio-harness mdev set-attr $L dma_rate_limit_mbps=2
run_out l vfio-harness dma $L --fill 16M:4M --seed 6 --no-readback --json
lim2=$(echo "$l" | json_num bytes_per_second)
echo "DMA fill 4 MiB limited to 2 MiB/s: $((lim2 >> 10)) KiB/s"
[ "$lim2" -le $((2 << 20)) ] || fail "DMA ran at $lim2 B/s after lowering the limit to 2 MiB/s"
must_fail sh -c "echo 2000000 >/sys/bus/mdev/devices/$L/vendor/dma_rate_limit_mbps"
echo PASS
