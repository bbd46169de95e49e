# edu: map/unmap DMA memory inside the reported IOVA ranges, then `--check`: the device DMAs
# a pattern from one mapped buffer into itself and back into another; bytes compare equal,
# the guard after the copy is untouched, and the MSI arrives on the eventfd. Both back ends.
. /etc/vfioh/lib.sh
need EDU
for b in $(backends); do
    run_out out vfio-harness --iommu $b dma "$EDU" --size 16M --check --check-bytes 6K --json
    echo "$out" | grep -q '"matched": true' || fail "$b: DMA pattern mismatch"
    echo "$out" | grep -q '"guard_intact": true' || fail "$b: DMA wrote past the copy"
    echo "$out" | grep -q '"msi_latency_us"' || fail "$b: no MSI latency"
    run vfio-harness --iommu $b dma "$EDU" --size 8M --hugepages
done
exit 0
