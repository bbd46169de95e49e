//! The floor map of the library, checked.
//!
//! Every `.rs` file under `src/` is read as plain text; the references that leave its
//! top-level module (`use crate::x::...`, `crate::x::...` paths, `use crate::{x, y}` groups,
//! `super::` chains that climb out of the module) are mapped to the module they reach, and
//! - no two top-level modules may depend on each other, directly or through others;
//! - every reference goes to the same floor or one beneath, per [`FLOORS`] (on the back-end
//!   floor only the pairs in [`PEERS`]);
//! - the library never references the command-line front end (`src/cli/`, part of the binary,
//!   which may use anything of the library).
//!
//! Comments, string and character literals, `#[cfg(test)]` items and test-only files (named
//! `tests.rs` or `NAME_tests.rs`, or declared by `#[cfg(test)] mod x;`) are not looked at: tests may reach
//! across floors (the reading is in `layers/scan.rs`). A failure names the file and line of
//! every offending reference.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

#[path = "layers/scan.rs"]
mod scan;

use scan::{child_files, ident, module_of, references, remove_test_items, strip, tokens, Tok};

/// The floors, bottom up. A module may use modules on its own floor or beneath.
const FLOORS: &[(&str, u32)] = &[
    // The device interface and the value types, with the utilities everybody may use.
    ("device", 0),
    ("units", 0),
    ("entropy", 0),
    ("le", 0),
    ("pattern", 0),
    ("mem", 0),
    // Back ends.
    ("sysfs", 1),
    ("vfio", 1),
    ("sim", 1),
    // The composition root: spec -> back end.
    ("open", 2),
    // DMA drivers for the test devices.
    ("drivers", 3),
    ("migration", 4),
    // Cross-host migration: a wire protocol and TLS around the engine.
    ("transport", 5),
    // Measurements of every path a user's transfer takes, the transport's included.
    ("bench", 6),
];

/// On floors above 0, modules of one floor are independent of each other except for these
/// pairs (user, used): the kernel back end finds its devices through sysfs.
const PEERS: &[(&str, &str)] = &[("vfio", "sysfs")];

/// The binary's module: it may import anything of the library, the library never it.
const BINARY_MODULE: &str = "cli";

fn floor(module: &str) -> Option<u32> {
    FLOORS.iter().find(|(m, _)| *m == module).map(|(_, f)| *f)
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

// ---- the crate ----

/// One source file of the library.
struct SourceFile {
    /// Relative to the crate (`src/sim/v1.rs`).
    path: PathBuf,
    /// Its path in the crate's module tree.
    module: Vec<String>,
    text: String,
    /// The code with comments, literals and test items blanked.
    code: String,
}

fn rs_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rs_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// A file of unit tests by its name: `tests.rs`, or `NAME_tests.rs` (included with
/// `#[cfg(test)] #[path = "NAME_tests.rs"] mod tests;`).
fn is_test_file(p: &Path) -> bool {
    p.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n == "tests.rs" || n.ends_with("_tests.rs"))
}

/// Every library source file that is not test-only (the binary's files excluded too).
fn library_files() -> Vec<SourceFile> {
    let src = src_dir();
    let mut paths = Vec::new();
    rs_files(&src, &mut paths);
    let mut parsed = Vec::new();
    let mut test_files: BTreeSet<PathBuf> = BTreeSet::new();
    for p in &paths {
        let text = fs::read_to_string(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
        let nt = remove_test_items(&strip(&text));
        for m in &nt.test_modules {
            test_files.extend(child_files(p, m));
        }
        if nt.test_only || is_test_file(p) {
            test_files.insert(p.clone());
        }
        parsed.push((p.clone(), text, nt.code));
    }
    let mut out = Vec::new();
    for (p, text, code) in parsed {
        let rel = p.strip_prefix(&src).expect("under src").to_path_buf();
        let module = module_of(&rel);
        let binary =
            rel == Path::new("main.rs") || module.first().is_some_and(|m| m == BINARY_MODULE);
        if binary || test_files.contains(&p) {
            continue;
        }
        out.push(SourceFile {
            path: Path::new("src").join(rel),
            module,
            text,
            code,
        });
    }
    out
}

/// The top-level modules `lib.rs` declares, and the root names it re-exports (name -> module).
fn crate_root(lib: &SourceFile) -> (BTreeSet<String>, BTreeMap<String, String>) {
    let t = tokens(&lib.code);
    let mut modules = BTreeSet::new();
    let mut reexports = BTreeMap::new();
    for (i, (tok, _)) in t.iter().enumerate() {
        match tok {
            Tok::Ident(kw) if kw == "mod" => {
                if let Some(name) = ident(t.get(i + 1)) {
                    modules.insert(name.to_string());
                }
            }
            Tok::Ident(kw) if kw == "use" => {
                let mut j = i + 1;
                if matches!(ident(t.get(j)), Some("crate" | "self")) {
                    j += 2;
                }
                let Some(module) = ident(t.get(j)) else {
                    continue;
                };
                for (tok, _) in t[j + 1..].iter().take_while(|x| x.0 != Tok::Punct(';')) {
                    if let Tok::Ident(name) = tok {
                        if name != "as" && name != "self" {
                            reexports.insert(name.clone(), module.to_string());
                        }
                    }
                }
            }
            _ => {}
        }
    }
    (modules, reexports)
}

/// A reference between two top-level modules.
struct Edge {
    from: String,
    to: String,
    file: PathBuf,
    line: usize,
    text: String,
}

impl Edge {
    fn at(&self) -> String {
        format!(
            "{}:{}: {}",
            self.file.display(),
            self.line,
            self.text.trim()
        )
    }
}

/// Every reference that crosses top-level modules; unknown names are reported in `problems`.
fn edges(problems: &mut Vec<String>) -> Vec<Edge> {
    let files = library_files();
    let lib = files
        .iter()
        .find(|f| f.module.is_empty())
        .expect("src/lib.rs");
    let (modules, reexports) = crate_root(lib);
    if modules.contains(BINARY_MODULE) {
        problems.push(format!(
            "src/lib.rs declares `{BINARY_MODULE}`: it belongs to the binary (src/main.rs)"
        ));
    }
    for m in &modules {
        if floor(m).is_none() && m != BINARY_MODULE {
            problems.push(format!(
                "src/lib.rs: module `{m}` has no floor; add it to FLOORS in tests/layers.rs"
            ));
        }
    }
    let mut out = Vec::new();
    for f in files.iter().filter(|f| !f.module.is_empty()) {
        let from = &f.module[0];
        let lines: Vec<&str> = f.text.lines().collect();
        for r in references(&f.module, &f.code) {
            let to = if modules.contains(&r.name) || r.name == BINARY_MODULE {
                r.name.clone()
            } else if let Some(m) = reexports.get(&r.name) {
                m.clone()
            } else {
                problems.push(format!(
                    "{}:{}: `{}` is neither a top-level module nor re-exported by src/lib.rs",
                    f.path.display(),
                    r.line,
                    r.name
                ));
                continue;
            };
            if &to != from {
                out.push(Edge {
                    from: from.clone(),
                    to,
                    file: f.path.clone(),
                    line: r.line,
                    text: lines.get(r.line - 1).unwrap_or(&"").to_string(),
                });
            }
        }
    }
    out
}

fn floor_violation(e: &Edge) -> Option<String> {
    if e.to == BINARY_MODULE {
        return Some(format!(
            "{}\n    the library references `{BINARY_MODULE}`, which belongs to the binary",
            e.at()
        ));
    }
    let (Some(a), Some(b)) = (floor(&e.from), floor(&e.to)) else {
        return None; // reported as a module without a floor
    };
    let peer = PEERS.contains(&(e.from.as_str(), e.to.as_str()));
    if b > a || (a == b && a > 0 && !peer) {
        Some(format!(
            "{}\n    `{}` (floor {a}) uses `{}` (floor {b}){}",
            e.at(),
            e.from,
            e.to,
            if a == b {
                "; modules of this floor are independent (see PEERS)"
            } else {
                ": a module may only use its own floor or those beneath"
            }
        ))
    } else {
        None
    }
}

/// The cycles between top-level modules (one per strongly connected component of two or
/// more modules), each with the references that close it.
fn cycles(edges: &[Edge]) -> Vec<String> {
    let mut graph: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for e in edges {
        graph.entry(&e.from).or_default().insert(&e.to);
    }
    let reach = |from: &str| -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from.to_string()];
        while let Some(m) = stack.pop() {
            for &n in graph.get(m.as_str()).into_iter().flatten() {
                if seen.insert(n.to_string()) {
                    stack.push(n.to_string());
                }
            }
        }
        seen
    };
    let mut done: BTreeSet<String> = BTreeSet::new();
    let mut out = Vec::new();
    for &m in graph.keys() {
        if done.contains(m) {
            continue;
        }
        let fwd = reach(m);
        if !fwd.contains(m) {
            continue;
        }
        let component: BTreeSet<String> = fwd
            .iter()
            .filter(|n| reach(n).contains(m))
            .cloned()
            .collect();
        let mut msg = format!(
            "import cycle between {}:",
            component.iter().cloned().collect::<Vec<_>>().join(", ")
        );
        let mut shown = BTreeSet::new();
        for e in edges {
            if component.contains(&e.from)
                && component.contains(&e.to)
                && shown.insert((e.from.clone(), e.to.clone()))
            {
                msg.push_str(&format!("\n    {} -> {}: {}", e.from, e.to, e.at()));
            }
        }
        done.extend(component);
        out.push(msg);
    }
    out
}

// ---- the checks ----

#[test]
fn modules_only_use_their_floor_or_those_beneath_and_never_form_a_cycle() {
    let mut problems = Vec::new();
    let edges = edges(&mut problems);
    let graph: BTreeSet<(&str, &str)> = edges
        .iter()
        .map(|e| (e.from.as_str(), e.to.as_str()))
        .collect();
    for (from, to) in &graph {
        println!("{from} -> {to}");
    }
    // The scan sees real code: two references every version of the crate has.
    for known in [("vfio", "device"), ("migration", "device")] {
        assert!(
            graph.contains(&known),
            "no {known:?} reference found: is the scanner blind?"
        );
    }
    problems.extend(edges.iter().filter_map(floor_violation));
    problems.extend(cycles(&edges));
    assert!(
        problems.is_empty(),
        "the floor map (tests/layers.rs) is broken:\n{}",
        problems.join("\n")
    );
}

#[test]
fn no_source_file_over_700_lines() {
    let src = src_dir();
    let mut paths = Vec::new();
    rs_files(&src, &mut paths);
    let long: Vec<String> = paths
        .iter()
        .filter(|p| !is_test_file(p))
        .filter_map(|p| {
            let text =
                fs::read_to_string(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
            let n = text.lines().count();
            let rel = p.strip_prefix(&src).unwrap_or(p);
            (n > 700).then(|| format!("src/{}: {n} lines", rel.display()))
        })
        .collect();
    assert!(
        long.is_empty(),
        "source files over 700 lines (one idea per file):\n{}",
        long.join("\n")
    );
}

#[test]
fn cycles_and_floor_breaks_are_reported_with_their_place() {
    let edge = |from: &str, to: &str, line: usize| Edge {
        from: from.into(),
        to: to.into(),
        file: PathBuf::from(format!("src/{from}/x.rs")),
        line,
        text: format!("use crate::{to};"),
    };
    let found = cycles(&[
        edge("device", "sim", 3),
        edge("sim", "migration", 7),
        edge("migration", "device", 9),
        edge("bench", "device", 1),
    ]);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].starts_with("import cycle between device, migration, sim:"));
    assert!(
        found[0].contains("src/device/x.rs:3: use crate::sim;"),
        "{}",
        found[0]
    );
    assert!(floor_violation(&edge("device", "sim", 3)).is_some());
    assert!(floor_violation(&edge("sim", "vfio", 3)).is_some());
    assert!(floor_violation(&edge("vfio", "sysfs", 3)).is_none());
    assert!(floor_violation(&edge("migration", "sysfs", 3)).is_none());
    assert!(floor_violation(&edge("device", "units", 3)).is_none());
    assert!(floor_violation(&edge("bench", "cli", 3)).is_some());
}

/// Names of kernel uAPI values (flags, indexes, states, header offsets): defined in
/// `src/device/uapi.rs` only, from vfio-bindings; everybody else uses those names.
const UAPI_PREFIXES: &[&str] = &[
    "VFIO_",
    "DEVICE_FLAGS_",
    "DEVICE_FLAG_",
    "REGION_FLAG_",
    "REGION_CAP_",
    "REGION_TYPE_",
    "REGION_SUBTYPE_",
    "IRQ_FLAG_",
    "IRQ_SET_",
    "DEVICE_STATE_",
    "MIG_INFO_",
];

#[test]
fn each_uapi_value_and_ioctl_number_is_defined_once() {
    let src = src_dir();
    let mut paths = Vec::new();
    rs_files(&src, &mut paths);
    let mut consts: Vec<String> = Vec::new();
    let mut ioctls: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for p in paths.iter().filter(|p| !is_test_file(p)) {
        let text = fs::read_to_string(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
        let rel = p.strip_prefix(&src).unwrap_or(p).display().to_string();
        for (i, line) in text.lines().enumerate() {
            let l = line.trim_start();
            let l = l.strip_prefix("pub ").unwrap_or(l);
            let l = l.strip_prefix("pub(crate) ").unwrap_or(l);
            let l = l.strip_prefix("pub(super) ").unwrap_or(l);
            if let Some(rest) = l.strip_prefix("const ") {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if rel != "device/uapi.rs" && UAPI_PREFIXES.iter().any(|p| name.starts_with(p)) {
                    consts.push(format!("src/{rel}:{}: const {name}", i + 1));
                }
            }
            if let Some(at) = l.find("ioctl_io") {
                if let Some(open) = l[at..].find("_nr!(") {
                    let name: String = l[at + open + 5..]
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    if !name.is_empty() {
                        ioctls
                            .entry(name)
                            .or_default()
                            .push(format!("src/{rel}:{}", i + 1));
                    }
                }
            }
        }
    }
    let twice: Vec<String> = ioctls
        .iter()
        .filter(|(_, at)| at.len() > 1)
        .map(|(n, at)| format!("ioctl {n} declared at {}", at.join(", ")))
        .collect();
    assert!(
        consts.is_empty() && twice.is_empty(),
        "uAPI values belong in src/device/uapi.rs (from vfio-bindings), declared once:\n{}",
        consts
            .into_iter()
            .chain(twice)
            .collect::<Vec<_>>()
            .join("\n")
    );
}
