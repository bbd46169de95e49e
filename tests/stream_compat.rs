//! Streams saved by an earlier build still restore: the stream format is a contract with
//! files already on disk. The fixtures in `tests/fixtures/streams/` were written by the
//! build of commit 5cfaf4e (before the architecture rework) with
//! `vfio-harness save "sim:state=64K,seed=5" -o sim-v2-64k-seed5.vfhs` and
//! `vfio-harness save "sim:state=40K,seed=6,protocol=v1" -o sim-v1-40k-seed6.vfhs`.

use std::path::Path;

use vfio_harness::device::MigState;
use vfio_harness::migration::{driver_for, engine, MigrationDriver};

fn fixture(name: &str) -> Vec<u8> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/streams")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

fn driver(spec: &str) -> Box<dyn MigrationDriver> {
    let dev = vfio_harness::open(&spec.parse().expect("spec"), &Default::default()).expect("open");
    driver_for(dev).expect("driver")
}

/// The old file restores into a device that checks it received that seed's state, and a
/// device expecting another seed refuses it: the bytes were really read and checked.
fn restores(file: &str, good: &str, wrong: &str) {
    let bytes = fixture(file);
    let opts = engine::Options::default();
    let mut dst = driver(good);
    let report = engine::restore(dst.as_mut(), &bytes[..], &opts).expect("old stream restores");
    assert!(report.bytes > 0);
    assert_eq!(dst.state().expect("state"), MigState::Running);
    let mut other = driver(wrong);
    assert!(engine::restore(other.as_mut(), &bytes[..], &opts).is_err());
    assert_eq!(other.state().expect("state"), MigState::Running);
}

#[test]
fn a_v2_stream_saved_before_the_rework_restores() {
    restores(
        "sim-v2-64k-seed5.vfhs",
        "sim:state=64K,verify-seed=5",
        "sim:state=64K,verify-seed=4",
    );
}

#[test]
fn a_v1_stream_saved_before_the_rework_restores() {
    restores(
        "sim-v1-40k-seed6.vfhs",
        "sim:state=40K,verify-seed=6,protocol=v1",
        "sim:state=40K,verify-seed=7,protocol=v1",
    );
}

/// Saving the same simulated state today frames it exactly as the old build did: the same
/// metadata (but for when and on which kernel the file was written), the same chunks, payload
/// bytes, chunk checksums and totals. (The trailer's stream checksum covers the header, so
/// it differs with the creation time and is left out.)
#[test]
fn todays_save_is_byte_identical_to_the_old_build_but_for_provenance() {
    let old = fixture("sim-v2-64k-seed5.vfhs");
    let mut src = driver("sim:state=64K,seed=5");
    let (new, _) = engine::save(
        src.as_mut(),
        Vec::new(),
        "memory",
        &engine::Options::default(),
    )
    .expect("save");
    let split = |b: &[u8]| {
        let l = u32::from_le_bytes(b[12..16].try_into().expect("4 bytes")) as usize;
        let mut meta: serde_json::Value =
            serde_json::from_slice(&b[16..16 + l]).expect("metadata is JSON");
        let m = meta.as_object_mut().expect("an object");
        assert!(m.remove("kernel_release").is_some() && m.remove("created_unix").is_some());
        (b[..12].to_vec(), meta, b[16 + l + 8..b.len() - 8].to_vec())
    };
    let (old_head, old_meta, old_body) = split(&old);
    let (new_head, new_meta, new_body) = split(&new);
    assert_eq!(old_head, new_head, "magic or version changed");
    assert_eq!(old_meta, new_meta, "metadata changed");
    assert!(old_body == new_body, "framing or payload changed");
}
