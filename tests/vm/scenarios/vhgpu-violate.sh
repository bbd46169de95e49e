# vhgpu's seeded contract violations, protocol v2 (vendor/violate, one per check of the
# harness's conformance suite; tests/vm/module/vhgpu_violate.c): for each name the uAPI clause
# is checked through raw ioctls (vhgpu-clauses, independent of the harness) on the stock
# device (the clause holds), then with vendor/violate=NAME (exactly the seeded symptom is
# seen), then the attribute goes back to none. A second, stock instance is the other end of
# streams. The attribute reads back what was written, refuses unknown names (EINVAL) and is
# reset by an empty write.
. /etc/vfioh/lib.sh
P=/sys/class/mdev_bus/vhgpu/mdev_supported_types
[ -d "$P" ] || skip "vhgpu module not loaded"
[ "$(cat /sys/module/vhgpu/parameters/migration_v2)" = Y ] || skip "vhgpu loaded without migration v2"
D=6f1e0c3a-7a1d-4c55-9d2e-00000000f501
S=6f1e0c3a-7a1d-4c55-9d2e-00000000f502
V=/sys/bus/mdev/devices/$D/vendor/violate
cleanup() { for u in $D $S; do [ -e /sys/bus/mdev/devices/$u ] && echo 1 >/sys/bus/mdev/devices/$u/remove; done; }
trap cleanup EXIT
run sh -c "echo $D >$P/vhgpu-64M/create"
run sh -c "echo $S >$P/vhgpu-64M/create"
expect_eq "violate at create" "$(cat $V)" none
# The stock Debian kernel's VFIO core cannot report logged pages (no CONFIG_IOMMUFD_DRIVER:
# REPORT is EOPNOTSUPP), so the dma-logging clause is only shown on the bed's kernel.
. /run/flavour.env
LOGGING=dma-logging
[ "$FLAVOUR" = debian ] && LOGGING=
for n in state-after-arc new-data-fd stop-copy-eof read-size session-ends precopy-info-state \
         precopy-initial precopy-info-agrees precopy-path write-size resume-refuses \
         resume-loads reset data-size $LOGGING; do
    run vhgpu-clauses $n held $D $S
    run sh -c "echo $n >$V"
    expect_eq "violate" "$(cat $V)" $n
    run vhgpu-clauses $n broken $D $S
    run sh -c "echo none >$V"
done
must_fail sh -c "echo no-such-violation >$V"
run sh -c "echo data-size >$V"
run sh -c "echo >$V"
expect_eq "violate after an empty write" "$(cat $V)" none
echo PASS
