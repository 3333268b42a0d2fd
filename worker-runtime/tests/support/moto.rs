//! A real S3-compatible server on loopback for tests: moto's server mode (`moto[server]` from
//! PyPI), installed once into a venv under Cargo's test temp dir (about a minute the first time).
//!
//! Skipped with a message when python3 is missing or the install fails, or with
//! `WORKER_SKIP_S3_TESTS=1`; under CI (`CI` set) a failed install fails the test instead, so a
//! green CI means the S3 tests ran.

#![allow(dead_code, unreachable_pub)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub const MOTO_VERSION: &str = "5.2.5";

#[path = "../../../runpod-emulator/tests/support/venv.rs"]
mod venv;

/// The venv's `moto_server`, or why the tests are skipped.
pub fn moto_server() -> Result<PathBuf, String> {
    static SERVER: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    SERVER
        .get_or_init(|| {
            let requirement = format!("moto[server]=={MOTO_VERSION}");
            venv::venv(
                &format!("moto-{MOTO_VERSION}"),
                &requirement,
                "WORKER_SKIP_S3_TESTS",
            )
            .map(|bin| bin.join("moto_server"))
        })
        .clone()
}

/// A running moto server, killed when dropped.
pub struct Moto {
    child: Child,
    pub url: String,
    log: PathBuf,
}

impl Moto {
    /// Start a server on a free loopback port. `check_credentials`: moto then refuses every
    /// request whose access key it does not know (`INITIAL_NO_AUTH_ACTION_COUNT=0`); otherwise
    /// it accepts any credentials.
    pub fn start(server: &Path, check_credentials: bool) -> Moto {
        // For the tests' own reqwest clients (the runtime uses ring, without a default).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("moto-{}-{port}.log", std::process::id()));
        let mut cmd = Command::new(server);
        cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(&log).unwrap());
        if check_credentials {
            cmd.env("INITIAL_NO_AUTH_ACTION_COUNT", "0");
        } else {
            cmd.env_remove("INITIAL_NO_AUTH_ACTION_COUNT");
        }
        let child = cmd.spawn().expect("moto_server could not start");
        let moto = Moto {
            child,
            url: format!("http://127.0.0.1:{port}"),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "moto did not start in 30 s: {}",
                std::fs::read_to_string(&moto.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        moto
    }

    /// Create a bucket with an unsigned request (moto without credential checks accepts it).
    pub async fn create_bucket(&self, name: &str) {
        let response = reqwest::Client::new()
            .put(format!("{}/{name}", self.url))
            .send()
            .await
            .expect("creating a bucket");
        assert!(
            response.status().is_success(),
            "creating bucket {name}: {}",
            response.status()
        );
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}
