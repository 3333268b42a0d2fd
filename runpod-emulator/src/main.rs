//! A local RunPod emulator: serves RunPod's endpoint API to clients and the job protocol to
//! workers, and prints how to start a worker against it.
//!
//! `cargo run -p runpod-emulator -- --port 8000`

use std::process::ExitCode;

use clap::Parser;
use runpod_emulator::{Emulator, Faults};

/// What `--help` says: what the program does, not what the crate is.
const ABOUT: &str = "Run a RunPod serverless endpoint on this machine: clients call its API \
(/run, /runsync, /status, /stream, /cancel, …) as they call RunPod, and workers (Rust or the \
Python SDK) take its jobs with the environment it prints at start.";

const AFTER: &str = "Example:\n  runpod-emulator --port 8000\n  # start a worker with the \
printed RUNPOD_* variables, then:\n  curl -X POST http://127.0.0.1:8000/v2/local/runsync \
-H 'Content-Type: application/json' -d '{\"input\": {\"prompt\": \"hi\"}}'";

#[derive(Debug, Parser)]
#[command(name = "runpod-emulator", version, about = ABOUT, after_help = AFTER)]
struct Args {
    /// The address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// The port to listen on (0 picks a free one).
    #[arg(long, default_value_t = 8000)]
    port: u16,
    /// The endpoint id in /v2/{endpoint_id}/….
    #[arg(long = "endpoint-id", default_value = "local")]
    endpoint_id: String,
    /// Require this API key from clients (Bearer or raw) and workers (raw).
    #[arg(long = "api-key")]
    api_key: Option<String>,
    /// The worker id used in the printed worker environment.
    #[arg(long = "worker-id", default_value = "local-worker")]
    worker_id: String,
    /// Print one line per worker request (method, path, query, answer, injected fault); the
    /// Authorization header is never printed.
    #[arg(long = "log-requests")]
    log_requests: bool,
    /// Inject faults on about this fraction (0-1) of the requests on every worker route, mixed
    /// over 429/500/502/503, connection resets, slow answers and (job-take) malformed answers.
    #[arg(long = "faults", value_name = "PROBABILITY")]
    faults: Option<f64>,
    /// One fault rule, `route:kind=probability` (repeatable). Routes: take, done, stream, stop,
    /// ping, all. Kinds: 429, 500, 502, 503, reset, reset-after, slow, stall (read, never
    /// answered), late (processed at once, answered after --slow-max-ms), not-json, missing-id,
    /// missing-input, bad-batch. Example: --fault done:503=0.1 --fault take:not-json=0.02
    #[arg(long = "fault", value_name = "RULE")]
    fault: Vec<String>,
    /// The seed of the fault PRNG (the same seed draws the same sequence of faults).
    #[arg(long = "fault-seed", default_value_t = 1)]
    fault_seed: u64,
    /// The longest delay of a `slow` answer, and the delay of a `late` one, in milliseconds.
    #[arg(long = "slow-max-ms", default_value_t = 200)]
    slow_max_ms: u64,
    /// The first N job-done posts of every job answer 500.
    #[arg(long = "fail-done", value_name = "N", default_value_t = 0)]
    fail_done: u32,
}

impl Args {
    fn faults(&self) -> Result<Option<Faults>, String> {
        if self.faults.is_none() && self.fault.is_empty() && self.fail_done == 0 {
            return Ok(None);
        }
        let mut faults = match self.faults {
            Some(p) if (0.0..=1.0).contains(&p) => Faults::mixed(self.fault_seed, p),
            Some(p) => return Err(format!("--faults {p}: use a probability from 0 to 1")),
            None => Faults::new(self.fault_seed),
        };
        for rule in &self.fault {
            faults = faults.with_rule(rule).map_err(|e| format!("--fault {e}"))?;
        }
        Ok(Some(
            faults
                .slow_max(std::time::Duration::from_millis(self.slow_max_ms))
                .fail_done_times(self.fail_done),
        ))
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_target(false)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: could not start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(args))
}

async fn run(args: Args) -> ExitCode {
    let faults = match args.faults() {
        Ok(faults) => faults,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if faults.is_some() {
        eprintln!(
            "injecting faults on the worker routes (seed {})",
            args.fault_seed
        );
    }
    let emulator = match Emulator::builder()
        .faults(faults)
        .log_requests(args.log_requests)
        .endpoint_id(args.endpoint_id.clone())
        .api_key(args.api_key.clone())
        .bind_host(&args.host, args.port)
        .build()
        .await
    {
        Ok(emulator) => emulator,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let endpoint = emulator.endpoint_url();
    let auth = match &args.api_key {
        Some(key) => format!(" -H 'Authorization: Bearer {key}'"),
        None => String::new(),
    };
    let mut text = String::new();
    text.push_str(&format!(
        "\nRunPod emulator listening on {endpoint}\n\nStart a worker against it with:\n\n"
    ));
    for (name, value) in emulator.worker_env(&args.worker_id) {
        text.push_str(&format!("  {name}='{value}' \\\n"));
    }
    text.push_str("  cargo run --bin <your-worker>\n\n");
    text.push_str("(more workers: give each its own RUNPOD_POD_ID)\n\nThen try:\n\n");
    text.push_str(&format!(
        "  curl -X POST {endpoint}/runsync{auth} -H 'Content-Type: application/json' -d '{{\"input\": {{\"prompt\": \"hi\"}}}}'\n"
    ));
    text.push_str(&format!("  curl {endpoint}/health{auth}\n\n"));
    text.push_str(&format!(
        "Python client: runpod.endpoint_url_base = \"{}/v2\"; runpod.Endpoint(\"{}\")\n",
        emulator.url(),
        args.endpoint_id
    ));
    println!("{text}");

    let _ = tokio::signal::ctrl_c().await;
    eprintln!("shutting down");
    emulator.shutdown().await;
    ExitCode::SUCCESS
}
