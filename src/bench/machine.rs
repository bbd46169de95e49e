//! What the benchmark ran on: CPU, cores, memory, kernel.

use serde::{Deserialize, Serialize};

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

impl Machine {
    /// Describes this machine.
    pub fn detect() -> Machine {
        let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|t| parse_cpu_model(&t))
            .unwrap_or_else(|| "unknown".into());
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let memory_bytes = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|t| parse_mem_total(&t));
        let hostname = uname().map(|u| u.1).unwrap_or_default();
        Machine {
            cpu_model,
            cores,
            memory_bytes,
            hostname,
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
    }
}
