# The bed's kernel offers what every other scenario relies on: the VFIO container, iommufd,
# device cdevs, the three mdev sample parents, and edu bound to vfio-pci in its own group.
. /etc/vfioh/lib.sh
echo "flavour: $FLAVOUR, kernel $(uname -r)"
[ -c /dev/vfio/vfio ] || fail "/dev/vfio/vfio missing (CONFIG_VFIO_CONTAINER)"
if [ "$FLAVOUR" = debian ]; then
    # The stock Debian kernel has no iommufd: the harness must fall back to legacy.
    [ -e /dev/iommu ] && fail "/dev/iommu exists on the debian flavour"
    echo "ok: no /dev/iommu on the stock Debian kernel"
    # The harness falls back: auto picks legacy; asking for iommufd explains why it cannot.
    need MTTY_A
    run_out out vfio-harness --iommu auto info "$MTTY_A" --json
    expect_eq "auto back end without iommufd" "$(echo "$out" | json_str backend)" legacy
    if err=$(vfio-harness --iommu iommufd info "$MTTY_A" 2>&1); then
        fail "--iommu iommufd succeeded without /dev/iommu"
    fi
    echo "$err"
    echo "$err" | grep -q "/dev/iommu" || fail "the iommufd refusal does not name /dev/iommu: $err"
else
    [ -c /dev/iommu ] || fail "/dev/iommu missing (CONFIG_IOMMUFD)"
fi
for p in mtty mdpy mbochs; do
    [ -d /sys/class/mdev_bus/$p/mdev_supported_types ] || fail "mdev parent $p missing"
    echo "ok: parent $p types: $(ls /sys/class/mdev_bus/$p/mdev_supported_types | tr '\n' ' ')"
done
need MTTY_A EDU
for u in $MTTY_A $MTTY_B $MDPY $MBOCHS; do
    g=$(basename "$(readlink /sys/bus/mdev/devices/$u/iommu_group)")
    [ -c /dev/vfio/$g ] || fail "group node /dev/vfio/$g of $u missing"
    if [ "$FLAVOUR" = debian ]; then
        echo "ok: $u group $g"
    else
        [ -d /sys/bus/mdev/devices/$u/vfio-dev ] || fail "$u has no vfio-dev cdev"
        echo "ok: $u group $g cdev $(ls /sys/bus/mdev/devices/$u/vfio-dev)"
    fi
done
drv=$(basename "$(readlink /sys/bus/pci/devices/$EDU/driver)")
expect_eq "edu driver" "$drv" vfio-pci
g=$(basename "$(readlink /sys/bus/pci/devices/$EDU/iommu_group)")
members=$(ls /sys/kernel/iommu_groups/$g/devices | wc -l)
expect_eq "devices in edu's IOMMU group $g" "$members" 1
[ -d /sys/class/iommu ] && ls /sys/class/iommu | grep -q dmar || fail "no DMAR (intel-iommu) unit"
echo "ok: intel-iommu $(ls /sys/class/iommu)"
