# mtty across the link: UART bytes written into the source guest's mtty (scratch register
# and loopback FIFO) come out of the destination guest's mtty after `migrate SRC tcp://`
# through the fault proxy to `receive --listen` in the other guest; the source is RUNNING
# with its bytes intact. Then the proxy flips one byte of a state chunk in flight: the
# destination refuses the stream (its checksum), the source exits 77 (refused) with its
# bytes intact, the destination is RUNNING. Last, two mttys in one migration (`--with`):
# mtty has the P2P states, so both are quiesced together (the report says `p2p`), and each
# one's bytes come out of its own destination.
. /etc/vfioh/lib.sh
. /etc/vfioh/pair.sh
need MTTY_A MTTY_B
if [ "$ROLE" = source ]; then
    want="90 17 34 51 68 85 102 119"
    uart_load "$MTTY_A" 90 17 34 51 68 85 102 119
    ship link -- "$MTTY_A" --timeout 20 --json
    expect_eq "migrate exit" "$RC" 0
    cat /tmp/mig-link.out
    expect_eq "source state" "$(state_of "$MTTY_A")" RUNNING
    expect_eq "source UART after migrating" "$(uart_read "$MTTY_A")" "$want"
    hear got
    expect_eq "destination receive exit" "$(word 2 "$got")" 0
    expect_eq "destination state" "$(word 3 "$got")" RUNNING
    expect_eq "UART bytes read back on the destination" "$(echo "$got" | cut -d' ' -f4-)" "$want"
    echo "wrote on the source: $want"
    # A payload byte of the first state chunk, flipped by the proxy.
    c=$(grep -m1 '^chunk up [0-9]* dev0 \(PREC\|STOP\)' /tmp/mig-link.err) || fail "no state chunk in the trace"
    at=$(( $(word 3 "$c") + 24 + $(word 6 "$c" | sed 's/len=//') / 2 ))
    uart_load "$MTTY_A" 165 97 98 99
    ship flip --fault flip --dir up --at "$at" -- "$MTTY_A" --timeout 20
    expect_eq "migrate exit with a flipped byte (refused)" "$RC" 77
    grep -q 'corrupt\|checksum' /tmp/mig-flip.err || fail "the refusal does not name the corruption"
    grep '^fault flip' /tmp/mig-flip.err || fail "the proxy did not flip"
    expect_eq "source state" "$(state_of "$MTTY_A")" RUNNING
    expect_eq "source UART after the refusal" "$(uart_read "$MTTY_A")" "165 97 98 99"
    hear res
    expect_eq "destination state after refusing" "$(word 3 "$res")" RUNNING
    [ "$(word 2 "$res")" != 0 ] || fail "the destination's receive succeeded with a flipped byte"
    # A group of two, P2P-quiesced together.
    uart_load "$MTTY_A" 17 1 2 3
    uart_load "$MTTY_B" 34 4 5 6 7
    ship group -- "$MTTY_A" --with "$MTTY_B" --timeout 20 --json
    expect_eq "migrate exit (two devices)" "$RC" 0
    cat /tmp/mig-group.out
    expect_eq "moved together through the P2P states" "$(json_bool p2p </tmp/mig-group.out)" true
    expect_eq "source A UART after the group" "$(uart_read "$MTTY_A")" "17 1 2 3"
    expect_eq "source B UART after the group" "$(uart_read "$MTTY_B")" "34 4 5 6 7"
    hear grp
    expect_eq "destination receive exit (two devices)" "$(word 2 "$grp")" 0
    expect_eq "destination A, B states" "$(word 3 "$grp") $(word 4 "$grp")" "RUNNING RUNNING"
    expect_eq "UART bytes on destination A | B" "$(echo "$grp" | cut -d' ' -f5-)" "17 1 2 3 | 34 4 5 6 7"
else
    serve link "$MTTY_A" --timeout 20 --json
    cat /tmp/recv-link.out
    st=$(state_of "$MTTY_A")
    got=$(uart_read "$MTTY_A")
    echo "read back on the destination: $got"
    tell "got $RC $st $got"
    serve flip "$MTTY_A" --timeout 20
    grep -q 'corrupt\|checksum' /tmp/recv-flip.err || fail "receive does not name the corruption"
    tell "res $RC $(state_of "$MTTY_A")"
    serve group "$MTTY_A" "$MTTY_B" --timeout 20 --json
    cat /tmp/recv-group.out
    tell "grp $RC $(state_of "$MTTY_A") $(state_of "$MTTY_B") $(uart_read "$MTTY_A") | $(uart_read "$MTTY_B")"
fi
echo PASS
