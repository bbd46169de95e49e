# A device named by its VFIO cdev (/dev/vfio/devices/vfioN): the harness resolves the node
# through sysfs (class/vfio-dev/vfioN/device) to the same device the UUID or PCI address
# names, and opens it through either back end (the spec names a device, not an interface):
# `info --json` is identical to the one by name, and edu's DMA works through it. A cdev
# node that does not exist is refused. On a kernel without device cdevs (the debian
# flavour: no CONFIG_VFIO_DEVICE_CDEV) sysfs still lists every VFIO device under
# class/vfio-dev (vfio-dev/vfioN below the device), but /dev/vfio/devices does not exist:
# the harness refuses the cdev name and says why.
. /etc/vfioh/lib.sh
need MTTY_A EDU
n=$(ls /sys/bus/mdev/devices/$MTTY_A/vfio-dev)
echo "sysfs: $MTTY_A/vfio-dev/$n; /dev/vfio: $(ls /dev/vfio | tr '\n' ' ')"
if [ ! -d /dev/vfio/devices ]; then
    [ "$HAVE_IOMMUFD" = 0 ] || fail "iommufd without /dev/vfio/devices"
    [ -d /sys/class/vfio-dev/$n ] || fail "no class/vfio-dev/$n for $MTTY_A"
    expect_err "cdev spec without cdev nodes" \
        "/dev/vfio/devices/$n does not exist: the kernel lists the device in sysfs but has no cdev node" \
        vfio-harness info /dev/vfio/devices/$n
    exit 0
fi
for pair in "$MTTY_A mdev" "$EDU pci"; do
    set -- $pair
    dev=$1; bus=$2
    n=$(ls /sys/bus/$bus/devices/$dev/vfio-dev)
    cdev=/dev/vfio/devices/$n
    [ -c "$cdev" ] || fail "$cdev is not a character device"
    expect_eq "$n resolves to" "$(basename "$(readlink -f /sys/class/vfio-dev/$n/device)")" "$dev"
    for b in $(backends); do
        run_out byname vfio-harness --iommu $b info "$dev" --json
        run_out bycdev vfio-harness --iommu $b info "$cdev" --json
        expect_eq "$cdev via $b: name" "$(echo "$bycdev" | json_str name)" "$dev"
        expect_eq "$cdev via $b: backend" "$(echo "$bycdev" | json_str backend)" "$b"
        [ "$byname" = "$bycdev" ] || {
            echo "$byname" >/tmp/byname.json; echo "$bycdev" >/tmp/bycdev.json
            diff /tmp/byname.json /tmp/bycdev.json; fail "$cdev via $b: info differs from $dev's"
        }
        echo "ok: info by $cdev = info by $dev ($b)"
    done
done
n=$(ls /sys/bus/pci/devices/$EDU/vfio-dev)
run_out out vfio-harness dma /dev/vfio/devices/$n --size 1M --check --check-bytes 4K --json
expect_eq "DMA check through the cdev spec" "$(echo "$out" | json_obj check | json_bool matched)" true
expect_eq "device of the DMA report" "$(echo "$out" | json_str device)" "$EDU"
expect_err "a cdev that does not exist" "/dev/vfio/devices/vfio999 does not exist" \
    vfio-harness info /dev/vfio/devices/vfio999
expect_err "not a cdev name" "a cdev is named /dev/vfio/devices/vfioN" \
    vfio-harness info /dev/vfio/devices/foo
exit 0
