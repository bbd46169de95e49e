# IOMMU group viability, decided by the kernel. tests/vm/run puts a second edu (EDU2) and a
# 16550 (SERIAL, QEMU pci-serial) behind a PCIe-to-PCI bridge (BRIDGE): conventional PCI
# cannot tell its devices apart, so the kernel makes the three one IOMMU group. While the
# serial port is bound to the host's 8250_pci driver ("serial"), that driver owns the group's
# DMA and the group is not viable for VFIO:
# - legacy: VFIO_GROUP_GET_STATUS lacks VIABLE (the raw probe sees it too); the harness
#   names the member that blocks;
# - iommufd: the kernel refuses to bind EDU2's cdev (raw probe: EPERM from
#   iommu_device_claim_dma_owner); the harness says why (the same blocker);
# - auto: the same refusal (no fallback hides it).
# Unbound from its driver, the serial port no longer blocks (a member without a driver is
# fine since the 5.19 DMA-ownership rework): EDU2 opens through every back end and its DMA
# works through the group's shared requester ID. Bound again: not viable again.
. /etc/vfioh/lib.sh
need EDU2 SERIAL BRIDGE
g=$(basename "$(readlink /sys/bus/pci/devices/$EDU2/iommu_group)")
members=$(ls /sys/kernel/iommu_groups/$g/devices | sort | tr '\n' ' ')
expect_eq "members of EDU2's group $g" "$members" "$(printf '%s\n' $BRIDGE $EDU2 $SERIAL | sort | tr '\n' ' ')"
drv() { _l=$(readlink /sys/bus/pci/devices/$1/driver 2>/dev/null); [ -z "$_l" ] || basename "$_l"; }
expect_eq "EDU2's driver" "$(drv $EDU2)" vfio-pci
expect_eq "SERIAL's driver" "$(drv $SERIAL)" serial
expect_eq "BRIDGE's driver" "$(drv $BRIDGE)" ""
rebind() { [ -e /sys/bus/pci/devices/$SERIAL/driver ] || echo $SERIAL >/sys/bus/pci/drivers/serial/bind; }
trap rebind EXIT
cdev=
[ "$HAVE_IOMMUFD" = 1 ] && cdev=/dev/vfio/devices/$(ls /sys/bus/pci/devices/$EDU2/vfio-dev)

not_viable() {
    expect_err "raw legacy probe" "group $g not viable" vfio-probe legacy $g $EDU2
    expect_err "legacy open" "IOMMU group $g is not viable \(members still bound to host drivers: $SERIAL \(serial\)\)" \
        vfio-harness --iommu legacy info $EDU2
    if [ "$HAVE_IOMMUFD" = 1 ]; then
        expect_err "raw iommufd probe" "BIND_IOMMUFD.*Operation not permitted" vfio-probe iommufd $cdev
        for b in iommufd auto; do
            expect_err "$b open" "IOMMU group $g is not viable \(members still bound to host drivers: $SERIAL \(serial\)\)" \
                vfio-harness --iommu $b info $EDU2
        done
    fi
}

not_viable
run sh -c "echo $SERIAL >/sys/bus/pci/drivers/serial/unbind"
expect_eq "SERIAL's driver after unbind" "$(drv $SERIAL)" ""
run vfio-probe legacy $g $EDU2
for b in $(backends); do
    run_out out vfio-harness --iommu $b info $EDU2 --json
    expect_eq "$b: backend" "$(echo "$out" | json_str backend)" $b
    expect_eq "$b: iommu_group" "$(echo "$out" | json_num iommu_group)" "$g"
    run_out out vfio-harness --iommu $b dma $EDU2 --size 1M --check --check-bytes 4K --json
    expect_eq "$b: DMA through the shared group" "$(echo "$out" | json_obj check | json_bool matched)" true
done
run sh -c "echo $SERIAL >/sys/bus/pci/drivers/serial/bind"
expect_eq "SERIAL's driver after bind" "$(drv $SERIAL)" serial
not_viable
exit 0
