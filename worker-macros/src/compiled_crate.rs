//! What the compiler's own command line says about the crate the macro expands in.
//!
//! A `#[worker::handler]` generates `fn main`. In a library that function is never run, and
//! next to the user's own `fn main` rustc only says "`main` is defined multiple times"; both
//! mistakes deserve a message that says the fix. A proc macro runs inside the rustc process
//! compiling the crate, so its arguments are that command line: Cargo always passes
//! `--crate-type` (`lib` for a library target, `bin` for binaries and examples, none for test
//! harnesses) and the crate root's path. Where either is absent or unreadable (rust-analyzer's
//! macro server, rustdoc) nothing is assumed.

/// Whether the crate being compiled is a library (`lib`, `rlib`, `dylib`, `cdylib`,
/// `staticlib`), as far as the command line says.
pub(crate) fn is_library() -> bool {
    library_in(std::env::args())
}

fn library_in(args: impl IntoIterator<Item = String>) -> bool {
    let mut args = args.into_iter();
    let mut kinds = Vec::new();
    while let Some(arg) = args.next() {
        if arg == "--crate-type" {
            kinds.extend(args.next());
        } else if let Some(kind) = arg.strip_prefix("--crate-type=") {
            kinds.push(kind.to_owned());
        }
    }
    // `--crate-type lib,bin` builds both: the binary does run the generated `main`.
    let kinds: Vec<&str> = kinds.iter().flat_map(|k| k.split(',')).collect();
    !kinds.is_empty()
        && kinds
            .iter()
            .all(|k| matches!(*k, "lib" | "rlib" | "dylib" | "cdylib" | "staticlib"))
}

/// Whether the crate root (`src/main.rs`, an example's file) defines its own top-level
/// `fn main`, one that is not itself a handler. A handler that generates `main` next to it is a
/// mistake wherever the handler is: in the root the two clash, in a module the generated one is
/// never run.
pub(crate) fn root_has_own_main() -> bool {
    // Read and parsed once per process: the crate root is fixed for a rustc run (and where the
    // process outlives one crate, as rust-analyzer's macro server, there is no root to read).
    static OWN_MAIN: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *OWN_MAIN.get_or_init(read_root_has_own_main)
}

fn read_root_has_own_main() -> bool {
    let args: Vec<String> = std::env::args().collect();
    let rustdoc = args
        .first()
        .is_some_and(|program| program.contains("rustdoc"));
    if rustdoc {
        return false;
    }
    root_file(&args)
        .and_then(|path| std::fs::read_to_string(path).ok())
        .is_some_and(|source| has_own_main(&source))
}

/// The crate root on a rustc command line: its one argument naming an existing `.rs` file
/// (the values of `--extern`, `-L` and `--out-dir` never end in `.rs`).
fn root_file(args: &[String]) -> Option<&str> {
    let mut roots = args
        .iter()
        .skip(1)
        .filter(|arg| arg.ends_with(".rs") && !arg.starts_with('-'))
        .filter(|arg| std::path::Path::new(arg).is_file());
    let root = roots.next()?;
    roots.next().is_none().then_some(root.as_str())
}

fn has_own_main(source: &str) -> bool {
    let Ok(file) = syn::parse_file(source) else {
        return false;
    };
    file.items.iter().any(|item| match item {
        syn::Item::Fn(function) => {
            function.sig.ident == "main"
                && !function.attrs.iter().any(|attr| {
                    // `#[cfg(…)] fn main` may be compiled out; `#[worker::handler] fn main` is
                    // the handler itself, with its own message.
                    let path = attr.path();
                    path.is_ident("cfg")
                        || path
                            .segments
                            .last()
                            .is_some_and(|last| last.ident == "handler")
                })
        }
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use super::{has_own_main, library_in, root_file};

    fn args(line: &str) -> Vec<String> {
        line.split(' ').map(str::to_owned).collect()
    }

    #[test]
    fn cargo_library_targets_are_libraries() {
        assert!(library_in(args(
            "rustc --crate-name app --edition=2024 src/lib.rs --crate-type lib --emit=link"
        )));
        assert!(library_in(args("rustdoc --crate-type=cdylib src/lib.rs")));
    }

    #[test]
    fn binaries_tests_and_unknown_are_not() {
        assert!(!library_in(args(
            "rustc --crate-name app src/main.rs --crate-type bin"
        )));
        assert!(!library_in(args(
            "rustc --crate-name app src/lib.rs --test"
        )));
        assert!(!library_in(args("rust-analyzer-proc-macro-srv")));
        assert!(!library_in(args("rustc --crate-type lib,bin src/main.rs")));
        assert!(!library_in(args("rustc src/main.rs --crate-type")));
    }

    #[test]
    fn the_crate_root_is_the_one_rs_argument() {
        let line = |rest: &str| {
            let mut all = vec!["rustc".to_owned()];
            all.extend(rest.split(' ').map(str::to_owned));
            all
        };
        // An existing file: this one.
        let absolute = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("src/compiled_crate.rs")
            .display()
            .to_string();
        assert_eq!(
            root_file(&line(&format!(
                "--crate-name app --edition=2024 {absolute} --crate-type bin -L dependency=/t"
            ))),
            Some(absolute.as_str())
        );
        assert_eq!(root_file(&line("--crate-name app missing.rs")), None);
        assert_eq!(root_file(&line(&format!("{absolute} {absolute}"))), None);
    }

    #[test]
    fn an_own_main_is_a_top_level_fn_main_that_is_not_the_handler() {
        assert!(has_own_main("fn main() {}"));
        assert!(has_own_main(
            "#[worker::handler] fn h(i: String) -> String { i }\n#[tokio::main] async fn main() {}"
        ));
        assert!(!has_own_main(
            "#[worker::handler] fn main(i: String) -> String { i }"
        ));
        assert!(!has_own_main("#[cfg(test)] fn main() {}"));
        assert!(!has_own_main("mod inner { fn main() {} } fn other() {}"));
        assert!(!has_own_main("fn main() { not rust"));
    }
}
