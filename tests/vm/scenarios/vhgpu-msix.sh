# vhgpu MSI-X: 4 vectors on eventfds, each maskable through VFIO_IRQ_SET_ACTION_MASK/UNMASK
# (a vector raised while masked is held pending and delivered once on unmask), raised by the
# device when vector N is written to its BAR0 raise register (0x70). Raw ioctls first
# (vhgpu-msix: capability, per-vector delivery, pending/PBA values, triggers), then the
# harness's `irq` on the MSIX index through every IOMMU back end: device mode (the vhgpu
# driver writes the raise register) and loopback, every vector delivered 10 times, the
# mask check held one back and delivered it on unmask; the device's sent counter (0x78)
# moved by exactly what the harness received.
. /etc/vfioh/lib.sh
P=/sys/class/mdev_bus/vhgpu/mdev_supported_types
[ -d "$P" ] || skip "vhgpu module not loaded"
U=6f1e0c3a-7a1d-4c55-9d2e-00000000f101
trap '[ -e /sys/bus/mdev/devices/$U ] && echo 1 >/sys/bus/mdev/devices/$U/remove' EXIT
run sh -c "echo $U >$P/vhgpu-64M/create"
run vhgpu-msix $U

run_out info vfio-harness info $U --json
msix=$(echo "$info" | flat | grep -o '"name":"MSIX","count":[0-9]*')
expect_eq "MSIX vectors in info" "${msix##*:}" 4

sent() { vfio-harness bar $U read BAR0 0x78 -w 4 --json | json_num value; }
for b in $(backends); do
    for v in 0 1 2 3; do
        before=$(sent)
        echo "+ vfio-harness --iommu $b irq $U --index MSIX --vector $v --count 10 --timeout 2000 --json"
        out=$(vfio-harness --iommu $b irq $U --index MSIX --vector $v --count 10 --timeout 2000 --json)
        rc=$?
        echo "$out"
        [ $rc = 0 ] || fail "device-raised MSI-X vector $v through $b failed (exit $rc)"
        o=$(echo "$out" | flat)
        expect_eq "device-raised deliveries ($b, vector $v)" "$(echo "$out" | json_num delivered)" 10
        expect_eq "raised by ($b, vector $v)" "$(echo "$out" | json_str raised_by)" vhgpu
        echo "$o" | grep -q '"delivered_while_masked":false' || fail "vector $v delivered while masked ($b)"
        echo "$o" | grep -q '"delivered_after_unmask":true' || fail "vector $v not delivered on unmask ($b)"
        after=$(sent)
        # 10 deliveries + the one held back by the mask and sent on unmask
        expect_eq "device sent counter delta ($b, vector $v)" $((after - before)) 11
        run_out out vfio-harness --iommu $b irq $U --index MSIX --vector $v --trigger --count 10 --timeout 2000 --json
        o=$(echo "$out" | flat)
        expect_eq "loopback deliveries ($b, vector $v)" "$(echo "$out" | json_num delivered)" 10
        echo "$o" | grep -q '"delivered_while_masked":false' || fail "loopback vector $v delivered while masked ($b)"
        echo "$o" | grep -q '"delivered_after_unmask":true' || fail "loopback vector $v lost on unmask ($b)"
    done
    must_fail vfio-harness --iommu $b irq $U --index MSIX --vector 4 --trigger
done
# Human-readable, for the log.
run vfio-harness irq $U --index MSIX --vector 3 --count 100 --timeout 2000
echo PASS
