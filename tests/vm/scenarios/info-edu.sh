# `info` opens the edu device through every IOMMU back end the kernel offers and the
# reports agree with each other and with sysfs.
. /etc/vfioh/lib.sh
need EDU
prev=
for b in $(backends); do
    run_out out vfio-harness --iommu $b info "$EDU" --json
    echo "$out" >/tmp/info-edu-$b.json
    backend=$(echo "$out" | json_str backend)
    expect_eq "backend reported" "$backend" "$b"
    # Everything but the back end must be identical between back ends.
    grep -v '"backend"' /tmp/info-edu-$b.json >/tmp/info-edu-$b.cmp
    if [ -n "$prev" ]; then
        diff /tmp/info-edu-$prev.cmp /tmp/info-edu-$b.cmp || fail "info differs between $prev and $b"
    fi
    prev=$b
done
