# vfioh: perf (timing ratios under TCG; run by name or with tests/vm/run --perf)
# vhgpu-bench on two vhgpu-1G instances: 1 GiB of VRAM filled with a pattern, the harness's
# save (to memory and to a file) and restore (from the file) next to the raw data-fd loop
# with the same buffer, medians of 3 alternating repetitions; the ratios are printed for
# hw-notes/bench.md (the issue's bed target is defined on 1 GiB).
BENCH_TYPE=vhgpu-1G
BENCH_LEN=1G
BENCH_REPEAT=3
BENCH_MIN_BYTES=$((1000 << 20))
. /scenarios/vhgpu-bench.sh
