//! `save`, `restore` and `migrate` end to end through the command-line binary against
//! simulated devices (small states, both migration protocols).

use std::path::Path;
use std::process::{Command, Output};

fn harness(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vfio-harness"))
        .args(args)
        .output()
        .expect("run vfio-harness")
}

fn ok(args: &[&str]) -> serde_json::Value {
    let o = harness(args);
    assert!(
        o.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).expect("JSON report")
}

fn refused(args: &[&str]) -> String {
    let o = harness(args);
    assert!(!o.status.success(), "{args:?} succeeded");
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn entries(d: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

const STATE: u64 = 3 << 20;

fn save_restore(proto: &str) {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("s.vfs");
    let fs = f.to_str().unwrap();
    let src = format!("sim:protocol={proto},state=3M,seed=7");
    let r = ok(&["save", &src, "-o", fs, "--buffer", "256K", "--json"]);
    assert_eq!(
        r["stream_bytes"].as_u64(),
        Some(std::fs::metadata(&f).unwrap().len())
    );
    assert_eq!(r["protocol"], proto);
    assert!(r["bytes"].as_u64().unwrap() >= STATE);
    assert_eq!(entries(dir.path()), ["s.vfs"]);

    let good = format!("sim:protocol={proto},state=3M,verify-seed=7");
    let r = ok(&["restore", &good, "-i", fs, "--json"]);
    assert_eq!(r["source"]["protocol"], proto);
    assert_eq!(r["source"]["driver"], "sim");

    // The device itself refuses state saved from another seed.
    let wrong = format!("sim:protocol={proto},state=3M,verify-seed=8");
    refused(&["restore", &wrong, "-i", fs]);

    // Another protocol is refused by the header check, before the device is touched.
    let other = if proto == "v1" { "v2" } else { "v1" };
    let e = refused(&[
        "restore",
        &format!("sim:protocol={other},state=3M"),
        "-i",
        fs,
    ]);
    assert!(e.contains("migration protocol"), "{e}");

    // A corrupt copy is refused by the stream checksums.
    let mut data = std::fs::read(&f).unwrap();
    let mid = data.len() / 2;
    data[mid] ^= 1;
    let c = dir.path().join("corrupt.vfs");
    std::fs::write(&c, &data).unwrap();
    let e = refused(&["restore", &good, "-i", c.to_str().unwrap()]);
    assert!(e.contains("corrupt"), "{e}");

    // A save whose STOP_COPY transition fails leaves no file behind.
    let g = dir.path().join("failed.vfs");
    let e = refused(&[
        "save",
        &format!("sim:protocol={proto},state=3M,seed=7,fail-at=stop-copy"),
        "-o",
        g.to_str().unwrap(),
    ]);
    assert!(!e.is_empty());
    assert_eq!(entries(dir.path()), ["corrupt.vfs", "s.vfs"]);
}

#[test]
fn save_restore_v1() {
    save_restore("v1");
}

#[test]
fn save_restore_v2() {
    save_restore("v2");
}

#[test]
fn migrate_live_both_protocols() {
    for proto in ["v1", "v2"] {
        let r = ok(&[
            "migrate",
            &format!("sim:protocol={proto},state=2M,seed=3"),
            &format!("sim:protocol={proto},state=2M,verify-seed=3"),
            "--precopy-rounds",
            "2",
            "--json",
        ]);
        assert!(r["bytes"].as_u64().unwrap() >= 2 << 20, "{r}");
        assert!(r["downtime_seconds"].as_f64().unwrap() > 0.0);
        assert!(r["rounds"].as_u64().unwrap() >= 1, "{proto}: {r}");
        refused(&[
            "migrate",
            &format!("sim:protocol={proto},state=2M,seed=3"),
            &format!("sim:protocol={proto},state=2M,verify-seed=4"),
        ]);
    }
}

/// `save --compress`: a sparse state takes fewer bytes on disk than it holds, restores with
/// no option, and the report names the mode; `migrate` between two devices here refuses it
/// (there is no stream to compress).
#[test]
fn save_compressed_restores() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("z.vfs");
    let fs = f.to_str().unwrap();
    let src = "sim:state=2M,seed=7,zero-pages=0.5";
    let r = ok(&["save", src, "-o", fs, "--compress", "zero", "--json"]);
    assert_eq!(r["compression"], "zero");
    let (bytes, wire) = (
        r["bytes"].as_u64().unwrap(),
        r["stream_bytes"].as_u64().unwrap(),
    );
    assert!(wire < bytes * 6 / 10, "{wire} of {bytes}");
    assert_eq!(std::fs::metadata(&f).unwrap().len(), wire);
    let r = ok(&[
        "restore",
        "sim:state=2M,verify-seed=7,zero-pages=0.5",
        "-i",
        fs,
        "--json",
    ]);
    assert_eq!(r["bytes"].as_u64(), Some(bytes));
    assert!(refused(&["save", src, "-o", fs, "--compress", "zip"]).contains("zip"));
    let e = refused(&[
        "migrate",
        src,
        "sim:state=2M,verify-seed=7",
        "--compress",
        "auto",
    ]);
    assert!(
        e.contains("--compress is for a migration to an address"),
        "{e}"
    );
}
