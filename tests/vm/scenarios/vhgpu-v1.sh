# vhgpu (tests/vm/module): migration v1 (the deprecated type 3/subtype 1 region) on the
# same device state. Reloads the module with migration_v1=1 migration_v2=0, saves and
# restores through the region's mmap-ed data section (pre-copy then stop-copy), checks
# VRAM byte-exact, then a truncated stream puts the device in the v1 error state and
# reset recovers. The module is reloaded with its boot parameters afterwards.
. /etc/vfioh/lib.sh
S=6f1e0c3a-7a1d-4c55-9d2e-00000000d001
D=6f1e0c3a-7a1d-4c55-9d2e-00000000d002
vhgpu_v1_only $S $D -- v1_data_kb=256
run sh -c "echo $S >$P/vhgpu-64M/create"
run sh -c "echo $D >$P/vhgpu-64M/create"
grep -q "migration v1" $P/vhgpu-64M/description || fail "description does not mention v1"
run vhgpu-probe v1 $S $D
echo PASS
