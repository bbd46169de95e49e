//! `vfio-harness mdev` end to end on fixture sysfs trees (`--sysfs-root`): output shapes,
//! exit status, and that refused commands write nothing.

#[path = "fixtures/sysfs/fixture.rs"]
mod fixture;

use fixture::{Fixture, MTTY_UUID};
use serde_json::Value;
use std::process::{Command, Output};

const MTTY: &str = "devices/virtual/mtty/mtty";

fn mdev(f: &Fixture, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vfio-harness"))
        .arg("mdev")
        .arg("--sysfs-root")
        .arg(f.root())
        .args(args)
        .output()
        .expect("run vfio-harness")
}

fn json(o: &Output) -> Value {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).expect("JSON output")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn create_file(t: &str) -> String {
    format!("{MTTY}/mdev_supported_types/{t}/create")
}

#[test]
fn types_json_is_a_flat_array() {
    let f = Fixture::samples();
    let v = json(&mdev(&f, &["types", "--json"]));
    let a = v.as_array().unwrap();
    assert_eq!(a.len(), 5);
    let m2 = a.iter().find(|t| t["type"] == "mtty-2").unwrap();
    assert_eq!(m2["parent"], "mtty");
    assert_eq!(m2["name"], "Dual port serial");
    assert_eq!(m2["available_instances"], 12);
    assert_eq!(m2["devices"][0], MTTY_UUID);
    let gvt = a.iter().find(|t| t["type"] == "i915-GVTg_V5_4").unwrap();
    assert_eq!(gvt["attributes"]["software_version"], "1.2.0");
    // Filters.
    let v = json(&mdev(
        &f,
        &["types", "--parent", "mtty", "--type", "mtty-1", "--json"],
    ));
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!(v[0]["description"], Value::Null);
}

#[test]
fn mdevctl_shapes() {
    let f = Fixture::samples();
    let v = json(&mdev(&f, &["types", "--mdevctl-json"]));
    let m2 = &v[0]["mtty"][1]["mtty-2"];
    assert_eq!(m2["available_instances"], 12);
    assert_eq!(m2["device_api"], "vfio-pci");
    assert!(
        m2.get("description").is_none(),
        "absent fields are left out"
    );
    let v = json(&mdev(&f, &["list", "--mdevctl-json"]));
    assert_eq!(v[0]["mtty"][0][MTTY_UUID]["mdev_type"], "mtty-2");
}

#[test]
fn list_and_show() {
    let f = Fixture::samples();
    let v = json(&mdev(&f, &["list", "--json"]));
    assert_eq!(v[0]["uuid"], MTTY_UUID);
    assert_eq!(v[0]["iommu_group"], 3);
    let v = json(&mdev(&f, &["show", MTTY_UUID, "--json"]));
    assert_eq!(v["type_info"]["name"], "Dual port serial");
    let o = mdev(&f, &["list"]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.starts_with("UUID "), "{text}");
    assert!(text.contains(MTTY_UUID), "{text}");
}

#[test]
fn create_prints_the_uuid_and_writes_it() {
    let f = Fixture::samples();
    let u = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee";
    let o = mdev(
        &f,
        &[
            "create", "--parent", "mtty", "--type", "mtty-1", "--uuid", u,
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout).lines().next(), Some(u));
    assert_eq!(f.read(&create_file("mtty-1")), u);
    // The fixture makes no node, and the command says so.
    assert!(stderr(&o).contains("no node appeared"), "{}", stderr(&o));
}

#[test]
fn create_resolves_a_unique_parent() {
    let f = Fixture::samples();
    let v = json(&mdev(
        &f,
        &["create", "--type", "mtty-2", "--json", "--timings"],
    ));
    assert_eq!(v["parent"], "mtty");
    assert!(v["create_seconds"].is_number());
    assert_eq!(v["available_instances_before"], 12);
    assert_eq!(f.read(&create_file("mtty-2")), v["uuid"].as_str().unwrap());
}

#[test]
fn bad_uuid_is_refused_without_a_write() {
    let f = Fixture::samples();
    for bad in [
        "not-a-uuid",
        "aaaaaaaabbbbccccddddeeeeeeeeeeee",
        "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeeg",
    ] {
        let o = mdev(
            &f,
            &[
                "create", "--parent", "mtty", "--type", "mtty-2", "--uuid", bad,
            ],
        );
        assert_eq!(o.status.code(), Some(1));
        assert!(stderr(&o).contains("is not a UUID"), "{}", stderr(&o));
        assert_eq!(f.read(&create_file("mtty-2")), "");
    }
    // show/remove refuse it as well, and remove writes nothing.
    let o = mdev(&f, &["remove", "11111111-2222-3333-4444-55555555555"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(f.read(&format!("{MTTY}/{MTTY_UUID}/remove")), "");
}

#[test]
fn refusals_name_the_cause() {
    let f = Fixture::samples();
    let o = mdev(&f, &["create", "--parent", "mtty", "--type", "mtty-9"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("known types: mtty-1, mtty-2"),
        "{}",
        stderr(&o)
    );
    let o = mdev(&f, &["create", "--type", "nvidia-11"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("no parent has an mdev type"),
        "{}",
        stderr(&o)
    );
    let o = mdev(
        &f,
        &[
            "create",
            "--parent",
            "0000:00:02.0",
            "--type",
            "i915-GVTg_V5_8",
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("no capacity left on 0000:00:02.0/i915-GVTg_V5_8"),
        "{}",
        stderr(&o)
    );
    let o = mdev(
        &f,
        &[
            "create", "--parent", "mtty", "--type", "mtty-1", "--uuid", MTTY_UUID,
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("duplicate UUID"), "{}", stderr(&o));
    assert_eq!(f.read(&create_file("mtty-1")), "");
    assert_eq!(f.read(&create_file("mtty-2")), "");
}

#[test]
fn timings_report_a_failed_open() {
    // A fixture has no VFIO device to open: the error is reported, exit status 1.
    let f = Fixture::samples();
    let o = mdev(&f, &["timings", MTTY_UUID, "--json"]);
    assert_eq!(o.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["runs"][0]["first_open_seconds"], Value::Null);
    assert!(v["runs"][0]["error"].as_str().unwrap().contains(MTTY_UUID));
}

#[test]
fn remove_writes_one() {
    let f = Fixture::samples();
    let o = mdev(&f, &["remove", MTTY_UUID]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(f.read(&format!("{MTTY}/{MTTY_UUID}/remove")), "1");
}
