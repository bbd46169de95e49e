# Helpers for the pair bed's scenarios (tests/vm/scenarios/pair, busybox sh), after lib.sh:
#   . /etc/vfioh/lib.sh; . /etc/vfioh/pair.sh
# Both guests run the same scenario; ROLE (source / destination) says which half.
# SELF_IP, PEER_IP: this guest's and the other guest's address on the link.
# Synchronisation is message passing on a control port (fault_proxy send / recv): `tell`
# retries its connect until the peer listens (bounded by PAIR_WAIT seconds); `hear` waits
# (bounded) for the peer's next line. A scenario alternates them strictly.
[ -n "$ROLE" ] || skip "not a pair guest (run with tests/vm/run --pair --flavour debian)"
[ -n "$NIC" ] || fail "the link to the peer guest is not up"
CTL=7000
MIG=4444
PAIR_WAIT=${PAIR_WAIT:-240}
# fail MSG: as in lib.sh, and the peer, if it waits in `hear`, learns it at once (best effort).
fail() {
    echo "FAIL: $*"
    fault_proxy send --to "$PEER_IP:$CTL" --msg "abort: the $ROLE failed: $*" --timeout 3 >/dev/null 2>&1
    exit 1
}
# tell WORDS...: sends one line to the peer.
tell() { echo "> tell: $*"; fault_proxy send --to "$PEER_IP:$CTL" --msg "$*" --timeout "$PAIR_WAIT" || fail "the peer did not take '$*'"; }
# hear VAR: the peer's next line, into VAR.
hear() {
    _h=$(fault_proxy recv --listen "0.0.0.0:$CTL" --timeout "$PAIR_WAIT") || fail "the peer said nothing within ${PAIR_WAIT}s"
    echo "< heard: $_h"
    case "$_h" in "abort: "*) echo "FAIL: ${_h#abort: }"; exit 1 ;; esac
    eval "$1=\$_h"
}
# word N LINE: the Nth word of LINE.
word() { echo "$2" | awk -v n="$1" '{print $n}'; }
# serve TAG [RECEIVE ARGS...]: on the destination, runs `vfio-harness receive ... --listen
# 0.0.0.0:$MIG --insecure` and tells the source "ready TAG" once it listens; sets RC (its exit
# code) and leaves its stdout in /tmp/recv-TAG.out and stderr in /tmp/recv-TAG.err.
serve() {
    _t=$1; shift
    echo "+ receive $* (tag $_t)"
    fault_proxy notify --to "$PEER_IP:$CTL" --msg "ready $_t" --timeout "$PAIR_WAIT" -- \
        vfio-harness receive "$@" --listen "0.0.0.0:$MIG" --insecure >/tmp/recv-$_t.out 2>/tmp/recv-$_t.err
    RC=$?
    echo "receive exit $RC"; cat /tmp/recv-$_t.err
}
# ship TAG PROXY_ARGS -- MIGRATE_ARGS...: on the source, waits for "ready TAG", then runs
# `vfio-harness migrate MIGRATE_ARGS tcp://127.0.0.1:5000 --insecure` through the fault proxy
# (127.0.0.1:5000 -> the peer's receive); sets RC, stdout in /tmp/mig-TAG.out, stderr (the
# harness's and the proxy's frame trace) in /tmp/mig-TAG.err.
ship() {
    _t=$1; shift
    _p=
    while [ $# -gt 0 ] && [ "$1" != -- ]; do _p="$_p $1"; shift; done
    shift
    hear _r
    [ "$_r" = "ready $_t" ] || fail "expected 'ready $_t' from the destination, got '$_r'"
    _dev=$1; shift
    echo "+ migrate $_dev tcp://127.0.0.1:5000 $* (proxy:$_p)"
    fault_proxy proxy --listen 127.0.0.1:5000 --to "$PEER_IP:$MIG" $_p -- \
        vfio-harness migrate "$_dev" tcp://127.0.0.1:5000 --insecure "$@" >/tmp/mig-$_t.out 2>/tmp/mig-$_t.err
    RC=$?
    echo "migrate exit $RC"
    grep -v '^frame up [0-9]* DATA\|^chunk up [0-9]* dev[0-9]* PREC\|^chunk up [0-9]* dev[0-9]* STOP' /tmp/mig-$_t.err
}

# mtty UART registers (offsets in BAR0): 0 THR/RBR, 2 FCR, 3 LCR, 5 LSR, 7 SCR.
reg_w() { vfio-harness bar "$1" write BAR0 "$2" "$3" -w 1 >/dev/null || fail "write $2 on $1"; }
reg_r() { _r=$(vfio-harness bar "$1" read BAR0 "$2" -w 1 --json) || fail "read $2 on $1"; echo "$_r" | json_num value; }
state_of() { vfio-harness state "$1" --json | json_str initial; }
# uart_load DEV SCR BYTE...: FIFO on and cleared, DLAB clear, BYTEs into the loopback FIFO,
# SCR set (decimal or 0x values).
uart_load() {
    _d=$1; _s=$2; shift 2
    reg_w "$_d" 2 0x07; reg_w "$_d" 3 0x03
    for _b in "$@"; do reg_w "$_d" 0 "$_b"; done
    reg_w "$_d" 7 "$_s"
}
# uart_read DEV: prints "SCR BYTE..." (decimal): the scratch register, then the FIFO drained
# while LSR says data ready (at most 64 bytes).
uart_read() {
    _o=$(reg_r "$1" 7); _n=0
    while [ $(( $(reg_r "$1" 5) & 1 )) = 1 ] && [ $_n -lt 64 ]; do
        _o="$_o $(reg_r "$1" 0)"; _n=$((_n + 1))
    done
    echo "$_o"
}
