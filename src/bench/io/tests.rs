//! The sinks and sources of every path.

use super::*;

/// `a` then `b` through `write_vectored`, the rest by `write_all` when it was partial.
pub(crate) fn write_all_v(w: &mut dyn Write, a: &[u8], b: &[u8]) {
    let n = w
        .write_vectored(&[IoSlice::new(a), IoSlice::new(b)])
        .unwrap();
    if n < a.len() {
        w.write_all(&a[n..]).unwrap();
        w.write_all(b).unwrap();
    } else {
        w.write_all(&b[n - a.len()..]).unwrap();
    }
}

/// A kernel without networking (socket(2) is ENOSYS) or without IPv4: the tcp path is
/// left out with a note, the others stay; another failure is not taken for absence.
#[test]
fn files_in_dev_shm_are_in_memory_and_in_the_crate_dir_not_here() {
    // /dev/shm is tmpfs on every Linux with glibc's shm_open; the source tree is on a
    // disk in every build this runs in (CI and the machines of hw-notes/bench.md).
    assert!(in_memory(Path::new("/dev/shm")));
    assert!(!in_memory(Path::new(env!("CARGO_MANIFEST_DIR"))));
    assert!(!in_memory(Path::new("/no/such/dir")));
}

#[test]
fn an_unavailable_path_is_skipped_with_a_note() {
    for errno in [libc::ENOSYS, libc::EAFNOSUPPORT] {
        let mut notes = Vec::new();
        let probe = |p: DataPath| match p {
            DataPath::Tcp => Err(io::Error::from_raw_os_error(errno)),
            _ => Ok(()),
        };
        let got = available_paths(&DataPath::ALL, probe, &mut notes);
        assert_eq!(got.len(), DataPath::ALL.len() - 1);
        assert!(!got.contains(&DataPath::Tcp));
        assert_eq!(notes.len(), 1);
        assert!(
            notes[0].starts_with("tcp: skipped, not available"),
            "{}",
            notes[0]
        );
    }
    let mut notes = Vec::new();
    let emfile = |_| Err(io::Error::from_raw_os_error(libc::EMFILE));
    assert_eq!(
        available_paths(&[DataPath::Tcp], emfile, &mut notes),
        [DataPath::Tcp]
    );
    assert!(notes.is_empty());
    // This machine's own probe: the loopback is there or is reported as absent.
    match probe(DataPath::Tcp) {
        Ok(()) => {}
        Err(e) => assert!(is_unavailable(&e), "{e}"),
    }
}

/// The page-cache file keeps its pages between transfers: opening it does not truncate
/// it, finishing cuts it at what the transfer wrote; the prefill is its alone.
#[test]
fn the_page_cache_file_is_overwritten_in_place_and_cut_at_what_was_written() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let t = SinkTarget::new(DataPath::File, dir.path(), 64 << 10).unwrap();
    let f = t.file().unwrap().to_path_buf();
    let len = || std::fs::metadata(&f).unwrap().len();
    t.prefill(3 << 20).unwrap();
    assert_eq!(len(), 3 << 20);
    let ino = std::fs::metadata(&f).unwrap().ino();
    for n in [1000, 2 << 20] {
        let Sink { mut writer, end } = t.open().unwrap();
        assert!(len() >= 1000, "opening truncated the file");
        writer.write_all(&vec![9u8; n]).unwrap();
        end.finish(writer).unwrap();
        let back = std::fs::read(&f).unwrap();
        assert_eq!(back.len(), n, "not cut at what was written");
        assert!(back.iter().all(|&b| b == 9));
    }
    assert_eq!(std::fs::metadata(&f).unwrap().ino(), ino);
    let other = SinkTarget::new(DataPath::FileFsync, dir.path(), 64 << 10).unwrap();
    other.prefill(1 << 20).unwrap();
    assert_eq!(std::fs::metadata(other.file().unwrap()).unwrap().len(), 0);
}

#[test]
fn every_sink_takes_bytes_and_finishes() {
    let dir = tempfile::tempdir().unwrap();
    let data = vec![7u8; 200_000];
    for path in DataPath::ALL {
        let t = match SinkTarget::new(path, dir.path(), 64 << 10) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::Unsupported => continue,
            Err(e) => panic!("{path:?}: {e}"),
        };
        assert!(!t.describe().is_empty());
        for _ in 0..2 {
            let Sink { mut writer, end } = t.open().unwrap();
            writer.write_all(&data[..1000]).unwrap();
            write_all_v(&mut writer, &data[..24], &data);
            end.finish(writer).unwrap();
            if let Some(f) = t.file() {
                assert_eq!(std::fs::metadata(f).unwrap().len(), 201_024, "{path:?}");
            }
        }
        // Sources read the file back whole.
        if let Some(f) = t.file() {
            for sp in [
                DataPath::File,
                DataPath::FileDirect,
                DataPath::Pipe,
                DataPath::Tcp,
            ] {
                let s = Source::open(sp, f, 201_024);
                let s = match s {
                    Ok(s) => s,
                    Err(e) if e.raw_os_error() == Some(libc::EINVAL) => continue,
                    Err(e) => panic!("{sp:?}: {e}"),
                };
                let (mut r, feed) = s.into_parts();
                let mut got = Vec::new();
                r.read_to_end(&mut got).unwrap();
                Source::finish(feed).unwrap();
                assert_eq!(got.len(), 201_024, "{sp:?}");
                assert!(!describe_source(sp, f).is_empty());
            }
        }
    }
    // A paced sink discards.
    let Sink { mut writer, end } = paced(1 << 30);
    writer.write_all(&data).unwrap();
    end.finish(writer).unwrap();
}

#[test]
fn write_repeated_writes_the_buffer_over_and_over_and_cuts_the_last_time() {
    let mut out = Vec::new();
    write_repeated(&mut out, b"abc", 8).unwrap();
    assert_eq!(out, b"abcabcab");
    let mut none = Vec::new();
    write_repeated(&mut none, b"abc", 0).unwrap();
    assert!(none.is_empty());
    let e = write_repeated(&mut Vec::new(), b"", 1).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
}
