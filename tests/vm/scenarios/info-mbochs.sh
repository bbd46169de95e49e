# `info` opens the mbochs device through every IOMMU back end the kernel offers and the
# reports agree with each other and with sysfs.
. /etc/vfioh/lib.sh
need MBOCHS
prev=
for b in $(backends); do
    run_out out vfio-harness --iommu $b info "$MBOCHS" --json
    echo "$out" >/tmp/info-mbochs-$b.json
    backend=$(echo "$out" | json_str backend)
    expect_eq "backend reported" "$backend" "$b"
    # Everything but the back end must be identical between back ends.
    grep -v '"backend"' /tmp/info-mbochs-$b.json >/tmp/info-mbochs-$b.cmp
    if [ -n "$prev" ]; then
        diff /tmp/info-mbochs-$prev.cmp /tmp/info-mbochs-$b.cmp || fail "info differs between $prev and $b"
    fi
    prev=$b
done
