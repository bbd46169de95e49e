# mdpy and mbochs framebuffers: write a pattern through the mmap'd BAR and read it back
# through positioned reads on the device fd; single registers too.
. /etc/vfioh/lib.sh
need MDPY MBOCHS
for dev in "$MDPY" "$MBOCHS"; do
    for b in $(backends); do
        run_out info vfio-harness --iommu $b info "$dev" --json
        echo "$info" | grep -q '"mmap"' || fail "$dev: no mmap-able region reported"
        run_out out vfio-harness --iommu $b bar "$dev" --mmap fill BAR0 --offset 0x1000 --len 0x10000 --seed 7 --json
        echo "$out" | grep -q '"matched":true' || fail "$dev: pattern did not read back"
        run vfio-harness --iommu $b bar "$dev" --mmap write BAR0 0x2004 0xdeadbeef --width 4 --readback
        run vfio-harness --iommu $b bar "$dev" --mmap write BAR0 0x2008 0x0123456789abcdef --width 8 --readback
        run vfio-harness --iommu $b bar "$dev" dump BAR0 --offset 0x2000 --len 32
    done
done
exit 0
