# shellcheck shell=bash
# The pair bed (tests/vm/run --pair): two guests, a migration source and a destination, each
# with its own kernel and devices, joined by a virtio-net link (QEMU `-netdev socket` on
# 127.0.0.1). Sourced by tests/vm/run after it built the initramfs and the QEMU command line
# ($qemu, $append, $timeout_s, $OUT, $flavour).

# Ports with a listener on this machine (IPv4 and IPv6), one per line, decimal.
_vm_listening_ports() {
    local f addr st
    for f in /proc/net/tcp /proc/net/tcp6; do
        [ -r "$f" ] || continue
        while read -r _ addr _ st _; do
            [ "$st" = 0A ] && echo $((16#${addr##*:}))
        done < <(tail -n +2 "$f")
    done | sort -u
}

# _vm_pair_cmd ROLE SELF_IP PEER_IP NETDEV: prints the guest's QEMU arguments, NUL separated.
_vm_pair_cmd() {
    local role=$1 self=$2 peer=$3 netdev=$4 mac skip=
    mac=52:54:00:f0:00:0$([ "$role" = source ] && echo 1 || echo 2)
    for a in "${qemu[@]}"; do
        if [ -n "$skip" ]; then
            case $skip in
                mem) printf '%s\0' "${VM_MEM:-3G}" ;;
                append) printf '%s\0' "$a vfioh.role=$role vfioh.ip=$self vfioh.peer=$peer" ;;
            esac
            skip=; continue
        fi
        case $a in
            -m) skip=mem ;;
            -append) skip=append ;;
        esac
        printf '%s\0' "$a"
    done
    printf '%s\0' -netdev "$netdev" -device "virtio-net-pci,netdev=n0,mac=$mac" \
        -serial stdio -monitor none -pidfile "$OUT/qemu-$role.pid"
}

# Boots guest ROLE with NETDEV in the background; its console goes to LOG. Sets VM_PAIR_PID.
_vm_pair_boot() {
    local role=$1 netdev=$2 log=$3 self peer
    if [ "$role" = source ]; then self=10.0.2.1; peer=10.0.2.2; else self=10.0.2.2; peer=10.0.2.1; fi
    local cmd=()
    while IFS= read -r -d '' a; do cmd+=("$a"); done < <(_vm_pair_cmd "$role" "$self" "$peer" "$netdev")
    (
        set +e
        timeout -k 10 "$timeout_s" "${cmd[@]}" </dev/null >"$log" 2>&1
        echo $? >"$log.rc"
    ) &
    VM_PAIR_PID=$!
}

# Stops guest ROLE (started by _vm_pair_boot as PID): its QEMU, through `timeout`.
_vm_pair_stop() {
    local role=$1 pid=$2
    kill "$(cat "$OUT/qemu-$role.pid" 2>/dev/null)" 2>/dev/null || pkill -TERM -P "$pid" 2>/dev/null || true
}

# Waits for both guests (PIDs SPID, DPID; consoles SLOG, DLOG). A guest whose kernel crashed
# before the bed's scenarios started cannot take part: its peer would wait for it until the
# scenario timed out, so the peer is stopped at once.
_vm_pair_wait() {
    local spid=$1 dpid=$2 slog=$3 dlog=$4
    while kill -0 "$spid" 2>/dev/null || kill -0 "$dpid" 2>/dev/null; do
        if [ -f "$slog.rc" ] && [ ! -f "$dlog.rc" ] && vm_crashed_before_scenarios "$slog"; then
            vm_log "pair: the source guest's kernel crashed before the bed's scenarios started: stopping the destination"
            _vm_pair_stop destination "$dpid"
        elif [ -f "$dlog.rc" ] && [ ! -f "$slog.rc" ] && vm_crashed_before_scenarios "$dlog"; then
            vm_log "pair: the destination guest's kernel crashed before the bed's scenarios started: stopping the source"
            _vm_pair_stop source "$spid"
        fi
        sleep 1
    done
    wait "$spid" "$dpid" 2>/dev/null || true
}

# Boots the pair once (the source listens on a free port of 127.0.0.1, the destination
# connects) and follows both consoles until both guests ended.
_vm_pair_once() {
    local slog=$1 dlog=$2 port= tries=0 spid dpid
    rm -f "$slog" "$slog.rc" "$dlog" "$dlog.rc" "$OUT"/qemu-*.pid
    # A free port: not listening now, and the source's QEMU must bind it (another bed may
    # take the same one between the check and the bind; then pick again).
    while [ -z "$port" ]; do
        tries=$((tries + 1))
        [ $tries -le 10 ] || vm_die "could not bind a port for the pair's link"
        local cand=$(( 20000 + (RANDOM * 32768 + RANDOM) % 40000 ))
        _vm_listening_ports | grep -qx "$cand" && continue
        rm -f "$slog" "$slog.rc" "$OUT/qemu-source.pid"
        _vm_pair_boot source "socket,id=n0,listen=127.0.0.1:$cand" "$slog"
        spid=$VM_PAIR_PID
        # QEMU binds before it starts the guest: wait (bounded) until the port listens or
        # QEMU gave up.
        local waited=0
        while [ $waited -lt 300 ]; do
            if [ -f "$slog.rc" ]; then break; fi
            if _vm_listening_ports | grep -qx "$cand"; then port=$cand; break; fi
            sleep 0.1; waited=$((waited + 1))
        done
        if [ -z "$port" ]; then
            vm_log "port $cand: $(tr -d '\r' <"$slog" | head -n 3)"
            # Still running but not listening: stop it before drawing again.
            [ -f "$slog.rc" ] || _vm_pair_stop source "$spid"
            wait "$spid" 2>/dev/null || true
        fi
    done
    vm_log "pair: source guest listens on 127.0.0.1:$port (log $slog)"
    _vm_pair_boot destination "socket,id=n0,connect=127.0.0.1:$port" "$dlog"
    dpid=$VM_PAIR_PID
    vm_log "pair: destination guest connected (log $dlog); timeout ${timeout_s}s"
    # Progress: result lines of both guests, as they come.
    local f1 f2 pat='VFIOH (BOOT|PASS|FAIL|SKIP|LOG)|Kernel panic'
    [ "${VM_VERBOSE:-0}" = 1 ] && pat=.
    tail -n +1 -F --pid="$spid" "$slog" 2>/dev/null | grep -a --line-buffered -E "$pat" | sed -u 's/^/[source] /' >&2 &
    f1=$!
    tail -n +1 -F --pid="$dpid" "$dlog" 2>/dev/null | grep -a --line-buffered -E "$pat" | sed -u 's/^/[destination] /' >&2 &
    f2=$!
    _vm_pair_wait "$spid" "$dpid" "$slog" "$dlog"
    # The followers end with their guest (tail --pid), after its last lines.
    wait "$f1" "$f2" 2>/dev/null || true
}

# Boots the pair, prints both verdicts and the pair's. A pair one of whose guest kernels
# crashed before the bed's scenarios started is booted again, at most VM_BOOT_RETRIES times
# (default 1; both consoles kept beside the logs), as a single guest is. Returns 0 when both
# guests passed every scenario and agree.
vm_pair_run() {
    local slog="$OUT/console-pair-source.log" dlog="$OUT/console-pair-dest.log"
    local boot_start boots boot log
    boot_start=$(date +%s)
    boots=$(( ${VM_BOOT_RETRIES:-1} + 1 ))
    for boot in $(seq 1 "$boots"); do
        _vm_pair_once "$slog" "$dlog"
        if [ "$boot" -lt "$boots" ] && { vm_crashed_before_scenarios "$slog" || vm_crashed_before_scenarios "$dlog"; }; then
            for log in "$slog" "$dlog"; do
                mv "$log" "$log.crashed-boot-$boot"
                mv "$log.rc" "$log.rc.crashed-boot-$boot"
            done
            vm_log "pair: a guest kernel crashed before the bed's scenarios started ($(cat "$slog.crashed-boot-$boot" "$dlog.crashed-boot-$boot" | grep -a -m1 -E "$VM_CRASH_RE" | tr -d '\r')): booting the pair again (consoles kept in $slog.crashed-boot-$boot, $dlog.crashed-boot-$boot)"
            continue
        fi
        break
    done
    vm_log "pair run: $(( $(date +%s) - boot_start ))s, bed total: $(( $(date +%s) - bed_start ))s"
    local ok=0 src dst
    echo "== pair bed: source guest ($flavour flavour) =="
    vm_verdict "$slog" "$(cat "$slog.rc" 2>/dev/null || echo 1)" "$timeout_s" || ok=1
    echo "== pair bed: destination guest =="
    vm_verdict "$dlog" "$(cat "$dlog.rc" 2>/dev/null || echo 1)" "$timeout_s" || ok=1
    # Both sides must report the same scenarios, each PASS on both.
    src=$(grep -a -o 'VFIOH \(PASS\|FAIL\|SKIP\) [^ :]*' "$slog" | awk '{print $3, $2}' | sort)
    dst=$(grep -a -o 'VFIOH \(PASS\|FAIL\|SKIP\) [^ :]*' "$dlog" | awk '{print $3, $2}' | sort)
    echo "== pair verdict =="
    if [ -z "$src" ] || [ "$src" != "$dst" ]; then
        echo "BED ERROR: the two guests disagree:"
        diff <(echo "$src") <(echo "$dst") | sed 's/^/  /'
        ok=1
    fi
    local name verdict
    while read -r name verdict; do
        [ -n "$name" ] || continue
        echo "$name: source $verdict, destination $(echo "$dst" | awk -v n="$name" '$1 == n {print $2}')"
    done <<<"$src"
    [ $ok = 0 ] && { echo "pair: both guests passed"; return 0; }
    echo "(console logs: $slog $dlog)"
    return 1
}
