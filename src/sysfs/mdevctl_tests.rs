//! Tests of `sysfs::mdevctl`: mdevctl's JSON shapes both ways, the file layouts, creating.

use super::*;

use std::os::unix::fs::PermissionsExt;

use crate::sysfs::fixture::{Fixture, MTTY_UUID};

const U1: &str = "aaaaaaaa-bbbb-cccc-dddd-000000000001";
const U2: &str = "aaaaaaaa-bbbb-cccc-dddd-000000000002";

fn cfg(json: &str) -> Result<Config, String> {
    Config::from_json(&serde_json::from_str(json).unwrap())
}

fn vgpu() -> Config {
    Config {
        mdev_type: "i915-GVTg_V5_4".into(),
        start: Start::Auto,
        attrs: vec![
            Assignment::new("vendor/aggregate", "2"),
            Assignment::new("frl/enable", "0"),
        ],
    }
}

#[test]
fn definitions_parse_as_mdevctl_reads_them() {
    let c = cfg(r#"{"mdev_type": "i915-GVTg_V5_4", "start": "auto",
        "attrs": [{"vendor/aggregate": "2"}, {"frl/enable": "0"}]}"#)
    .unwrap();
    assert_eq!(c, vgpu());
    let c = cfg(r#"{"mdev_type": "mtty-2", "start": "manual"}"#).unwrap();
    assert_eq!(c.start, Start::Manual);
    assert!(c.attrs.is_empty());
    assert!(cfg(r#"{"mdev_type": "mtty-2", "start": "manual", "attrs": null}"#).is_ok());
    for (bad, why) in [
        (r#"{"start": "auto"}"#, "\"mdev_type\" is missing"),
        (r#"{"mdev_type": "t"}"#, "\"start\" is missing"),
        (
            r#"{"mdev_type": "t", "start": "sometimes"}"#,
            "not \"auto\" or \"manual\"",
        ),
        (r#"{"mdev_type": 3, "start": "auto"}"#, "not a type name"),
        (
            r#"{"mdev_type": "t", "start": "auto", "attrs": {"a": "1"}}"#,
            "not an array",
        ),
        (
            r#"{"mdev_type": "t", "start": "auto", "attrs": [{"a": "1", "b": "2"}]}"#,
            "attrs[0] is not an object with one field",
        ),
        (
            r#"{"mdev_type": "t", "start": "auto", "attrs": [{"a": 1}]}"#,
            "must be a string",
        ),
        (r#"[1]"#, "a definition is a JSON object"),
    ] {
        let e = cfg(bad).unwrap_err();
        assert!(e.contains(why), "{bad}: {e}");
    }
}

#[test]
fn definitions_print_in_mdevctl_field_order() {
    assert_eq!(
        config_json(&vgpu()).unwrap(),
        r#"{
  "mdev_type": "i915-GVTg_V5_4",
  "start": "auto",
  "attrs": [
    {
      "vendor/aggregate": "2"
    },
    {
      "frl/enable": "0"
    }
  ]
}"#
    );
}

#[test]
fn dumpjson_nests_parents_and_uuids_sorted() {
    assert_eq!(dumpjson(&[]).unwrap(), "[]");
    let u1 = Uuid::parse_str(U1).unwrap();
    let u2 = Uuid::parse_str(U2).unwrap();
    let manual = Config {
        mdev_type: "mtty-2".into(),
        start: Start::Manual,
        attrs: Vec::new(),
    };
    let out = dumpjson(&[
        ("mtty".into(), u2, manual.clone()),
        ("0000:00:02.0".into(), u1, vgpu()),
        ("mtty".into(), u1, manual.clone()),
    ])
    .unwrap();
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!(v[0]["mtty"][0][U1]["mdev_type"], "mtty-2");
    assert_eq!(v[0]["mtty"][1][U2]["start"], "manual");
    assert_eq!(
        v[0]["0000:00:02.0"][0][U1]["attrs"][0]["vendor/aggregate"],
        "2"
    );
    // What we print, we read back.
    let back = parse_dump(&v).unwrap();
    assert_eq!(back.len(), 3);
    assert_eq!(back[0], ("0000:00:02.0".to_string(), u1, vgpu()));
    assert_eq!(back[2], ("mtty".to_string(), u2, manual));
}

#[test]
fn a_live_instance_becomes_its_definition() {
    let f = Fixture::samples();
    let d = format!("devices/virtual/mtty/mtty/{MTTY_UUID}");
    f.write(&format!("{d}/vendor/priority"), "3\n");
    f.write(&format!("{d}/vendor/aggregate"), "2\n");
    let ro = f.path(&format!("{d}/vendor/sample_mdev_dev"));
    fs::set_permissions(&ro, fs::Permissions::from_mode(0o444)).unwrap();
    let wo = f.path(&format!("{d}/vendor/trigger"));
    fs::write(&wo, "").unwrap();
    fs::set_permissions(&wo, fs::Permissions::from_mode(0o200)).unwrap();
    let inst = mdev::instance(
        &SysfsRoot::new(f.root()),
        &Uuid::parse_str(MTTY_UUID).unwrap(),
    )
    .unwrap();
    let c = Config::of_instance(&inst).unwrap();
    assert_eq!(c.mdev_type, "mtty-2");
    assert_eq!(c.start, Start::Manual);
    // Writable and readable, sorted; read-only ones are not configuration. (Tests run as
    // root, which reads the 0200 file anyway: a write-only kernel attribute fails the read
    // and is left out.)
    let names: Vec<&str> = c.attrs.iter().map(|a| a.name.as_str()).collect();
    assert!(
        names.starts_with(&["vendor/aggregate", "vendor/priority"]),
        "{names:?}"
    );
    assert!(!names.contains(&"vendor/sample_mdev_dev"));
    assert_eq!(c.attrs[0].value, "2");
}

fn write_def(dir: &Path, rel: &str, json: &str) -> PathBuf {
    let p = dir.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(&p, json).unwrap();
    p
}

const DEF: &str =
    r#"{"mdev_type": "mtty-1", "start": "auto", "attrs": [{"vendor/priority": "4"}]}"#;

#[test]
fn files_in_the_mdevctl_layout_name_parent_and_uuid() {
    let t = tempfile::tempdir().unwrap();
    let p = write_def(t.path(), &format!("mtty/{U1}"), DEF);
    let d = load(&p).unwrap();
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].parent.as_deref(), Some("mtty"));
    assert_eq!(d[0].uuid, Some(Uuid::parse_str(U1).unwrap()));
    assert_eq!(d[0].config.attrs, [Assignment::new("vendor/priority", "4")]);
    assert_eq!(d[0].source, p);
    // Any other file name: neither (the directory is not a parent then).
    let p = write_def(t.path(), "tmp/vgpu.json", DEF);
    let d = load(&p).unwrap();
    assert_eq!((d[0].parent.as_deref(), d[0].uuid), (None, None));
}

#[test]
fn dumpjson_files_give_every_device() {
    let t = tempfile::tempdir().unwrap();
    let json = format!(
        r#"[{{"mtty": [{{"{U1}": {DEF}}}, {{"{U2}": {{"mdev_type": "mtty-2", "start": "manual", "attrs": []}}}}]}}]"#
    );
    let p = write_def(t.path(), "list.json", &json);
    let d = load(&p).unwrap();
    assert_eq!(d.len(), 2);
    assert_eq!(d[1].parent.as_deref(), Some("mtty"));
    assert_eq!(d[1].uuid, Some(Uuid::parse_str(U2).unwrap()));
    assert_eq!(d[1].config.mdev_type, "mtty-2");
    let bad = write_def(t.path(), "bad.json", r#"[{"mtty": [{"not-a-uuid": {}}]}]"#);
    assert!(load(&bad)
        .unwrap_err()
        .to_string()
        .contains("is not a UUID"));
    let bad = write_def(t.path(), "bad2.json", r#"{"something": 1}"#);
    assert!(matches!(load(&bad), Err(MdevctlError::Format { .. })));
    let bad = write_def(t.path(), "bad3.json", "{");
    assert!(matches!(load(&bad), Err(MdevctlError::Json { .. })));
}

#[test]
fn directories_of_definitions() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("mdevctl.d");
    write_def(&root, &format!("mtty/{U2}"), DEF);
    write_def(&root, &format!("mtty/{U1}"), DEF);
    write_def(&root, &format!("mdpy/{U1}"), DEF);
    write_def(&root, "scripts.d/callouts/x.sh", "#!/bin/sh");
    write_def(&root, "mtty/README", "not a definition");
    let d = load(&root).unwrap();
    let got: Vec<(String, String)> = d
        .iter()
        .map(|d| (d.parent.clone().unwrap(), d.uuid.unwrap().to_string()))
        .collect();
    assert_eq!(
        got,
        [
            ("mdpy".to_string(), U1.to_string()),
            ("mtty".to_string(), U1.to_string()),
            ("mtty".to_string(), U2.to_string())
        ]
    );
    // One parent's directory.
    let d = load(&root.join("mtty")).unwrap();
    assert_eq!(d.len(), 2);
    assert!(d.iter().all(|d| d.parent.as_deref() == Some("mtty")));
    // Nothing in it.
    let empty = t.path().join("empty");
    fs::create_dir(&empty).unwrap();
    assert!(matches!(load(&empty), Err(MdevctlError::Empty { .. })));
    assert!(matches!(
        load(&t.path().join("missing")),
        Err(MdevctlError::Io { .. })
    ));
}

#[test]
fn create_all_resolves_parents_before_creating() {
    let f = Fixture::samples();
    let root = SysfsRoot::new(f.root());
    let t = tempfile::tempdir().unwrap();
    let mk = |ty: &str, parent: Option<&str>| Definition {
        parent: parent.map(str::to_string),
        uuid: None,
        config: Config {
            mdev_type: ty.into(),
            start: Start::Manual,
            attrs: Vec::new(),
        },
        source: t.path().join(ty),
    };
    // The type resolves the parent; no attributes, so the fixture's create suffices.
    let s = create_all(
        &root,
        &[mk("mtty-1", None), mk("mdpy-vga", None)],
        None,
        None,
    )
    .unwrap();
    assert_eq!(s[0].parent, "mtty");
    assert_eq!(s[1].parent, "mdpy");
    assert_eq!(
        f.read("devices/virtual/mtty/mtty/mdev_supported_types/mtty-1/create"),
        s[0].configured.created.uuid.to_string()
    );
    // An unresolvable parent anywhere: nothing is created.
    let f = Fixture::samples();
    let root = SysfsRoot::new(f.root());
    let e = create_all(
        &root,
        &[mk("mtty-1", None), mk("nvidia-11", None)],
        None,
        None,
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("no parent has its type \"nvidia-11\""),
        "{e}"
    );
    assert_eq!(
        f.read("devices/virtual/mtty/mtty/mdev_supported_types/mtty-1/create"),
        ""
    );
    // One UUID for two definitions is refused.
    let u = Some(Uuid::new_v4());
    assert!(matches!(
        create_all(&root, &[mk("mtty-1", None), mk("mdpy-vga", None)], None, u),
        Err(MdevctlError::UuidForMany { count: 2 })
    ));
    // A failing definition after a created one: the error names its file, and the earlier
    // instance is removed (the fixture never made its node, so that removal is reported).
    let e = create_all(
        &root,
        &[mk("mtty-1", None), mk("mtty-9", Some("mtty"))],
        None,
        None,
    )
    .unwrap_err();
    match &e {
        MdevctlError::Create {
            path,
            source,
            rollback_failures,
            ..
        } => {
            assert!(path.ends_with("mtty-9"));
            assert!(matches!(&**source, AttrError::Sysfs(_)), "{source:?}");
            assert_eq!(rollback_failures.len(), 1, "{rollback_failures:?}");
        }
        other => panic!("{other:?}"),
    }
}
