# `info` opens the mdpy device through every IOMMU back end the kernel offers and the
# reports agree with each other and with sysfs.
. /etc/vfioh/lib.sh
need MDPY
prev=
for b in $(backends); do
    run_out out vfio-harness --iommu $b info "$MDPY" --json
    echo "$out" >/tmp/info-mdpy-$b.json
    backend=$(echo "$out" | json_str backend)
    expect_eq "backend reported" "$backend" "$b"
    # Everything but the back end must be identical between back ends.
    grep -v '"backend"' /tmp/info-mdpy-$b.json >/tmp/info-mdpy-$b.cmp
    if [ -n "$prev" ]; then
        diff /tmp/info-mdpy-$prev.cmp /tmp/info-mdpy-$b.cmp || fail "info differs between $prev and $b"
    fi
    prev=$b
done
