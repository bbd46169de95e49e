# `info --json` reports exactly what the raw ioctls return (tests/vm/probe/vfio-probe.c):
# device flags, every region's size/flags/type, every IRQ's count/flags and the migration
# flags, for mtty, mdpy, mbochs and edu, through every IOMMU back end.
. /etc/vfioh/lib.sh
need MTTY_A EDU
command -v vfio-probe >/dev/null || fail "vfio-probe is not in the initramfs"

# harness JSON -> probe format (relies on serde_json's 2-space pretty printing).
to_probe() {
    awk '
    function num(s) { gsub(/[^0-9]/, "", s); return s }
    /^  "[a-z_]+":/ { sec = $1; gsub(/[":]/, "", sec) }
    sec == "flags" && /^  "flags":/ { print "flags " num($2) }
    sec == "regions" && /^      "index":/ { idx = num($2); ts = "" }
    sec == "regions" && /^      "size":/ { sz = num($2) }
    sec == "regions" && /^      "flags":/ { fl = num($2) }
    sec == "regions" && /^          "type":/ { t = num($2) }
    sec == "regions" && /^          "subtype":/ { ts = ts " " t "/" num($2) }
    sec == "regions" && /^    }/ { print "region " idx " " sz " " fl ts }
    sec == "irqs" && /^      "index":/ { idx = num($2) }
    sec == "irqs" && /^      "count":/ { cnt = num($2) }
    sec == "irqs" && /^      "flags":/ { fl = num($2) }
    sec == "irqs" && /^    }/ { print "irq " idx " " cnt " " fl }
    sec == "migration" && /^    "flags_raw":/ { mig = num($2) }
    END { if (mig == "") print "mig none"; else print "mig " mig }
    '
}

check() { # NAME SYSFS-NODE
    name=$1; node=$2
    dev=$(basename "$node")
    for b in $(backends); do
        case $b in
        legacy) group=$(basename "$(readlink "$node/iommu_group")")
                run_out raw vfio-probe legacy "$group" "$dev" ;;
        iommufd) cdev=$(ls "$node/vfio-dev")
                 run_out raw vfio-probe iommufd "/dev/vfio/devices/$cdev" ;;
        esac
        echo "$raw" >/tmp/raw-$name-$b
        run_out js vfio-harness --iommu "$b" info "$dev" --json
        echo "$js" | to_probe >/tmp/harness-$name-$b
        cat /tmp/harness-$name-$b
        diff /tmp/raw-$name-$b /tmp/harness-$name-$b || fail "$name via $b: info differs from the raw ioctls"
        grep -q '^region ' /tmp/raw-$name-$b || fail "$name: no regions decoded"
        echo "ok: $name via $b matches the raw ioctls"
    done
}

check mtty /sys/bus/mdev/devices/$MTTY_A
check edu /sys/bus/pci/devices/$EDU
[ -n "$MDPY" ] && check mdpy /sys/bus/mdev/devices/$MDPY
[ -n "$MBOCHS" ] && check mbochs /sys/bus/mdev/devices/$MBOCHS

# Acceptance facts: edu BAR0 is 1 MiB; mtty has migration v2 with STOP_COPY|P2P|PRE_COPY.
grep -q '^region 0 1048576 ' /tmp/raw-edu-legacy || fail "edu BAR0 is not 1 MiB"
grep -q '^mig 7$' /tmp/raw-mtty-legacy || fail "mtty does not report migration flags 7"
exit 0
