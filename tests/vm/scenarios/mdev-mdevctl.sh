# mdevctl definitions round trip (vhgpu): an instance created with attributes is printed as
# an mdevctl definition (`show --mdevctl-json`, the content of /etc/mdevctl.d/<parent>/<uuid>)
# and in `mdevctl list --dumpjson`'s shape (`list --mdevctl-json`); after removing it,
# `create --from-mdevctl` on the file, on a directory of definitions and on the dumpjson
# output makes the same instances with the same attributes (sysfs values and capacity
# checked). A directory whose second definition is refused (ENOSPC) leaves none of its
# instances behind.
. /etc/vfioh/lib.sh
P=/sys/class/mdev_bus/vhgpu/mdev_supported_types
[ -d "$P" ] || skip "vhgpu module not loaded"
for d in $P/*/devices/*; do [ -e "$d" ] && skip "a vhgpu instance exists ($(basename "$d")); the pool is not whole"; done
B=6f1e0c3a-7a1d-4c55-9d2e-0000000a73
A=${B}01; C=${B}02; E=${B}03; X=${B}04; Y=${B}05
ALL="$A $C $E $X $Y"
cleanup() { for u in $ALL; do [ -e /sys/bus/mdev/devices/$u ] && echo 1 >/sys/bus/mdev/devices/$u/remove; done; }
trap cleanup EXIT
pool=$(cat /sys/module/vhgpu/parameters/pool_mb)
avail() { cat "$P/vhgpu-$1/available_instances"; }
vattr() { cat "/sys/bus/mdev/devices/$1/vendor/$2"; }
gone() { for u in "$@"; do [ -e /sys/bus/mdev/devices/$u ] && fail "$u exists"; done; return 0; }
M=/tmp/mdevctl.d
rm -rf $M; mkdir -p $M/vhgpu

# --- ours -> mdevctl's shapes -------------------------------------------------------------
run vfio-harness mdev create --type vhgpu-256M --uuid $A \
    --attr aggregate=2 --attr priority=6 --attr dma_rate_limit_mbps=16
run_out def vfio-harness mdev show $A --mdevctl-json
echo "$def" >$M/vhgpu/$A
# (fail_next_transition and violate: vhgpu's test knobs, see hw-notes/vhgpu.md)
echo "$def" | flat | grep -qx '{"mdev_type":"vhgpu-256M","start":"manual","attrs":\[{"vendor/aggregate":"2"},{"vendor/dma_rate_limit_mbps":"16"},{"vendor/fail_next_transition":"0"},{"vendor/priority":"6"},{"vendor/violate":"none"}\]}' \
    || fail "the definition is not mdev_type, start, attrs with aggregate, dma_rate_limit_mbps, fail_next_transition, priority, violate"
run_out lst vfio-harness mdev list --parent vhgpu --mdevctl-json
echo "$lst" | flat | grep -qx "\[{\"vhgpu\":\[{\"$A\":{\"mdev_type\":\"vhgpu-256M\",\"start\":\"manual\",\"attrs\":\[{\"vendor/aggregate\":\"2\"},{\"vendor/dma_rate_limit_mbps\":\"16\"},{\"vendor/fail_next_transition\":\"0\"},{\"vendor/priority\":\"6\"},{\"vendor/violate\":\"none\"}\]}}\]}\]" \
    || fail "list --mdevctl-json is not [{vhgpu: [{$A: definition}]}]"
a_used=$(avail 64M)
expect_eq "64M available with A" "$a_used" $(((pool - 512) / 64))
run vfio-harness mdev remove $A
expect_eq "64M available without A" "$(avail 64M)" $((pool / 64))

# --- mdevctl's definition file -> ours ----------------------------------------------------
run_out out vfio-harness mdev create --from-mdevctl $M/vhgpu/$A --json
expect_eq "uuid from the file name" "$(echo "$out" | json_str uuid)" $A
expect_eq "parent from the directory" "$(echo "$out" | json_str parent)" vhgpu
expect_eq "start" "$(echo "$out" | json_str start)" manual
expect_eq "aggregate after --from-mdevctl" "$(vattr $A aggregate)" 2
expect_eq "priority after --from-mdevctl" "$(vattr $A priority)" 6
expect_eq "dma_rate_limit_mbps after --from-mdevctl" "$(vattr $A dma_rate_limit_mbps)" 16
expect_eq "vram_size after --from-mdevctl" "$(vattr $A vram_size)" $((512 << 20))
expect_eq "64M available after --from-mdevctl" "$(avail 64M)" "$a_used"
run_out again vfio-harness mdev show $A --mdevctl-json
[ "$again" = "$def" ] || fail "the re-created instance's definition differs from the saved one"
run vfio-harness mdev remove $A

# --- a directory of definitions (/etc/mdevctl.d layout, mdevctl's own JSON formatting) ----
cat >$M/vhgpu/$C <<EOF
{"mdev_type": "vhgpu-64M", "start": "auto", "attrs": [{"aggregate": "4"}]}
EOF
cat >$M/vhgpu/$E <<EOF
{
  "mdev_type": "vhgpu-64M",
  "start": "manual",
  "attrs": []
}
EOF
mkdir -p $M/scripts.d/callouts
echo "#!/bin/sh" >$M/scripts.d/callouts/ignored
run_out out vfio-harness mdev create --from-mdevctl $M --json
expect_eq "instances created from the directory" "$(echo "$out" | grep -c '"uuid"')" 3
expect_eq "C's aggregate (bare name in the definition)" "$(vattr $C aggregate)" 4
expect_eq "E's aggregate" "$(vattr $E aggregate)" 1
expect_eq "A's aggregate" "$(vattr $A aggregate)" 2
expect_eq "64M available with A, C, E" "$(avail 64M)" $(((pool - 512 - 256 - 64) / 64))

# --- our dumpjson -> ours: remove them all and bring them back -------------------------------
run_out dump vfio-harness mdev list --parent vhgpu --mdevctl-json
echo "$dump" >/tmp/vhgpu-dump.json
for u in $A $C $E; do run vfio-harness mdev remove $u; done
expect_eq "64M available after removing them" "$(avail 64M)" $((pool / 64))
run vfio-harness mdev create --from-mdevctl /tmp/vhgpu-dump.json
expect_eq "64M available after the dumpjson round trip" "$(avail 64M)" $(((pool - 512 - 256 - 64) / 64))
run_out dump2 vfio-harness mdev list --parent vhgpu --mdevctl-json
[ "$dump2" = "$dump" ] || fail "list --mdevctl-json differs after the round trip"
for u in $A $C $E; do run vfio-harness mdev remove $u; done

# --- all or nothing: the second definition does not fit the pool ----------------------------
rm -rf $M; mkdir -p $M/vhgpu
echo '{"mdev_type": "vhgpu-256M", "start": "auto", "attrs": [{"priority": "2"}]}' >$M/vhgpu/$X
echo '{"mdev_type": "vhgpu-1G", "start": "auto", "attrs": [{"aggregate": "4"}]}' >$M/vhgpu/$Y
echo "+ (expect refusal) vfio-harness mdev create --from-mdevctl $M"
if e=$(vfio-harness mdev create --from-mdevctl $M 2>&1); then echo "$e"; fail "created a definition that does not fit"; fi
echo "$e"
echo "$e" | grep -q "$M/vhgpu/$Y: the kernel refused vendor/aggregate=\"4\" on $Y: No space left on device (os error 28) \[ENOSPC\]" \
    || fail "the refusal does not name the definition, vendor/aggregate and ENOSPC"
echo "$e" | grep -q "removed the 1 instance(s) created before it: $X" || fail "the earlier instance's removal is not reported"
gone $X $Y
expect_eq "64M available after the refused directory" "$(avail 64M)" $((pool / 64))
echo PASS
