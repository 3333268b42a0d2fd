//! Which kind of crate the macro expands in, from the compiler's own command line.
//!
//! A `#[worker::handler]` generates `fn main`; in a library that function is never run, and the
//! mistake would compile silently. Cargo always passes `--crate-type` to rustc (`lib` for a
//! library target, `bin` for binaries and examples, none for test harnesses), and a proc macro
//! runs inside that rustc process. Where the flag is absent (a test harness, rust-analyzer's
//! macro server) nothing is assumed.

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

#[cfg(test)]
mod tests {
    use super::library_in;

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
}
