//! Tidy checks that keep the connector platform honest; they run with
//! `cargo test --workspace`.
//!
//! * no provider name in code under `crates/` (comments and the generated
//!   wiring aside);
//! * every connector crate is a workspace member and linked by the binary;
//! * every connector has its README, fake and conformance test;
//! * relative markdown links point at files inside the repository.

use std::path::{Component, Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || name == "target" || name == "node_modules" {
            continue;
        }
        match e.file_type() {
            Ok(t) if t.is_dir() => walk(&p, out),
            Ok(t) if t.is_file() => out.push(p),
            _ => {}
        }
    }
}

/// A connector crate: its directory name, package name and display name.
struct Connector {
    dir: String,
    package: String,
    display_name: Option<String>,
}

fn connectors() -> Vec<Connector> {
    let mut v = Vec::new();
    let Ok(entries) = std::fs::read_dir(root().join("connectors")) else {
        return v;
    };
    for e in entries.flatten() {
        let manifest = e.path().join("Cargo.toml");
        let Ok(text) = std::fs::read_to_string(&manifest) else {
            continue;
        };
        let package = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("name = \""))
            .and_then(|l| l.strip_suffix('"'))
            .unwrap_or_else(|| panic!("{} has no package name", manifest.display()))
            .to_owned();
        let lib = std::fs::read_to_string(e.path().join("src/lib.rs")).unwrap_or_default();
        let display_name = lib
            .lines()
            .find_map(|l| l.trim().strip_prefix("display_name: \""))
            .and_then(|l| l.split('"').next())
            .map(str::to_owned);
        v.push(Connector {
            dir: e.file_name().to_string_lossy().into_owned(),
            package,
            display_name,
        });
    }
    v.sort_by(|a, b| a.dir.cmp(&b.dir));
    v
}

/// The line without its `//` comment (a `//` inside a string literal is
/// kept: URLs).
fn code_part(line: &str) -> &str {
    let b = line.as_bytes();
    let mut in_str = false;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' if in_str => i += 1,
            b'"' => in_str = !in_str,
            b'/' if !in_str && b.get(i + 1) == Some(&b'/') => return &line[..i],
            _ => {}
        }
        i += 1;
    }
    line
}

/// Whether `code` names `name`: an alphanumeric run (split at anything
/// else, `_` included) that is, starts or ends with it, ignoring case
/// (`tether_github`, `GithubSource`, `"GitHub"`).
fn names(code: &str, name: &str) -> bool {
    let name: String = name
        .chars()
        .filter(|c| c.is_alphanumeric())
        .collect::<String>()
        .to_lowercase();
    if name.is_empty() {
        return false;
    }
    code.split(|c: char| !c.is_alphanumeric())
        .map(str::to_lowercase)
        .any(|run| run.starts_with(&name) || run.ends_with(&name))
}

/// Files under `crates/` allowed to name a provider, with the reason.
const ALLOWED: &[(&str, &str)] = &[
    (
        "crates/tether/src/connectors.rs",
        "the one generated wiring file: it links every connector crate",
    ),
    (
        "crates/tether/Cargo.toml",
        "the binary's dependency on each connector crate and its `sandbox` feature (written by `cargo xtask new-connector`)",
    ),
];

/// Files allowed to name a provider for a while, with the reason, while work
/// moves the name out (each entry must still name one: delete it once its
/// file is clean). Empty: every shared crate is clean.
const PENDING: &[(&str, &str)] = &[];

/// Connectors named after an open standard rather than a provider: shared
/// crates may speak the standard themselves, with the reason.
const STANDARDS: &[(&str, &str)] = &[
    (
        "scim",
        "SCIM 2.0 (RFC 7643/7644): the hub serves its own users and groups over it (crates/tether-scim-server)",
    ),
    ("ldap", "LDAP (RFC 4511): a protocol, not a provider"),
];

#[test]
fn no_provider_name_in_shared_crates() {
    let root = root();
    let connectors = connectors();
    assert!(!connectors.is_empty(), "no connector crates found");
    let mut files = Vec::new();
    walk(&root.join("crates"), &mut files);
    let mut hits = Vec::new();
    let mut pending_hit = std::collections::BTreeSet::new();
    for f in files {
        let rel = f
            .strip_prefix(&root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let is_code = rel.ends_with(".rs") || rel.ends_with("Cargo.toml");
        if !is_code || ALLOWED.iter().any(|(p, _)| *p == rel) {
            continue;
        }
        let text = std::fs::read_to_string(&f).unwrap_or_default();
        let mut in_block = false;
        for (n, line) in text.lines().enumerate() {
            let trimmed = line.trim_start();
            if in_block {
                in_block = !trimmed.contains("*/");
                continue;
            }
            if trimmed.starts_with("/*") {
                in_block = !trimmed.contains("*/");
                continue;
            }
            let code = if rel.ends_with(".toml") {
                line.split('#').next().unwrap_or("")
            } else {
                code_part(line)
            };
            for c in connectors
                .iter()
                .filter(|c| !STANDARDS.iter().any(|(dir, _)| *dir == c.dir))
            {
                let mut provider_names = vec![c.dir.as_str()];
                provider_names.extend(c.display_name.as_deref());
                if let Some(name) = provider_names.iter().find(|name| names(code, name)) {
                    if PENDING.iter().any(|(p, _)| *p == rel) {
                        pending_hit.insert(rel.clone());
                        continue;
                    }
                    hits.push(format!("{rel}:{}: names `{name}`: {}", n + 1, line.trim()));
                }
            }
        }
    }
    assert!(
        hits.is_empty(),
        "code under crates/ names a provider; move it into the connector crate (or its fake), \
         find connectors and fakes through the registries, or test against a test connector:\n{}",
        hits.join("\n")
    );
    let stale: Vec<&str> = PENDING
        .iter()
        .map(|(p, _)| *p)
        .filter(|p| !pending_hit.contains(*p))
        .collect();
    assert!(
        stale.is_empty(),
        "these files no longer name a provider; delete them from PENDING in xtask/tests/tidy.rs: {}",
        stale.join(", ")
    );
}

#[test]
fn every_connector_is_a_member_and_linked() {
    let root = root();
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let wiring = std::fs::read_to_string(root.join("crates/tether/src/connectors.rs")).unwrap();
    let mut problems = Vec::new();
    for c in connectors() {
        if !manifest.contains(&format!("\"connectors/{}\"", c.dir)) {
            problems.push(format!(
                "connectors/{} is not a workspace member (add it to `members` in Cargo.toml)",
                c.dir
            ));
        }
        let krate = c.package.replace('-', "_");
        if !wiring.contains(&format!("{krate}::ensure_linked()")) {
            problems.push(format!(
                "connectors/{} is not linked: crates/tether/src/connectors.rs must call `{krate}::ensure_linked()`",
                c.dir
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Connectors that speak no HTTP, so the sandbox's HTTP fakes and the
/// conformance suite built on them do not apply: (directory, the test that
/// runs it against a real server it starts, why).
const NO_HTTP_FAKE: &[(&str, &str, &str)] = &[(
    "ldap",
    "tests/slapd.rs",
    "speaks LDAP, not HTTP: its test starts a real slapd",
)];

#[test]
fn every_connector_has_readme_fake_and_conformance_test() {
    let root = root();
    let mut problems = Vec::new();
    for c in connectors() {
        let dir = root.join("connectors").join(&c.dir);
        if !dir.join("README.md").is_file() {
            problems.push(format!("connectors/{} has no README.md", c.dir));
        }
        if let Some((_, test, _)) = NO_HTTP_FAKE.iter().find(|(d, _, _)| *d == c.dir) {
            if !dir.join(test).is_file() {
                problems.push(format!(
                    "connectors/{} has no {test}, the real-server test that stands in for its fake",
                    c.dir
                ));
            }
            continue;
        }
        if !dir.join("src/fake/mod.rs").is_file() && !dir.join("src/fake.rs").is_file() {
            problems.push(format!(
                "connectors/{} has no fake (src/fake/mod.rs or src/fake.rs)",
                c.dir
            ));
        }
        let conformance = dir.join("tests/conformance.rs");
        match std::fs::read_to_string(&conformance) {
            Ok(t) if t.contains("tether_conformance::run") => {}
            Ok(_) => problems.push(format!(
                "connectors/{}/tests/conformance.rs does not call `tether_conformance::run`",
                c.dir
            )),
            Err(_) => problems.push(format!("connectors/{} has no tests/conformance.rs", c.dir)),
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The targets of inline markdown links `[text](target)` outside code.
fn link_targets(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut fenced = false;
    for (n, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        // Drop inline code spans.
        let mut plain = String::new();
        for (i, part) in line.split('`').enumerate() {
            if i % 2 == 0 {
                plain.push_str(part);
            }
        }
        let mut rest = plain.as_str();
        while let Some(i) = rest.find("](") {
            rest = &rest[i + 2..];
            let Some(end) = rest.find(')') else { break };
            let target = rest[..end].split_whitespace().next().unwrap_or("");
            out.push((n + 1, target.to_owned()));
            rest = &rest[end..];
        }
    }
    out
}

#[test]
fn markdown_links_stay_inside_the_repository() {
    let root = root();
    let mut files = Vec::new();
    walk(&root, &mut files);
    let mut problems = Vec::new();
    for f in files
        .iter()
        .filter(|f| f.extension().is_some_and(|e| e == "md"))
    {
        let rel = f.strip_prefix(&root).unwrap().display().to_string();
        let text = std::fs::read_to_string(f).unwrap_or_default();
        for (line, target) in link_targets(&text) {
            if target.is_empty()
                || target.starts_with('#')
                || target.contains("://")
                || target.starts_with("mailto:")
            {
                continue;
            }
            let path = target.split('#').next().unwrap_or("");
            if path.is_empty() {
                continue;
            }
            // Resolve lexically; `..` must not climb above the root.
            let base = if path.starts_with('/') {
                root.clone()
            } else {
                f.parent().unwrap().to_owned()
            };
            let mut resolved = base;
            let mut escaped = false;
            for c in Path::new(path.trim_start_matches('/')).components() {
                match c {
                    Component::ParentDir => {
                        resolved.pop();
                        if !resolved.starts_with(&root) {
                            escaped = true;
                        }
                    }
                    Component::Normal(p) => resolved.push(p),
                    _ => {}
                }
            }
            if escaped || !resolved.starts_with(&root) {
                problems.push(format!(
                    "{rel}:{line}: `{target}` points outside the repository"
                ));
            } else if !resolved.exists() {
                problems.push(format!("{rel}:{line}: `{target}` points to a missing file"));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "broken markdown links:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_name_matcher_finds_identifiers_and_skips_comments() {
    assert!(names("use tether_github as _;", "github"));
    assert!(names("let s = GithubSource::new();", "github"));
    assert!(names("app: \"GitHub\",", "GitHub"));
    assert!(!names("let hub = Hub::new();", "github"));
    assert_eq!(code_part("let x = 1; // github"), "let x = 1; ");
    assert_eq!(
        code_part("let u = \"https://x\"; // c"),
        "let u = \"https://x\"; "
    );
    assert_eq!(
        link_targets("see [a](../x.md#y) and `[b](c)`\n```\n[d](e)\n```"),
        vec![(1, "../x.md#y".to_owned())]
    );
}
