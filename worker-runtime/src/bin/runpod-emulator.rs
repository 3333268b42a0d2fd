//! A local RunPod emulator: serves RunPod's endpoint API to clients and the job protocol to
//! workers, and prints how to start a worker against it.
//!
//! `cargo run -p worker-runtime --bin runpod-emulator -- --port 8000`

use std::process::ExitCode;

use clap::Parser;
use worker::emulator::Emulator;

/// A local RunPod serverless emulator.
#[derive(Debug, Parser)]
#[command(name = "runpod-emulator", version, about, long_about = None)]
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
    let host = if args.host.contains(':') && !args.host.starts_with('[') {
        format!("[{}]", args.host)
    } else {
        args.host.clone()
    };
    let emulator = match Emulator::builder()
        .endpoint_id(args.endpoint_id.clone())
        .api_key(args.api_key.clone())
        .bind(format!("{host}:{}", args.port))
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
