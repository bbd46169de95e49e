# `bench` on a kernel device: mtty's migration state is ~100 bytes, so the figures mean
# little; the point is that every row runs on a real data fd (raw, QEMU-style and whole-state
# STOP_COPY reads and RESUMING writes, the engine's save/restore/live on every path, every
# arc), that the loops move the same number of bytes, and that the devices are left RUNNING.
# (The overlap and downtime modes need the simulator and are noted as skipped; file-direct is
# skipped where the guest's /tmp is tmpfs.)
. /etc/vfioh/lib.sh
need MTTY_A MTTY_B

# The bed's kernel has no networking (no CONFIG_NET: socket(2) is ENOSYS). The bench runs its
# default paths anyway: it must leave `tcp` out with a note saying why, and measure the rest.
echo "+ vfio-harness bench $MTTY_A $MTTY_B --quick --json --devices 2"
out=$(vfio-harness bench "$MTTY_A" "$MTTY_B" --quick --json --devices 2 2>/tmp/bench-mtty.err) \
    || { cat /tmp/bench-mtty.err; echo "$out" | tail -n 20; fail "bench failed (its stderr above)"; }
echo "$out" >/tmp/bench-mtty.json

# op/path/kind -> bytes of every results row (serde_json pretty printing: rows at 4 spaces,
# their fields at 6).
rows=$(awk '
    /^      "op":/ { o = $2; gsub(/[",]/, "", o) }
    /^      "path":/ { p = $2; gsub(/[",]/, "", p) }
    /^      "kind":/ { k = $2; gsub(/[",]/, "", k) }
    /^      "bytes":/ { b = $2; gsub(/,/, "", b); print o "/" p "/" k, b }
' /tmp/bench-mtty.json)
echo "$rows"
if [ -e /proc/net/tcp ]; then
    # A kernel with TCP (the debian flavour): measured, or (loopback down in the initramfs)
    # left out with its note; never a failed run.
    echo "$rows" | grep -q "/tcp/harness " \
        || grep -q '"tcp: skipped, not available on this machine' /tmp/bench-mtty.json \
        || fail "this kernel has TCP but tcp was neither measured nor noted as skipped"
else
    echo "$rows" | grep -q "/tcp/" && fail "tcp rows on a kernel without networking"
    grep -q '"tcp: skipped, not available on this machine' /tmp/bench-mtty.json \
        || fail "no note saying why tcp was left out"
    echo "ok: tcp skipped with a note (no networking in this kernel)"
fi
for m in save/memory/raw save/memory/harness save/memory/qemu-style save/memory/whole-state \
         save/file/reference save/pipe/harness \
         restore/file/raw restore/file/harness restore/file/qemu-style restore/pipe/harness \
         live/memory/raw live/memory/harness \
         parallel-save/memory/harness; do
    echo "$rows" | grep -q "^$m " || fail "no $m row"
done
raw=$(echo "$rows" | awk '$1 == "save/memory/raw" { print $2; exit }')
saved=$(echo "$rows" | awk '$1 == "save/memory/harness" { print $2; exit }')
restored=$(echo "$rows" | awk '$1 == "restore/file/harness" { print $2; exit }')
migrated=$(echo "$rows" | awk '$1 == "live/memory/harness" { print $2; exit }')
[ "${raw:-0}" -gt 0 ] || fail "raw save moved no bytes"
expect_eq "save bytes = raw save bytes" "$saved" "$raw"
expect_eq "restore bytes = raw save bytes" "$restored" "$raw"
expect_eq "live bytes = raw save bytes" "$migrated" "$raw"

# Every single arc was measured and none failed.
arcs=$(grep -c '"from":' /tmp/bench-mtty.json)
[ "$arcs" -ge 4 ] || fail "only $arcs arcs measured"
grep -q '"error": "' /tmp/bench-mtty.json && fail "an arc failed: $(grep '"error": "' /tmp/bench-mtty.json)"
echo "ok: $arcs arcs measured"

# Every ratio names its reference.
grep -q '"ratio_to": "raw"' /tmp/bench-mtty.json || fail "no ratio to a raw loop"
grep -q '"ratio_to": "reference"' /tmp/bench-mtty.json || fail "no ratio to a path's reference"

# Devices are left as found.
for d in "$MTTY_A" "$MTTY_B"; do
    run_out js vfio-harness info "$d" --json
    st=$(echo "$js" | json_str state)
    expect_eq "$d migration state after bench" "$st" RUNNING
done
