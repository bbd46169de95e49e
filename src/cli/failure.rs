//! How a failed command is reported: one line per cause on stderr (escaped), or with
//! `--json` one JSON object on stdout, and the exit code.
//!
//! The JSON object:
//! `{"error": {"kind": KIND, "message": TEXT, "causes": [TEXT...], "hint": TEXT|null},
//!   "devices": [{"device": NAME, "state": STATE|null, "error": TEXT|null}]}`
//! where KIND is one of `stream-corrupt` (the stream is foreign, corrupt or truncated),
//! `incompatible` (saved from another kind of device), `device` (a device refused or broke
//! the protocol, or is in the wrong state), `io` (a file or pipe failed), `interrupted`
//! (a signal), `usage` (bad arguments), `error` (anything else); `devices` lists the state
//! each device the command touched was left in. Across a link (`migrate` to an address,
//! `receive`) also `link` (the link broke or stalled, exit 75), `unacknowledged` (no
//! acknowledgement of the commit, 76) and `refused` (the peer refused, 77), with an empty
//! `devices` and the devices' situation as the `hint`.
//!
//! Exit codes: 2 for usage errors, 128 + N after signal N (130 SIGINT, 143 SIGTERM, 129
//! SIGHUP), 75, 76 and 77 for the link's failures above, 1 otherwise.

use std::fmt;
use std::process::ExitCode;

use serde::Serialize;
use vfio_harness::device::DeviceError;
use vfio_harness::migration::stream::StreamError;
use vfio_harness::migration::{MigrationDriver, MigrationError};

use super::output::{escape, print_json};
use super::signals::caught_signal;

/// A bad argument found after parsing (a value out of range, options that do not go
/// together, one missing that another needs): reported with kind `usage` and exit code 2,
/// like the parser's own errors. Raised with the `usage!` macro.
#[derive(Debug)]
pub struct Usage(pub String);

impl fmt::Display for Usage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

/// Returns a [`Usage`] error from the enclosing function: a bad argument found after
/// parsing, reported like clap's own (kind `usage`, exit code 2).
macro_rules! usage {
    ($($t:tt)*) => {
        return Err($crate::cli::failure::Usage(format!($($t)*)).into())
    };
}

/// What became of one device a failed command touched.
#[derive(Debug, Serialize)]
pub struct DeviceOutcome {
    /// The device.
    pub device: String,
    /// Its migration state now (`RUNNING`...), when it could be read.
    pub state: Option<String>,
    /// Why the state could not be read.
    pub error: Option<String>,
}

/// Reads the state each driver's device is in now.
pub fn outcomes(drivers: &mut [&mut dyn MigrationDriver]) -> Vec<DeviceOutcome> {
    drivers
        .iter_mut()
        .map(|d| {
            let device = d.device().name().to_string();
            match d.state() {
                Ok(s) => DeviceOutcome {
                    device,
                    state: Some(s.to_string()),
                    error: None,
                },
                Err(e) => DeviceOutcome {
                    device,
                    state: None,
                    error: Some(e.to_string()),
                },
            }
        })
        .collect()
}

/// A command's error with the devices it touched.
pub struct Failed {
    /// The error.
    pub error: anyhow::Error,
    /// The devices and their states afterwards.
    pub devices: Vec<DeviceOutcome>,
}

impl fmt::Debug for Failed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.error, f)
    }
}

impl fmt::Display for Failed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.error, f)
    }
}

impl std::error::Error for Failed {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.error.source()
    }
}

/// The error kind of `e` (see the module docs).
pub fn kind(e: &anyhow::Error) -> &'static str {
    if caught_signal().is_some() {
        return "interrupted";
    }
    for cause in e.chain() {
        if cause.downcast_ref::<Usage>().is_some() {
            return "usage";
        }
        if let Some(m) = cause.downcast_ref::<MigrationError>() {
            return match m {
                // Reading failed: the input is unreadable, not corrupt.
                MigrationError::Stream(StreamError::Io { .. })
                | MigrationError::StreamFile {
                    source: StreamError::Io { .. },
                    ..
                } => "io",
                MigrationError::Stream(_) | MigrationError::StreamFile { .. } => "stream-corrupt",
                MigrationError::Incompatible { .. } => "incompatible",
                MigrationError::Interrupted => "interrupted",
                MigrationError::File { .. } => "io",
                MigrationError::InvalidBufferSize { .. } => "usage",
                MigrationError::Buffers { .. } => "error",
                _ => "device",
            };
        }
        if cause.downcast_ref::<DeviceError>().is_some() {
            return "device";
        }
        if let Some(vfio_harness::sysfs::SysfsError::InvalidUuid { .. }) = cause.downcast_ref() {
            return "usage";
        }
        if cause.downcast_ref::<std::io::Error>().is_some() {
            return "io";
        }
    }
    "error"
}

#[derive(Serialize)]
struct ErrorBody {
    kind: &'static str,
    message: String,
    causes: Vec<String>,
    hint: Option<&'static str>,
}

#[derive(Serialize)]
struct ErrorOut<'a> {
    error: ErrorBody,
    devices: &'a [DeviceOutcome],
}

/// The exit code for an error of `kind`.
pub fn exit_code(kind: &str) -> ExitCode {
    match (kind, caught_signal()) {
        (_, Some(sig)) => ExitCode::from(128u8.saturating_add(sig as u8)),
        ("interrupted", None) => ExitCode::from(130),
        ("usage", None) => ExitCode::from(2),
        _ => ExitCode::FAILURE,
    }
}

/// Prints the failure object (see the module docs) on stdout.
fn print_error_json(error: ErrorBody, devices: &[DeviceOutcome]) {
    if print_json(&ErrorOut { error, devices }).is_err() {
        errln!("error: could not encode the error report");
    }
}

/// The texts of `chain` (an error's causes), leaving out each one the text before it already
/// includes (most errors quote their cause in their own message).
fn distinct_causes<'a>(
    message: String,
    chain: impl Iterator<Item = &'a (dyn std::error::Error + 'static)>,
) -> Vec<String> {
    let mut causes = Vec::new();
    let mut shown = message;
    for cause in chain {
        let c = cause.to_string();
        if !shown.contains(&c) {
            causes.push(c.clone());
            shown = c;
        }
    }
    causes
}

/// Reports an error whose kind the command decided itself (the transport's link faults,
/// refusals and missing acknowledgements, which have exit codes of their own): with `json`
/// the failure object with `kind` and `devices` (where the devices stand) as its `hint`, no
/// device list; otherwise `error: MESSAGE` and `devices` on stderr (an interruption: one
/// line, `interrupted: DEVICES`).
pub fn report_classified(
    e: &(dyn std::error::Error + 'static),
    json: bool,
    kind: &'static str,
    devices: &'static str,
) {
    let interrupted = kind == "interrupted";
    let message = if interrupted {
        "interrupted".to_string()
    } else {
        e.to_string()
    };
    if json {
        let causes = if interrupted {
            Vec::new()
        } else {
            distinct_causes(
                message.clone(),
                std::iter::successors(e.source(), |c| c.source()),
            )
        };
        print_error_json(
            ErrorBody {
                kind,
                message,
                causes,
                hint: Some(devices),
            },
            &[],
        );
    } else if interrupted {
        errln!("interrupted: {devices}");
    } else {
        errln!("error: {}", escape(&message));
        errln!("  {devices}");
    }
}

/// Reports `e` (see the module docs) and returns the exit code.
pub fn report(e: anyhow::Error, json: bool) -> ExitCode {
    let (error, devices) = match e.downcast::<Failed>() {
        Ok(f) => (f.error, f.devices),
        Err(e) => (e, Vec::new()),
    };
    let k = kind(&error);
    let hint = error
        .chain()
        .find_map(|c| c.downcast_ref::<MigrationError>())
        .and_then(MigrationError::hint);
    let message = if k == "interrupted" {
        "interrupted".to_string()
    } else {
        error.to_string()
    };
    let mut causes = distinct_causes(error.to_string(), error.chain().skip(1));
    if k == "interrupted" {
        causes.clear();
    }
    if json {
        print_error_json(
            ErrorBody {
                kind: k,
                message,
                causes,
                hint,
            },
            &devices,
        );
    } else if k == "interrupted" {
        let all_running = devices
            .iter()
            .all(|d| d.state.as_deref() == Some("RUNNING"));
        if all_running {
            errln!("interrupted: devices returned to RUNNING");
        } else {
            errln!("interrupted");
        }
    } else {
        errln!("error: {}", escape(&message));
        for c in &causes {
            errln!("  caused by: {}", escape(c));
        }
    }
    if k != "interrupted" || !json {
        for d in devices
            .iter()
            .filter(|d| d.state.as_deref() != Some("RUNNING"))
        {
            if !json {
                errln!(
                    "  device {} left in {}",
                    escape(&d.device),
                    d.state.as_deref().unwrap_or("an unknown state")
                );
            }
        }
    }
    exit_code(k)
}
