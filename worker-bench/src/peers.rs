//! Getting the workers ready before anything is timed: our release builds, the crates.io
//! `runpod-sdk` echo (generated under `target/bench/` and built with its own lock file), the
//! Python SDK's venv, and the on-disk size of each.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::kind::Kind;

/// The pinned peer versions: the report quotes them, so changing one here is the whole upgrade.
pub(crate) const RUNPOD_PY: &str = "1.12.0";
pub(crate) const RUNPOD_SDK: &str = "0.8.0";

/// Where the workers are. A peer that could not be built or installed holds why, for the report.
#[derive(Debug)]
pub(crate) struct Paths {
    pub(crate) root: PathBuf,
    pub(crate) bench: PathBuf,
    pub(crate) release: PathBuf,
    pub(crate) runpod_sdk: Result<PathBuf, String>,
    pub(crate) python: Result<PathBuf, String>,
}

fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// Run `cmd` to completion; on failure, the last lines of its output.
fn run_ok(cmd: &mut Command, what: &str) -> Result<(), String> {
    let out = cmd
        .output()
        .map_err(|e| format!("{what} could not start: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let tail: Vec<&str> = text.lines().rev().take(15).collect();
        Err(format!(
            "{what} failed:\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        ))
    }
}

/// Write `contents` to `path` unless it already holds them (keeps Cargo's mtimes).
fn write_if_changed(path: &Path, contents: &str) -> std::io::Result<()> {
    if std::fs::read_to_string(path).is_ok_and(|c| c == contents) {
        return Ok(());
    }
    std::fs::write(path, contents)
}

/// Our workers in release: `bench-echo` and `bench-ceiling` (this crate's binaries) and the
/// `echo` example, whose size the report quotes.
pub(crate) fn build_ours(root: &Path) -> Result<(), String> {
    eprintln!("building the workers (release)");
    run_ok(
        cargo().current_dir(root).args([
            "build",
            "--release",
            "--quiet",
            "-p",
            "worker-bench",
            "--bins",
        ]),
        "cargo build -p worker-bench",
    )
    .and_then(|()| {
        run_ok(
            cargo()
                .current_dir(root)
                .args(["build", "--release", "--quiet", "--example", "echo"]),
            "cargo build --example echo",
        )
    })
}

/// The runpod-sdk echo worker, as its own Cargo project under `bench` (outside the workspace, so
/// that its dependencies do not enter our lock file). Returns its binary.
pub(crate) fn build_runpod_sdk(bench: &Path) -> Result<PathBuf, String> {
    let dir = bench.join("runpod-sdk-echo");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    write_if_changed(
        &dir.join("Cargo.toml"),
        include_str!("../peers/runpod_sdk_echo.toml"),
    )
    .map_err(|e| e.to_string())?;
    write_if_changed(
        &dir.join("main.rs"),
        include_str!("../peers/runpod_sdk_echo.rs"),
    )
    .map_err(|e| e.to_string())?;
    eprintln!(
        "building the runpod-sdk {RUNPOD_SDK} echo worker in {}",
        dir.display()
    );
    run_ok(
        cargo()
            .args(["build", "--release", "--quiet", "--manifest-path"])
            .arg(dir.join("Cargo.toml"))
            .env_remove("CARGO_TARGET_DIR")
            .env_remove("RUSTFLAGS"),
        "cargo build (runpod-sdk echo)",
    )?;
    Ok(dir.join("target/release/runpod-sdk-echo"))
}

/// A venv under `bench` with the pinned Python SDK, installed once (`.installed` marks a
/// finished install). Returns its interpreter.
pub(crate) fn setup_python(bench: &Path) -> Result<PathBuf, String> {
    venv(
        bench,
        &format!("venv-runpod-{RUNPOD_PY}"),
        &[format!("runpod=={RUNPOD_PY}")],
    )
}

/// A venv under `bench` named `name` with `packages` from PyPI (made once: a stamp file says it
/// is complete); its python.
pub(crate) fn venv(bench: &Path, name: &str, packages: &[String]) -> Result<PathBuf, String> {
    let venv = bench.join(name);
    let python = venv.join("bin/python");
    if venv.join(".installed").exists() {
        return Ok(python);
    }
    eprintln!("installing {} into {}", packages.join(" "), venv.display());
    run_ok(
        Command::new("python3").args(["-m", "venv"]).arg(&venv),
        "python3 -m venv",
    )?;
    run_ok(
        Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .args(packages),
        &format!("pip install {}", packages.join(" ")),
    )?;
    std::fs::write(venv.join(".installed"), packages.join("\n")).map_err(|e| e.to_string())?;
    Ok(python)
}

/// What each worker takes on disk, in MB: a stripped release binary, or for Python the whole
/// venv. Kinds that share a binary share its size.
pub(crate) fn sizes(paths: &Paths) -> BTreeMap<Kind, f64> {
    let mut sizes = BTreeMap::new();
    if let Some(mb) = stripped_mb(&paths.release.join("examples/echo"), &paths.bench) {
        sizes.insert(Kind::Ours, mb);
        sizes.insert(Kind::OursCurrentThread, mb);
    }
    if let Some(mb) = stripped_mb(&paths.release.join("bench-ceiling"), &paths.bench) {
        sizes.insert(Kind::Ceiling, mb);
    }
    if let Ok(p) = &paths.runpod_sdk
        && let Some(mb) = stripped_mb(p, &paths.bench)
    {
        sizes.insert(Kind::RunpodSdk, mb);
    }
    if let Ok(p) = &paths.python
        && let Some(venv) = p.parent().and_then(Path::parent)
        && let Some(mb) = dir_mb(venv)
    {
        sizes.insert(Kind::PySync, mb);
        sizes.insert(Kind::PyAsync, mb);
    }
    sizes
}

/// A binary's size after `strip` (of a copy made in `bench`), in MB.
pub(crate) fn stripped_mb(binary: &Path, bench: &Path) -> Option<f64> {
    let copy = bench.join("stripped");
    std::fs::copy(binary, &copy).ok()?;
    let _ = Command::new("strip").arg(&copy).status();
    let size = std::fs::metadata(&copy).ok()?.len();
    Some(size as f64 / 1e6)
}

fn dir_mb(dir: &Path) -> Option<f64> {
    let out = Command::new("du").arg("-sb").arg(dir).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let bytes: f64 = text.split_whitespace().next()?.parse().ok()?;
    Some(bytes / 1e6)
}
