//! Tests of `sysfs::attrs` on fixture trees.

use super::*;

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};

use crate::sysfs::fixture::{Fixture, MTTY_UUID};

const MTTY: &str = "devices/virtual/mtty/mtty";

fn uuid() -> Uuid {
    Uuid::parse_str(MTTY_UUID).unwrap()
}

/// The samples, with vGPU-like knobs on the mtty instance: `vendor/aggregate` (1),
/// `vendor/priority` (0), a top-level `frame_rate_limiter` (1), and the sample's
/// `vendor/sample_mdev_dev` read-only as in the kernel.
fn fixture() -> Fixture {
    let f = Fixture::samples();
    let d = format!("{MTTY}/{MTTY_UUID}");
    f.write(&format!("{d}/vendor/aggregate"), "1\n");
    f.write(&format!("{d}/vendor/priority"), "0\n");
    f.write(&format!("{d}/frame_rate_limiter"), "1\n");
    let ro = f.path(&format!("{d}/vendor/sample_mdev_dev"));
    fs::set_permissions(&ro, fs::Permissions::from_mode(0o444)).unwrap();
    f
}

fn root(f: &Fixture) -> SysfsRoot {
    SysfsRoot::new(f.root())
}

fn a(s: &str) -> Assignment {
    s.parse().unwrap()
}

#[test]
fn assignments_parse() {
    assert_eq!(a("aggregate=2"), Assignment::new("aggregate", "2"));
    assert_eq!(a("vendor/x=a=b"), Assignment::new("vendor/x", "a=b"));
    assert_eq!(a(" priority =3"), Assignment::new("priority", "3"));
    assert_eq!(a("label="), Assignment::new("label", ""));
    for bad in ["", "=3", "aggregate", "  =x"] {
        match bad.parse::<Assignment>() {
            Err(AttrError::Syntax { input }) => assert_eq!(input, bad),
            other => panic!("{bad:?}: {other:?}"),
        }
    }
    assert_eq!(a("aggregate=2").to_string(), "aggregate=2");
}

#[test]
fn writable_attributes_by_mode() {
    let f = fixture();
    let inst = mdev::instance(&root(&f), &uuid()).unwrap();
    assert_eq!(
        writable(&inst),
        ["frame_rate_limiter", "vendor/aggregate", "vendor/priority"]
    );
}

#[test]
fn names_resolve_exactly_or_by_last_component() {
    let f = fixture();
    let inst = mdev::instance(&root(&f), &uuid()).unwrap();
    assert_eq!(
        resolve(&inst, "vendor/aggregate").unwrap(),
        "vendor/aggregate"
    );
    assert_eq!(resolve(&inst, "aggregate").unwrap(), "vendor/aggregate");
    assert_eq!(
        resolve(&inst, "frame_rate_limiter").unwrap(),
        "frame_rate_limiter"
    );
    // Standard files and escapes are not attributes.
    for n in [
        "remove",
        "uevent",
        "../mtty-1/create",
        "vendor/../remove",
        "power/control",
    ] {
        match resolve(&inst, n) {
            Err(AttrError::Unknown { name, writable, .. }) => {
                assert_eq!(name, n);
                assert_eq!(writable.len(), 3);
            }
            other => panic!("{n}: {other:?}"),
        }
    }
    // The same bare name in two groups must be qualified.
    f.write(&format!("{MTTY}/{MTTY_UUID}/other/priority"), "1\n");
    let inst = mdev::instance(&root(&f), &uuid()).unwrap();
    let e = resolve(&inst, "priority").unwrap_err();
    assert!(matches!(e, AttrError::Ambiguous { .. }), "{e:?}");
    assert!(
        e.to_string().contains("other/priority, vendor/priority"),
        "{e}"
    );
}

#[test]
fn set_writes_in_order_and_reads_back() {
    let f = fixture();
    let w = set(
        &root(&f),
        &uuid(),
        &[
            a("aggregate=4"),
            a("frame_rate_limiter=0"),
            a("vendor/priority=7"),
        ],
    )
    .unwrap();
    let got: Vec<(&str, &str, Option<&str>)> = w
        .iter()
        .map(|w| {
            (
                w.attribute.as_str(),
                w.value.as_str(),
                w.readback.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("vendor/aggregate", "4", Some("4")),
            ("frame_rate_limiter", "0", Some("0")),
            ("vendor/priority", "7", Some("7"))
        ]
    );
    // write(2) at offset 0 without truncating, as sysfs stores want: "4" over "1\n".
    assert_eq!(
        f.read(&format!("{MTTY}/{MTTY_UUID}/vendor/aggregate")),
        "4\n"
    );
}

#[test]
fn unknown_or_read_only_names_write_nothing() {
    let f = fixture();
    let agg = format!("{MTTY}/{MTTY_UUID}/vendor/aggregate");
    let e = set(&root(&f), &uuid(), &[a("aggregate=2"), a("nonesuch=1")]).unwrap_err();
    assert!(matches!(e, AttrError::Unknown { .. }), "{e:?}");
    assert!(
        e.to_string().contains("has no attribute \"nonesuch\"; writable attributes: frame_rate_limiter, vendor/aggregate, vendor/priority"),
        "{e}"
    );
    let e = set(
        &root(&f),
        &uuid(),
        &[a("aggregate=2"), a("sample_mdev_dev=x")],
    )
    .unwrap_err();
    assert!(matches!(e, AttrError::ReadOnly { .. }), "{e:?}");
    assert_eq!(e.attribute(), Some("vendor/sample_mdev_dev"));
    assert_eq!(f.read(&agg), "1\n", "nothing written before the check");
}

#[test]
fn a_kernel_refusal_names_attribute_value_and_errno() {
    // /dev/full fails every write with ENOSPC, as a parent out of VRAM does.
    let f = fixture();
    let inst = mdev::instance(&root(&f), &uuid()).unwrap();
    let p = f.path(&format!("{MTTY}/{MTTY_UUID}/vendor/aggregate"));
    fs::remove_file(&p).unwrap();
    symlink("/dev/full", &p).unwrap();
    let e = set_on(&inst, &[a("priority=3"), a("aggregate=8")]).unwrap_err();
    match &e {
        AttrError::Refused {
            attribute,
            value,
            written,
            ..
        } => {
            assert_eq!(attribute, "vendor/aggregate");
            assert_eq!(value, "8");
            assert_eq!(written, &["vendor/priority=3"]);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(e.errno(), Some(libc::ENOSPC));
    let msg = e.to_string();
    assert!(
        msg.starts_with(&format!(
            "the kernel refused vendor/aggregate=\"8\" on {MTTY_UUID}: No space left on device (os error 28) [ENOSPC]"
        )),
        "{msg}"
    );
    assert!(msg.contains("lacks the resources"), "{msg}");
    assert!(
        msg.contains("written before it: vendor/priority=3"),
        "{msg}"
    );
}

#[test]
fn errno_names() {
    assert_eq!(errno_name(libc::EBUSY), Some("EBUSY"));
    assert_eq!(errno_name(libc::ENOSPC), Some("ENOSPC"));
    assert_eq!(errno_name(524), Some("ENOTSUPP"));
    assert_eq!(errno_name(9999), None);
}

#[test]
fn abort_removes_the_instance_and_says_so() {
    let f = fixture();
    let cause = AttrError::Syntax { input: "x".into() };
    // The fixture keeps the node after `remove` is written: reported, not hidden.
    let e = abort(&root(&f), uuid(), cause);
    assert_eq!(f.read(&format!("{MTTY}/{MTTY_UUID}/remove")), "1");
    match &e {
        AttrError::CreateAborted {
            removal_error: Some(r),
            ..
        } => assert!(
            matches!(r, SysfsError::Malformed { reason, .. } if reason.contains("still there")),
            "{r:?}"
        ),
        other => panic!("{other:?}"),
    }
    assert!(e.to_string().contains("remove it by hand"), "{e}");
    // A node that never appeared: nothing to remove, nothing left behind.
    let u = Uuid::new_v4();
    let e = abort(&root(&f), u, AttrError::Syntax { input: "x".into() });
    assert!(
        e.to_string().ends_with(&format!(
            "removed the half-made instance {u}; nothing is left behind"
        )),
        "{e}"
    );
}

#[test]
fn create_configured_without_attrs_is_a_plain_create() {
    let f = fixture();
    let u = Uuid::parse_str("aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee").unwrap();
    let c = create_configured(&root(&f), "mtty", "mtty-1", Some(u), &[]).unwrap();
    assert_eq!(c.created.uuid, u);
    assert!(c.attributes.is_empty());
    assert_eq!(
        f.read(&format!("{MTTY}/mdev_supported_types/mtty-1/create")),
        u.hyphenated().to_string()
    );
}

#[test]
fn create_configured_aborts_when_attributes_cannot_be_written() {
    // The fixture's `create` makes no node: the attribute step fails and the abort finds
    // nothing to remove.
    let f = fixture();
    let e = create_configured(&root(&f), "mtty", "mtty-1", None, &[a("aggregate=2")]).unwrap_err();
    match &e {
        AttrError::CreateAborted {
            cause,
            removal_error: None,
            ..
        } => assert!(
            matches!(**cause, AttrError::Sysfs(SysfsError::NoSuchInstance { .. })),
            "{cause:?}"
        ),
        other => panic!("{other:?}"),
    }
    // A refused create writes no attribute and needs no abort.
    let e = create_configured(&root(&f), "mtty", "mtty-9", None, &[a("aggregate=2")]).unwrap_err();
    assert!(
        matches!(e, AttrError::Sysfs(SysfsError::UnknownType { .. })),
        "{e:?}"
    );
}
