# The link fault campaign across the pair: mtty migrates from the source guest to `receive`
# in the destination guest through the fault proxy, which cuts (or stalls) the link at byte
# offsets taken from a clean run's frame trace: in the handshake (HELLO, ACCEPT), in the state
# stream (stream header, pre-copy chunk, stop-copy chunk, trailer), at END, READY, COMMIT and
# ACK, in both directions. Before each run the source's UART gets its own bytes; after it:
# - the source exits 75 (link fault before the commit) or, exactly when the proxy saw the
#   source's COMMIT, 76 (commit sent, not acknowledged), is RUNNING, and its UART bytes are
#   the ones it had (state intact);
# - the destination is RUNNING; when the whole COMMIT crossed, it runs the source's state
#   (its scratch register equals the source's).
# It ends with "campaign: N faults ..., N sources RUNNING intact, N destinations RUNNING".
. /etc/vfioh/lib.sh
. /etc/vfioh/pair.sh
need MTTY_A
D=$MTTY_A
T=4
if [ "$ROLE" = source ]; then
    uart_load $D 7 1 2 3
    ship trace -- $D --timeout $T --precopy-rounds 2
    expect_eq "clean run exit" "$RC" 0
    hear res
    expect_eq "clean run: destination" "$(word 3 "$res") $(word 4 "$res")" "0 RUNNING"
    grep -q '^chunk up [0-9]* dev0 PREC' /tmp/mig-trace.err || fail "no pre-copy chunk in the clean run"
    grep -q '^chunk up [0-9]* dev0 STOP' /tmp/mig-trace.err || fail "no stop-copy chunk in the clean run"
    awk '
        function p(s) { print s }
        $1 == "frame" { d = $2; o = $3; k = $4; split($6, a, "="); L = a[2]
            if (d == "up" && k == "HELLO") { p("cut up 0"); p("cut up 4"); p("cut up " o + 8 + int(L / 2)) }
            if (d == "up" && k == "DATA" && !data) { data = 1; p("cut up " o); p("cut up " o + 8 + 10) }
            if (d == "up" && k == "END") { p("cut up " o); p("cut up " o + 4) }
            if (d == "up" && k == "COMMIT") { p("cut up " o); p("cut up " o + 4); p("cut up " o + 7) }
            if (d == "down" && k == "ACCEPT") { p("cut down 0"); p("cut down 4"); p("cut down " o + 8 + int(L / 2)) }
            if (d == "down" && k == "READY") { p("cut down " o); p("cut down " o + 4); p("stall down " o) }
            if (d == "down" && k == "ACK") { p("cut down " o); p("cut down " o + 4); p("cut down " o + 8 + int(L / 2)); p("cut down " o + 8 + L - 16) }
        }
        $1 == "chunk" && $2 == "up" { o = $3; t = $5; split($6, a, "="); L = a[2]
            if (t == "PREC" && !prec) { prec = 1; p("cut up " o + 4); p("cut up " o + 24 + int(L / 2)); p("cut up " o + 24 + L - 1) }
            if (t == "STOP" && !stop) { stop = 1; p("cut up " o); p("cut up " o + 24 + int(L / 2)); p("stall up " o + 24 + int(L / 2)) }
            if (t == "TRLR") p("cut up " o + 10)
        }' /tmp/mig-trace.err >/tmp/points
    n=$(wc -l </tmp/points)
    [ "$n" -ge 20 ] || fail "only $n fault points from the trace"
    tell "points $n"
    i=0; cuts=0; stalls=0; src_ok=0; dst_ok=0; c75=0; c76=0
    while read -r f dir at; do
        i=$((i + 1))
        scr=$((i + 100)); b1=$((i + 1)); b2=$((i + 2)); b3=$((i + 3))
        uart_load $D $scr $b1 $b2 $b3
        ship c$i --fault "$f" --dir "$dir" --at "$at" -- $D --timeout $T --precopy-rounds 2
        fl=$(grep -m1 '^fault' /tmp/mig-c$i.err) || fail "point $i ($f $dir $at): the proxy never got there"
        case "$fl" in *"commit sent"*) want=76 ;; *) want=75 ;; esac
        expect_eq "point $i ($fl): source exit" "$RC" "$want"
        expect_eq "point $i: source state" "$(state_of $D)" RUNNING
        expect_eq "point $i: source UART (state intact)" "$(uart_read $D)" "$scr $b1 $b2 $b3"
        src_ok=$((src_ok + 1))
        hear res
        expect_eq "point $i: destination state" "$(word 4 "$res")" RUNNING
        case "$fl" in *"commit sent, forwarded"*)
            expect_eq "point $i: committed destination runs the source's scratch" "$(word 5 "$res")" "$scr" ;;
        esac
        dst_ok=$((dst_ok + 1))
        [ "$f" = stall ] && stalls=$((stalls + 1)) || cuts=$((cuts + 1))
        [ "$RC" = 75 ] && c75=$((c75 + 1)) || c76=$((c76 + 1))
        echo "CUT $i: $f $dir at $at, ${fl#*: } | source exit $RC, RUNNING, UART intact | destination exit $(word 3 "$res"), RUNNING"
    done </tmp/points
    echo "campaign: $i faults ($cuts cuts, $stalls stalls; $c75 exit 75, $c76 exit 76), $src_ok sources RUNNING with their UART bytes intact, $dst_ok destinations RUNNING"
    expect_eq "faults = points" "$i" "$n"
else
    serve trace $D --timeout $T
    tell "res trace $RC $(state_of $D)"
    hear pts
    n=$(word 2 "$pts")
    i=0
    while [ $i -lt "$n" ]; do
        i=$((i + 1))
        serve c$i $D --timeout $T
        tell "res $i $RC $(state_of $D) $(reg_r $D 7)"
    done
fi
echo PASS
