# The harness's migration v1 driver (src/migration/v1.rs) on a real kernel: vhgpu reloaded
# as a v1-only device (migration_v1=1 migration_v2=0, the 2020-era vendor shape), then
# `vfio-harness save` (stop-copy, and with pre-copy rounds) and `restore` into a second
# instance (the module validates the stream when RESUMING ends), a truncated stream refused
# with the destination left usable. The module is reloaded with its boot parameters after.
. /etc/vfioh/lib.sh
S=6f1e0c3a-7a1d-4c55-9d2e-00000000e001
D=6f1e0c3a-7a1d-4c55-9d2e-00000000e002
vhgpu_v1_only $S $D -- v1_data_kb=256
run sh -c "echo $S >$P/vhgpu-64M/create"
run sh -c "echo $D >$P/vhgpu-64M/create"

run vfio-harness info $S
run vfio-harness save $S -o /tmp/v1-s.bin
run vfio-harness restore $D -i /tmp/v1-s.bin
run vfio-harness save $S -o /tmp/v1-p.bin --precopy-rounds 3
run vfio-harness restore $D -i /tmp/v1-p.bin
size=$(wc -c </tmp/v1-s.bin)
head -c $((size - 40)) /tmp/v1-s.bin >/tmp/v1-t.bin
echo "+ vfio-harness restore $D -i /tmp/v1-t.bin (truncated: must fail)"
if vfio-harness restore $D -i /tmp/v1-t.bin; then
    fail "a truncated v1 stream was accepted"
fi
# The destination was returned to a usable state: it saves again.
run vfio-harness save $D -o /tmp/v1-d.bin
echo PASS
