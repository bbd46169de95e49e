//! What the benchmark ran on: CPU, cores, memory, kernel, which CPU features the hash and
//! the copies of the data path use, and what takes memory back from the process's data while
//! it runs.

use serde::{Deserialize, Serialize};
use std::path::Path;

/// The machine.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Machine {
    /// CPU model name (`/proc/cpuinfo`), or `unknown`.
    pub cpu_model: String,
    /// CPUs this process may run on.
    pub cores: usize,
    /// Total memory in bytes (`/proc/meminfo` `MemTotal`), when known.
    pub memory_bytes: Option<u64>,
    /// Host name.
    pub hostname: String,
    /// CPU features that decide how fast the data path copies and hashes (of `sse2`,
    /// `avx2`, `avx512f`, `avx512bw`, `erms`, `fsrm` on x86_64; `neon` on aarch64), as
    /// detected at run time.
    #[serde(default)]
    pub cpu_features: Vec<String>,
    /// The checksum of the stream and how it runs here (`XXH3-64 (twox-hash): AVX2`).
    #[serde(default)]
    pub hash: String,
    /// How the copies run here: the C library's `memcpy` (which picks its own variant from
    /// the CPU features) and the features it can use.
    #[serde(default)]
    pub copies: String,
    /// What on this machine takes memory back while the benchmark runs (read from sysfs):
    /// `virtio-balloon free page reporting` (memory the guest frees goes back to its host,
    /// and using it again faults fresh host memory in) and `DAMON pageout (kdamond N)` (page
    /// cache not accessed for a while is reclaimed). Either makes the rows that allocate
    /// fresh memory (the page cache of the file sinks, the whole-state buffers) or read a
    /// file vary more between runs (hw-notes/bench.md, sessions 9 and 10). Empty when none
    /// was found.
    #[serde(default)]
    pub memory_reclaim: Vec<String>,
}

/// Bit of `VIRTIO_BALLOON_F_REPORTING` in a virtio device's `features` (`include/uapi/linux/
/// virtio_balloon.h`).
const BALLOON_F_REPORTING: usize = 5;
/// Device id of a virtio balloon (`VIRTIO_ID_BALLOON`).
const VIRTIO_ID_BALLOON: &str = "0x0005";

/// What takes memory back on the machine whose sysfs is mounted at `sys`
/// ([`Machine::memory_reclaim`]): a virtio balloon bound to its driver with free page
/// reporting negotiated, and every running kdamond with a `pageout` scheme. Unreadable
/// entries count as absent.
pub fn memory_reclaim_in(sys: &Path) -> Vec<String> {
    let read = |p: &Path| {
        std::fs::read_to_string(p)
            .map(|s| s.trim().to_string())
            .ok()
    };
    let dirs = |p: &Path| -> Vec<std::path::PathBuf> {
        let mut v: Vec<_> = std::fs::read_dir(p)
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        v.sort();
        v
    };
    let mut found = Vec::new();
    let reporting = dirs(&sys.join("bus/virtio/devices")).iter().any(|d| {
        read(&d.join("device")).is_some_and(|id| id == VIRTIO_ID_BALLOON)
            && d.join("driver").exists()
            && read(&d.join("features"))
                .is_some_and(|f| f.as_bytes().get(BALLOON_F_REPORTING) == Some(&b'1'))
    });
    if reporting {
        found.push("virtio-balloon free page reporting".to_string());
    }
    for k in dirs(&sys.join("kernel/mm/damon/admin/kdamonds")) {
        let Some(n) = k.file_name().and_then(|n| n.to_str()).map(str::to_string) else {
            continue;
        };
        if !n.bytes().all(|b| b.is_ascii_digit()) || read(&k.join("state")).as_deref() != Some("on")
        {
            continue;
        }
        let pageout = dirs(&k.join("contexts")).iter().any(|c| {
            dirs(&c.join("schemes"))
                .iter()
                .any(|s| read(&s.join("action")).as_deref() == Some("pageout"))
        });
        if pageout {
            found.push(format!("DAMON pageout (kdamond {n})"));
        }
    }
    found
}

/// Whether the CPU has `feature` (run-time detection; false on other architectures).
fn has(feature: &str) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        match feature {
            "sse2" => return std::is_x86_feature_detected!("sse2"),
            "avx2" => return std::is_x86_feature_detected!("avx2"),
            "avx512f" => return std::is_x86_feature_detected!("avx512f"),
            "avx512bw" => return std::is_x86_feature_detected!("avx512bw"),
            _ => {}
        }
    }
    #[cfg(target_arch = "aarch64")]
    if feature == "neon" {
        return std::arch::is_aarch64_feature_detected!("neon");
    }
    let _ = feature;
    false
}

/// Flags of the first CPU in cpuinfo text (`flags` on x86, `Features` on arm64).
pub fn parse_cpu_flags(cpuinfo: &str) -> Vec<String> {
    cpuinfo
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            matches!(k.trim(), "flags" | "Features")
                .then(|| v.split_whitespace().map(str::to_string).collect())
        })
        .unwrap_or_default()
}

/// The features of [`Machine::cpu_features`] this CPU has: detected by the compiler's run-time
/// checks, plus `erms` / `fsrm` (fast `rep movsb`, what large `memcpy`s use) from `flags`.
pub fn copy_hash_features(cpu_flags: &[String]) -> Vec<String> {
    let mut f: Vec<String> = ["sse2", "avx2", "avx512f", "avx512bw", "neon"]
        .into_iter()
        .filter(|x| has(x))
        .map(str::to_string)
        .collect();
    for x in ["erms", "fsrm"] {
        if cpu_flags.iter().any(|c| c == x) {
            f.push(x.to_string());
        }
    }
    f
}

/// How the stream checksum runs on this CPU: XXH3-64 from `twox-hash`, which picks AVX2, then
/// SSE2 on x86_64 (it has no AVX-512 path), NEON on aarch64, else portable code.
pub fn hash_impl() -> String {
    let simd = if has("avx2") {
        "AVX2"
    } else if has("sse2") {
        "SSE2"
    } else if has("neon") {
        "NEON"
    } else {
        "scalar"
    };
    format!("XXH3-64 (twox-hash, picked at run time): {simd}")
}

/// How the copies run: the C library's `memcpy` (its version when it is glibc) and the
/// features its variants select on.
pub fn copy_impl(features: &[String]) -> String {
    let libc = glibc_version()
        .map(|v| format!("glibc {v} memcpy"))
        .unwrap_or_else(|| "the C library's memcpy".into());
    let relevant: Vec<&str> = features
        .iter()
        .map(String::as_str)
        .filter(|f| *f != "sse2")
        .collect();
    if relevant.is_empty() {
        format!("{libc} (baseline variant)")
    } else {
        format!(
            "{libc}, picked at run time; the CPU offers {}",
            relevant.join(", ")
        )
    }
}

/// The glibc version, when the process runs on glibc.
fn glibc_version() -> Option<String> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: gnu_get_libc_version takes nothing and returns a static NUL-terminated
        // string owned by glibc.
        let p = unsafe { libc::gnu_get_libc_version() };
        if p.is_null() {
            return None;
        }
        // SAFETY: non-null, NUL-terminated and static (see above).
        let s = unsafe { std::ffi::CStr::from_ptr(p) };
        return Some(s.to_string_lossy().into_owned());
    }
    #[allow(unreachable_code)]
    None
}

/// `MemAvailable` of meminfo text, in bytes.
pub fn parse_mem_available(meminfo: &str) -> Option<u64> {
    meminfo.lines().find_map(|l| {
        let rest = l.strip_prefix("MemAvailable:")?;
        let kb: u64 = rest.split_whitespace().next()?.parse().ok()?;
        kb.checked_mul(1024)
    })
}

/// Memory the kernel could give this process now without swapping (`MemAvailable`).
pub fn mem_available() -> Option<u64> {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| parse_mem_available(&t))
}

/// The running kernel (`uname`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kernel {
    /// `uname -s`.
    pub sysname: String,
    /// `uname -r`.
    pub release: String,
    /// `uname -v`.
    pub version: String,
    /// `uname -m`.
    pub machine: String,
}

/// The first `model name` (x86) or `Model`/`cpu model` (other architectures) in cpuinfo text.
pub fn parse_cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        let k = k.trim();
        (matches!(k, "model name" | "Model" | "cpu model" | "Processor") && !v.trim().is_empty())
            .then(|| v.trim().to_string())
    })
}

/// `MemTotal` of meminfo text, in bytes.
pub fn parse_mem_total(meminfo: &str) -> Option<u64> {
    meminfo.lines().find_map(|l| {
        let rest = l.strip_prefix("MemTotal:")?;
        let kb: u64 = rest.split_whitespace().next()?.parse().ok()?;
        kb.checked_mul(1024)
    })
}

/// CPUs this process may run on (1 when that cannot be asked).
pub(in crate::bench) fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

impl Machine {
    /// Describes this machine.
    pub fn detect() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = parse_cpu_model(&cpuinfo).unwrap_or_else(|| "unknown".into());
        let cpu_features = copy_hash_features(&parse_cpu_flags(&cpuinfo));
        let cores = cores();
        let memory_bytes = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|t| parse_mem_total(&t));
        let hostname = uname().map(|u| u.1).unwrap_or_default();
        Machine {
            cpu_model,
            cores,
            memory_bytes,
            hostname,
            hash: hash_impl(),
            copies: copy_impl(&cpu_features),
            cpu_features,
            memory_reclaim: memory_reclaim_in(Path::new("/sys")),
        }
    }
}

fn field(b: &[libc::c_char]) -> String {
    let bytes: Vec<u8> = b
        .iter()
        .take_while(|c| **c != 0)
        .map(|c| *c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

fn uname() -> Option<(Kernel, String)> {
    // SAFETY: utsname is plain bytes; uname fills it and returns 0 on success.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `u` is a valid, writable utsname.
    if unsafe { libc::uname(&mut u) } != 0 {
        return None;
    }
    Some((
        Kernel {
            sysname: field(&u.sysname),
            release: field(&u.release),
            version: field(&u.version),
            machine: field(&u.machine),
        },
        field(&u.nodename),
    ))
}

impl Kernel {
    /// Describes the running kernel.
    pub fn detect() -> Kernel {
        uname().map(|u| u.0).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cpuinfo_and_meminfo() {
        let ci = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) CPU @ 2.20GHz\nmodel name\t: other\n";
        assert_eq!(
            parse_cpu_model(ci).as_deref(),
            Some("Intel(R) Xeon(R) CPU @ 2.20GHz")
        );
        assert_eq!(parse_cpu_model("processor : 0\n"), None);
        assert_eq!(
            parse_mem_total("MemTotal:        8039692 kB\nMemFree: 1 kB\n"),
            Some(8039692 * 1024)
        );
        assert_eq!(parse_mem_total("MemFree: 1 kB\n"), None);
        assert_eq!(
            parse_mem_available("MemTotal: 9 kB\nMemAvailable:   2048 kB\n"),
            Some(2 << 20)
        );
        let flags = parse_cpu_flags("processor : 0\nflags\t\t: fpu sse2 erms avx2\nflags : x\n");
        assert_eq!(flags, ["fpu", "sse2", "erms", "avx2"]);
        let f = copy_hash_features(&flags);
        assert!(f.contains(&"erms".to_string()) && !f.contains(&"fsrm".to_string()));
    }

    /// Writes `files` (path relative to `root`, contents) and makes `dirs`.
    fn tree(root: &Path, files: &[(&str, &str)], dirs: &[&str]) {
        for d in dirs {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        for (f, text) in files {
            let p = root.join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
    }

    #[test]
    fn finds_a_reporting_balloon_and_a_pageout_kdamond() {
        let t = tempfile::tempdir().unwrap();
        let sys = t.path();
        // A balloon with reporting (bit 5), a block device with bit 5 set too, a kdamond
        // running a pageout scheme, one running another action, one stopped.
        tree(
            sys,
            &[
                ("bus/virtio/devices/virtio0/device", "0x0005\n"),
                ("bus/virtio/devices/virtio0/features", "0110010100000000\n"),
                ("bus/virtio/devices/virtio1/device", "0x0002\n"),
                ("bus/virtio/devices/virtio1/features", "0010010000000000\n"),
                ("kernel/mm/damon/admin/kdamonds/nr_kdamonds", "3\n"),
                ("kernel/mm/damon/admin/kdamonds/0/state", "on\n"),
                (
                    "kernel/mm/damon/admin/kdamonds/0/contexts/0/schemes/0/action",
                    "pageout\n",
                ),
                ("kernel/mm/damon/admin/kdamonds/1/state", "on\n"),
                (
                    "kernel/mm/damon/admin/kdamonds/1/contexts/0/schemes/0/action",
                    "stat\n",
                ),
                ("kernel/mm/damon/admin/kdamonds/2/state", "off\n"),
                (
                    "kernel/mm/damon/admin/kdamonds/2/contexts/0/schemes/0/action",
                    "pageout\n",
                ),
            ],
            &[
                "bus/virtio/devices/virtio0/driver",
                "bus/virtio/devices/virtio1/driver",
            ],
        );
        assert_eq!(
            memory_reclaim_in(sys),
            [
                "virtio-balloon free page reporting",
                "DAMON pageout (kdamond 0)"
            ]
        );
        // Without reporting negotiated, or with no driver bound, the balloon does not report.
        tree(
            sys,
            &[("bus/virtio/devices/virtio0/features", "0110000000000000\n")],
            &[],
        );
        assert_eq!(memory_reclaim_in(sys), ["DAMON pageout (kdamond 0)"]);
        tree(
            sys,
            &[("bus/virtio/devices/virtio0/features", "0110010100000000\n")],
            &[],
        );
        std::fs::remove_dir(sys.join("bus/virtio/devices/virtio0/driver")).unwrap();
        assert_eq!(memory_reclaim_in(sys), ["DAMON pageout (kdamond 0)"]);
        // No sysfs at all: nothing found.
        assert!(memory_reclaim_in(&sys.join("absent")).is_empty());
    }

    #[test]
    fn this_machine_is_described() {
        let m = Machine::detect();
        assert!(m.cores >= 1);
        assert!(m.hash.starts_with("XXH3-64"));
        assert!(m.copies.contains("memcpy"));
    }
}
