# mdpy and mbochs framebuffers: write a pattern through the mmap'd BAR and read it back
# through positioned reads on the device fd; single registers too.
#
# mdpy (6.12 sample) ignores the offset in its read/write handler (mdev_access copies to and
# from the start of the framebuffer whatever the position; see hw-notes/devices.md), so on
# mdpy the fd read-back is only meaningful for the first 4 bytes; mbochs gets the full check.
. /etc/vfioh/lib.sh
need MDPY MBOCHS
for b in $(backends); do
    for dev in "$MDPY" "$MBOCHS"; do
        run_out info vfio-harness --iommu $b info "$dev" --json
        echo "$info" | grep -q '"mmap"' || fail "$dev: no mmap-able region reported"
    done
    run_out out vfio-harness --iommu $b bar "$MDPY" --mmap fill BAR0 --offset 0 --len 4 --seed 3 --json
    echo "$out" | grep -q '"matched":true' || fail "mdpy: pattern did not read back"
    run vfio-harness --iommu $b bar "$MDPY" --mmap write BAR0 0 0xdeadbeef --width 4 --readback
    run_out out vfio-harness --iommu $b bar "$MBOCHS" --mmap fill BAR0 --offset 0x1000 --len 0x10000 --seed 7 --json
    echo "$out" | grep -q '"matched":true' || fail "mbochs: pattern did not read back"
    run vfio-harness --iommu $b bar "$MBOCHS" --mmap write BAR0 0x2004 0xdeadbeef --width 4 --readback
    run vfio-harness --iommu $b bar "$MBOCHS" --mmap write BAR0 0x2008 0x0123456789abcdef --width 8 --readback
    run vfio-harness --iommu $b bar "$MBOCHS" dump BAR0 --offset 0x2000 --len 32
done
exit 0
