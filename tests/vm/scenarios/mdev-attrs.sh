# mdev instances configured like vGPUs (vhgpu): `mdev create --attr` writes per-instance
# attributes after create and before any open; an aggregated instance (aggregate=2) takes two
# units of VRAM from the shared pool, so available_instances of every type drops by the
# right amount, and VFIO reports its BAR2 at twice the type's size; refused attributes
# (ENOSPC from the pool, EINVAL, unknown or read-only names) leave no instance behind and
# move no capacity; `mdev set-attr` changes a closed instance, and once it has been opened
# vhgpu refuses aggregate with EBUSY (named in the error); removing gives the pool back.
. /etc/vfioh/lib.sh
P=/sys/class/mdev_bus/vhgpu/mdev_supported_types
[ -d "$P" ] || skip "vhgpu module not loaded"
for d in $P/*/devices/*; do [ -e "$d" ] && skip "a vhgpu instance exists ($(basename "$d")); the pool is not whole"; done
B=6f1e0c3a-7a1d-4c55-9d2e-0000000a70
A=${B}01; R=${B}02; V=${B}03
cleanup() { for u in $A $R $V; do [ -e /sys/bus/mdev/devices/$u ] && echo 1 >/sys/bus/mdev/devices/$u/remove; done; }
trap cleanup EXIT
pool=$(cat /sys/module/vhgpu/parameters/pool_mb)
avail() { cat "$P/vhgpu-$1/available_instances"; }
nodes() { ls /sys/bus/mdev/devices | wc -l; }
vattr() { cat "/sys/bus/mdev/devices/$1/vendor/$2"; }
# expect_pool USED_MB WHAT: every type's available_instances is (pool - USED) / size.
expect_pool() {
    expect_eq "64M available ($2)" "$(avail 64M)" $(((pool - $1) / 64))
    expect_eq "256M available ($2)" "$(avail 256M)" $(((pool - $1) / 256))
    expect_eq "1G available ($2)" "$(avail 1G)" $(((pool - $1) / 1024))
}
echo "pool $pool MiB"
expect_pool 0 "at start"
n0=$(nodes)

# --- create with attributes: aggregate=2 of vhgpu-256M = 512 MiB from the pool -----------
run_out out vfio-harness mdev create --type vhgpu-256M --uuid $A \
    --attr aggregate=2 --attr priority=5 --attr dma_rate_limit_mbps=0 --json
expect_eq "available_instances_before" "$(echo "$out" | json_num available_instances_before)" $((pool / 256))
expect_eq "available_instances_after" "$(echo "$out" | json_num available_instances_after)" $(((pool - 512) / 256))
echo "$out" | flat | grep -q '"attribute":"vendor/aggregate","readback":"2","value":"2"' \
    || fail "create --json does not report aggregate written and read back"
echo "$out" | flat | grep -q '"attribute":"vendor/priority","readback":"5","value":"5"' \
    || fail "create --json does not report priority"
expect_eq "aggregate in sysfs" "$(vattr $A aggregate)" 2
expect_eq "priority in sysfs" "$(vattr $A priority)" 5
expect_eq "vram_size in sysfs" "$(vattr $A vram_size)" $((512 << 20))
expect_pool 512 "after an aggregate=2 vhgpu-256M"

run_out s vfio-harness mdev show $A --json
echo "$s" | flat | grep -q '"vendor/aggregate":"2"' || fail "show: vendor/aggregate is not 2"
# (fail_next_transition and violate: vhgpu's test knobs, see hw-notes/vhgpu.md)
echo "$s" | flat | grep -q '"writable_attributes":\["vendor/aggregate","vendor/dma_rate_limit_mbps","vendor/fail_next_transition","vendor/priority","vendor/violate"\]' \
    || fail "show: writable_attributes are not aggregate, dma_rate_limit_mbps, fail_next_transition, priority, violate"
run_out l vfio-harness mdev list --parent vhgpu --json
expect_eq "list --parent vhgpu" "$(echo "$l" | json_str uuid)" $A
echo "$l" | flat | grep -q '"vendor/aggregate":"2"' || fail "list: $A lacks vendor/aggregate=2"

# --- the VRAM size through VFIO (this opens the device for the first time) ----------------
run_out i vfio-harness info $A --json
expect_eq "BAR2 region size through VFIO" "$(echo "$i" | region_size BAR2)" $((512 << 20))
run_out i vfio-harness info $A --json
expect_eq "BAR0 region size through VFIO" "$(echo "$i" | region_size BAR0)" 4096
run_out r vfio-harness bar --json $A read BAR0 0x8 -w 4
expect_eq "VRAM size register (BAR0 0x08)" "$(echo "$r" | json_num value)" $((512 << 20))

# --- set-attr on the closed instance: priority yes, aggregate no (fixed at first open) -----
run vfio-harness mdev set-attr $A priority=9
expect_eq "priority after set-attr" "$(vattr $A priority)" 9
echo "+ (expect refusal) vfio-harness mdev set-attr $A aggregate=1"
if e=$(vfio-harness mdev set-attr $A aggregate=1 2>&1); then echo "$e"; fail "aggregate changed after the first open"; fi
echo "$e"
echo "$e" | grep -q 'refused vendor/aggregate="1"' || fail "the refusal does not name vendor/aggregate=1"
echo "$e" | grep -q "EBUSY" || fail "the refusal does not give EBUSY"
expect_eq "aggregate after the refusal" "$(vattr $A aggregate)" 2
expect_pool 512 "after the refused set-attr"

# --- refused attributes leave nothing behind ----------------------------------------------
# ENOSPC: vhgpu-1G x 4 needs 4096 MiB, the pool has $((pool - 512)) left.
refused() { # WHAT WANT-IN-ERROR ARGS...
    what=$1; want=$2; shift 2
    echo "+ (expect refusal: $what) vfio-harness mdev create $*"
    if e=$(vfio-harness mdev create --uuid $R "$@" 2>&1); then echo "$e"; fail "$what: created"; fi
    echo "$e"
    echo "$e" | grep -q -- "$want" || fail "$what: the error does not say '$want'"
    [ -e /sys/bus/mdev/devices/$R ] && fail "$what: $R was left behind"
    expect_eq "instances after the refusal ($what)" "$(nodes)" $((n0 + 1))
    expect_pool 512 "after the refusal ($what)"
}
refused "pool too small" 'refused vendor/aggregate="4" on '"$R"': No space left on device (os error 28) \[ENOSPC\]' \
    --type vhgpu-1G --attr priority=3 --attr aggregate=4
echo "$e" | grep -q "removed the half-made instance $R; nothing is left behind" || fail "ENOSPC: no word on the removal"
echo "$e" | grep -q "written before it: vendor/priority=3" || fail "ENOSPC: the earlier priority write is not mentioned"
refused "not a power of two" 'refused vendor/aggregate="3".*\[EINVAL\]' --type vhgpu-64M --attr aggregate=3
refused "priority out of range" 'refused vendor/priority="16".*\[ERANGE\]' --type vhgpu-64M --attr priority=16
refused "unknown attribute" 'has no attribute "frame_rate"; writable attributes: vendor/aggregate' \
    --type vhgpu-64M --attr frame_rate=30
refused "read-only attribute" "attribute vendor/vram_size of $R is read-only" --type vhgpu-64M --attr vram_size=1

# --- set-attr on a never-opened instance changes its VRAM and the pool ---------------------
run vfio-harness mdev create --type vhgpu-64M --uuid $V
expect_pool 576 "after a plain vhgpu-64M"
run_out w vfio-harness mdev set-attr $V aggregate=4 --json
echo "$w" | flat | grep -q '"readback":"4"' || fail "set-attr did not read aggregate 4 back"
expect_eq "vram_size after set-attr" "$(vattr $V vram_size)" $((256 << 20))
expect_pool 768 "after set-attr aggregate=4 on the vhgpu-64M"
run vfio-harness mdev set-attr $V aggregate=1
expect_pool 576 "after set-attr aggregate=1"

run vfio-harness mdev remove $V
run vfio-harness mdev remove $A
expect_pool 0 "after removing everything"
expect_eq "instances at the end" "$(nodes)" "$n0"
echo PASS
