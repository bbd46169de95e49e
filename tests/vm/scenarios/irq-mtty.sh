# mtty interrupts through every back end. INTx: 20 loopback triggers reach the eventfd
# (poll, no sleeps; the automasked line is unmasked after each, as a VMM does at EOI), with
# latencies in (0, 1 s); then the mask check: masking works, a trigger while masked is not
# delivered, unmasking works, and that trigger is not delivered afterwards either (mtty drops
# a trigger made while masked: mtty_trigger_interrupt signals only when unmasked). MSI: one
# loopback; it is not maskable (no mask check). The index is disabled again each time. A
# vector INTx does not have and an index mtty does not have are refused.
. /etc/vfioh/lib.sh
need MTTY_A
lat_ok() { # WHAT JSON
    l=$(echo "$2" | json_obj latency)
    echo "$1 latency: $l"
    for k in min_us avg_us max_us; do
        v=$(echo "$l" | grep -o "\"$k\":[0-9.e+-]*" | cut -d: -f2)
        awk -v v="$v" 'BEGIN { exit !(v > 0 && v < 1000000) }' || fail "$1: $k = '$v' not in (0, 1 s)"
    done
}
for b in $(backends); do
    run_out out vfio-harness --iommu $b irq "$MTTY_A" --index INTX --trigger --count 20 --timeout 2000 --json
    expect_eq "INTx delivered ($b)" "$(echo "$out" | json_num delivered)" 20
    expect_eq "INTx mode ($b)" "$(echo "$out" | json_str mode)" loopback
    lat_ok "INTx ($b)" "$out"
    m=$(echo "$out" | json_obj mask)
    expect_eq "INTx mask call ($b)" "$(echo "$m" | json_str mask)" ok
    expect_eq "INTx delivered while masked ($b)" "$(echo "$m" | json_bool delivered_while_masked)" false
    expect_eq "INTx unmask call ($b)" "$(echo "$m" | json_str unmask)" ok
    expect_eq "INTx masked trigger delivered after unmask ($b)" "$(echo "$m" | json_bool delivered_after_unmask)" false
    expect_eq "INTx disabled ($b)" "$(echo "$out" | json_bool disabled)" true

    run_out out vfio-harness --iommu $b irq "$MTTY_A" --index MSI --trigger --count 5 --json
    expect_eq "MSI delivered ($b)" "$(echo "$out" | json_num delivered)" 5
    lat_ok "MSI ($b)" "$out"
    echo "$out" | grep -q '"mask": null' || fail "MSI ($b): a mask check ran on a non-maskable index"
    expect_eq "MSI disabled ($b)" "$(echo "$out" | json_bool disabled)" true

    expect_err "INTx vector 3 ($b)" "IRQ index 0 \(INTX\) has 1 vector\(s\), cannot set 1 from 3" \
        vfio-harness --iommu $b irq "$MTTY_A" --index INTX --vector 3 --trigger
    expect_err "index 9 ($b)" "no IRQ index \"9\"" \
        vfio-harness --iommu $b irq "$MTTY_A" --index 9 --trigger
done
exit 0
