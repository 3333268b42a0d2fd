//! Compile tests of `#[worker::handler]` and `#[worker::init]`: `pass/` must build, `fail/` must
//! fail with the messages pinned in the `.stderr` files (rustc 1.95; regenerate with
//! `TRYBUILD=overwrite cargo test --test ui` when the toolchain changes).
//!
//! trybuild also *runs* each pass case and requires exit code 0. The generated `fn main` runs
//! a real worker: without `RUNPOD_WEBHOOK_GET_JOB` it is in local test mode and runs one job
//! from `./test_input.json`, exiting 1 if there is none or the job fails. trybuild runs the
//! binaries in its generated project directory (`<target>/tests/trybuild/<package>/`), which is
//! also their `CARGO_MANIFEST_DIR`; so this driver writes `test_input.json` there first. Cases
//! that keep the generated `main` then run one real job end to end, and `test_input =
//! "test_input.json"` finds the file to embed. Cases that only need to type-check the expansion
//! use `main = false` and a `fn main` that names `worker_main` without calling it.

use std::path::Path;

/// The input every pass case with a generated `main` accepts.
const TEST_INPUT: &str = r#"{"input": {"text": "hi"}}"#;

#[test]
fn ui() {
    // `CARGO_TARGET_TMPDIR` is `<target>/tmp`; trybuild's project is `<target>/tests/trybuild/<package>`.
    let target = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target directory");
    let project = target
        .join("tests")
        .join("trybuild")
        .join(env!("CARGO_PKG_NAME"));
    std::fs::create_dir_all(&project).expect("create trybuild's project directory");
    std::fs::write(project.join("test_input.json"), TEST_INPUT).expect("write test_input.json");
    // For fail/test_input_not_json.rs: a trailing comma.
    std::fs::write(
        project.join("bad_test_input.json"),
        "{\"input\": {\"text\": \"hi\",}}\n",
    )
    .expect("write bad_test_input.json");

    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass/*.rs");
    t.compile_fail("tests/ui/fail/*.rs");
}

/// A handler in a library crate: its generated `main` would never run, so without
/// `main = false` it is an error at the attribute; with it, the binary calls `worker_main()`.
/// (trybuild builds every case as a binary, so this one is a crate of its own.)
#[test]
fn a_handler_in_a_library_needs_main_false() {
    let target = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target directory");
    let krate = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ui-library-crate");
    std::fs::create_dir_all(krate.join("src/bin")).expect("create the crate");
    let runtime = Path::new(env!("CARGO_MANIFEST_DIR")).join("worker-runtime");
    let manifest = format!(
        "[package]\nname = \"library-handler\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n\
         [dependencies]\nworker = {{ package = \"worker-runtime\", path = {:?} }}\n\n[workspace]\n",
        runtime.display().to_string()
    );
    std::fs::write(krate.join("Cargo.toml"), manifest).expect("write Cargo.toml");
    // The workspace's versions, so nothing new is resolved or built.
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.lock"),
        krate.join("Cargo.lock"),
    )
    .expect("copy Cargo.lock");
    let check = |lib: &str, bin: Option<&str>| {
        std::fs::write(krate.join("src/lib.rs"), lib).expect("write lib.rs");
        let main = krate.join("src/bin/app.rs");
        match bin {
            Some(bin) => std::fs::write(&main, bin).expect("write app.rs"),
            None => {
                let _ = std::fs::remove_file(&main);
            }
        }
        std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["check", "--quiet", "--offline"])
            .current_dir(&krate)
            // trybuild's target directory: the dependencies are built there already.
            .env("CARGO_TARGET_DIR", target.join("tests").join("trybuild"))
            .output()
            .expect("run cargo check")
    };

    let out = check(
        "#[worker::handler]\npub fn generate(input: String) -> String {\n    input\n}\n",
        None,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a handler in a library compiled");
    assert!(
        stderr.contains(
            "`#[worker::handler]` generates `fn main`, which a library never runs: put the \
             handler in `src/main.rs`, or write `#[worker::handler(main = false)]` here"
        ) && stderr.contains("src/lib.rs:1:1"),
        "{stderr}"
    );

    let out = check(
        "#[worker::handler(main = false)]\npub fn generate(input: String) -> String {\n    input\n}\n",
        Some("fn main() -> std::process::ExitCode {\n    library_handler::worker_main()\n}\n"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
