# vfioh: slow (GiB-scale transfers under TCG; run by tests/vm/run --slow or --only-slow)
# vhgpu through the harness with migration v1 only (module reloaded with migration_v1=1
# migration_v2=0, as vhgpu-v1 does): the harness's conformance suite on a v1 instance, then
# 1 GiB of VRAM (half through the BAR2 mmap, half by the DMA engine) migrated between two
# vhgpu-1G instances by `migrate` over the v1 region, checked byte-exact on the destination
# against both patterns. The module is reloaded with its boot parameters afterwards.
. /etc/vfioh/lib.sh
C=6f1e0c3a-7a1d-4c55-9d2e-00000000e100
S=6f1e0c3a-7a1d-4c55-9d2e-00000000e101
D=6f1e0c3a-7a1d-4c55-9d2e-00000000e102
vhgpu_v1_only $C $S $D

run sh -c "echo $C >$P/vhgpu-64M/create"
run_out info vfio-harness info $C --json
m=$(echo "$info" | json_obj migration)
expect_eq "migration protocol" "$(echo "$m" | json_str protocol)" v1
[ -n "$(echo "$m" | json_num region)" ] || fail "no v1 migration region index in info: $m"
run vfio-harness bar --mmap $C fill BAR2 --len 8M --seed 3
run_out out vfio-harness conformance $C --json
expect_eq "v1 conformance failures" "$(echo "$out" | json_num failed)" 0
expect_eq "v1 conformance protocol" "$(echo "$out" | json_str protocol)" v1
run sh -c "echo 1 >/sys/bus/mdev/devices/$C/remove"

run sh -c "echo $S >$P/vhgpu-1G/create"
run sh -c "echo $D >$P/vhgpu-1G/create"
t0=$(date +%s)
run vfio-harness bar --mmap $S fill BAR2 --offset 0 --len 512M --seed 21 --no-readback
run vfio-harness dma $S --fill 512M:512M --seed 22 --no-readback
t1=$(date +%s)
run_out m vfio-harness migrate $S $D --json
t2=$(date +%s)
echo "time: fill 1 GiB $((t1 - t0)) s, migrate (v1) $((t2 - t1)) s"
expect_eq "protocol" "$(echo "$m" | json_str protocol)" v1
bytes=$(echo "$m" | json_num bytes)
[ "$bytes" -ge 1073741824 ] || fail "migrated only $bytes bytes of 1 GiB of VRAM"
pattern_ok "destination, mmap half (fd)" $((512 << 20)) \
    vfio-harness bar $D crc BAR2 --offset 0 --len 512M --seed 21 --json
pattern_ok "destination, DMA half (DMA)" $((512 << 20)) \
    vfio-harness dma $D --crc 512M:512M --seed 22 --json
echo PASS
