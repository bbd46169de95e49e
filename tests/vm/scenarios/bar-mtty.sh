# `bar` on mtty, through every IOMMU back end: the UART scratch register (BAR0 offset 7)
# takes a value and a later open reads it back (mtty keeps its registers per instance);
# an 8-register read returns 8 values at offsets 0..7 with the scratch value at 7; BAR1
# (mtty-2's second port) has its own scratch; reads past the 8-byte BAR, of a region mtty
# does not have, or through a mapping of its (not mmap-able) I/O BAR are refused by the
# harness with the reason (the kernel is never asked).
. /etc/vfioh/lib.sh
need MTTY_A
rd() { vfio-harness --iommu $1 bar "$MTTY_A" read "$2" "$3" --width 1 --json | json_num value; }
for b in $(backends); do
    run vfio-harness --iommu $b bar "$MTTY_A" write BAR0 7 0x5a --width 1 --readback
    expect_eq "$b: BAR0 scratch in a later open" "$(rd $b BAR0 7)" 90
    run vfio-harness --iommu $b bar "$MTTY_A" write 0 7 0xa5 --width 1 --readback
    run vfio-harness --iommu $b bar "$MTTY_A" write BAR1 7 0x3c --width 1 --readback
    expect_eq "$b: BAR1 scratch" "$(rd $b BAR1 7)" 60
    expect_eq "$b: BAR0 scratch unchanged by BAR1's" "$(rd $b BAR0 7)" 165
    run_out out vfio-harness --iommu $b bar "$MTTY_A" read BAR0 0 --width 1 --count 8 --json
    expect_eq "$b: values read" "$(echo "$out" | grep -c '"value":')" 8
    expect_eq "$b: offsets" "$(echo "$out" | grep -o '"offset": *[0-9]*' | sed 's/.*: *//' | tr '\n' ' ')" "0 1 2 3 4 5 6 7 "
    expect_eq "$b: offset 7 of the 8" "$(echo "$out" | grep -o '"value": *[0-9]*' | sed -n 8p | sed 's/.*: *//')" 165
    expect_err "$b: read past BAR0" "0x1 byte\(s\) at 0x8 are outside region 0 \(BAR0\) of 0x8 byte\(s\)" \
        vfio-harness --iommu $b bar "$MTTY_A" read BAR0 8 --width 1
    expect_err "$b: no such region" "no region \"BAR7\"" \
        vfio-harness --iommu $b bar "$MTTY_A" read BAR7 0
    expect_err "$b: mmap of an I/O BAR" "not inside one mmap-able area" \
        vfio-harness --iommu $b bar "$MTTY_A" --mmap read BAR0 0 --width 1
done
exit 0
