# mtty INTx: eventfd connected, loopback triggers reach the eventfd (poll, no sleeps), the
# index is disabled again; a bad vector is refused.
. /etc/vfioh/lib.sh
need MTTY_A
for b in $(backends); do
    run_out out vfio-harness --iommu $b irq "$MTTY_A" --index INTX --trigger --count 20 --timeout 2000 --json
    expect_eq "delivered ($b)" "$(echo "$out" | json_num delivered)" 20
    echo "$out" | grep -q '"disabled": true' || fail "index not disabled"
    must_fail vfio-harness --iommu $b irq "$MTTY_A" --index INTX --vector 3 --trigger
    must_fail vfio-harness --iommu $b irq "$MTTY_A" --index 9 --trigger
done
exit 0
