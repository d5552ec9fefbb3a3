//! The layers of `src/`: each module imports only from its own layer and the layers below.
//! The offline engine and the parts the node wires together know nothing of the node
//! process, the admin API or the CLI.
//!
//! Reads every `crate::…` path in the library's code (comments, `#[cfg(test)]` items and
//! `tests.rs` files left out: tests may borrow helpers from anywhere) and fails on one that points upward,
//! naming the file, the line and the two modules.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Bottom first. Modules on one line may import each other.
const LAYERS: &[&[&str]] = &[
    &["runtime", "codec", "fnv1a"],
    &["zone"],
    &["dns"],
    &["keys", "hsm"],
    &["kasp"],
    &["replica"],
    &["validate"],
    &["signer"],
    &["store"],
    &["access"],
    &["transport"],
    &["ingest"],
    &["serve"],
    &["config"],
    &["fence"],
    &["node"],
    &["leader", "follower"],
    &["admin"],
    &["daemon"],
    &["testkit"],
    &["cli"],
];

fn layer(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// `text` with comments blanked and every `#[cfg(test)]` item removed (line numbers kept).
fn library_code(text: &str) -> String {
    let no_comments: String = text
        .lines()
        .map(|l| match l.find("//") {
            Some(i) if !l[..i].contains('"') => &l[..i],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    let mut out = String::with_capacity(no_comments.len());
    let mut rest = no_comments.as_str();
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let item = &rest[at..];
        // The item ends at its `;` or at the brace that closes its first `{`.
        let mut depth = 0usize;
        let mut end = item.len();
        for (i, c) in item.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = i + 1;
                        break;
                    }
                }
                ';' if depth == 0 => {
                    end = i + 1;
                    break;
                }
                _ => {}
            }
        }
        out.extend(item[..end].chars().filter(|c| *c == '\n'));
        rest = &item[end..];
    }
    out.push_str(rest);
    out
}

/// The top-level modules a line names after `crate::` (a `{…}` group gives each of its
/// first names).
fn named(line: &str) -> Vec<String> {
    let ident = |s: &str| -> String {
        s.trim_start()
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut out = Vec::new();
    let mut rest = line;
    while let Some(i) = rest.find("crate::") {
        let after = &rest[i + "crate::".len()..];
        if let Some(group) = after.strip_prefix('{') {
            let mut depth = 0;
            let mut start = 0;
            for (j, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => {
                        out.push(ident(&group[start..j]));
                        break;
                    }
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        out.push(ident(&group[start..j]));
                        start = j + 1;
                    }
                    _ => {}
                }
            }
        } else {
            out.push(ident(after));
        }
        rest = after;
    }
    out.retain(|m| !m.is_empty() && m != "self");
    out
}

#[test]
fn no_module_imports_from_a_layer_above_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut unplaced = BTreeSet::new();
    let mut upward = Vec::new();
    let mut checked = 0;
    for f in &files {
        let rel = f.strip_prefix(&src).unwrap();
        let first = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let module = first.trim_end_matches(".rs").to_string();
        // `tests.rs` files are the unit tests of the module beside them (`#[cfg(test)] mod tests;`).
        if module == "lib" || module == "main" || f.file_name().is_some_and(|n| n == "tests.rs") {
            continue;
        }
        let Some(mine) = layer(&module) else {
            unplaced.insert(module);
            continue;
        };
        let code = library_code(&std::fs::read_to_string(f).unwrap());
        for (n, line) in code.lines().enumerate() {
            for to in named(line) {
                checked += 1;
                match layer(&to) {
                    None => {
                        unplaced.insert(to);
                    }
                    Some(theirs) if theirs > mine => upward.push(format!(
                        "src/{}:{}: {module} imports {to}, a layer above it",
                        rel.display(),
                        n + 1
                    )),
                    Some(_) => {}
                }
            }
        }
    }
    assert!(
        checked > 500,
        "only {checked} crate:: paths found: is src/ read?"
    );
    assert!(
        unplaced.is_empty(),
        "modules not in LAYERS (place them): {unplaced:?}"
    );
    assert!(upward.is_empty(), "upward imports:\n{}", upward.join("\n"));
}

#[test]
fn the_reader_sees_groups_and_skips_tests_and_comments() {
    assert_eq!(
        named("use crate::{zone::{Name, rtype}, keys::DnsKey, self};"),
        ["zone", "keys"]
    );
    assert_eq!(
        named("let x = crate::node::now() + crate::zone::f();"),
        ["node", "zone"]
    );
    let code = library_code(
        "use crate::zone::Name; // crate::admin\n#[cfg(test)]\nmod tests {\n    use crate::cli::x;\n    fn f() { {} }\n}\n#[cfg(test)]\nuse crate::node::y;\nfn g() {}\n",
    );
    assert!(
        !code.contains("admin") && !code.contains("cli") && !code.contains("node"),
        "{code}"
    );
    assert!(
        code.contains("crate::zone::Name") && code.contains("fn g()"),
        "{code}"
    );
    assert_eq!(code.lines().count(), 9, "line numbers kept: {code}");
}
