# The command-line contract on a real mtty device (no VFIO_DEVICE_FLAGS_RESET: RESUMING cannot
# be aborted, so restore verifies a whole stream before the device sees it): streams through
# pipes and FIFOs; SIGTERM, SIGINT and SIGHUP while a restore or save waits on a pipe or a
# FIFO end the command within a second with 143/130/129, the device RUNNING and no temporary
# file; odd targets (/dev/full, a FIFO) are written directly and never replaced.
. /etc/vfioh/lib.sh
need MTTY_A MTTY_C
H=vfio-harness

state_of() { $H state "$1" --json | json_str initial; }
scratch() { $H bar "$1" read BAR0 7 -w 1 --json | json_num value; }
no_temp() { ls -a "$1" | grep -q '^\.vfh-\|\.tmp-' && fail "temporary file left in $1"; return 0; }

# blocked PID: waits (up to 30 s) until a thread of PID sleeps in poll(2) (x86-64 syscall 7,
# or ppoll 271): where a read or write on a pipe or FIFO, or a FIFO's open, waits.
blocked() {
    _i=0
    while [ $_i -lt 300 ]; do
        cut -d' ' -f1 /proc/"$1"/task/*/syscall 2>/dev/null | grep -qx '7\|271' && return 0
        sleep 0.1; _i=$((_i + 1))
    done
    cat /proc/"$1"/task/*/syscall /proc/"$1"/task/*/wchan 2>/dev/null
    fail "process $1 never blocked"
}

# ends_within PID: the process is gone within 2 s (TCG is slow; the contract is 1 s).
ends_within() {
    _i=0
    while [ -d /proc/"$1" ] && [ $_i -lt 20 ]; do sleep 0.1; _i=$((_i + 1)); done
    [ -d /proc/"$1" ] && fail "process $1 still running 2 s after the signal"
    return 0
}

# 1. save | restore through a pipe; the FIFO and stdin paths read once. A's scratch register
# (part of mtty's migration state) carries a marker; C's is cleared before each restore.
run $H bar "$MTTY_A" write BAR0 7 0x6b -w 1
run $H save "$MTTY_A" -o /tmp/c.vfs
expect_eq "new state file mode" "$(stat -c %a /tmp/c.vfs)" 600
run $H bar "$MTTY_C" write BAR0 7 0 -w 1
echo "+ save $MTTY_A -o - | restore $MTTY_C -i -"
$H save "$MTTY_A" -o - | $H restore "$MTTY_C" -i - || fail "save | restore"
expect_eq "C after a piped restore" "$(state_of "$MTTY_C")" RUNNING
expect_eq "C's scratch after a piped restore" "$(scratch "$MTTY_C")" $((0x6b))
# Both ends grow the shell's 64 KiB pipe to one 1 MiB buffer, and say so.
run $H bar "$MTTY_C" write BAR0 7 0 -w 1
echo "+ save $MTTY_A -o - --json | restore $MTTY_C -i - --json"
$H save "$MTTY_A" -o - --json 2>/tmp/ps.json | $H restore "$MTTY_C" -i - --json >/tmp/pr.json \
    || fail "save | restore, --json"
expect_eq "save's pipe capacity" "$(json_num pipe_capacity_bytes </tmp/ps.json)" 1048576
expect_eq "restore's pipe capacity" "$(json_num pipe_capacity_bytes </tmp/pr.json)" 1048576
expect_eq "C's scratch after a piped restore, --json" "$(scratch "$MTTY_C")" $((0x6b))
run $H bar "$MTTY_C" write BAR0 7 0 -w 1
rm -f /tmp/in; mkfifo /tmp/in
cat /tmp/c.vfs >/tmp/in &
run $H restore "$MTTY_C" -i /tmp/in
expect_eq "C's scratch after a restore from a FIFO" "$(scratch "$MTTY_C")" $((0x6b))

# 2. A restore waiting on a stalled pipe: SIGTERM.
(head -c 100 /tmp/c.vfs; sleep 30) >/tmp/in &
feeder=$!
$H restore "$MTTY_C" -i /tmp/in --json >/tmp/r.json 2>/tmp/err &
pid=$!
blocked $pid
kill -TERM $pid
ends_within $pid
wait $pid; rc=$?
kill $feeder 2>/dev/null
cat /tmp/r.json
expect_eq "restore exit after SIGTERM" $rc 143
expect_eq "error kind" "$(json_str kind </tmp/r.json)" interrupted
expect_eq "C after SIGTERM" "$(state_of "$MTTY_C")" RUNNING

# 3. The same with SIGHUP (an ssh drop) on stdin.
(head -c 100 /tmp/c.vfs; sleep 30) | { $H restore "$MTTY_C" -i - 2>/tmp/err; echo $? >/tmp/rc; } &
pid=; _i=0
while [ -z "$pid" ] && [ $_i -lt 300 ]; do
    pid=$(pidof vfio-harness | cut -d' ' -f1); [ -n "$pid" ] || sleep 0.1; _i=$((_i + 1))
done
[ -n "$pid" ] || fail "restore did not start"
blocked "$pid"
kill -HUP "$pid"
ends_within "$pid"
wait
expect_eq "restore exit after SIGHUP" "$(cat /tmp/rc)" 129
# 129 is also what the shell reports for a process SIGHUP's default action killed: the
# harness's own report is what shows that its handler ran (and recovered the device).
cat /tmp/err
grep -q "^interrupted" /tmp/err || fail "no 'interrupted' report after SIGHUP: the harness did not handle the signal (killed by its default action?)"
expect_eq "C after SIGHUP" "$(state_of "$MTTY_C")" RUNNING

# 4. A save into a FIFO nobody reads: SIGINT while the open waits; A untouched.
rm -f /tmp/out; mkfifo /tmp/out
$H save "$MTTY_A" -o /tmp/out 2>/tmp/err &
pid=$!
blocked $pid
kill -INT $pid
ends_within $pid
wait $pid; rc=$?
expect_eq "save exit after SIGINT" $rc 130
expect_eq "A after SIGINT" "$(state_of "$MTTY_A")" RUNNING
[ -p /tmp/out ] || fail "the FIFO was replaced"
no_temp /tmp

# 5. Odd targets: /dev/full fails and stays a device; the source stays RUNNING.
must_fail $H save "$MTTY_A" -o /dev/full --json >/tmp/e.json
cat /tmp/e.json
expect_eq "error kind on /dev/full" "$(json_str kind </tmp/e.json)" io
[ -c /dev/full ] || fail "/dev/full was replaced"
expect_eq "A after /dev/full" "$(state_of "$MTTY_A")" RUNNING
no_temp /tmp

# 6. A truncated input, as JSON, leaves C RUNNING and untouched; the good file then restores.
run $H bar "$MTTY_C" write BAR0 7 0x11 -w 1
head -c 200 /tmp/c.vfs >/tmp/t.vfs
must_fail $H restore "$MTTY_C" -i /tmp/t.vfs --json >/tmp/e.json
expect_eq "error kind, truncated" "$(json_str kind </tmp/e.json)" stream-corrupt
expect_eq "C state in the error report" "$(json_str state </tmp/e.json)" RUNNING
expect_eq "C's scratch after the refused restore" "$(scratch "$MTTY_C")" $((0x11))
run $H restore "$MTTY_C" -i /tmp/c.vfs
expect_eq "C's scratch after the good restore" "$(scratch "$MTTY_C")" $((0x6b))
