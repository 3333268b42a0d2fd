//! `cargo run --release -p worker-bench`: this crate's worker side by side with the official
//! Python SDK (runpod 1.12.0) and crates.io `runpod-sdk` 0.8.0, against the same in-process
//! platform, in the same run; plus the ceiling (a bare take-then-done client). Writes the
//! table into BENCHMARKS.md between the `bench:begin`/`bench:end` markers.
//!
//! The platform is [`lean`] (the worker routes only, one thread, so that the ceiling is bounded
//! by loopback and the client), or the project's emulator with `--platform emulator`; with the
//! lean one the ceiling is also measured against the emulator, for its CPU per request.
//!
//! Every worker is a separate process with equivalent echo handlers. Per process: a fresh
//! platform, timestamping job-take requests, jobs handed out and final results (the
//! [`recorder`]), and counting the jobs the worker holds; cold start (spawn → first job-take), warm-up, idle RSS, then the runs of its
//! concurrency (sequential latency at 1, a burst of trivial jobs, a burst of 100 ms jobs at 8
//! and 64), then peak RSS (VmHWM). RSS is summed over the worker's process group (the Python
//! SDK forks its heartbeat).
//!
//! Options (`--help`): `--runs N` (default 3; medians are quoted), `--quick` (1 run, shorter
//! bursts), `--skip-python`, `--skip-runpod-sdk`,
//! `--only ceiling,ours,ours-current_thread,ours-logs-off,runpod-sdk,python-sync,python-async`,
//! `--no-write` (print only); `--embed` measures serving a real model instead ([`embed`]).
//!
//! This file is the order of things: build, measure, report. [`peers`] builds and installs the
//! workers, [`process`] launches one, [`measure`] runs the scenarios against it (timed by
//! [`recorder`], sampled by [`sampling`]), [`report`] turns the samples into the table.

mod embed;
mod http;
mod kind;
mod lean;
mod measure;
mod peers;
mod process;
mod recorder;
mod report;
mod sampling;

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Parser;

use crate::kind::Kind;
use crate::measure::PlatformKind;
use crate::peers::Paths;
use crate::report::Report;

/// Benchmarks this crate's worker against the official Python SDK and runpod-sdk on the local
/// emulator, and writes the table into BENCHMARKS.md.
#[derive(Debug, Parser)]
#[command(name = "worker-bench")]
struct Args {
    /// Measure every worker N times and quote the medians [default: 3, or 1 with --quick]
    #[arg(long, value_name = "N")]
    runs: Option<usize>,
    /// A short check: one run (unless --runs says otherwise) and shorter bursts
    #[arg(long)]
    quick: bool,
    /// Don't install the Python SDK's venv, nor measure it
    #[arg(long)]
    skip_python: bool,
    /// Don't build the runpod-sdk echo worker, nor measure it
    #[arg(long)]
    skip_runpod_sdk: bool,
    /// Measure only these workers, comma-separated: ceiling, ours, ours-current_thread,
    /// ours-logs-off, runpod-sdk, python-sync, python-async
    #[arg(long, value_name = "NAMES", value_delimiter = ',', value_parser = parse_kind)]
    only: Option<Vec<Kind>>,
    /// Print the report only; leave BENCHMARKS.md as it is
    #[arg(long)]
    no_write: bool,
    /// The platform the workers take jobs from: `lean` (the worker routes only) or `emulator`
    #[arg(long, value_name = "NAME", default_value = "lean", value_parser = parse_platform)]
    platform: PlatformKind,
    /// Instead of the echo table: serving a real model (the embed example's model, unbatched
    /// and batched) against the Python SDK with sentence-transformers
    #[arg(long)]
    embed: bool,
    /// Instead of the echo table: a load-balancing worker (`--load-balancing`) against FastAPI
    /// on uvicorn, requests/s and latency over loopback
    #[arg(long)]
    http: bool,
}

/// A worker's name as `--only` takes it (its slug).
fn parse_kind(name: &str) -> Result<Kind, String> {
    Kind::ALL
        .into_iter()
        .find(|k| k.slug() == name)
        .ok_or_else(|| {
            let names: Vec<String> = Kind::ALL.iter().map(|k| k.slug()).collect();
            format!("not a worker; one of: {}", names.join(", "))
        })
}

fn parse_platform(name: &str) -> Result<PlatformKind, String> {
    match name {
        "lean" => Ok(PlatformKind::Lean),
        "emulator" => Ok(PlatformKind::Emulator),
        _ => Err("one of: lean, emulator".to_owned()),
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = Args::parse();
    let quick = args.quick;
    let runs = args.runs.unwrap_or(if quick { 1 } else { 3 });
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace")
        .to_path_buf();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let bench = target.join("bench");
    std::fs::create_dir_all(&bench).expect("target/bench");
    let _ = rustls_provider();

    if args.embed {
        let options = embed::EmbedOptions {
            quick,
            skip_python: args.skip_python,
            write: !args.no_write,
        };
        embed::run_all(&root, &target, options).await;
        return;
    }

    if let Err(e) = peers::build_ours(&root) {
        eprintln!("{e}");
        std::process::exit(1);
    }
    let release = target.join("release");
    if args.http {
        let paths = Paths {
            root: root.clone(),
            bench,
            release,
            runpod_sdk: Err("not used".into()),
            python: Err("not used".into()),
        };
        http::run_all(&paths, quick, !args.no_write).await;
        return;
    }
    let mut missing = Vec::new();
    let runpod_sdk = if args.skip_runpod_sdk {
        Err("skipped (--skip-runpod-sdk)".to_owned())
    } else {
        peers::build_runpod_sdk(&bench)
    };
    let python = if args.skip_python {
        Err("skipped (--skip-python)".to_owned())
    } else {
        peers::setup_python(&bench)
    };
    let mut kinds = vec![
        Kind::Ceiling,
        Kind::Ours,
        Kind::OursCurrentThread,
        Kind::OursQuiet,
    ];
    match &runpod_sdk {
        Ok(_) => kinds.push(Kind::RunpodSdk),
        Err(e) => missing.push((Kind::RunpodSdk, e.clone())),
    }
    match &python {
        Ok(_) => kinds.extend([Kind::PySync, Kind::PyAsync]),
        Err(e) => {
            missing.push((Kind::PySync, e.clone()));
            missing.push((Kind::PyAsync, e.clone()));
        }
    }
    // `--only ours,ceiling`: measure only these (by name, spaces and commas as `-`).
    if let Some(wanted) = &args.only {
        kinds.retain(|k| wanted.contains(k));
    }
    let paths = Paths {
        root: root.clone(),
        bench,
        release,
        runpod_sdk,
        python,
    };
    let sizes = peers::sizes(&paths);

    let load_before = report::load_average();
    let started = Instant::now();
    let samples = measure::all(&kinds, runs, &paths, quick, args.platform).await;
    // The ceiling against the emulator too: what it costs per request, for BENCHMARKS.md.
    let emulator_samples = if args.platform == PlatformKind::Lean && kinds.contains(&Kind::Ceiling)
    {
        measure::all(
            &[Kind::Ceiling],
            runs,
            &paths,
            quick,
            PlatformKind::Emulator,
        )
        .await
    } else {
        measure::Samples::new()
    };
    let elapsed = started.elapsed();
    let report = Report::new(&samples, runs, kinds, sizes, missing)
        .platform(args.platform, &emulator_samples);
    let out = report.render(quick, &load_before, elapsed);
    println!("{out}");

    if !args.no_write {
        report::write_into(&root.join("BENCHMARKS.md"), &out);
    }
}

/// reqwest (rustls without a default provider) needs one installed for the purge requests.
fn rustls_provider() -> Result<(), String> {
    rustls::crypto::ring::default_provider()
        .install_default()
        .map_err(|_| "a crypto provider was already installed".to_owned())
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory as _, Parser as _};

    use super::Args;
    use crate::kind::Kind;

    #[test]
    fn flags() {
        Args::command().debug_assert();
        let args = Args::try_parse_from(["worker-bench", "--quick"]).expect("--quick");
        assert!(args.quick && args.runs.is_none() && args.only.is_none() && !args.no_write);
        assert_eq!(args.platform, crate::measure::PlatformKind::Lean);
        let args =
            Args::try_parse_from(["worker-bench", "--platform", "emulator"]).expect("emulator");
        assert_eq!(args.platform, crate::measure::PlatformKind::Emulator);
        assert!(Args::try_parse_from(["worker-bench", "--platform", "fast"]).is_err());
        let args = Args::try_parse_from([
            "worker-bench",
            "--runs",
            "5",
            "--skip-python",
            "--skip-runpod-sdk",
            "--no-write",
            "--only",
            "ours,ceiling",
        ])
        .expect("every flag");
        assert_eq!(args.runs, Some(5));
        assert!(args.skip_python && args.skip_runpod_sdk && args.no_write && !args.quick);
        assert_eq!(args.only, Some(vec![Kind::Ours, Kind::Ceiling]));
    }

    #[test]
    fn only_takes_every_slug() {
        let all: Vec<String> = Kind::ALL.iter().map(|k| k.slug()).collect();
        assert_eq!(
            all,
            [
                "ceiling",
                "ours",
                "ours-current_thread",
                "ours-logs-off",
                "runpod-sdk",
                "python-sync",
                "python-async"
            ]
        );
        let args = Args::try_parse_from(["worker-bench", "--only", &all.join(",")]).expect("all");
        assert_eq!(args.only.as_deref(), Some(&Kind::ALL[..]));
        assert!(Args::try_parse_from(["worker-bench", "--only", "python"]).is_err());
    }
}
