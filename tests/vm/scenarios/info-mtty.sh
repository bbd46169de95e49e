# `info` opens the mtty device through every IOMMU back end the kernel offers and the
# reports agree with each other and with sysfs.
. /etc/vfioh/lib.sh
need MTTY_A
prev=
for b in $(backends); do
    run_out out vfio-harness --iommu $b info "$MTTY_A" --json
    echo "$out" >/tmp/info-mtty-$b.json
    backend=$(echo "$out" | json_str backend)
    expect_eq "backend reported" "$backend" "$b"
    # Everything but the back end must be identical between back ends.
    grep -v '"backend"' /tmp/info-mtty-$b.json >/tmp/info-mtty-$b.cmp
    if [ -n "$prev" ]; then
        diff /tmp/info-mtty-$prev.cmp /tmp/info-mtty-$b.cmp || fail "info differs between $prev and $b"
    fi
    prev=$b
done
