//! The library's top-level modules form a one-way graph: each may use only
//! modules of lower layers below, never one of its own layer or above, so
//! there is no cycle and a newcomer can read the crate from the leaves up.
//! Read from the sources (`crate::<module>` in code, not in comments or
//! strings; test modules left out). A new edge that goes up fails here:
//! move the type it needs down, or the code that needs it up.

use std::collections::BTreeMap;
use std::path::Path;

/// From the leaves to the top. `lib.rs` (`run`) and `main.rs` sit above all.
const LAYERS: &[&[&str]] = &[
    // Leaves: logs, Temporal's method table and wire format.
    &["logging", "temporal"],
    // TLS, gRPC framing, and HTTP/2 as the proxy relays it (h2 connections
    // and streams driven without a task per stream).
    &["tls", "grpc", "relay"],
    // Verification of bearer tokens (a second identity beside the
    // certificate's, which `tls` reads).
    &["token"],
    // Who may call: the policy, matched against both identities.
    &["authz"],
    // Config and metrics: validated settings, the registry.
    &["config", "metrics"],
    // The HTTP/2 client toward the frontend.
    &["upstream"],
    // Errors and their gRPC statuses; then one call's context and body.
    &["error"],
    &["call"],
    // What observes calls and the process: the audit log, readiness.
    &["audit", "health"],
    // What a reload swaps.
    &["reload"],
    // One tower layer per file.
    &["layers"],
    // The listener, the admin endpoints, the development PKI, the probe of
    // a deployment (a client of the others; nothing uses it).
    &["server", "admin", "dev", "probe"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

/// The source without comments and string literals.
fn code_of(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '/' if chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'*') => {
                let mut last = ' ';
                for c in chars.by_ref() {
                    if last == '*' && c == '/' {
                        break;
                    }
                    last = c;
                }
            }
            '"' => {
                let mut escaped = false;
                for c in chars.by_ref() {
                    if !escaped && c == '"' {
                        break;
                    }
                    escaped = !escaped && c == '\\';
                }
                out.push_str("\"\"");
            }
            _ => out.push(c),
        }
    }
    // Test modules may reach anywhere.
    match out.find("#[cfg(test)]\nmod tests {") {
        Some(at) => out[..at].to_owned(),
        None => out,
    }
}

fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs")
            && path.file_name().is_some_and(|n| n != "tests.rs")
        {
            out.push(path);
        }
    }
}

/// The top-level modules `code` names after `crate::`, also inside a
/// grouped import (`crate::{a, b::{c, d}}` names `a` and `b`).
fn modules_used(code: &str) -> Vec<String> {
    fn ident(s: &str) -> String {
        s.trim_start()
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || *c == '_')
            .collect()
    }
    let mut out = Vec::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + 7..];
        if !rest.starts_with('{') {
            out.push(ident(rest));
            continue;
        }
        // Each item of the group at depth 1 starts with a module name.
        let mut depth = 0;
        let mut item_start = true;
        for (i, c) in rest.char_indices() {
            match c {
                '{' => {
                    depth += 1;
                    if depth == 1 {
                        out.push(ident(&rest[i + 1..]));
                        item_start = false;
                    }
                }
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
                ',' if depth == 1 => item_start = true,
                _ if item_start && depth == 1 && !c.is_whitespace() => {
                    out.push(ident(&rest[i..]));
                    item_start = false;
                }
                _ => {}
            }
        }
    }
    out.retain(|m| !m.is_empty());
    out
}

#[test]
fn top_level_modules_only_use_lower_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut uses: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut unlisted = Vec::new();
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        if name == "lib" || name == "main" || name == "bin" {
            continue;
        }
        if layer_of(&name).is_none() {
            unlisted.push(name.clone());
        }
        let mut sources = Vec::new();
        if path.is_dir() {
            files(&path, &mut sources);
        } else {
            sources.push(path.clone());
        }
        for file in sources {
            let code = code_of(&std::fs::read_to_string(&file).unwrap());
            for used in modules_used(&code) {
                if used != name {
                    let shown = file.strip_prefix(&src).unwrap().display().to_string();
                    uses.entry(name.clone())
                        .or_default()
                        .entry(used)
                        .or_insert(shown);
                }
            }
        }
    }
    assert!(
        unlisted.is_empty(),
        "modules missing from LAYERS (add them where they belong): {unlisted:?}"
    );
    let mut upward = Vec::new();
    for (module, used) in &uses {
        let own = layer_of(module).unwrap();
        for (target, file) in used {
            match layer_of(target) {
                Some(layer) if layer < own => {}
                _ => upward.push(format!("{module} -> {target} (in src/{file})")),
            }
        }
    }
    assert!(
        upward.is_empty(),
        "module uses that go sideways or up the layers:\n  {}",
        upward.join("\n  ")
    );
}

#[test]
fn the_reader_finds_uses_in_code_only() {
    let code =
        code_of("use crate::a; // crate::b\nlet s = \"crate::c\"; /* crate::d */ crate::e::f");
    assert!(code.contains("crate::a") && code.contains("crate::e"));
    assert!(!code.contains("crate::b") && !code.contains("crate::c") && !code.contains("crate::d"));
}

#[test]
fn the_reader_finds_modules_in_grouped_imports() {
    let used =
        modules_used("use crate::{audit, config::{Config, Raw}, \n  tls};\nuse crate::grpc::x;");
    assert_eq!(used, ["audit", "config", "tls", "grpc"]);
}
