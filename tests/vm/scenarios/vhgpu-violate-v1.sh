# vhgpu's seeded contract violations of migration v1 (vendor/violate v1-*), with the module
# reloaded as a v1-only device (migration_v1=1 migration_v2=0): for each name the v1 clause
# is checked through raw region accesses (vhgpu-clauses) on the stock device (it holds), with
# the violation (exactly the seeded symptom), and again stock. A second, stock instance is the
# source of streams. The module is reloaded with its boot parameters afterwards.
. /etc/vfioh/lib.sh
D=6f1e0c3a-7a1d-4c55-9d2e-00000000f601
S=6f1e0c3a-7a1d-4c55-9d2e-00000000f602
vhgpu_v1_only $D $S
V=/sys/bus/mdev/devices/$D/vendor/violate
run sh -c "echo $D >$P/vhgpu-64M/create"
run sh -c "echo $S >$P/vhgpu-64M/create"
for n in v1-state-bits v1-pending v1-data-window v1-resume-loads; do
    run vhgpu-clauses $n held $D $S
    run sh -c "echo $n >$V"
    expect_eq "violate" "$(cat $V)" $n
    run vhgpu-clauses $n broken $D $S
    run sh -c "echo none >$V"
    run vhgpu-clauses $n held $D $S
done
echo PASS
