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
        // A usage error: the argument is malformed.
        assert_eq!(o.status.code(), Some(2));
        assert!(stderr(&o).contains("is not a UUID"), "{}", stderr(&o));
        assert_eq!(f.read(&create_file("mtty-2")), "");
    }
    // show/remove refuse it as well, and remove writes nothing.
    let o = mdev(&f, &["remove", "11111111-2222-3333-4444-55555555555"]);
    assert_eq!(o.status.code(), Some(2));
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

/// The fixture's mtty instance with vGPU-like knobs: `vendor/aggregate` (1) and
/// `vendor/priority` (0) writable, `vendor/sample_mdev_dev` read-only as in the kernel.
fn with_knobs() -> Fixture {
    use std::os::unix::fs::PermissionsExt;
    let f = Fixture::samples();
    let d = format!("{MTTY}/{MTTY_UUID}");
    f.write(&format!("{d}/vendor/aggregate"), "1\n");
    f.write(&format!("{d}/vendor/priority"), "0\n");
    std::fs::set_permissions(
        f.path(&format!("{d}/vendor/sample_mdev_dev")),
        std::fs::Permissions::from_mode(0o444),
    )
    .unwrap();
    f
}

#[test]
fn list_and_show_report_writable_attributes() {
    let f = with_knobs();
    let v = json(&mdev(&f, &["list", "--json"]));
    assert_eq!(
        v[0]["writable_attributes"],
        serde_json::json!(["vendor/aggregate", "vendor/priority"])
    );
    assert_eq!(v[0]["attributes"]["vendor/aggregate"], "1");
    let v = json(&mdev(&f, &["show", MTTY_UUID, "--json"]));
    assert_eq!(v["writable_attributes"][1], "vendor/priority");
    let o = mdev(&f, &["show", MTTY_UUID]);
    assert!(
        String::from_utf8_lossy(&o.stdout)
            .contains("writable:     vendor/aggregate, vendor/priority"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
}

#[test]
fn set_attr_writes_in_order_and_refuses_unknown_names() {
    let f = with_knobs();
    let d = format!("{MTTY}/{MTTY_UUID}");
    let v = json(&mdev(
        &f,
        &[
            "set-attr",
            MTTY_UUID,
            "aggregate=2",
            "vendor/priority=5",
            "--json",
        ],
    ));
    assert_eq!(v["attributes"][0]["attribute"], "vendor/aggregate");
    assert_eq!(v["attributes"][1]["readback"], "5");
    assert_eq!(f.read(&format!("{d}/vendor/aggregate")), "2\n");
    // An unknown or read-only name writes nothing, and says what can be written.
    let o = mdev(&f, &["set-attr", MTTY_UUID, "priority=7", "remove=1"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains(
            "has no attribute \"remove\"; writable attributes: vendor/aggregate, vendor/priority"
        ),
        "{}",
        stderr(&o)
    );
    let o = mdev(&f, &["set-attr", MTTY_UUID, "sample_mdev_dev=x"]);
    assert!(stderr(&o).contains("is read-only"), "{}", stderr(&o));
    assert_eq!(f.read(&format!("{d}/vendor/priority")), "5\n");
    assert_eq!(f.read(&format!("{d}/remove")), "");
    // Not NAME=VALUE: a usage error.
    let o = mdev(&f, &["set-attr", MTTY_UUID, "priority"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("NAME=VALUE"), "{}", stderr(&o));
}

#[test]
fn create_with_attributes_removes_an_instance_it_cannot_configure() {
    // The fixture's create makes no node, so the attribute step fails: the error says which
    // attribute and that nothing is left behind.
    let f = Fixture::samples();
    let u = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee";
    let o = mdev(
        &f,
        &[
            "create",
            "--type",
            "mtty-1",
            "--uuid",
            u,
            "--attr",
            "aggregate=2",
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(e.contains(&format!("no mediated device {u}")), "{e}");
    assert!(e.contains("nothing is left behind"), "{e}");
    assert_eq!(f.read(&create_file("mtty-1")), u);
    // --type and --from-mdevctl exclude each other; one of them is needed.
    let o = mdev(&f, &["create", "--type", "mtty-1", "--from-mdevctl", "/x"]);
    assert_eq!(o.status.code(), Some(2));
    let o = mdev(&f, &["create"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn mdevctl_definitions_both_ways() {
    let f = with_knobs();
    // Ours, in mdevctl's shapes: the writable attributes are the definition's attrs.
    let o = mdev(&f, &["show", MTTY_UUID, "--mdevctl-json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        text.starts_with(
            "{\n  \"mdev_type\": \"mtty-2\",\n  \"start\": \"manual\",\n  \"attrs\": ["
        ),
        "{text}"
    );
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        v["attrs"],
        serde_json::json!([{"vendor/aggregate": "1"}, {"vendor/priority": "0"}])
    );
    let l = json(&mdev(&f, &["list", "--mdevctl-json"]));
    assert_eq!(l[0]["mtty"][0][MTTY_UUID], v);
    // Theirs: a <parent>/<uuid> definition without attributes creates on that parent with
    // that UUID (the fixture's create only records it).
    let t = tempfile::tempdir().unwrap();
    let u = "aaaaaaaa-bbbb-cccc-dddd-000000000001";
    let p = t.path().join("mdpy").join(u);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(
        &p,
        r#"{"mdev_type": "mdpy-vga", "start": "auto", "attrs": []}"#,
    )
    .unwrap();
    let v = json(&mdev(
        &f,
        &["create", "--from-mdevctl", p.to_str().unwrap(), "--json"],
    ));
    assert_eq!(v[0]["uuid"], u);
    assert_eq!(v[0]["parent"], "mdpy");
    assert_eq!(v[0]["start"], "auto");
    assert_eq!(
        f.read("devices/virtual/mdpy/mdpy/mdev_supported_types/mdpy-vga/create"),
        u
    );
    // A broken definition is refused before anything is written.
    std::fs::write(&p, r#"{"mdev_type": "mdpy-vga"}"#).unwrap();
    let o = mdev(&f, &["create", "--from-mdevctl", p.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("\"start\" is missing"),
        "{}",
        stderr(&o)
    );
}
