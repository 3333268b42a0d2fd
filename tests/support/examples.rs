//! Where `cargo test` put the repository's example workers (for the root package's tests,
//! through `tests/support/mod.rs`).

#![allow(unreachable_pub)]

use std::path::PathBuf;

/// A built example's path. `cargo test --workspace` builds the examples; a single test target
/// alone (`cargo test --test e2e`) does not, so build them first with `cargo build --examples`.
pub fn example(name: &str) -> PathBuf {
    // The test binary is target/<profile>/deps/<test>; examples are in target/<profile>/examples.
    let exe = std::env::current_exe().unwrap();
    let path = exe
        .parent()
        .and_then(|deps| deps.parent())
        .unwrap()
        .join("examples")
        .join(name);
    assert!(
        path.exists(),
        "example {name} is not built at {}; run `cargo build --examples` (or `cargo test --workspace`) first",
        path.display()
    );
    path
}
