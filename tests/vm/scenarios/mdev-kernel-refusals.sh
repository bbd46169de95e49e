# mdev create and remove where the kernel, not the harness, has the last word.
# 1. EEXIST: the harness checks for the UUID before writing `create`; the kernel's check is
#    the one that counts when an instance appears between the two (another creator). Made
#    deterministic with a sysfs root whose type directory is the real one but whose
#    bus/mdev/devices is empty: the harness sees no instance, writes, the kernel answers
#    EEXIST; the harness reports a duplicate and leaves the existing instance alone.
# 2. No capacity: mdpy's parent-wide counter (mdev core, EUSERS) refuses a create once its
#    instances are used up. The harness refuses first when available_instances says 0; a
#    root whose available_instances says 1 (and whose `create` is the real one) lets the
#    write reach the kernel: "no capacity", with the kernel's errno, and no node.
# 3. Removing an open mdev: the kernel's remove waits for the last close (mtty has no
#    `request` callback to ask the user to let go); `mdev remove` blocks until the holder
#    (an `irq` waiting 8 s for a device interrupt) closes it, then succeeds.
. /etc/vfioh/lib.sh
need MTTY_D MDPY
CREATED=""
cleanup() {
    for u in $CREATED; do
        [ -e "/sys/bus/mdev/devices/$u" ] && echo 1 >"/sys/bus/mdev/devices/$u/remove"
    done
}
trap cleanup EXIT
nodes() { ls /sys/bus/mdev/devices | wc -l; }

# --- 1. EEXIST from the kernel -----------------------------------------------------------
S=/tmp/shadow-eexist
rm -rf $S; mkdir -p $S/class/mdev_bus $S/bus/mdev/devices
ln -s /sys/class/mdev_bus/mtty $S/class/mdev_bus/mtty
T=/sys/class/mdev_bus/mtty/mdev_supported_types/mtty-1
a1=$(cat $T/available_instances); n0=$(nodes)
run_out view vfio-harness mdev --sysfs-root $S list --json
echo "$view" | grep -q "$MTTY_D" && fail "the shadow root shows $MTTY_D"
expect_err "create $MTTY_D (exists, unseen by the harness)" "duplicate UUID: mediated device $MTTY_D already exists" \
    vfio-harness mdev --sysfs-root $S create --parent mtty --type mtty-1 --uuid $MTTY_D
echo "$ERR" | grep -q "an instance of" && fail "the harness found the instance itself: the kernel was not asked"
expect_eq "$MTTY_D still there, type" "$(basename "$(readlink /sys/bus/mdev/devices/$MTTY_D/mdev_type)")" mtty-1
expect_eq "instances after the refusal" "$(nodes)" "$n0"
expect_eq "mtty-1 available after the refusal" "$(cat $T/available_instances)" "$a1"
run_out out vfio-harness info $MTTY_D --json
expect_eq "$MTTY_D still opens" "$(echo "$out" | json_str name)" "$MTTY_D"

# --- 2. the kernel's capacity refusal ----------------------------------------------------
P=/sys/class/mdev_bus/mdpy/mdev_supported_types
t=$(basename "$(readlink /sys/bus/mdev/devices/$MDPY/mdev_type)")
free=$(cat $P/$t/available_instances)
echo "mdpy/$t: $free available"
i=0
while [ $i -lt "$free" ]; do
    run_out u vfio-harness mdev create --parent mdpy --type $t
    CREATED="$CREATED $u"; i=$((i + 1))
done
expect_eq "mdpy/$t available when full" "$(cat $P/$t/available_instances)" 0
expect_err "harness refusal when full" "no capacity left on mdpy/$t \(available_instances = 0\)" \
    vfio-harness mdev create --parent mdpy --type $t
echo "$ERR" | grep -q "os error" && fail "the harness's own refusal carries a kernel errno"
S=/tmp/shadow-full
rm -rf $S; mkdir -p $S/class/mdev_bus/mdpy/mdev_supported_types/$t/devices $S/bus/mdev/devices
for f in name device_api description; do
    [ -e $P/$t/$f ] && cat $P/$t/$f >$S/class/mdev_bus/mdpy/mdev_supported_types/$t/$f
done
echo 1 >$S/class/mdev_bus/mdpy/mdev_supported_types/$t/available_instances
ln -s $P/$t/create $S/class/mdev_bus/mdpy/mdev_supported_types/$t/create
FU=83b8f4f2-509f-382f-3c1e-e6bfe0fa9998
n1=$(nodes)
expect_err "kernel refusal when full" \
    "no capacity left on mdpy/$t.*the kernel refused: Too many users \(os error 87\)" \
    vfio-harness mdev --sysfs-root $S create --parent mdpy --type $t --uuid $FU
[ -e /sys/bus/mdev/devices/$FU ] && fail "the refused create left $FU behind"
expect_eq "instances after the kernel's refusal" "$(nodes)" "$n1"
for u in $CREATED; do run vfio-harness mdev remove $u; done
CREATED=""

# --- 3. removing an open mdev ------------------------------------------------------------
run_out R vfio-harness mdev create --parent mtty --type mtty-1
CREATED="$R"
vfio-harness irq $R --index INTX --count 1 --timeout 8000 --json >/tmp/holder.json 2>/tmp/holder.err &
holder=$!
sleep 2
kill -0 $holder || fail "the holder exited early: $(cat /tmp/holder.err)"
run_out out vfio-harness mdev remove $R --timings --json
wait $holder; hrc=$?
cat /tmp/holder.json /tmp/holder.err
expect_eq "holder exit (no interrupt came)" "$hrc" 1
expect_eq "holder: delivered" "$(json_num delivered </tmp/holder.json)" 0
expect_eq "holder: index disabled" "$(json_bool disabled </tmp/holder.json)" true
expect_eq "removed" "$(echo "$out" | json_bool removed)" true
secs=$(echo "$out" | grep -o '"remove_seconds": *[0-9.e+-]*' | sed 's/.*: *//')
echo "remove waited $secs s for the holder"
awk -v s="$secs" 'BEGIN { exit !(s >= 4 && s < 10) }' || fail "remove took $secs s (want 4..10: it must wait for the holder's close, about 6 s away)"
[ -e /sys/bus/mdev/devices/$R ] && fail "$R still exists"
CREATED=""
exit 0
