# shellcheck shell=bash
# Parses the guest console log into a verdict. Sourced by tests/vm/run (and its tests).
#
# vm_verdict LOG QEMU_RC TIMEOUT_S
#   Prints one line per scenario and the closing "N passed, N failed, N skipped" line,
#   returns 0 only when the guest reported its closing line, every scenario passed or
#   skipped, the counts agree, QEMU exited cleanly, and the kernel did not panic.
# What a kernel crash looks like on the console.
VM_CRASH_RE='Kernel panic|BUG: |Oops: |general protection fault|hardware error'

# vm_crashed_before_scenarios LOG
#   Returns 0 when the guest kernel crashed before the bed's init printed its READY line,
#   the last thing it prints before the first scenario starts: no harness command had run,
#   so nothing of the harness can have caused it. Under TCG the kernel patching its own text
#   across vCPUs has crashed a boot this way, before init and while init loaded modules
#   (hw-notes/bed.md). A crash while init loaded the test modules or created the devices is
#   counted too; if it is not a flake it happens again on every boot, and the last boot is
#   never retried.
vm_crashed_before_scenarios() {
    grep -a -q -E "$VM_CRASH_RE" "$1" && ! grep -a -q 'VFIOH READY ' "$1"
}

vm_verdict() {
    local log=$1 rc=$2 timeout_s=$3
    local pass=0 failc=0 skipc=0 problems=()
    local line kind rest
    while IFS= read -r line; do
        line=${line%$'\r'}
        case "$line" in
            *"VFIOH PASS "*) rest=${line#*VFIOH PASS }; echo "PASS $rest"; pass=$((pass + 1)) ;;
            *"VFIOH FAIL "*) rest=${line#*VFIOH FAIL }; echo "FAIL $rest"; failc=$((failc + 1)) ;;
            *"VFIOH SKIP "*) rest=${line#*VFIOH SKIP }; echo "SKIP $rest"; skipc=$((skipc + 1)) ;;
        esac
    done <"$log"
    local done_line
    done_line=$(grep -a -o 'VFIOH DONE [0-9]* passed, [0-9]* failed, [0-9]* skipped' "$log" | tail -n 1)
    if grep -a -q -E "$VM_CRASH_RE" "$log"; then
        problems+=("the guest kernel panicked or oopsed: $(grep -a -m1 -E "$VM_CRASH_RE" "$log" | tr -d '\r')")
    fi
    if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
        problems+=("the guest did not finish within ${timeout_s}s (timeout)")
    elif [ "$rc" != 0 ]; then
        problems+=("qemu exited with status $rc")
    fi
    if [ -z "$done_line" ]; then
        problems+=("the guest never printed its closing line")
    else
        kind=${done_line#VFIOH DONE }
        local gp gf gs
        read -r gp _ gf _ gs _ <<<"${kind//,/}"
        if [ "$gp" != "$pass" ] || [ "$gf" != "$failc" ] || [ "$gs" != "$skipc" ]; then
            problems+=("the guest's counts ($kind) disagree with its result lines")
        fi
    fi
    local p
    for p in "${problems[@]}"; do echo "BED ERROR: $p"; done
    echo "$pass passed, $((failc + ${#problems[@]})) failed, $skipc skipped"
    [ "$failc" = 0 ] && [ ${#problems[@]} -eq 0 ]
}
