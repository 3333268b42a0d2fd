//! A Python venv for tests, made once under Cargo's test temp dir (`python3 -m venv`, then
//! `pip install` of one requirement from PyPI) and reused by later runs.
//!
//! Tests skip with the returned reason when python3 is missing, the install fails, or
//! `<skip_var>=1` is set; under CI (`CI` set) a failed setup fails the test instead, so a green
//! CI means the Python-backed tests ran.

#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The venv's `bin` directory with `requirement` installed, or why the tests are skipped.
pub fn venv(name: &str, requirement: &str, skip_var: &str) -> Result<PathBuf, String> {
    let result = setup(name, requirement, skip_var);
    if let Err(why) = &result
        && std::env::var_os("CI").is_some()
        && std::env::var(skip_var).as_deref() != Ok("1")
    {
        panic!("CI: these tests need `{requirement}` in a venv and it could not be set up: {why}");
    }
    result
}

fn setup(name: &str, requirement: &str, skip_var: &str) -> Result<PathBuf, String> {
    if std::env::var(skip_var).as_deref() == Ok("1") {
        return Err(format!("{skip_var}=1"));
    }
    if Command::new("python3")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_err()
    {
        return Err("python3 is not installed".into());
    }
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("venv-{name}"));
    let bin = venv.join("bin");
    let ready = venv.join(".installed");
    if std::fs::read_to_string(&ready).is_ok_and(|r| r == requirement) {
        return Ok(bin);
    }
    let run = |cmd: &mut Command, what: &str| -> Result<(), String> {
        let out = cmd
            .output()
            .map_err(|e| format!("{what} could not start: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{what} failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    };
    run(
        Command::new("python3").args(["-m", "venv"]).arg(&venv),
        "python3 -m venv",
    )?;
    run(
        Command::new(bin.join("python")).args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            requirement,
        ]),
        &format!("pip install {requirement}"),
    )?;
    std::fs::write(&ready, requirement).map_err(|e| e.to_string())?;
    Ok(bin)
}
