//! The mdev sysfs layer on fixture trees (`tests/fixtures/sysfs/fixture.rs`).

use super::*;

use super::fixture::{Fixture, MTTY_UUID};
use crate::sysfs::SysfsRoot;

const GPU: &str = "devices/pci0000:00/0000:00:02.0";
const MTTY: &str = "devices/virtual/mtty/mtty";

fn root(f: &Fixture) -> SysfsRoot {
    SysfsRoot::new(f.root())
}

fn mtty_uuid() -> Uuid {
    Uuid::parse_str(MTTY_UUID).unwrap()
}

/// Every `create` file of the fixture is still empty.
fn assert_no_create_written(f: &Fixture) {
    for t in list_types(&root(f)).unwrap() {
        let c = t.sysfs_path.join("create");
        assert_eq!(
            fs::read_to_string(&c).unwrap(),
            "",
            "{} was written",
            c.display()
        );
    }
}

#[test]
fn parents_need_not_be_pci() {
    let f = Fixture::samples();
    let parents = list_parents(&root(&f)).unwrap();
    let names: Vec<&str> = parents.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["0000:00:02.0", "mdpy", "mtty"]);
    let mtty = &parents[2];
    assert_eq!(mtty.subsystem.as_deref(), Some("mtty"));
    assert_eq!(mtty.types, ["mtty-1", "mtty-2"]);
    assert_eq!(mtty.sysfs_path, fs::canonicalize(f.path(MTTY)).unwrap());
    assert_eq!(parents[0].subsystem.as_deref(), Some("pci"));
    assert_eq!(
        parents[0].sysfs_path,
        fs::canonicalize(f.path(GPU)).unwrap()
    );
}

#[test]
fn types_are_parsed_with_optional_fields() {
    let f = Fixture::samples();
    let types = list_types(&root(&f)).unwrap();
    let ids: Vec<String> = types.iter().map(MdevType::id).collect();
    assert_eq!(
        ids,
        [
            "0000:00:02.0/i915-GVTg_V5_4",
            "0000:00:02.0/i915-GVTg_V5_8",
            "mdpy/mdpy-vga",
            "mtty/mtty-1",
            "mtty/mtty-2"
        ]
    );
    let m2 = &types[4];
    assert_eq!(m2.name.as_deref(), Some("Dual port serial"));
    assert_eq!(m2.description, None);
    assert_eq!(m2.device_api.as_deref(), Some("vfio-pci"));
    assert_eq!(m2.available_instances, Some(12));
    assert_eq!(m2.devices, [mtty_uuid()]);
    assert!(m2.attributes.is_empty(), "{:?}", m2.attributes);
    assert!(types[3].devices.is_empty());

    let v58 = &types[1];
    assert_eq!(v58.name, None);
    assert_eq!(v58.available_instances, Some(0));

    let mdpy = &types[2];
    assert_eq!(
        mdpy.description.as_deref(),
        Some("virtual display, 1024x768")
    );
}

#[test]
fn extra_type_attributes_are_kept_as_strings() {
    let f = Fixture::samples();
    let t = find_type(&root(&f), "0000:00:02.0", "i915-GVTg_V5_4").unwrap();
    let keys: Vec<&str> = t.attributes.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "compatible_aggregator",
            "compatible_type",
            "dynamic_resources",
            "frl/enable",
            "migration_version",
            "software_version"
        ]
    );
    assert_eq!(t.attribute("software_version"), Some("1.2.0"));
    assert_eq!(
        t.attribute("compatible_type"),
        Some("i915-GVTg_V5_4,i915-GVTg_V5_2")
    );
    assert_eq!(t.attribute("frl/enable"), Some("0"));
    assert_eq!(t.attribute("not_there"), None);
    // A multi-line description keeps its inner newline, loses only the trailing one.
    assert_eq!(
        t.description.as_deref(),
        Some("low_gm_size: 128MB\nhigh_gm_size: 512MB")
    );
}

#[test]
fn garbage_available_instances_is_unknown_not_zero() {
    let f = Fixture::samples();
    f.write(
        &format!("{MTTY}/mdev_supported_types/mtty-1/available_instances"),
        "lots\n",
    );
    let t = find_type(&root(&f), "mtty", "mtty-1").unwrap();
    assert_eq!(t.available_instances, None);
}

#[test]
fn instances_are_resolved_through_links() {
    let f = Fixture::samples();
    let all = list_instances(&root(&f)).unwrap();
    assert_eq!(all.len(), 1);
    let i = &all[0];
    assert_eq!(i.uuid, mtty_uuid());
    assert_eq!(i.parent, "mtty");
    assert_eq!(i.mdev_type.as_deref(), Some("mtty-2"));
    assert_eq!(i.iommu_group, Some(3));
    assert_eq!(i.driver.as_deref(), Some("mtty"));
    assert_eq!(i.vfio_cdev.as_deref(), Some("vfio3"));
    assert_eq!(
        i.sysfs_path,
        fs::canonicalize(f.path(&format!("{MTTY}/{MTTY_UUID}"))).unwrap()
    );
    // Standard files (uevent, remove, power/, links) are not vendor attributes.
    let keys: Vec<&str> = i.attributes.keys().map(String::as_str).collect();
    assert_eq!(keys, ["vendor/sample_mdev_dev"]);
    assert_eq!(
        i.attributes["vendor/sample_mdev_dev"].as_deref(),
        Some(format!("This is MDEV {MTTY_UUID}").as_str())
    );
    assert_eq!(&instance(&root(&f), &mtty_uuid()).unwrap(), i);
}

#[test]
fn per_instance_top_level_attributes_are_read() {
    let f = Fixture::samples();
    f.write(&format!("{MTTY}/{MTTY_UUID}/frame_rate_limiter"), "1\n");
    let i = instance(&root(&f), &mtty_uuid()).unwrap();
    assert_eq!(i.attributes["frame_rate_limiter"].as_deref(), Some("1"));
}

#[test]
fn half_made_instance_has_parent_but_no_type() {
    let f = Fixture::samples();
    fs::remove_file(f.path(&format!("{MTTY}/{MTTY_UUID}/mdev_type"))).unwrap();
    let i = instance(&root(&f), &mtty_uuid()).unwrap();
    assert_eq!(i.parent, "mtty");
    assert_eq!(i.mdev_type, None);
}

#[test]
fn missing_instance_is_reported() {
    let f = Fixture::samples();
    let u = Uuid::new_v4();
    match instance(&root(&f), &u) {
        Err(SysfsError::NoSuchInstance { uuid, .. }) => assert_eq!(uuid, u),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        remove(&root(&f), &u),
        Err(SysfsError::NoSuchInstance { .. })
    ));
}

#[test]
fn empty_tree_has_nothing_and_says_why_on_create() {
    let dir = tempfile::tempdir().unwrap();
    let r = SysfsRoot::new(dir.path());
    assert!(list_types(&r).unwrap().is_empty());
    assert!(list_instances(&r).unwrap().is_empty());
    let e = create(&r, "mtty", "mtty-1", None).unwrap_err();
    assert!(matches!(e, SysfsError::UnknownParent { .. }));
    assert!(
        e.to_string().contains("no mdev parents are registered"),
        "{e}"
    );
}

#[test]
fn uuid_forms() {
    assert_eq!(parse_uuid(MTTY_UUID).unwrap(), mtty_uuid());
    assert_eq!(
        parse_uuid("11111111-2222-3333-4444-55555555555A").unwrap(),
        Uuid::parse_str("11111111-2222-3333-4444-55555555555a").unwrap()
    );
    for bad in [
        "",
        "not-a-uuid",
        "1111111122223333444455555555555555", // simple form: the kernel wants hyphens
        "11111111222233334444555555555555",
        "11111111-2222-3333-4444-55555555555g",
        "111111112-222-3333-4444-555555555555",
        "{11111111-2222-3333-4444-555555555555}",
        "11111111-2222-3333-4444-555555555555\n",
    ] {
        match parse_uuid(bad) {
            Err(SysfsError::InvalidUuid { input, .. }) => assert_eq!(input, bad),
            other => panic!("{bad:?}: {other:?}"),
        }
    }
}

#[test]
fn create_writes_exactly_the_uuid() {
    let f = Fixture::samples();
    let u = Uuid::parse_str("aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee").unwrap();
    let got = create(&root(&f), "mtty", "mtty-1", Some(u)).unwrap();
    assert_eq!(got, u);
    assert_eq!(
        f.read(&format!("{MTTY}/mdev_supported_types/mtty-1/create")),
        "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
    );
    // The other types were not touched.
    assert_eq!(
        f.read(&format!("{MTTY}/mdev_supported_types/mtty-2/create")),
        ""
    );
}

#[test]
fn create_without_uuid_generates_a_v4() {
    let f = Fixture::samples();
    let c = create_timed(&root(&f), "mdpy", "mdpy-vga", None).unwrap();
    assert_eq!(c.uuid.get_version_num(), 4);
    assert_eq!(c.type_before.available_instances, Some(4));
    let written = f.read("devices/virtual/mdpy/mdpy/mdev_supported_types/mdpy-vga/create");
    assert_eq!(parse_uuid(&written).unwrap(), c.uuid);
}

#[test]
fn unknown_type_lists_types_and_writes_nothing() {
    let f = Fixture::samples();
    let e = create(&root(&f), "mtty", "mtty-3", None).unwrap_err();
    match &e {
        SysfsError::UnknownType {
            parent,
            mdev_type,
            known,
        } => {
            assert_eq!(parent, "mtty");
            assert_eq!(mdev_type, "mtty-3");
            assert_eq!(known, &["mtty-1", "mtty-2"]);
        }
        other => panic!("{other:?}"),
    }
    assert!(e.to_string().contains("known types: mtty-1, mtty-2"), "{e}");
    assert_no_create_written(&f);
}

#[test]
fn unknown_parent_lists_parents_and_writes_nothing() {
    let f = Fixture::samples();
    for p in ["nvidia", "../..", "mtty/mdev_supported_types", ""] {
        match create(&root(&f), p, "mtty-1", None) {
            Err(SysfsError::UnknownParent { parent, known }) => {
                assert_eq!(parent, p);
                assert_eq!(known, ["0000:00:02.0", "mdpy", "mtty"]);
            }
            other => panic!("{p:?}: {other:?}"),
        }
    }
    // A type name cannot climb out of the parent either.
    assert!(matches!(
        create(&root(&f), "mtty", "../mdev_supported_types/mtty-1", None),
        Err(SysfsError::UnknownType { .. })
    ));
    assert_no_create_written(&f);
}

#[test]
fn duplicate_uuid_is_refused_before_writing() {
    let f = Fixture::samples();
    let e = create(&root(&f), "mtty", "mtty-1", Some(mtty_uuid())).unwrap_err();
    match &e {
        SysfsError::DuplicateUuid { uuid, existing } => {
            assert_eq!(uuid, &mtty_uuid());
            assert_eq!(existing.as_deref(), Some("mtty/mtty-2"));
        }
        other => panic!("{other:?}"),
    }
    assert!(e.to_string().starts_with("duplicate UUID"), "{e}");
    assert_no_create_written(&f);
}

#[test]
fn no_capacity_is_refused_before_writing() {
    let f = Fixture::samples();
    let e = create(&root(&f), "0000:00:02.0", "i915-GVTg_V5_8", None).unwrap_err();
    assert!(matches!(
        e,
        SysfsError::NoCapacity {
            available: Some(0),
            source: None,
            ..
        }
    ));
    assert_eq!(
        e.to_string(),
        "no capacity left on 0000:00:02.0/i915-GVTg_V5_8 (available_instances = 0)"
    );
    assert_no_create_written(&f);
}

#[test]
fn kernel_enospc_maps_to_no_capacity() {
    // /dev/full fails every write with ENOSPC, as a parent out of resources does.
    let f = Fixture::samples();
    let c = format!("{MTTY}/mdev_supported_types/mtty-1/create");
    fs::remove_file(f.path(&c)).unwrap();
    f.link(&c, "/dev/full");
    let e = create(&root(&f), "mtty", "mtty-1", None).unwrap_err();
    match &e {
        SysfsError::NoCapacity {
            parent,
            mdev_type,
            available,
            source: Some(s),
        } => {
            assert_eq!((parent.as_str(), mdev_type.as_str()), ("mtty", "mtty-1"));
            assert_eq!(*available, Some(24));
            assert_eq!(s.raw_os_error(), Some(libc::ENOSPC));
        }
        other => panic!("{other:?}"),
    }
    assert!(
        e.to_string().starts_with("no capacity left on mtty/mtty-1"),
        "{e}"
    );
    assert_eq!(e.errno(), Some(libc::ENOSPC));
}

#[test]
fn type_without_create_is_malformed() {
    let f = Fixture::samples();
    fs::remove_file(f.path(&format!("{MTTY}/mdev_supported_types/mtty-1/create"))).unwrap();
    assert!(matches!(
        create(&root(&f), "mtty", "mtty-1", None),
        Err(SysfsError::Malformed { .. })
    ));
    // And nothing was created in its place.
    assert!(!f
        .path(&format!("{MTTY}/mdev_supported_types/mtty-1/create"))
        .exists());
}

#[test]
fn remove_writes_one() {
    let f = Fixture::samples();
    remove(&root(&f), &mtty_uuid()).unwrap();
    assert_eq!(f.read(&format!("{MTTY}/{MTTY_UUID}/remove")), "1");
}

#[test]
fn errnos_become_words() {
    let p = Path::new("/sys/x");
    let busy = SysfsError::from_io("remove u", p, io::Error::from_raw_os_error(libc::EBUSY));
    assert!(matches!(busy, SysfsError::Busy { .. }));
    assert!(busy.to_string().contains("busy (in use or open)"), "{busy}");
    let perm = SysfsError::from_io("create u", p, io::Error::from_raw_os_error(libc::EACCES));
    assert!(matches!(perm, SysfsError::Permission { .. }));
    assert!(perm.to_string().contains("permission denied"), "{perm}");
    assert!(perm.to_string().contains("run as root"), "{perm}");
    let other = SysfsError::from_io("create u", p, io::Error::from_raw_os_error(libc::ENODEV));
    assert!(
        other.to_string().contains("hint: the parent driver"),
        "{other}"
    );
    assert_eq!(other.errno(), Some(libc::ENODEV));
}

#[test]
fn json_shape() {
    let f = Fixture::samples();
    let t = find_type(&root(&f), "mtty", "mtty-2").unwrap();
    let v = serde_json::to_value(&t).unwrap();
    assert_eq!(v["parent"], "mtty");
    assert_eq!(v["type"], "mtty-2");
    assert_eq!(v["available_instances"], 12);
    assert_eq!(v["description"], serde_json::Value::Null);
    assert_eq!(v["devices"], serde_json::json!([MTTY_UUID]));
    let i = instance(&root(&f), &mtty_uuid()).unwrap();
    let v = serde_json::to_value(&i).unwrap();
    assert_eq!(v["uuid"], MTTY_UUID);
    assert_eq!(v["type"], "mtty-2");
    assert_eq!(v["iommu_group"], 3);
}
