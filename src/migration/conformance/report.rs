//! What the suite reports: verdicts, one [`Check`] per contract clause, the whole
//! [`ConformanceReport`], and the table of check ids with the clause each one checks.

use serde::Serialize;

/// The verdict of one check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
#[non_exhaustive]
pub enum CheckVerdict {
    /// The device honoured the clause.
    Pass,
    /// The device broke the clause (or a call the check needed failed).
    Fail,
    /// The device did something the uAPI discourages ("should") but allows, or the check
    /// could only be done partly (the detail says why).
    Warn,
    /// Not applicable to this device (the detail says why).
    Skip,
}

impl std::fmt::Display for CheckVerdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CheckVerdict::Pass => "PASS",
            CheckVerdict::Fail => "FAIL",
            CheckVerdict::Warn => "WARN",
            CheckVerdict::Skip => "SKIP",
        })
    }
}

/// One check's outcome.
#[derive(Clone, Debug, Serialize)]
pub struct Check {
    /// Check id (`state-after-arc`, `stop-copy-eof`, ...; see [`CLAUSES`]).
    pub id: String,
    /// The clause of `include/uapi/linux/vfio.h` the check holds the device to.
    pub clause: String,
    /// Verdict.
    pub verdict: CheckVerdict,
    /// What was seen.
    pub detail: String,
    /// Wall time of the check, seconds.
    pub seconds: f64,
}

/// The whole run.
#[derive(Clone, Debug, Serialize)]
pub struct ConformanceReport {
    /// Device name.
    pub device: String,
    /// `v1` or `v2`.
    pub protocol: String,
    /// The migration flags driven.
    pub flags: Vec<String>,
    /// The perturbation used to make two device states differ (`none` when there is none).
    pub perturbation: String,
    /// Every check, in order.
    pub checks: Vec<Check>,
    /// Number of passed checks.
    pub passed: usize,
    /// Number of failed checks.
    pub failed: usize,
    /// Number of checks that warned.
    pub warned: usize,
    /// Number of skipped checks.
    pub skipped: usize,
}

impl ConformanceReport {
    /// The check with id `id`, if it ran.
    pub fn check(&self, id: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.id == id)
    }
}

/// Every check id with the clause it holds the device to, condensed from
/// `include/uapi/linux/vfio.h` of Linux 6.12 (the v1 clauses from the 5.8..5.19 header;
/// `docs/conformance.md` quotes each clause in full).
/// Ids equal the violation names of the seeded test devices.
pub const CLAUSES: &[(&str, &str)] = &[
    ("start-running", "(harness) the device is RUNNING when the suite starts"),
    ("state-after-arc", "GET returns the state reached after every SET; a failed SET leaves the device on the path (or ERROR)"),
    ("stop-copy-eof", "STOP_COPY's stream ends with read() == 0, always 0 after, never ENOMSG"),
    ("read-size", "the saved stream does not depend on read() sizes"),
    ("new-data-fd", "entering STOP_COPY / PRE_COPY from a non-saving state returns a new data_fd"),
    ("session-ends", "leaving the saving group ends the session: the old fd yields no more data"),
    ("precopy-info-state", "VFIO_MIG_GET_PRECOPY_INFO is valid only in PRE_COPY states (EINVAL elsewhere)"),
    ("precopy-initial", "initial_bytes starts non-zero, decreases as data is read and reaches 0"),
    ("precopy-info-agrees", "precopy info and read() agree: both zero is the temporary end of stream (read() should return ENOMSG)"),
    ("precopy-path", "a stream through PRE_COPY restores the same state as a direct STOP_COPY one"),
    ("write-size", "resuming does not depend on write() segmentation"),
    ("resume-refuses", "incomplete, corrupted or foreign data is refused at write() or when leaving RESUMING"),
    ("resume-loads", "RESUMING loads the data: a save after the restore reproduces the restored state"),
    ("reset", "VFIO_DEVICE_RESET returns to RUNNING from every state and ends open sessions"),
    ("data-size", "VFIO_DEVICE_FEATURE_MIG_DATA_SIZE estimates the STOP_COPY size"),
    ("dma-logging", "DMA_LOGGING_START/REPORT/STOP report the pages the device wrote; bad ranges refused"),
    ("v1-state-bits", "v1 device_state: _SAVING|_RESUMING is refused; states read back"),
    ("v1-pending", "v1 stop-copy: pending_bytes reaches 0 and the stream is complete"),
    ("v1-data-window", "v1 data_offset/data_size lie inside the data section"),
    ("v1-resume-loads", "v1: a written stream is incorporated when _RESUMING is left"),
    ("left-running", "(harness) the suite leaves the device RUNNING"),
];

/// The clause of check `id` (empty for an unknown id).
pub fn clause(id: &str) -> &'static str {
    CLAUSES
        .iter()
        .find(|(i, _)| *i == id)
        .map(|(_, c)| *c)
        .unwrap_or("")
}
