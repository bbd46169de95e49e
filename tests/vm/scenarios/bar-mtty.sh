# `bar` on mtty: write the UART scratch register (BAR0 offset 7) and read it back, through
# every IOMMU back end; out-of-range and unknown regions are refused.
. /etc/vfioh/lib.sh
need MTTY_A
for b in $(backends); do
    run vfio-harness --iommu $b bar "$MTTY_A" write BAR0 7 0x5a --width 1 --readback
    run vfio-harness --iommu $b bar "$MTTY_A" write 0 7 0xa5 --width 1 --readback
    run_out out vfio-harness --iommu $b bar "$MTTY_A" read BAR0 0 --width 1 --count 8 --json
    must_fail vfio-harness --iommu $b bar "$MTTY_A" read BAR0 8 --width 1
    must_fail vfio-harness --iommu $b bar "$MTTY_A" read BAR7 0
    must_fail vfio-harness --iommu $b bar "$MTTY_A" --mmap read BAR0 0 --width 1
done
exit 0
