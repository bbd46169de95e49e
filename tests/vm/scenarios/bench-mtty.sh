# `bench` on a kernel device: mtty's migration state is ~100 bytes, so the figures mean
# little; the point is that every row runs on a real data fd (raw STOP_COPY reads and
# RESUMING writes, the engine's save/restore/live, every arc), that the raw and harness rows
# move the same number of bytes, and that the devices are left RUNNING.
. /etc/vfioh/lib.sh
need MTTY_A MTTY_B

run_out out vfio-harness bench "$MTTY_A" "$MTTY_B" --quick --json --devices 2
echo "$out" >/tmp/bench-mtty.json

# mode -> bytes of every results row (serde_json pretty printing: rows at 4 spaces).
rows=$(awk '
    /^      "mode":/ { m = $2; gsub(/[",]/, "", m) }
    /^      "bytes":/ { b = $2; gsub(/,/, "", b); print m, b }
' /tmp/bench-mtty.json)
echo "$rows"
for m in raw-save save raw-restore restore qemu-style-save qemu-style-restore live parallel-save; do
    echo "$rows" | grep -q "^$m " || fail "no $m row"
done
raw=$(echo "$rows" | awk '$1 == "raw-save" { print $2; exit }')
saved=$(echo "$rows" | awk '$1 == "save" { print $2; exit }')
restored=$(echo "$rows" | awk '$1 == "restore" { print $2; exit }')
[ "${raw:-0}" -gt 0 ] || fail "raw-save moved no bytes"
expect_eq "save bytes = raw-save bytes" "$saved" "$raw"
expect_eq "restore bytes = raw-save bytes" "$restored" "$raw"

# Every single arc was measured and none failed.
arcs=$(grep -c '"from":' /tmp/bench-mtty.json)
[ "$arcs" -ge 4 ] || fail "only $arcs arcs measured"
grep -q '"error": "' /tmp/bench-mtty.json && fail "an arc failed: $(grep '"error": "' /tmp/bench-mtty.json)"
echo "ok: $arcs arcs measured"

# The reference rows are there.
grep -q '"memcpy_bytes_per_s": [0-9]' /tmp/bench-mtty.json || fail "no memcpy reference"

# Devices are left as found.
for d in "$MTTY_A" "$MTTY_B"; do
    run_out js vfio-harness info "$d" --json
    st=$(echo "$js" | json_str state)
    expect_eq "$d migration state after bench" "$st" RUNNING
done
