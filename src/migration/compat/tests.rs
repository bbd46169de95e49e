//! Compatibility rule tests.

use super::*;

fn mdev(ty: &str) -> CompatSide {
    CompatSide {
        name: ty.into(),
        device_api: Some("vfio-pci".into()),
        mdev_type: Some(ty.into()),
        migration: Some((Protocol::V2, MigFlags(7))),
        ..Default::default()
    }
}

fn verdict(r: &CompatReport, name: &str) -> Verdict {
    r.rules
        .iter()
        .find(|x| x.rule == name)
        .map(|x| x.verdict)
        .unwrap()
}

#[test]
fn same_type_without_attributes_is_compatible_with_unknowns() {
    let r = evaluate(&mdev("mtty-2"), &mdev("mtty-2"));
    assert!(r.compatible);
    assert!(!r.strict());
    assert_eq!(verdict(&r, "device_api"), Verdict::Pass);
    assert_eq!(verdict(&r, "mdev_type"), Verdict::Pass);
    assert_eq!(verdict(&r, "software_version"), Verdict::Unknown);
}

#[test]
fn different_types_are_refused_unless_listed() {
    let r = evaluate(&mdev("mtty-2"), &mdev("mtty-1"));
    assert!(!r.compatible);
    assert_eq!(verdict(&r, "mdev_type"), Verdict::Fail);
    let mut dst = mdev("nvidia-12");
    dst.type_attrs
        .insert("compatible_type".into(), "nvidia-11, nvidia-10".into());
    let r = evaluate(&mdev("nvidia-11"), &dst);
    assert_eq!(verdict(&r, "mdev_type"), Verdict::Pass);
}

#[test]
fn incompatible_lists_the_failed_rules() {
    let ok = evaluate(&mdev("mtty-2"), &mdev("mtty-2"));
    ok.ensure_compatible().unwrap();
    let e = evaluate(&mdev("mtty-2"), &mdev("mtty-1"))
        .ensure_compatible()
        .unwrap_err();
    let MigrationError::Incompatible(inc) = &e else {
        panic!("{e}");
    };
    assert_eq!(
        (inc.source.as_str(), inc.target.as_str()),
        ("mtty-2", "mtty-1")
    );
    assert!(
        matches!(&inc.mismatches[..], [Mismatch::Rule(r)] if r.rule == "mdev_type"),
        "{e}"
    );
    assert!(e.to_string().contains("mdev_type: mtty-2 vs mtty-1"), "{e}");
}

#[test]
fn device_api_and_protocol_must_match() {
    let mut dst = mdev("x");
    dst.device_api = Some("vfio-ccw".into());
    dst.migration = Some((Protocol::V1, MigFlags(5)));
    let r = evaluate(&mdev("x"), &dst);
    assert_eq!(verdict(&r, "device_api"), Verdict::Fail);
    assert_eq!(verdict(&r, "protocol"), Verdict::Fail);
    dst.migration = None;
    assert_eq!(
        verdict(&evaluate(&mdev("x"), &dst), "protocol"),
        Verdict::Fail
    );
}

#[test]
fn software_version_rules() {
    let with = |v: &str| {
        let mut s = mdev("t");
        s.type_attrs.insert("software_version".into(), v.into());
        s
    };
    let check = |a: &str, b: &str| verdict(&evaluate(&with(a), &with(b)), "software_version");
    assert_eq!(check("1.2.0", "1.2.0"), Verdict::Pass);
    assert_eq!(check("1.2.0", "1.3.0"), Verdict::Pass);
    assert_eq!(check("1.2.5", "1.2.0"), Verdict::Pass, "bugfix only ranks");
    assert_eq!(check("1.3.0", "1.2.9"), Verdict::Fail, "older minor");
    assert_eq!(check("2.0.0", "1.9.0"), Verdict::Fail, "major differs");
    assert_eq!(
        check("1.0.0", "2.0.0"),
        Verdict::Fail,
        "major differs upward too"
    );
    assert_eq!(check("one", "1.0.0"), Verdict::Unknown);
    assert_eq!(parse_version("1.2"), Some((1, 2, 0)));
    assert_eq!(parse_version("1.2.3.4"), None);
}

#[test]
fn compatible_lists_must_be_supersets() {
    let with = |v: &str| {
        let mut s = mdev("t");
        s.type_attrs.insert("compatible_pci_ids".into(), v.into());
        s
    };
    let check = |a: &str, b: &str| verdict(&evaluate(&with(a), &with(b)), "compatible_pci_ids");
    assert_eq!(check("10de:1eb8", "10de:1eb8,10de:1eb9"), Verdict::Pass);
    assert_eq!(check("10de:1eb8,10de:1eb9", "10de:1eb8"), Verdict::Fail);
    assert_eq!(check("a", "a"), Verdict::Pass);
    assert_eq!(check("a", "b"), Verdict::Fail);
    let only_src = evaluate(&with("a"), &mdev("t"));
    assert_eq!(verdict(&only_src, "compatible_pci_ids"), Verdict::Unknown);
    assert!(only_src.compatible, "unknown never blocks, never passes");
}

#[test]
fn dynamic_resources_must_be_copied() {
    let mut src = mdev("t");
    src.type_attrs
        .insert("dynamic_resources".into(), "aggregator".into());
    src.instance_attrs.insert("aggregator".into(), "4".into());
    let mut dst = src.clone();
    dst.instance_attrs.insert("aggregator".into(), "1".into());
    let r = evaluate(&src, &dst);
    assert_eq!(verdict(&r, "dynamic_resources/aggregator"), Verdict::Fail);
    assert!(r
        .rules
        .iter()
        .any(|x| x.reason.contains("copy aggregator=4")));
    dst.instance_attrs.insert("aggregator".into(), "4".into());
    assert_eq!(
        verdict(&evaluate(&src, &dst), "dynamic_resources/aggregator"),
        Verdict::Pass
    );
}

#[test]
fn migration_version_write_test_on_fixture() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("migration_version");
    let mut src = mdev("t");
    let mut dst = mdev("t");
    assert!(
        migration_version_test(&src, &dst).is_none(),
        "source lacks it: no test"
    );
    src.type_attrs
        .insert("migration_version".into(), "vendor-abc-1".into());
    assert_eq!(
        migration_version_test(&src, &dst).unwrap().verdict,
        Verdict::Unknown
    );
    std::fs::write(&path, "x").unwrap();
    dst.migration_version_path = Some(path.clone());
    let r = migration_version_test(&src, &dst).unwrap();
    assert_eq!(r.verdict, Verdict::Pass);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "vendor-abc-1");
    // A destination that refuses the write (here: the path is a directory).
    std::fs::remove_file(&path).unwrap();
    std::fs::create_dir(&path).unwrap();
    assert_eq!(
        migration_version_test(&src, &dst).unwrap().verdict,
        Verdict::Fail
    );
}

#[test]
fn grouped_attributes_are_reachable_by_bare_name() {
    let mut a = BTreeMap::new();
    a.insert("vendor/priority".to_string(), Some("4".to_string()));
    a.insert("write_only".to_string(), None);
    let f = flatten(&a);
    assert_eq!(f.get("priority").map(String::as_str), Some("4"));
    assert_eq!(f.get("vendor/priority").map(String::as_str), Some("4"));
    assert!(!f.contains_key("write_only"));
}
