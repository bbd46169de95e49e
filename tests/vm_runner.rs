//! Tests of the real-kernel bed's host runner (`tests/vm/run`): how it turns a guest console
//! into a verdict. QEMU is replaced by small scripts that print a canned console and exit as
//! a guest would (or hang, or panic), and nothing is built (`VM_NO_BUILD=1`).

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;

struct Outcome {
    code: Option<i32>,
    stdout: String,
}

fn run_bed(console_script: &str, extra_args: &[&str]) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("fake-qemu");
    let mut f = std::fs::File::create(&fake).unwrap();
    writeln!(f, "#!/bin/sh\n{console_script}").unwrap();
    drop(f);
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let runner = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vm/run");
    let out = Command::new(runner)
        .args(extra_args)
        .env("VM_NO_BUILD", "1")
        .env("VM_QEMU", &fake)
        .env("VFIO_HARNESS_CACHE", dir.path())
        .env("VM_OUT", dir.path().join("out"))
        .output()
        .unwrap();
    Outcome {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
    }
}

/// Asserts that the runner printed `line` as a line of its own.
fn assert_line(o: &Outcome, line: &str) {
    assert!(
        o.stdout.lines().any(|l| l == line),
        "no line {line:?} in:\n{}",
        o.stdout
    );
}

const GOOD: &str = r#"cat <<'X'
[    0.1] booting
VFIOH BOOT 6.12.117 2 cpu(s)
VFIOH READY 3 scenario(s)
VFIOH PASS alpha (1s)
[    0.2] some kernel noise
VFIOH SKIP beta: no edu device
VFIOH PASS gamma (2s)
VFIOH DONE 2 passed, 0 failed, 1 skipped
X
exit 0"#;

#[test]
fn all_passing_guest_exits_zero_with_closing_line() {
    let o = run_bed(GOOD, &[]);
    assert_eq!(o.code, Some(0), "{}", o.stdout);
    assert!(o.stdout.contains("PASS alpha (1s)"), "{}", o.stdout);
    assert!(
        o.stdout.contains("SKIP beta: no edu device"),
        "{}",
        o.stdout
    );
    assert_line(&o, "2 passed, 0 failed, 1 skipped");
}

#[test]
fn a_failed_scenario_fails_the_bed() {
    let script = GOOD
        .replace(
            "VFIOH PASS gamma (2s)",
            "VFIOH FAIL gamma: register mismatch",
        )
        .replace("2 passed, 0 failed", "1 passed, 1 failed");
    let o = run_bed(&script, &[]);
    assert_eq!(o.code, Some(1), "{}", o.stdout);
    assert!(o.stdout.contains("FAIL gamma: register mismatch"));
    assert_line(&o, "1 passed, 1 failed, 1 skipped");
}

#[test]
fn missing_closing_line_fails_the_bed() {
    let script = GOOD.replace("VFIOH DONE 2 passed, 0 failed, 1 skipped\n", "");
    let o = run_bed(&script, &[]);
    assert_eq!(o.code, Some(1), "{}", o.stdout);
    assert!(
        o.stdout.contains("never printed its closing line"),
        "{}",
        o.stdout
    );
}

#[test]
fn counts_that_disagree_with_result_lines_fail_the_bed() {
    let script = GOOD.replace("VFIOH PASS alpha (1s)\n", "");
    let o = run_bed(&script, &[]);
    assert_eq!(o.code, Some(1), "{}", o.stdout);
    assert!(o.stdout.contains("disagree"), "{}", o.stdout);
}

#[test]
fn a_guest_panic_fails_the_bed_even_with_passes() {
    let script = GOOD.replace(
        "[    0.2] some kernel noise",
        "[    0.2] Kernel panic - not syncing: Attempted to kill init!",
    );
    let o = run_bed(&script, &[]);
    assert_eq!(o.code, Some(1), "{}", o.stdout);
    assert!(o.stdout.contains("panicked"), "{}", o.stdout);
}

/// A fake guest whose kernel prints the lines `before` and crashes on its first `crashes`
/// boots (counted in a file beside the console), then boots as `GOOD` does.
fn crashing_boots(crashes: u32, before: &[&str]) -> String {
    let before: String = before.iter().map(|l| format!("echo '{l}'\n")).collect();
    format!(
        r#"n=$(cat "$VM_OUT/boots" 2>/dev/null || echo 0); n=$((n + 1)); echo $n >"$VM_OUT/boots"
if [ $n -le {crashes} ]; then
{before}echo '[    4.5] Oops: int3: 0000 [#1] PREEMPT SMP NOPTI'
echo '[    4.6] Kernel panic - not syncing: Fatal exception in interrupt'
exit 0
fi
{GOOD}"#
    )
}

#[test]
fn a_kernel_crash_before_init_boots_the_guest_again() {
    let o = run_bed(&crashing_boots(1, &[]), &[]);
    assert_eq!(o.code, Some(0), "{}", o.stdout);
    assert_line(&o, "2 passed, 0 failed, 1 skipped");
}

#[test]
fn a_kernel_crashing_before_init_on_every_boot_fails_the_bed() {
    let o = run_bed(&crashing_boots(2, &[]), &[]);
    assert_eq!(o.code, Some(1), "{}", o.stdout);
    assert!(o.stdout.contains("Oops: int3"), "{}", o.stdout);
}

#[test]
fn a_crash_while_init_loads_modules_boots_the_guest_again() {
    // The crash comes after the BOOT line, before the READY line: no scenario ran.
    let o = run_bed(
        &crashing_boots(
            1,
            &[
                "VFIOH BOOT 6.12.117 2 cpu(s)",
                "VFIOH INFO loaded kvm-amd.ko",
            ],
        ),
        &[],
    );
    assert_eq!(o.code, Some(0), "{}", o.stdout);
    assert_line(&o, "2 passed, 0 failed, 1 skipped");
}

#[test]
fn a_crash_once_the_scenarios_started_is_not_retried() {
    // The crash comes after the READY line; a second boot would pass.
    let o = run_bed(
        &crashing_boots(
            1,
            &["VFIOH BOOT 6.12.117 2 cpu(s)", "VFIOH READY 3 scenario(s)"],
        ),
        &[],
    );
    assert_eq!(o.code, Some(1), "{}", o.stdout);
    assert!(o.stdout.contains("Oops: int3"), "{}", o.stdout);
}

#[test]
fn qemu_failing_fails_the_bed() {
    let o = run_bed(&GOOD.replace("exit 0", "exit 3"), &[]);
    assert_eq!(o.code, Some(1), "{}", o.stdout);
    assert!(
        o.stdout.contains("qemu exited with status 3"),
        "{}",
        o.stdout
    );
}

#[test]
fn a_hung_guest_is_killed_at_the_timeout() {
    // The fake guest prints one result and then never finishes.
    let o = run_bed(
        "echo 'VFIOH PASS alpha (1s)'; exec sleep 600",
        &["--timeout", "2"],
    );
    assert_eq!(o.code, Some(1), "{}", o.stdout);
    assert!(
        o.stdout.contains("did not finish within 2s"),
        "{}",
        o.stdout
    );
}

#[test]
fn unknown_scenario_is_refused_before_booting() {
    let o = run_bed("echo should-not-run; exit 0", &["no-such-scenario"]);
    assert_eq!(o.code, Some(2), "{}", o.stdout);
    assert!(!o.stdout.contains("should-not-run"));
}

#[test]
fn pair_mode_needs_the_debian_flavour() {
    // The bed kernel has no networking: --pair is refused before anything boots.
    let o = run_bed("echo should-not-run; exit 0", &["--pair"]);
    assert_eq!(o.code, Some(2), "{}", o.stdout);
    assert!(!o.stdout.contains("should-not-run"));
}

#[test]
fn pair_scenarios_are_apart_from_single_guest_ones() {
    let pair = run_bed("exit 0", &["--pair", "--flavour", "debian", "--list"]);
    assert_eq!(pair.code, Some(0));
    assert!(
        pair.stdout.lines().any(|l| l == "fault-campaign"),
        "{}",
        pair.stdout
    );
    assert!(
        !pair.stdout.lines().any(|l| l == "mtty-migrate"),
        "{}",
        pair.stdout
    );
    let single = run_bed("exit 0", &["--list"]);
    assert!(single.stdout.lines().any(|l| l == "mtty-migrate"));
    assert!(!single.stdout.lines().any(|l| l.contains("fault-campaign")));
    // A single-guest scenario is not a pair scenario.
    let o = run_bed(
        "echo should-not-run; exit 0",
        &["--pair", "--flavour", "debian", "mtty-migrate"],
    );
    assert_eq!(o.code, Some(2), "{}", o.stdout);
}

/// A fake pair guest: the source listens on its link's port until the destination connected
/// (as QEMU's `-netdev socket` does), then both print `GOOD`; on the first boot the guest of
/// `crashing` crashes before the bed's init, and its peer waits for it for good.
fn pair_guests(crashing: &str) -> String {
    format!(
        r#"role=destination; case "$*" in *vfioh.role=source*) role=source ;; esac
port=$(printf '%s\n' "$@" | sed -n 's/.*\(listen\|connect\)=127\.0\.0\.1:\([0-9][0-9]*\).*/\2/p' | head -n 1)
n=$(cat "$VM_OUT/boots-$role" 2>/dev/null || echo 0); n=$((n + 1)); echo $n >"$VM_OUT/boots-$role"
if [ $role = source ]; then
    perl -MIO::Socket::INET -e '$l = IO::Socket::INET->new(Listen => 1, LocalAddr => "127.0.0.1:$ARGV[0]", ReuseAddr => 1) or die "listen: $!"; $l->accept or die "accept: $!"' "$port" || exit 1
else
    perl -MIO::Socket::INET -e 'IO::Socket::INET->new(PeerAddr => "127.0.0.1:$ARGV[0]") or die "connect: $!"' "$port" || exit 1
fi
if [ $n -le 1 ]; then
    if [ $role = {crashing} ]; then
        echo '[    4.5] Oops: int3: 0000 [#1] PREEMPT SMP NOPTI'
        echo '[    4.6] Kernel panic - not syncing: Fatal exception in interrupt'
        exit 0
    fi
    exec sleep 600
fi
{GOOD}"#
    )
}

#[test]
fn a_pair_guest_crashing_before_init_boots_the_pair_again() {
    for crashing in ["source", "destination"] {
        let o = run_bed(
            &pair_guests(crashing),
            &["--pair", "--flavour", "debian", "--timeout", "120"],
        );
        assert_eq!(o.code, Some(0), "{crashing}: {}", o.stdout);
        assert_line(&o, "pair: both guests passed");
    }
}
