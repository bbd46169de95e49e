# mdev lifecycle through sysfs: `mdev types` agrees with sysfs for mtty, mdpy and mbochs;
# creating an mtty-2 costs one mtty-2 and two mtty-1 instances (shared ports) and removing it
# gives them back; creating until the parent is full ends with a clear error and no
# half-made instance; a malformed UUID is refused before any sysfs write.
. /etc/vfioh/lib.sh
need MTTY_A

T=/sys/class/mdev_bus/mtty/mdev_supported_types
avail() { cat "$T/$1/available_instances"; }
nodes() { ls /sys/bus/mdev/devices | wc -l; }

# Whatever this scenario creates is removed on any exit, so later scenarios find the bed as
# it was.
CREATED=""
cleanup() {
    for u in $CREATED; do
        [ -e "/sys/bus/mdev/devices/$u" ] && echo 1 >"/sys/bus/mdev/devices/$u/remove"
    done
}
trap cleanup EXIT

# --- 1. types --json against sysfs, field by field ------------------------------------
checked=0
for p in mtty mdpy mbochs; do
    [ -d "/sys/class/mdev_bus/$p" ] || fail "parent $p is not registered"
    for t in $(ls "/sys/class/mdev_bus/$p/mdev_supported_types"); do
        d=/sys/class/mdev_bus/$p/mdev_supported_types/$t
        out=$(vfio-harness mdev types --parent "$p" --type "$t" --json) || fail "mdev types $p/$t"
        expect_eq "$p/$t parent" "$(echo "$out" | json_str parent)" "$p"
        expect_eq "$p/$t type" "$(echo "$out" | json_str type)" "$t"
        expect_eq "$p/$t name" "$(echo "$out" | json_str name)" "$(cat "$d/name")"
        expect_eq "$p/$t device_api" "$(echo "$out" | json_str device_api)" "$(cat "$d/device_api")"
        expect_eq "$p/$t available_instances" "$(echo "$out" | json_num available_instances)" \
            "$(cat "$d/available_instances")"
        if [ -e "$d/description" ]; then
            expect_eq "$p/$t description" "$(echo "$out" | json_str description)" "$(cat "$d/description")"
        else
            echo "$out" | grep -q '"description": null' || fail "$p/$t: description should be null"
        fi
        expect_eq "$p/$t sysfs_path" "$(echo "$out" | json_str sysfs_path)" "$(readlink -f "$d")"
        got=$(echo "$out" | grep -o '"[0-9a-f]\{8\}-[0-9a-f]\{4\}-[0-9a-f]\{4\}-[0-9a-f]\{4\}-[0-9a-f]\{12\}"' \
            | tr -d '"' | sort | tr '\n' ' ')
        want=$(ls "$d/devices" | sort | tr '\n' ' ')
        expect_eq "$p/$t devices" "$got" "$want"
        # The samples have no attributes beyond the standard ones.
        extra=$(ls "$d" | grep -v -x -e create -e available_instances -e device_api -e name \
            -e description -e devices | tr '\n' ' ')
        if [ -z "$extra" ]; then
            echo "$out" | grep -q '"attributes": {}' || fail "$p/$t: attributes should be empty"
        else
            for a in $extra; do
                echo "$out" | grep -q "\"$a\":" || fail "$p/$t: attribute $a missing"
            done
        fi
        checked=$((checked + 1))
    done
done
echo "ok: $checked types agree with sysfs"
# The human table and mdevctl's shape work too.
run vfio-harness mdev types -v
run_out mj vfio-harness mdev types --mdevctl-json
echo "$mj" | grep -q '"mtty-2": {' || fail "mdevctl-shaped types lack mtty-2"

# --- 2. list/show against sysfs --------------------------------------------------------
run_out out vfio-harness mdev show "$MTTY_A" --json
expect_eq "show parent" "$(echo "$out" | json_str parent)" mtty
expect_eq "show type" "$(echo "$out" | json_str type)" mtty-2
expect_eq "show iommu_group" "$(echo "$out" | json_num iommu_group)" \
    "$(basename "$(readlink "/sys/bus/mdev/devices/$MTTY_A/iommu_group")")"
expect_eq "show driver" "$(echo "$out" | json_str driver)" \
    "$(basename "$(readlink "/sys/bus/mdev/devices/$MTTY_A/driver")")"
expect_eq "show sysfs_path" "$(echo "$out" | json_str sysfs_path)" \
    "$(readlink -f "/sys/bus/mdev/devices/$MTTY_A")"
echo "$out" | grep -q '"vendor/sample_mdev_dev": "This is MDEV '"$MTTY_A"'"' \
    || fail "mtty's per-instance attribute vendor/sample_mdev_dev is missing"
run_out out vfio-harness mdev list --json
expect_eq "instances listed" "$(echo "$out" | grep -c '"uuid"')" "$(nodes)"
run vfio-harness mdev list

# --- 3. create mtty-2: shared ports ----------------------------------------------------
a1=$(avail mtty-1); a2=$(avail mtty-2); n0=$(nodes)
echo "before: mtty-1 $a1, mtty-2 $a2 available, $n0 instances"
[ "$a2" -ge 1 ] || fail "no room for an mtty-2 (mtty-2 available_instances = $a2)"
run_out out vfio-harness mdev create --parent mtty --type mtty-2 --timings --json
U=$(echo "$out" | json_str uuid)
CREATED="$CREATED $U"
[ -e "/sys/bus/mdev/devices/$U" ] || fail "created $U but it is not in /sys/bus/mdev/devices"
echo "$out" | grep -q '"create_seconds": [0-9]' || fail "--timings gave no create_seconds"
expect_eq "available_instances_before" "$(echo "$out" | json_num available_instances_before)" "$a2"
expect_eq "available_instances_after" "$(echo "$out" | json_num available_instances_after)" "$(avail mtty-2)"
expect_eq "mtty-2 drop" $((a2 - $(avail mtty-2))) 1
expect_eq "mtty-1 drop" $((a1 - $(avail mtty-1))) 2
expect_eq "type of $U" "$(basename "$(readlink "/sys/bus/mdev/devices/$U/mdev_type")")" mtty-2
ls "$T/mtty-2/devices" | grep -qx "$U" || fail "$U not listed in mtty-2/devices"

# First open / last close timings (the open goes through the kernel back end): the open of a
# fresh mtty-2 must work, and both times are reported.
run_out tout vfio-harness mdev timings "$U" --json
echo "$tout" | grep -q '"first_open_seconds": [0-9]' || fail "timings gave no first_open_seconds"
echo "$tout" | grep -q '"last_close_seconds": [0-9]' || fail "timings gave no last_close_seconds"
echo "$tout" | grep -q '"error": null' || fail "timings reported an open error"

run vfio-harness mdev remove "$U" --timings
CREATED=""
[ -e "/sys/bus/mdev/devices/$U" ] && fail "$U still exists after remove"
expect_eq "mtty-2 restored" "$(avail mtty-2)" "$a2"
expect_eq "mtty-1 restored" "$(avail mtty-1)" "$a1"
expect_eq "instances restored" "$(nodes)" "$n0"
must_fail vfio-harness mdev remove "$U"

# --- 4. create until full --------------------------------------------------------------
n=0
while out=$(vfio-harness mdev create --parent mtty --type mtty-2 2>/tmp/full.err); do
    CREATED="$CREATED $out"
    n=$((n + 1))
    [ "$n" -le "$a2" ] || fail "created $n mtty-2 but available_instances said $a2"
done
echo "created $n mtty-2 until full; the refusal said:"
cat /tmp/full.err
expect_eq "mtty-2 created until full" "$n" "$a2"
grep -q "no capacity left on mtty/mtty-2" /tmp/full.err || fail "unclear error when full"
expect_eq "mtty-2 available when full" "$(avail mtty-2)" 0
# The parent's last odd port still takes mtty-1 instances; then the whole parent is full.
a1full=$(avail mtty-1)
m=0
while out=$(vfio-harness mdev create --parent mtty --type mtty-1 2>/tmp/full1.err); do
    CREATED="$CREATED $out"
    m=$((m + 1))
    [ "$m" -le "$a1full" ] || fail "created $m mtty-1 but available_instances said $a1full"
done
cat /tmp/full1.err
expect_eq "mtty-1 created on the remaining ports" "$m" "$a1full"
expect_eq "mtty-1 left when the parent is full" "$(avail mtty-1)" 0
grep -q "no capacity left on mtty/mtty-1" /tmp/full1.err || fail "unclear error when mtty-1 is full"
nfull=$(nodes)
# With a chosen UUID: refused, and no node of that name appears.
FU=83b8f4f2-509f-382f-3c1e-e6bfe0fa9999
must_fail vfio-harness mdev create --parent mtty --type mtty-2 --uuid "$FU"
[ -e "/sys/bus/mdev/devices/$FU" ] && fail "a refused create left $FU behind"
expect_eq "instances after refused creates" "$(nodes)" "$nfull"
# Duplicate UUID: refused with its own message.
out=$(vfio-harness mdev create --parent mtty --type mtty-1 --uuid "$MTTY_A" 2>&1) \
    && fail "creating a duplicate UUID succeeded"
echo "$out"
echo "$out" | grep -q "duplicate UUID" || fail "unclear duplicate-UUID error"

for u in $CREATED; do run vfio-harness mdev remove "$u"; done
CREATED=""
expect_eq "mtty-2 after removing all" "$(avail mtty-2)" "$a2"
expect_eq "mtty-1 after removing all" "$(avail mtty-1)" "$a1"

# --- 5. capacity sharing on mdpy (one parent-wide counter) and mbochs (shared memory) ----
for p in mdpy mbochs; do
    P=/sys/class/mdev_bus/$p/mdev_supported_types
    t=$(ls "$P" | sort | head -n 1)
    before=""; for x in $(ls "$P"); do before="$before $x=$(cat "$P/$x/available_instances")"; done
    [ "$(cat "$P/$t/available_instances")" -ge 1 ] || { echo "note: $p/$t is full, not checked"; continue; }
    run_out u vfio-harness mdev create --parent "$p" --type "$t"
    CREATED="$CREATED $u"
    after=""; for x in $(ls "$P"); do after="$after $x=$(cat "$P/$x/available_instances")"; done
    echo "$p: before:$before; after one $t:$after"
    b=$(echo "$before" | tr ' ' '\n' | grep "^$t=" | cut -d= -f2)
    a=$(echo "$after" | tr ' ' '\n' | grep "^$t=" | cut -d= -f2)
    expect_eq "$p/$t drop" $((b - a)) 1
    if [ "$p" = mdpy ]; then
        # mdpy has no get_available: one counter for the parent, every type drops by one.
        for x in $(ls "$P"); do
            bx=$(echo "$before" | tr ' ' '\n' | grep "^$x=" | cut -d= -f2)
            ax=$(echo "$after" | tr ' ' '\n' | grep "^$x=" | cut -d= -f2)
            expect_eq "mdpy/$x drop" $((bx - ax)) 1
        done
    fi
    run vfio-harness mdev remove "$u"
    CREATED=""
done

# --- 6. bad UUIDs never reach sysfs -----------------------------------------------------
# The kernel itself refuses a bad UUID with EINVAL; the harness must refuse it first, with
# its own message (the kernel's refusal would read "invalid argument").
for bad in not-a-uuid 83b8f4f2-509f-382f-3c1e-e6bfe0fa10 83b8f4f2509f382f3c1ee6bfe0fa1001 \
    83b8f4f2-509f-382f-3c1e-e6bfe0fa100g; do
    out=$(vfio-harness mdev create --parent mtty --type mtty-2 --uuid "$bad" 2>&1) \
        && fail "bad UUID $bad accepted"
    echo "$out"
    echo "$out" | grep -q "is not a UUID" || fail "bad UUID $bad: not refused by the harness"
    echo "$out" | grep -qi "invalid argument" && fail "bad UUID $bad reached the kernel"
done
expect_eq "mtty-2 after bad UUIDs" "$(avail mtty-2)" "$a2"
expect_eq "instances after bad UUIDs" "$(nodes)" "$n0"
# And on a tree whose create file records writes: it stays empty.
S=/tmp/shadow
mkdir -p "$S/class/mdev_bus/mtty/mdev_supported_types/mtty-2/devices" "$S/bus/mdev/devices"
: >"$S/class/mdev_bus/mtty/mdev_supported_types/mtty-2/create"
echo 12 >"$S/class/mdev_bus/mtty/mdev_supported_types/mtty-2/available_instances"
must_fail vfio-harness mdev --sysfs-root "$S" create --parent mtty --type mtty-2 --uuid not-a-uuid
expect_eq "bytes written to the shadow create" \
    "$(wc -c <"$S/class/mdev_bus/mtty/mdev_supported_types/mtty-2/create")" 0
# ...while a good UUID on the same tree is written verbatim (the check can fail).
run vfio-harness mdev --sysfs-root "$S" create --parent mtty --type mtty-2 --uuid "$FU"
expect_eq "shadow create content" "$(cat "$S/class/mdev_bus/mtty/mdev_supported_types/mtty-2/create")" "$FU"
echo "PASS"
