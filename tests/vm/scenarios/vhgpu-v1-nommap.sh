# vhgpu migration v1 with a data section that cannot be mmap-ed (module reloaded with
# migration_v1=1 migration_v2=0 v1_mmap=0 v1_data_kb=256): the v1 region has no mmap flag and
# no sparse-mmap areas, an mmap of it is refused, so the harness's v1 driver moves the stream
# through pread/pwrite on the region. 64 MiB of VRAM (half through the BAR2 mmap, half by DMA)
# migrated by `migrate`; the destination's VRAM CRC equals the source's, byte for byte, and
# both patterns check. The module is reloaded with its boot parameters afterwards.
. /etc/vfioh/lib.sh
S=6f1e0c3a-7a1d-4c55-9d2e-00000000f401
D=6f1e0c3a-7a1d-4c55-9d2e-00000000f402
vhgpu_v1_only $S $D -- v1_mmap=0 v1_data_kb=256
expect_eq "v1_mmap parameter" "$(cat /sys/module/vhgpu/parameters/v1_mmap)" N
run sh -c "echo $S >$P/vhgpu-64M/create"
run sh -c "echo $D >$P/vhgpu-64M/create"
run_out info vfio-harness info $S --json
r9=$(echo "$info" | flat | grep -o '{"index":9,"name":"[^"]*","size":[0-9]*,"offset":[0-9]*,"flags":[0-9]*,"flag_names":\[[^]]*\],"caps":\[[^]]*' | head -n 1)
echo "region 9: $r9"
[ -n "$r9" ] || fail "no v1 migration region at index 9"
echo "$r9" | grep -q '"size":266240' || fail "v1 region size is not 4 KiB + 256 KiB"
echo "$r9" | grep -q '"mmap"' && fail "the v1 region still advertises mmap"
echo "$r9" | grep -q '"kind":"type","type":3,"subtype":1' || fail "the v1 region lost its type capability"
echo "$r9" | grep -q 'sparse' && fail "the v1 region still has sparse-mmap areas"
must_fail vfio-harness bar --mmap $S read 9 0x1000
run vfio-harness bar --mmap $S fill BAR2 --offset 0 --len 32M --seed 41 --no-readback
run vfio-harness dma $S --fill 32M:32M --seed 42 --no-readback
run_out c vfio-harness bar $S crc BAR2 --json
src_crc=$(echo "$c" | json_str crc32)
run_out m vfio-harness migrate $S $D --json
expect_eq "protocol" "$(echo "$m" | json_str protocol)" v1
bytes=$(echo "$m" | json_num bytes)
[ "$bytes" -ge 67108864 ] || fail "migrated only $bytes bytes of 64 MiB of VRAM"
run_out c vfio-harness bar $D crc BAR2 --json
expect_eq "destination VRAM crc32 = source's" "$(echo "$c" | json_str crc32)" "$src_crc"
pattern_ok "destination, mmap half" $((32 << 20)) \
    vfio-harness bar $D crc BAR2 --offset 0 --len 32M --seed 41 --json
pattern_ok "destination, DMA half" $((32 << 20)) vfio-harness dma $D --crc 32M:32M --seed 42 --json
run_out c vfio-harness bar $S crc BAR2 --json
expect_eq "source VRAM crc32 unchanged" "$(echo "$c" | json_str crc32)" "$src_crc"
echo "time: migrate $(echo "$m" | grep -o '"seconds": *[0-9.]*' | head -n 1)"
echo PASS
