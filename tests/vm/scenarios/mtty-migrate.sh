# Live migration and save/restore of a real mtty device through the kernel's migration v2
# uAPI: bytes pushed into the source UART's FIFO and its scratch register come out of the
# destination; corrupt, truncated and foreign stream files are refused and leave the target
# RUNNING and usable.
. /etc/vfioh/lib.sh
need MTTY_A MTTY_B MTTY_C
H=vfio-harness

# UART registers (offsets in BAR0): 0 THR/RBR, 2 FCR, 3 LCR, 5 LSR, 7 SCR.
reg_w() { echo "+ bar $1 write BAR0 $2 $3"; $H bar "$1" write BAR0 "$2" "$3" -w 1 >/dev/null || fail "write $2 on $1"; }
reg_r() { _r=$($H bar "$1" read BAR0 "$2" -w 1 --json) || fail "read $2 on $1"; echo "$_r" | json_num value; }
state_of() { $H state "$1" --json | json_str initial; }

# load DEV SCR BYTE...: FIFO on and cleared, DLAB clear, BYTEs written to THR (mtty keeps
# them in its loopback FIFO), SCR set.
load() {
    _d=$1; _s=$2; shift 2
    reg_w "$_d" 2 0x07
    reg_w "$_d" 3 0x03
    for _b in "$@"; do reg_w "$_d" 0 "$_b"; done
    reg_w "$_d" 7 "$_s"
}

# check DEV SCR BYTE...: SCR and the FIFO contents in order, then the FIFO is empty (LSR.DR).
check() {
    _d=$1; _s=$2; shift 2
    expect_eq "$_d scratch" "$(reg_r "$_d" 7)" "$_s"
    for _b in "$@"; do
        expect_eq "$_d LSR data-ready before byte $_b" $(( $(reg_r "$_d" 5) & 1 )) 1
        expect_eq "$_d FIFO byte" "$(reg_r "$_d" 0)" "$_b"
    done
    expect_eq "$_d LSR data-ready after draining" $(( $(reg_r "$_d" 5) & 1 )) 0
}

usable() {
    expect_eq "$1 state" "$(state_of "$1")" RUNNING
    reg_w "$1" 7 0x3c
    expect_eq "$1 scratch after write" "$(reg_r "$1" 7)" 60
}

# 1. Live migration A -> B.
load "$MTTY_A" 0x5a 0x11 0x22 0x33 0x44 0x55
run_out out $H migrate "$MTTY_A" "$MTTY_B" --json
echo "$out" >/tmp/mtty-migrate.json
expect_eq "source after migrate" "$(state_of "$MTTY_A")" RUNNING
expect_eq "destination after migrate" "$(state_of "$MTTY_B")" RUNNING
check "$MTTY_B" 90 17 34 51 68 85

# 2. save A -> file -> restore into C.
load "$MTTY_A" 0xa5 0x61 0x62 0x63
run_out out $H save "$MTTY_A" -o /tmp/a.vfs --json
echo "$out" >/tmp/mtty-save.json
expect_eq "source after save" "$(state_of "$MTTY_A")" RUNNING
ls -la /tmp/ | grep -q '\.a\.vfs\.tmp' && fail "temporary file left behind"
run_out out $H restore "$MTTY_C" -i /tmp/a.vfs --json
echo "$out" >/tmp/mtty-restore.json
check "$MTTY_C" 165 97 98 99
# The source still holds its own bytes (saving does not consume them).
check "$MTTY_A" 165 97 98 99

# 3. A flipped byte in the middle of the file is refused; C stays RUNNING and usable.
size=$(wc -c </tmp/a.vfs)
cp /tmp/a.vfs /tmp/flip.vfs
at=$((size - 40))
b=$(od -An -tu1 -j "$at" -N1 /tmp/flip.vfs | tr -d ' ')
printf "\\$(printf %o $((b ^ 255)))" | dd of=/tmp/flip.vfs bs=1 seek="$at" conv=notrunc 2>/dev/null
cmp -s /tmp/a.vfs /tmp/flip.vfs && fail "the byte flip did not change the file"
must_fail $H restore "$MTTY_C" -i /tmp/flip.vfs 2>/tmp/err; cat /tmp/err
grep -q "corrupt" /tmp/err || fail "the error does not say the file is corrupt"
usable "$MTTY_C"

# 4. A truncated file is refused; C stays RUNNING and usable.
head -c $((size - 5)) /tmp/a.vfs >/tmp/trunc.vfs
must_fail $H restore "$MTTY_C" -i /tmp/trunc.vfs 2>/tmp/err; cat /tmp/err
grep -q "truncated" /tmp/err || fail "the error does not say the file is truncated"
usable "$MTTY_C"

# 5. A foreign file and a stream of another mdev type are refused before touching the device.
head -c 4096 /bin/busybox >/tmp/foreign.vfs
must_fail $H restore "$MTTY_C" -i /tmp/foreign.vfs 2>/tmp/err; cat /tmp/err
grep -q "not a vfio-harness state stream" /tmp/err || fail "foreign file not named as such"
usable "$MTTY_C"
if [ -n "$MTTY_D" ]; then
    must_fail $H restore "$MTTY_D" -i /tmp/a.vfs 2>/tmp/err; cat /tmp/err
    grep -q "mdev type" /tmp/err || fail "type mismatch not reported"
    usable "$MTTY_D"
fi

# The same file still restores after all the refusals.
run $H restore "$MTTY_C" -i /tmp/a.vfs
check "$MTTY_C" 165 97 98 99

echo "migrate report:"; cat /tmp/mtty-migrate.json
echo "save report:"; cat /tmp/mtty-save.json
echo "restore report:"; cat /tmp/mtty-restore.json
echo "state walk:"; $H state "$MTTY_A" PRE_COPY STOP_COPY RUNNING || true
