# The harness's migration v1 driver (src/migration/v1.rs) on a real kernel: vhgpu reloaded
# as a v1-only device (migration_v1=1 migration_v2=0, the 2020-era vendor shape). info shows
# the v1 migration region; `save` (stop-copy) writes a stream whose size the report gives,
# and `restore` into a second instance (the module validates the stream when RESUMING
# ends) makes its VRAM hold the source's pattern (CRC against the pattern seed; it did not
# before); again with up to 3 pre-copy rounds and a new pattern; a truncated stream is refused,
# and the destination is left usable: it restores the good stream again, byte-exact. The
# module is reloaded with its boot parameters after.
. /etc/vfioh/lib.sh
S=6f1e0c3a-7a1d-4c55-9d2e-00000000e001
D=6f1e0c3a-7a1d-4c55-9d2e-00000000e002
vhgpu_v1_only $S $D -- v1_data_kb=256
run sh -c "echo $S >$P/vhgpu-64M/create"
run sh -c "echo $D >$P/vhgpu-64M/create"
matches() { # DEV SEED: "true"/"false": the first 4 MiB of DEV's VRAM are pattern SEED
    vfio-harness bar "$1" crc BAR2 --len 4M --seed "$2" --json | json_bool matched
}

run_out info vfio-harness info $S --json
m=$(echo "$info" | json_obj migration)
expect_eq "migration protocol" "$(echo "$m" | json_str protocol)" v1
[ -n "$(echo "$m" | json_num region)" ] || fail "no v1 migration region index in info: $m"

run vfio-harness bar --mmap $S fill BAR2 --len 4M --seed 51
expect_eq "D holds pattern 51 before restoring" "$(matches $D 51)" false
run_out sv vfio-harness save $S -o /tmp/v1-s.bin --json
expect_eq "save protocol" "$(echo "$sv" | json_str protocol)" v1
bytes=$(echo "$sv" | json_num bytes)
[ "$bytes" -ge $((4 << 20)) ] || fail "saved only $bytes bytes of 4 MiB of written VRAM"
expect_eq "save: pre-copy bytes" "$(echo "$sv" | json_num precopy_bytes)" 0
expect_eq "save: stop-copy bytes" "$(echo "$sv" | json_num stopcopy_bytes)" "$bytes"
expect_eq "stream file size" "$(wc -c </tmp/v1-s.bin)" "$(echo "$sv" | json_num stream_bytes)"
run_out rs vfio-harness restore $D -i /tmp/v1-s.bin --json
expect_eq "restore protocol" "$(echo "$rs" | json_str protocol)" v1
expect_eq "restored bytes" "$(echo "$rs" | json_num bytes)" "$bytes"
expect_eq "D holds pattern 51 after restoring" "$(matches $D 51)" true

run vfio-harness bar --mmap $S fill BAR2 --len 4M --seed 52
run_out sv vfio-harness save $S -o /tmp/v1-p.bin --precopy-rounds 3 --json
r=$(echo "$sv" | json_num rounds)
[ "$r" -ge 1 ] && [ "$r" -le 3 ] || fail "pre-copy rounds: $r (want 1..3)"
[ "$(echo "$sv" | json_num precopy_bytes)" -gt 0 ] || fail "pre-copy moved nothing"
run vfio-harness restore $D -i /tmp/v1-p.bin
expect_eq "D holds pattern 52 after the pre-copy stream" "$(matches $D 52)" true

size=$(wc -c </tmp/v1-s.bin)
head -c $((size - 40)) /tmp/v1-s.bin >/tmp/v1-t.bin
expect_err "truncated v1 stream" "truncated" vfio-harness restore $D -i /tmp/v1-t.bin
# The destination was returned to a usable state: the good stream restores again.
run vfio-harness restore $D -i /tmp/v1-s.bin
expect_eq "D holds pattern 51 after the refusal and a good restore" "$(matches $D 51)" true
run_out sv vfio-harness save $D -o /tmp/v1-d.bin --json
[ "$(echo "$sv" | json_num bytes)" -ge $((4 << 20)) ] || fail "D does not save after the refusal"
echo PASS
