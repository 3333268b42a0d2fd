//! Compile tests of `#[worker::handler]` and `#[worker::init]`: `pass/` must build, `fail/` must
//! fail with the messages pinned in the `.stderr` files (rustc 1.95; regenerate with
//! `TRYBUILD=overwrite cargo test --test ui` when the toolchain changes).
//!
//! trybuild also *runs* each pass case and requires exit code 0. The generated `fn main` would
//! start a real worker: with no `RUNPOD_WEBHOOK_GET_JOB` it looks for test input and exits 1,
//! and `test_input = "…"` cannot help because `CARGO_MANIFEST_DIR` is trybuild's generated
//! project there. So most pass cases use `main = false` and a `fn main` that only names
//! `worker_main` (which type-checks the whole expansion without running it). The cases that
//! keep the generated `fn main` set `--test_input`-free behaviour aside by pointing
//! `test_input` at a file relative to trybuild's project (see `generated_main.rs`).

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass/*.rs");
    t.compile_fail("tests/ui/fail/*.rs");
}
