//! Tests of `migration::attrs` on fixture trees: two instances of a type listing
//! `dynamic_resources`.

use super::*;

use std::fs;

use crate::sysfs::fixture::{self, Fixture};

const GPU: &str = "devices/pci0000:00/0000:00:02.0";
const SRC: &str = "aaaaaaaa-0000-0000-0000-00000000000a";
const DST: &str = "aaaaaaaa-0000-0000-0000-00000000000b";

/// The samples plus two `i915-GVTg_V5_4` instances (the type lists `dynamic_resources` =
/// `aggregator`) with `vendor/aggregator` = `src_agg` / `dst_agg`.
fn pair(src_agg: &str, dst_agg: Option<&str>) -> Fixture {
    let f = Fixture::samples();
    for (u, g) in [(SRC, 7), (DST, 8)] {
        f.add_instance(GPU, "i915-GVTg_V5_4", u, g, "i915");
    }
    f.write(
        &format!("{GPU}/{SRC}/vendor/aggregator"),
        &format!("{src_agg}\n"),
    );
    if let Some(d) = dst_agg {
        f.write(&format!("{GPU}/{DST}/vendor/aggregator"), &format!("{d}\n"));
    }
    f
}

fn u(s: &str) -> Uuid {
    Uuid::parse_str(s).unwrap()
}

fn root(f: &Fixture) -> SysfsRoot {
    SysfsRoot::new(f.root())
}

#[test]
fn resources_keep_their_order() {
    assert_eq!(
        parse_resources("priority,aggregate"),
        ["priority", "aggregate"]
    );
    assert_eq!(parse_resources(" b a\nb,,c "), ["b", "a", "c"]);
    assert!(parse_resources("").is_empty());
}

#[test]
fn a_differing_resource_is_copied_and_read_back() {
    let f = pair("4", Some("1"));
    let p = plan(&root(&f), &u(SRC), &u(DST)).unwrap();
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].resource, "aggregator");
    assert_eq!(p[0].attribute.as_deref(), Some("vendor/aggregator"));
    assert_eq!(p[0].action, Action::Differs);
    let done = apply(&root(&f), &u(DST), p, Policy::Copy).unwrap();
    assert_eq!(done[0].action, Action::Copied);
    assert_eq!(done[0].source.as_deref(), Some("4"));
    assert_eq!(done[0].destination_before.as_deref(), Some("1"));
    assert_eq!(done[0].destination_after.as_deref(), Some("4"));
    assert_eq!(f.read(&format!("{GPU}/{DST}/vendor/aggregator")), "4\n");
    // The JSON the migrate report carries.
    let v = serde_json::to_value(&done[0]).unwrap();
    assert_eq!(v["action"], "copied");
    assert!(v.get("note").is_none());
}

#[test]
fn refusing_names_the_attribute_and_writes_nothing() {
    let f = pair("4", Some("1"));
    let p = plan(&root(&f), &u(SRC), &u(DST)).unwrap();
    let e = apply(&root(&f), &u(DST), p.clone(), Policy::Refuse).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("dynamic resource aggregator differs: source \"4\", destination {DST} has \"1\" (vendor/aggregator); copy it before migrating")
    );
    assert_eq!(f.read(&format!("{GPU}/{DST}/vendor/aggregator")), "1\n");
    // Ignoring leaves it for the device to judge.
    let left = apply(&root(&f), &u(DST), p, Policy::Ignore).unwrap();
    assert_eq!(left[0].action, Action::Differs);
    assert_eq!(f.read(&format!("{GPU}/{DST}/vendor/aggregator")), "1\n");
}

#[test]
fn equal_and_unknown_resources_are_not_written() {
    let f = pair("2", Some("2"));
    let p = plan(&root(&f), &u(SRC), &u(DST)).unwrap();
    assert_eq!(p[0].action, Action::Equal);
    let done = apply(&root(&f), &u(DST), p, Policy::Refuse).unwrap();
    assert_eq!(done[0].action, Action::Equal);

    let f = pair("2", None);
    let p = plan(&root(&f), &u(SRC), &u(DST)).unwrap();
    assert_eq!(p[0].action, Action::Unknown);
    assert_eq!(
        p[0].note.as_deref(),
        Some("the destination has no such attribute")
    );
    let done = apply(&root(&f), &u(DST), p, Policy::Copy).unwrap();
    assert_eq!(done[0].action, Action::Unknown);
    assert!(!f.path(&format!("{GPU}/{DST}/vendor/aggregator")).exists());
}

#[test]
fn a_refused_copy_names_the_resource() {
    let f = pair("4", Some("1"));
    let p = plan(&root(&f), &u(SRC), &u(DST)).unwrap();
    // The attribute vanished between plan and copy (as when the destination is re-created).
    fs::remove_file(f.path(&format!("{GPU}/{DST}/vendor/aggregator"))).unwrap();
    let e = apply(&root(&f), &u(DST), p, Policy::Copy).unwrap_err();
    match &e {
        CopyError::Refused {
            resource, copied, ..
        } => {
            assert_eq!(resource, "aggregator");
            assert!(copied.is_empty());
        }
        other => panic!("{other:?}"),
    }
    assert!(
        e.to_string()
            .starts_with(&format!("copying dynamic resource aggregator to {DST} failed: mediated device {DST} has no attribute")),
        "{e}"
    );
}

/// A copy refused part-way leaves the destination as it was found: the resources copied
/// before the refusal are written back. [`revert`] does the same after a migration that
/// failed once every copy was made.
#[test]
fn a_copy_refused_part_way_and_a_revert_leave_the_destination_as_found() {
    let f = pair("4", Some("1"));
    f.write(
        &format!("{GPU}/mdev_supported_types/i915-GVTg_V5_4/dynamic_resources"),
        "aggregator,priority\n",
    );
    f.write(&format!("{GPU}/{SRC}/vendor/priority"), "9\n");
    f.write(&format!("{GPU}/{DST}/vendor/priority"), "3\n");
    let agg = f.path(&format!("{GPU}/{DST}/vendor/aggregator"));
    let p = plan(&root(&f), &u(SRC), &u(DST)).unwrap();
    assert_eq!(p.len(), 2);
    assert!(p.iter().all(|r| r.action == Action::Differs));
    // The second attribute vanishes between plan and copy: the first was copied by then.
    fs::remove_file(f.path(&format!("{GPU}/{DST}/vendor/priority"))).unwrap();
    match apply(&root(&f), &u(DST), p.clone(), Policy::Copy).unwrap_err() {
        CopyError::Refused {
            resource,
            copied,
            not_restored,
            ..
        } => {
            assert_eq!(resource, "priority");
            assert_eq!(copied, ["vendor/aggregator=4"]);
            assert!(not_restored.is_empty(), "{not_restored:?}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(fs::read_to_string(&agg).unwrap(), "1\n");

    f.write(&format!("{GPU}/{DST}/vendor/priority"), "3\n");
    let done = apply(&root(&f), &u(DST), p, Policy::Copy).unwrap();
    assert_eq!(fs::read_to_string(&agg).unwrap(), "4\n");
    revert(&root(&f), &DeviceSpec::Mdev(u(DST)), &done).unwrap();
    assert_eq!(fs::read_to_string(&agg).unwrap(), "1\n");
    assert_eq!(f.read(&format!("{GPU}/{DST}/vendor/priority")), "3\n");
}

#[test]
fn types_without_dynamic_resources_and_non_mdev_pairs_plan_nothing() {
    let f = Fixture::samples();
    let m = u(fixture::MTTY_UUID);
    assert!(plan(&root(&f), &m, &m).unwrap().is_empty());
    let sim = DeviceSpec::Sim(String::new());
    assert!(
        prepare(&root(&f), &sim, &DeviceSpec::Mdev(m), Policy::Refuse)
            .unwrap()
            .is_empty()
    );
    assert_eq!(mdev_uuid(&DeviceSpec::Mdev(m)), Some(m));
    assert_eq!(
        mdev_uuid(&DeviceSpec::Sysfs(
            format!("/sys/bus/mdev/devices/{}", fixture::MTTY_UUID).into()
        )),
        Some(m)
    );
    assert_eq!(mdev_uuid(&DeviceSpec::Pci("0000:00:03.0".into())), None);
    // A missing instance is an error, not an empty plan.
    assert!(matches!(
        plan(&root(&f), &m, &Uuid::new_v4()),
        Err(CopyError::Sysfs(SysfsError::NoSuchInstance { .. }))
    ));
}

#[test]
fn prepare_copies_between_mdev_specs() {
    let f = pair("8", Some("1"));
    let done = prepare(
        &root(&f),
        &DeviceSpec::Mdev(u(SRC)),
        &DeviceSpec::Mdev(u(DST)),
        Policy::Copy,
    )
    .unwrap();
    assert_eq!(done[0].action, Action::Copied);
    assert_eq!(f.read(&format!("{GPU}/{DST}/vendor/aggregator")), "8\n");
}

/// A peer's HELLO names the resources: one the destination's type does not list in its
/// `dynamic_resources` is planned as unknown and never written, though the attribute exists
/// and differs.
#[test]
fn a_peer_cannot_name_an_attribute_the_destination_type_does_not_list() {
    let f = pair("4", Some("1"));
    f.write(&format!("{GPU}/{DST}/vendor/secret"), "1\n");
    let values = [
        ResourceValue {
            resource: "aggregator".into(),
            value: Some("4".into()),
        },
        ResourceValue {
            resource: "secret".into(),
            value: Some("9".into()),
        },
    ];
    let p = plan_from(&root(&f), &values, &u(DST)).unwrap();
    assert_eq!(
        p.iter().map(|r| r.action).collect::<Vec<_>>(),
        [Action::Differs, Action::Unknown]
    );
    assert_eq!(p[1].attribute, None);
    assert_eq!(
        p[1].note.as_deref(),
        Some("not in the destination type's dynamic_resources: not written")
    );
    let done = apply(&root(&f), &u(DST), p, Policy::Copy).unwrap();
    assert_eq!(done[0].action, Action::Copied);
    assert_eq!(done[1].action, Action::Unknown);
    assert_eq!(f.read(&format!("{GPU}/{DST}/vendor/aggregator")), "4\n");
    assert_eq!(f.read(&format!("{GPU}/{DST}/vendor/secret")), "1\n");
}
