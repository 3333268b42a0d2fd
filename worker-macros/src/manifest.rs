//! The name the runtime crate has in the user's `Cargo.toml`.
//!
//! Generated code names `::worker`, the runtime's library name. A user who renamed the
//! dependency (`rp = { package = "worker-runtime", … }`) and wrote `#[rp::handler]` would get
//! "unresolved crate `worker`" on every generated path, with cargo's advice to `cargo add
//! worker`, a different crate. So the macros read the manifest of the crate being built
//! (`CARGO_MANIFEST_DIR`, which cargo sets for every compilation; a manifest change rebuilds
//! the crate) and use the renamed path, unless `crate = "…"` says otherwise.
//!
//! The scan is line-based, for the forms cargo documents: an inline table on one line
//! (`rp = { package = "worker-runtime", … }`), a `[dependencies.rp]` table with a `package`
//! key, and a member's `rp.workspace = true` / `rp = { workspace = true }` whose rename is in
//! the workspace root's `[workspace.dependencies]`. Anything else leaves `::worker`.

use std::path::Path;

/// The runtime package's name on crates.io.
const PACKAGE: &str = "worker-runtime";

/// The renamed dependency's name (as the crate's code sees it) when the manifest renames the
/// runtime, and does not also depend on it under its own name.
pub(crate) fn renamed_runtime() -> Option<String> {
    let dir = std::env::var_os("CARGO_MANIFEST_DIR")?;
    let dir = Path::new(&dir);
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).ok()?;
    let workspace = dir
        .ancestors()
        .skip(1)
        .filter_map(|d| std::fs::read_to_string(d.join("Cargo.toml")).ok())
        .find(|text| text.lines().any(|l| l.trim() == "[workspace]"));
    renamed_in(&manifest, workspace.as_deref())
}

/// [`renamed_runtime`] over manifest texts.
fn renamed_in(manifest: &str, workspace: Option<&str>) -> Option<String> {
    let mut names = renames(manifest);
    if let Some(root) = workspace {
        names.extend(
            renames(root)
                .into_iter()
                .filter(|name| inherits(manifest, name)),
        );
    }
    names.sort();
    names.dedup();
    // Depending on the runtime under its library name too, or under two names: leave the
    // default (and `crate = "…"`) to the user.
    match names.as_slice() {
        [name] if name != "worker" => Some(name.replace('-', "_")),
        _ => None,
    }
}

/// The keys of dependencies that name the runtime with `package = "worker-runtime"`.
fn renames(manifest: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut table: Option<String> = None;
    for line in manifest.lines().map(strip_comment) {
        let line = line.trim();
        if line.starts_with('[') {
            // `[dependencies.rp]`, `[target.'cfg(unix)'.dev-dependencies.rp]`,
            // `[workspace.dependencies.rp]`: a table of one dependency.
            table = line
                .trim_matches(|c| c == '[' || c == ']')
                .rsplit_once("dependencies.")
                .map(|(_, name)| unquote(name).to_owned());
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let key = unquote(key.trim());
        match &table {
            Some(name) if key == "package" && unquote(value.trim()) == PACKAGE => {
                names.push(name.clone());
            }
            None if value.trim_start().starts_with('{') && names_package(value) => {
                names.push(key.to_owned());
            }
            _ => {}
        }
    }
    names
}

/// Whether an inline table says `package = "worker-runtime"`.
fn names_package(table: &str) -> bool {
    table
        .trim()
        .trim_start_matches('{')
        .trim_end_matches('}')
        .split(',')
        .filter_map(|pair| pair.split_once('='))
        .any(|(k, v)| unquote(k.trim()) == "package" && unquote(v.trim()) == PACKAGE)
}

/// Whether a member manifest takes `name` from the workspace.
fn inherits(manifest: &str, name: &str) -> bool {
    manifest.lines().map(strip_comment).any(|line| {
        let line = line.trim();
        let Some(rest) = line.strip_prefix(name) else {
            return false;
        };
        let rest = rest.trim_start();
        (rest.starts_with(".workspace") || rest.starts_with('='))
            && rest.contains("workspace")
            && rest.contains("true")
    })
}

fn strip_comment(line: &str) -> &str {
    // A `#` inside a string is rare in dependency lines; good enough for the keys read here.
    line.split_once('#').map_or(line, |(code, _)| code)
}

fn unquote(text: &str) -> &str {
    text.trim().trim_matches(|c| c == '"' || c == '\'')
}

#[cfg(test)]
mod tests {
    use super::renamed_in;

    #[test]
    fn finds_an_inline_rename() {
        let toml = "[dependencies]\nrp = { package = \"worker-runtime\", version = \"0.1\" }\n";
        assert_eq!(renamed_in(toml, None).as_deref(), Some("rp"));
        let spaced = "[dependencies]\n\"my-rp\"={package='worker-runtime'} # renamed\n";
        assert_eq!(renamed_in(spaced, None).as_deref(), Some("my_rp"));
    }

    #[test]
    fn finds_a_dependency_table() {
        let toml = "[dev-dependencies.rp]\nversion = \"0.1\"\npackage = \"worker-runtime\"\n";
        assert_eq!(renamed_in(toml, None).as_deref(), Some("rp"));
    }

    #[test]
    fn finds_a_rename_inherited_from_the_workspace() {
        let root = "[workspace]\n[workspace.dependencies]\nrp = { package = \"worker-runtime\", path = \"x\" }\n";
        assert_eq!(
            renamed_in("[dependencies]\nrp.workspace = true\n", Some(root)).as_deref(),
            Some("rp")
        );
        assert_eq!(
            renamed_in("[dependencies]\nrp = { workspace = true }\n", Some(root)).as_deref(),
            Some("rp")
        );
        // The workspace renames it, this member does not use it.
        assert_eq!(
            renamed_in("[dependencies]\nserde = \"1\"\n", Some(root)),
            None
        );
    }

    #[test]
    fn leaves_the_default_otherwise() {
        for toml in [
            "[dependencies]\nworker-runtime = \"0.1\"\n",
            "[dependencies]\nworker = { package = \"worker-runtime\", path = \"..\" }\n",
            // Under its own name and renamed: the user chooses with `crate = "…"`.
            "[dependencies]\nworker = { package = \"worker-runtime\" }\n[dev-dependencies]\nrp = { package = \"worker-runtime\" }\n",
            // Two renames.
            "[dependencies]\na = { package = \"worker-runtime\" }\nb = { package = \"worker-runtime\" }\n",
            "[dependencies]\nother = { package = \"other-runtime\" }\n",
            "# rp = { package = \"worker-runtime\" }\n",
        ] {
            assert_eq!(renamed_in(toml, None), None, "{toml}");
        }
    }
}
