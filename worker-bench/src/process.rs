//! Launching a worker: each kind's command, the environment that makes them equivalent (same
//! concurrency, log level, checks off), a log file per run, and a process group of its own so
//! that it can be sampled and killed as a whole.

use std::os::unix::process::CommandExt as _;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use crate::kind::Kind;
use crate::peers::Paths;

/// A worker process (group), killed when dropped.
pub(crate) struct Process {
    child: Child,
    /// Taken just before the process was started, after its log file was opened: truncating
    /// the last run's log (megabytes at concurrency 64) took milliseconds that cold start is
    /// not about.
    pub(crate) spawned: Instant,
}

impl Process {
    /// The process group's id (the worker leads its own group).
    pub(crate) fn pgid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start `kind` with `c` slots against the platform `platform_env` points at; its output goes
/// to `target/bench/logs/<slug>-c<c>.log`.
pub(crate) fn spawn(
    kind: Kind,
    c: usize,
    paths: &Paths,
    platform_env: Vec<(String, String)>,
) -> Process {
    let mut cmd = match kind {
        Kind::Ceiling => Command::new(paths.release.join("bench-ceiling")),
        Kind::Ours | Kind::OursQuiet | Kind::OursCurrentThread => {
            Command::new(paths.release.join("bench-echo"))
        }
        Kind::RunpodSdk => Command::new(paths.runpod_sdk.as_ref().expect("built")),
        Kind::PySync | Kind::PyAsync => {
            let mut cmd = Command::new(paths.python.as_ref().expect("installed"));
            cmd.arg(paths.root.join("worker-bench/peers/python_echo.py"));
            cmd
        }
    };
    let log_dir = paths.bench.join("logs");
    let _ = std::fs::create_dir_all(&log_dir);
    let log = log_dir.join(format!("{}-c{c}.log", kind.slug()));
    let file = std::fs::File::create(&log).expect("a log file");
    let home = paths.bench.join("home");
    let _ = std::fs::create_dir_all(&home);
    cmd.envs(platform_env)
        .env("BENCH_CONCURRENCY", c.to_string())
        .env(
            "BENCH_RUNTIME",
            if kind == Kind::OursCurrentThread {
                "current_thread"
            } else {
                "multi_thread"
            },
        )
        .env("RUNPOD_WORKER_CONCURRENCY", c.to_string())
        .env(
            "BENCH_MODE",
            if kind == Kind::PySync {
                "sync"
            } else {
                "async"
            },
        )
        .env(
            "RUNPOD_LOG_LEVEL",
            if kind == Kind::OursQuiet {
                "NOTSET"
            } else {
                "INFO"
            },
        )
        .env("RUNPOD_SKIP_AUTO_SYSTEM_CHECKS", "true")
        .env("RUNPOD_SKIP_GPU_CHECK", "true")
        .env("HOME", home)
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(file.try_clone().expect("log"))
        .stderr(file);
    let spawned = Instant::now();
    Process {
        child: cmd
            .spawn()
            .unwrap_or_else(|e| panic!("{} starts: {e}", kind.name())),
        spawned,
    }
}
