//! Reading Rust source as plain text: comments, literals and `#[cfg(test)]` items blanked,
//! then the `crate::` / `super::` references that leave a file's top-level module.

use std::path::{Path, PathBuf};

/// Blanks comments, string and character literals with spaces, keeping every newline (so
/// line numbers stay right) and lifetimes.
pub(crate) fn strip(src: &str) -> String {
    let c: Vec<char> = src.chars().collect();
    let n = c.len();
    let mut out = String::with_capacity(src.len());
    let blank = |out: &mut String, s: &[char]| {
        for &ch in s {
            out.push(if ch == '\n' { '\n' } else { ' ' });
        }
    };
    let mut i = 0;
    while i < n {
        let next = c.get(i + 1).copied();
        if c[i] == '/' && next == Some('/') {
            let end = (i..n).find(|&j| c[j] == '\n').unwrap_or(n);
            blank(&mut out, &c[i..end]);
            i = end;
        } else if c[i] == '/' && next == Some('*') {
            let (mut j, mut depth) = (i + 2, 1);
            while j < n && depth > 0 {
                if c[j] == '/' && c.get(j + 1) == Some(&'*') {
                    depth += 1;
                    j += 2;
                } else if c[j] == '*' && c.get(j + 1) == Some(&'/') {
                    depth -= 1;
                    j += 2;
                } else {
                    j += 1;
                }
            }
            blank(&mut out, &c[i..j.min(n)]);
            i = j.min(n);
        } else if let Some(hashes) = raw_string_at(&c, i) {
            // Raw string: r"..", r#".."#, br#".."#.
            let mut j = i + (c[i] == 'b') as usize + 1 + hashes + 1;
            let end = loop {
                if j >= n {
                    break n;
                }
                if c[j] == '"' && (1..=hashes).all(|h| c.get(j + h) == Some(&'#')) {
                    break j + 1 + hashes;
                }
                j += 1;
            };
            blank(&mut out, &c[i..end]);
            i = end;
        } else if c[i] == '"' {
            let mut j = i + 1;
            while j < n && c[j] != '"' {
                j += if c[j] == '\\' { 2 } else { 1 };
            }
            let end = (j + 1).min(n);
            blank(&mut out, &c[i..end]);
            i = end;
        } else if c[i] == '\'' && next == Some('\\') {
            // An escaped character literal: '\n', '\'', '\u{1F600}'.
            let end = (i + 3..n).find(|&j| c[j] == '\'').map_or(n, |j| j + 1);
            blank(&mut out, &c[i..end]);
            i = end;
        } else if c[i] == '\'' && c.get(i + 2) == Some(&'\'') {
            blank(&mut out, &c[i..i + 3]);
            i += 3;
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    out
}

/// Whether a raw string (`r"`, `r#"`, `br#"`...) starts at `i`: the number of `#`s.
fn raw_string_at(c: &[char], i: usize) -> Option<usize> {
    if i > 0 && (c[i - 1].is_alphanumeric() || c[i - 1] == '_') {
        return None;
    }
    let mut j = match (c.get(i), c.get(i + 1)) {
        (Some('r'), _) => i + 1,
        (Some('b'), Some('r')) => i + 2,
        _ => return None,
    };
    let start = j;
    while c.get(j) == Some(&'#') {
        j += 1;
    }
    (c.get(j) == Some(&'"')).then_some(j - start)
}

/// Index just past the bracket that closes the one at `open` (`(`, `[` or `{`).
fn matching(c: &[char], open: usize) -> usize {
    let mut depth = 0i32;
    for (j, &ch) in c.iter().enumerate().skip(open) {
        match ch {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => {
                depth -= 1;
                if depth == 0 {
                    return j + 1;
                }
            }
            _ => {}
        }
    }
    c.len()
}

/// What removing the `#[cfg(test)]` items of a (stripped) file leaves.
pub(crate) struct NonTest {
    /// The code, with test items blanked.
    pub(crate) code: String,
    /// The whole file is `#![cfg(test)]`.
    pub(crate) test_only: bool,
    /// Modules declared as `#[cfg(test)] mod name;` (their files are test-only).
    pub(crate) test_modules: Vec<String>,
}

/// Blanks every item under `#[cfg(test)]` (a `mod tests { ... }`, a `use`, a function...).
pub(crate) fn remove_test_items(code: &str) -> NonTest {
    let mut c: Vec<char> = code.chars().collect();
    let mut test_modules = Vec::new();
    let mut test_only = false;
    let attr_at = |c: &[char], i: usize| -> Option<(usize, bool, String)> {
        // `#[...]` or `#![...]` at i: (end, inner, content without whitespace).
        if c.get(i) != Some(&'#') {
            return None;
        }
        let mut j = i + 1;
        let inner = c.get(j) == Some(&'!');
        if inner {
            j += 1;
        }
        while c.get(j).is_some_and(|ch| ch.is_whitespace()) {
            j += 1;
        }
        if c.get(j) != Some(&'[') {
            return None;
        }
        let end = matching(c, j);
        let content: String = c[j + 1..end.saturating_sub(1)]
            .iter()
            .filter(|ch| !ch.is_whitespace())
            .collect();
        Some((end, inner, content))
    };
    let mut i = 0;
    while i < c.len() {
        let Some((end, inner, content)) = attr_at(&c, i) else {
            i += 1;
            continue;
        };
        if content != "cfg(test)" {
            i = end;
            continue;
        }
        if inner {
            test_only = true;
            i = end;
            continue;
        }
        // Further attributes of the same item.
        let mut j = end;
        let mut has_path = false;
        loop {
            while c.get(j).is_some_and(|ch| ch.is_whitespace()) {
                j += 1;
            }
            match attr_at(&c, j) {
                Some((e, _, content)) => {
                    has_path |= content.starts_with("path");
                    j = e;
                }
                None => break,
            }
        }
        // The item: up to its `;`, or through its `{ ... }` body.
        let head_start = j;
        let mut k = j;
        let item_end = loop {
            match c.get(k) {
                None => break c.len(),
                Some(';') => break k + 1,
                Some('{') => break matching(&c, k),
                Some('(') | Some('[') => k = matching(&c, k),
                Some(_) => k += 1,
            }
        };
        let head: String = c[head_start..item_end].iter().collect();
        let words: Vec<&str> = head
            .split(|ch: char| !(ch.is_alphanumeric() || ch == '_'))
            .filter(|w| !w.is_empty())
            .collect();
        if head.trim_end().ends_with(';') && !has_path {
            if let Some(p) = words.iter().position(|w| *w == "mod") {
                if let Some(name) = words.get(p + 1) {
                    test_modules.push(name.to_string());
                }
            }
        }
        for ch in &mut c[i..item_end] {
            if *ch != '\n' {
                *ch = ' ';
            }
        }
        i = item_end;
    }
    NonTest {
        code: c.into_iter().collect(),
        test_only,
        test_modules,
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Tok {
    Ident(String),
    PathSep,
    Punct(char),
}

/// Identifiers (`$crate` included), `::` and single punctuation, each with its line.
pub(crate) fn tokens(code: &str) -> Vec<(Tok, usize)> {
    let c: Vec<char> = code.chars().collect();
    let mut out = Vec::new();
    let (mut i, mut line) = (0, 1);
    while i < c.len() {
        let ch = c[i];
        if ch == '\n' {
            line += 1;
            i += 1;
        } else if ch.is_whitespace() {
            i += 1;
        } else if ch.is_alphanumeric() || ch == '_' || ch == '$' {
            let start = i;
            i += 1;
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                i += 1;
            }
            out.push((Tok::Ident(c[start..i].iter().collect()), line));
        } else if ch == ':' && c.get(i + 1) == Some(&':') {
            out.push((Tok::PathSep, line));
            i += 2;
        } else {
            out.push((Tok::Punct(ch), line));
            i += 1;
        }
    }
    out
}

/// A reference out of a file's top-level module: the first path segment it names at the
/// crate root (a module, or an item the root re-exports), and its line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Reference {
    pub(crate) line: usize,
    pub(crate) name: String,
}

pub(crate) fn ident(t: Option<&(Tok, usize)>) -> Option<&str> {
    match t {
        Some((Tok::Ident(s), _)) => Some(s),
        _ => None,
    }
}

/// The crate-root names a path reaches from token `i` on (an identifier, or a `{...}` group
/// of them; `self` in a group names the root itself and is skipped).
fn root_names(t: &[(Tok, usize)], i: usize) -> Vec<String> {
    match t.get(i) {
        Some((Tok::Ident(s), _)) => vec![s.clone()],
        Some((Tok::Punct('{'), _)) => {
            let mut names = Vec::new();
            let mut depth = 0;
            let mut entry_start = true;
            for (tok, _) in &t[i..] {
                match tok {
                    Tok::Punct('{') => {
                        depth += 1;
                        entry_start = depth == 1;
                    }
                    Tok::Punct('}') => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    Tok::Punct(',') if depth == 1 => entry_start = true,
                    Tok::Ident(s) if depth == 1 && entry_start => {
                        if s != "self" {
                            names.push(s.clone());
                        }
                        entry_start = false;
                    }
                    _ => {}
                }
            }
            names
        }
        _ => Vec::new(),
    }
}

/// The references of one file that leave its top-level module. `module` is the file's path
/// in the crate (`["sim", "v1"]` for `src/sim/v1.rs`, `["sim"]` for `src/sim/mod.rs`).
pub(crate) fn references(module: &[String], code: &str) -> Vec<Reference> {
    let t = tokens(code);
    let mut out = Vec::new();
    // Inline modules (`mod x { ... }`) deepen the path `super::` climbs from.
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    while i < t.len() {
        match &t[i].0 {
            Tok::Punct('{') => depth += 1,
            Tok::Punct('}') => {
                depth = depth.saturating_sub(1);
                while inline.last().is_some_and(|(_, d)| *d > depth) {
                    inline.pop();
                }
            }
            Tok::Ident(kw) if kw == "mod" => {
                if let (Some(name), Some((Tok::Punct('{'), _))) =
                    (ident(t.get(i + 1)), t.get(i + 2))
                {
                    inline.push((name.to_string(), depth + 1));
                }
            }
            Tok::Ident(kw)
                if (kw == "crate" || kw == "$crate" || kw == "super")
                    && t.get(i + 1).map(|x| &x.0) == Some(&Tok::PathSep)
                    && (i == 0 || t[i - 1].0 != Tok::PathSep) =>
            {
                let line = t[i].1;
                let mut j = i;
                let at_root = if kw == "super" {
                    let mut ups = 0;
                    while ident(t.get(j)) == Some("super")
                        && t.get(j + 1).map(|x| &x.0) == Some(&Tok::PathSep)
                    {
                        ups += 1;
                        j += 2;
                    }
                    ups == module.len() + inline.len()
                } else {
                    j += 2;
                    true
                };
                if at_root {
                    for name in root_names(&t, j) {
                        out.push(Reference { line, name });
                    }
                }
                i = j;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    out
}

/// The module path of a file under `src/` (`lib.rs` and `main.rs` are roots: empty).
pub(crate) fn module_of(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().unwrap_or_default();
    let stem = last.trim_end_matches(".rs");
    if !(parts.is_empty() && (stem == "lib" || stem == "main")) && stem != "mod" {
        parts.push(stem.to_string());
    }
    parts
}

/// Where the file of `mod name;` declared in `file` lives (both candidates).
pub(crate) fn child_files(file: &Path, name: &str) -> [PathBuf; 2] {
    let stem = file.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    let dir = file.parent().unwrap_or(Path::new(""));
    let base = if matches!(stem, "mod" | "lib" | "main") {
        dir.to_path_buf()
    } else {
        dir.join(stem)
    };
    [
        base.join(format!("{name}.rs")),
        base.join(name).join("mod.rs"),
    ]
}

#[test]
fn the_scanner_reads_every_form_of_reference() {
    let src = r##"
//! Docs mention crate::bench and "crate::bench" freely.
use crate::device::{self, Device};
use crate::{sim, vfio::region::X};
use super::sibling;
use super::super::pattern;
use std::fmt;

/* crate::bench in a block /* nested */ comment */
fn f<'a>(x: &'a str) -> char {
    let _ = crate::units::parse("crate::bench");
    let _ = r#"crate::bench"#;
    let _ = $crate::le::le32;
    let _ = '"';
    'x'
}

mod inner {
    use super::super::super::sysfs;
    use super::super::stays_inside;
}

#[cfg(test)]
mod tests {
    use crate::bench;
}

#[cfg(test)]
use crate::bench::Thing;

#[cfg(test)]
mod more_tests;
"##;
    let nt = remove_test_items(&strip(src));
    assert_eq!(nt.test_modules, ["more_tests"]);
    assert!(!nt.test_only);
    let module = vec!["migration".to_string(), "engine".to_string()];
    let refs: Vec<(usize, String)> = references(&module, &nt.code)
        .into_iter()
        .map(|r| (r.line, r.name))
        .collect();
    let want: Vec<(usize, String)> = [
        (3, "device"),
        (4, "sim"),
        (4, "vfio"),
        (6, "pattern"),
        (11, "units"),
        (13, "le"),
        (19, "sysfs"),
    ]
    .iter()
    .map(|(l, n)| (*l, n.to_string()))
    .collect();
    assert_eq!(refs, want);
    assert!(remove_test_items("#![cfg(test)]\nuse crate::bench;").test_only);
    assert_eq!(module_of(Path::new("sim/mod.rs")), ["sim"]);
    assert_eq!(
        module_of(Path::new("sysfs/mdev/types.rs")),
        ["sysfs", "mdev", "types"]
    );
    assert!(module_of(Path::new("lib.rs")).is_empty());
}
