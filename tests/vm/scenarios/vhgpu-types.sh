# vhgpu (tests/vm/module): the mdev types, their attributes, and capacity shared across
# types: creating an instance of one type lowers available_instances of the others.
. /etc/vfioh/lib.sh
P=/sys/class/mdev_bus/vhgpu/mdev_supported_types
[ -d "$P" ] || skip "vhgpu module not loaded"
U1=6f1e0c3a-7a1d-4c55-9d2e-00000000a001
U2=6f1e0c3a-7a1d-4c55-9d2e-00000000a002
U3=6f1e0c3a-7a1d-4c55-9d2e-00000000a003
cleanup() {
    for u in $U1 $U2 $U3; do
        [ -e /sys/bus/mdev/devices/$u ] && echo 1 >/sys/bus/mdev/devices/$u/remove
    done
}
trap cleanup EXIT

pool=$(cat /sys/module/vhgpu/parameters/pool_mb)
ver=$(cat /sys/module/vhgpu/parameters/software_version)
echo "pool $pool MiB, software_version $ver"
avail() { cat "$P/vhgpu-$1/available_instances"; }

for t in 64M 256M 1G; do
    d=$P/vhgpu-$t
    [ -d "$d" ] || fail "type vhgpu-$t missing"
    expect_eq "vhgpu-$t device_api" "$(cat $d/device_api)" vfio-pci
    expect_eq "vhgpu-$t name" "$(cat $d/name)" "vHGPU $t"
    grep -q "VRAM" "$d/description" || fail "vhgpu-$t description: $(cat $d/description)"
    expect_eq "vhgpu-$t software_version" "$(cat $d/software_version)" "$ver"
    expect_eq "vhgpu-$t compatible_type" "$(cat $d/compatible_type)" "vhgpu-$t"
    expect_eq "vhgpu-$t dynamic_resources" "$(cat $d/dynamic_resources)" priority,aggregate
    expect_eq "vhgpu-$t migration_version" "$(cat $d/migration_version)" "vhgpu-$t:$ver"
done
expect_eq "64M available" "$(avail 64M)" $((pool / 64))
expect_eq "256M available" "$(avail 256M)" $((pool / 256))
expect_eq "1G available" "$(avail 1G)" $((pool / 1024))

# migration_version (2020 proposal): the destination type accepts its own string,
# refuses other types and another major version.
echo "vhgpu-64M:$ver" >$P/vhgpu-64M/migration_version || fail "own migration_version refused"
must_fail sh -c "echo vhgpu-1G:$ver >$P/vhgpu-64M/migration_version"
must_fail sh -c "echo vhgpu-64M:99.0.0 >$P/vhgpu-64M/migration_version"
must_fail sh -c "echo garbage >$P/vhgpu-64M/migration_version"

run sh -c "echo $U1 >$P/vhgpu-1G/create"
expect_eq "64M available after 1G" "$(avail 64M)" $(((pool - 1024) / 64))
expect_eq "256M available after 1G" "$(avail 256M)" $(((pool - 1024) / 256))
expect_eq "1G available after 1G" "$(avail 1G)" $(((pool - 1024) / 1024))
run sh -c "echo $U2 >$P/vhgpu-256M/create"
expect_eq "64M available after 1G+256M" "$(avail 64M)" $(((pool - 1280) / 64))
expect_eq "1G available after 1G+256M" "$(avail 1G)" $(((pool - 1280) / 1024))
if [ $(((pool - 1280) / 1024)) = 0 ]; then
    must_fail sh -c "echo $U3 >$P/vhgpu-1G/create"
fi
[ -L "$P/vhgpu-1G/devices/$U1" ] || fail "devices/ link missing"
expect_eq "instance vram_size" "$(cat /sys/bus/mdev/devices/$U1/vendor/vram_size)" $((1024 << 20))
expect_eq "instance software_version" "$(cat /sys/bus/mdev/devices/$U1/vendor/software_version)" "$ver"
echo 7 >/sys/bus/mdev/devices/$U1/vendor/priority || fail "priority not writable"
expect_eq "priority" "$(cat /sys/bus/mdev/devices/$U1/vendor/priority)" 7
must_fail sh -c "echo 99 >/sys/bus/mdev/devices/$U1/vendor/priority"

echo 1 >/sys/bus/mdev/devices/$U1/remove || fail "remove failed"
echo 1 >/sys/bus/mdev/devices/$U2/remove || fail "remove failed"
expect_eq "64M available after removal" "$(avail 64M)" $((pool / 64))
expect_eq "1G available after removal" "$(avail 1G)" $((pool / 1024))
echo "PASS"
