//! `cargo xtask new-connector <slug>`: scaffolds `connectors/<slug>/` and
//! its wiring (workspace member and dependency, the binary's dependency and
//! `sandbox` feature, the line in `crates/tether/src/connectors.rs`).

use std::path::Path;

use anyhow::{bail, Context, Result};

const TEMPLATES: &[(&str, &str)] = &[
    ("Cargo.toml", include_str!("../templates/Cargo.toml.tmpl")),
    ("README.md", include_str!("../templates/README.md.tmpl")),
    ("src/lib.rs", include_str!("../templates/lib.rs.tmpl")),
    ("src/source.rs", include_str!("../templates/source.rs.tmpl")),
    ("src/errors.rs", include_str!("../templates/errors.rs.tmpl")),
    ("src/fake/mod.rs", include_str!("../templates/fake.rs.tmpl")),
    (
        "tests/conformance.rs",
        include_str!("../templates/conformance.rs.tmpl"),
    ),
];

/// A checked slug: lowercase ASCII letters and digits, starting with a
/// letter, words joined by single hyphens (`entra-id`).
pub fn check_slug(slug: &str) -> Result<()> {
    let ok = slug.len() >= 2
        && slug.len() <= 32
        && slug.starts_with(|c: char| c.is_ascii_lowercase())
        && !slug.ends_with('-')
        && !slug.contains("--")
        && slug
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !ok {
        bail!("`{slug}` is not a connector slug: use 2-32 lowercase letters and digits, starting with a letter, words joined by single hyphens (e.g. `slack`, `entra-id`)");
    }
    Ok(())
}

/// The files of the crate for `slug`, as (path inside the crate, text).
pub fn render(slug: &str) -> Vec<(&'static str, String)> {
    // `entra-id` → `EntraId` (types), `tether_entra_id` (the crate's path).
    let name: String = slug
        .split('-')
        .map(|w| {
            let mut w = w.to_owned();
            w[..1].make_ascii_uppercase();
            w
        })
        .collect();
    let ident = slug.replace('-', "_");
    TEMPLATES
        .iter()
        .map(|(path, t)| {
            let text = t
                .replace("{{slug}}", slug)
                .replace("{{crate}}", &format!("tether_{ident}"))
                .replace("{{Name}}", &name)
                .replace("{{display}}", &name);
            (*path, text)
        })
        .collect()
}

/// Inserts `line` before the first line of `text` after `anchor` that
/// matches `before`, unless `line` is already there.
fn insert_before(
    text: &str,
    anchor: &str,
    before: impl Fn(&str) -> bool,
    line: &str,
) -> Result<String> {
    if text.lines().any(|l| l.trim() == line.trim()) {
        return Ok(text.to_owned());
    }
    let mut out = Vec::new();
    let mut seen_anchor = false;
    let mut done = false;
    for l in text.lines() {
        if !done && seen_anchor && before(l) {
            out.push(line.to_owned());
            done = true;
        }
        if l.trim() == anchor {
            seen_anchor = true;
        }
        out.push(l.to_owned());
    }
    if !done {
        bail!(
            "could not find where to add `{}` (after `{anchor}`)",
            line.trim()
        );
    }
    let mut s = out.join("\n");
    s.push('\n');
    Ok(s)
}

/// The root manifest with the connector as member and workspace dependency.
pub fn wire_root_manifest(text: &str, slug: &str) -> Result<String> {
    let t = insert_before(
        text,
        "members = [",
        |l| l.trim() == "\"xtask\",",
        &format!("    \"connectors/{slug}\","),
    )?;
    insert_before(
        &t,
        "[workspace.dependencies]",
        |l| l.trim().is_empty(),
        &format!("tether-{slug} = {{ path = \"connectors/{slug}\" }}"),
    )
}

/// The binary's manifest with the dependency and the fake in `sandbox`.
pub fn wire_binary_manifest(text: &str, slug: &str) -> Result<String> {
    let t = insert_before(
        text,
        "[dependencies]",
        |l| l.trim().is_empty(),
        &format!("tether-{slug}.workspace = true"),
    )?;
    let feature = format!("\"tether-{slug}/sandbox\"");
    let mut out = Vec::new();
    let mut found = false;
    for l in t.lines() {
        if let Some(rest) = l.strip_prefix("sandbox = [") {
            found = true;
            if l.contains(&feature) {
                out.push(l.to_owned());
            } else {
                let inner = rest.trim_end_matches(']').trim();
                if inner.is_empty() {
                    out.push(format!("sandbox = [{feature}]"));
                } else {
                    out.push(format!("sandbox = [{inner}, {feature}]"));
                }
            }
        } else {
            out.push(l.to_owned());
        }
    }
    if !found {
        bail!("crates/tether/Cargo.toml has no `sandbox = [...]` feature line");
    }
    Ok(out.join("\n") + "\n")
}

/// The wiring file with the connector linked.
pub fn wire_connectors_rs(text: &str, slug: &str) -> Result<String> {
    insert_before(
        text,
        "pub fn ensure_linked() {",
        |l| l.trim() == "}",
        &format!("    tether_{}::ensure_linked();", slug.replace('-', "_")),
    )
}

pub fn run(root: &Path, args: &[&str]) -> Result<()> {
    let [slug] = args else {
        bail!("usage: cargo xtask new-connector <slug>");
    };
    check_slug(slug)?;
    let dir = root.join("connectors").join(slug);
    if dir.exists() {
        bail!("{} exists already", dir.display());
    }
    for (path, text) in render(slug) {
        let p = dir.join(path);
        std::fs::create_dir_all(p.parent().unwrap())?;
        std::fs::write(&p, text).with_context(|| format!("writing {}", p.display()))?;
    }
    let edit = |rel: &str, f: &dyn Fn(&str) -> Result<String>| -> Result<()> {
        let p = root.join(rel);
        let text =
            std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
        std::fs::write(&p, f(&text)?).with_context(|| format!("writing {}", p.display()))
    };
    edit("Cargo.toml", &|t| wire_root_manifest(t, slug))?;
    edit("crates/tether/Cargo.toml", &|t| {
        wire_binary_manifest(t, slug)
    })?;
    edit("crates/tether/src/connectors.rs", &|t| {
        wire_connectors_rs(t, slug)
    })?;
    // The templates are not laid out by rustfmt; the generated crate is.
    let fmt = std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["fmt", "-p", &format!("tether-{slug}")])
        .current_dir(root)
        .status();
    if !fmt.is_ok_and(|s| s.success()) {
        eprintln!("note: `cargo fmt -p tether-{slug}` failed; run it before committing");
    }
    println!(
        "created connectors/{slug}; replace its TODOs, then run `cargo test -p tether-{slug}` (the conformance suite)"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_checked() {
        assert!(check_slug("slack").is_ok());
        assert!(check_slug("m365").is_ok());
        assert!(check_slug("Slack").is_err());
        assert!(check_slug("entra-id").is_ok());
        assert!(check_slug("my-app").is_ok());
        assert!(check_slug("my-").is_err());
        assert!(check_slug("my--app").is_err());
        assert!(check_slug("1app").is_err());
    }

    #[test]
    fn every_file_is_rendered_with_the_slug() {
        let files = render("zendesk");
        let paths: Vec<_> = files.iter().map(|(p, _)| *p).collect();
        for want in [
            "Cargo.toml",
            "README.md",
            "src/lib.rs",
            "src/source.rs",
            "src/errors.rs",
            "src/fake/mod.rs",
            "tests/conformance.rs",
        ] {
            assert!(paths.contains(&want), "{want} missing");
        }
        for (p, text) in &files {
            assert!(!text.contains("{{"), "{p} has an unreplaced placeholder");
        }
        let get = |p: &str| &files.iter().find(|(q, _)| *q == p).unwrap().1;
        assert!(get("Cargo.toml").contains("name = \"tether-zendesk\""));
        assert!(get("src/lib.rs").contains("slug: \"zendesk\""));
        assert!(get("src/lib.rs").contains("pub use source::ZendeskSource;"));
        assert!(get("src/fake/mod.rs").contains("connector: \"zendesk\""));
        assert!(get("tests/conformance.rs").contains("tether_conformance::run"));
        assert!(get("README.md").contains("TODO"));
    }

    #[test]
    fn wiring_is_inserted_once() {
        let root = "[workspace]\nmembers = [\n    \"crates/tether\",\n    \"xtask\",\n]\n\n[workspace.dependencies]\ntether-core = { path = \"crates/tether-core\" }\n\nanyhow = \"1\"\n";
        let once = wire_root_manifest(root, "zendesk").unwrap();
        assert!(once.contains("    \"connectors/zendesk\",\n    \"xtask\","));
        assert!(once.contains("tether-zendesk = { path = \"connectors/zendesk\" }\n\nanyhow"));
        assert_eq!(wire_root_manifest(&once, "zendesk").unwrap(), once);

        let bin = "[dependencies]\ntether-core.workspace = true\n\n[features]\nsandbox = [\"tether-a/sandbox\"]\n";
        let once = wire_binary_manifest(bin, "zendesk").unwrap();
        assert!(once.contains("tether-zendesk.workspace = true\n\n[features]"));
        assert!(once.contains("sandbox = [\"tether-a/sandbox\", \"tether-zendesk/sandbox\"]"));
        assert_eq!(wire_binary_manifest(&once, "zendesk").unwrap(), once);

        let rs = "/// Links.\npub fn ensure_linked() {\n    tether_a::ensure_linked();\n}\n";
        let once = wire_connectors_rs(rs, "zendesk").unwrap();
        assert!(once
            .contains("    tether_a::ensure_linked();\n    tether_zendesk::ensure_linked();\n}"));
        assert_eq!(wire_connectors_rs(&once, "zendesk").unwrap(), once);
    }

    #[test]
    fn the_real_wiring_files_accept_a_new_connector() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let read = |p: &str| std::fs::read_to_string(root.join(p)).unwrap();
        assert!(wire_root_manifest(&read("Cargo.toml"), "zendesk")
            .unwrap()
            .contains("connectors/zendesk"));
        assert!(
            wire_binary_manifest(&read("crates/tether/Cargo.toml"), "zendesk")
                .unwrap()
                .contains("tether-zendesk/sandbox")
        );
        assert!(
            wire_connectors_rs(&read("crates/tether/src/connectors.rs"), "zendesk")
                .unwrap()
                .contains("tether_zendesk::ensure_linked();")
        );
    }
}
