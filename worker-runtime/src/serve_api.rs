//! `--rp_serve_api`: the local RunPod (the `runpod-emulator` crate, feature `serve-api`) in the
//! worker's process, and the ordinary production loop taking its jobs over loopback. Without
//! the feature the flag exits with a message saying so.

use std::process::ExitCode;

#[cfg(feature = "serve-api")]
use crate::config::PlatformConfig;
use crate::config::ServeApi;
use crate::handler::Handler;
#[cfg(feature = "serve-api")]
use crate::job_loop::Concurrency;
use crate::limits::Limits;
use crate::start::Settings;
#[cfg(feature = "serve-api")]
use crate::start::{fail, run_loop};
#[cfg(feature = "serve-api")]
use runpod_emulator::Emulator;

/// `--rp_serve_api` in a worker built without the `serve-api` feature.
#[cfg(not(feature = "serve-api"))]
pub(crate) async fn serve_api<H: Handler>(_: H, _: Settings, _: ServeApi, _: Limits) -> ExitCode {
    tracing::error!(
        "--rp_serve_api needs the `serve-api` feature of worker-runtime (on by default); this \
         worker was built without it"
    );
    ExitCode::FAILURE
}

/// `--rp_serve_api`: a local RunPod emulator in this process, and the ordinary production loop
/// taking its jobs over loopback.
#[cfg(feature = "serve-api")]
pub(crate) async fn serve_api<H: Handler>(
    handler: H,
    settings: Settings,
    api: ServeApi,
    limits: Limits,
) -> ExitCode {
    let emulator = match Emulator::builder()
        .bind_host(&api.host, api.port)
        .build()
        .await
    {
        Ok(emulator) => emulator,
        Err(e) => return fail("--rp_serve_api", &e),
    };
    let cfg = match PlatformConfig::from_env(&emulator.worker_env("local-worker")) {
        Ok(cfg) => cfg,
        Err(e) => return fail("--rp_serve_api", &e),
    };
    let client = match crate::client::build(&cfg.api_key) {
        Ok(client) => client,
        Err(e) => return fail("configuration", &e),
    };
    let url = emulator.endpoint_url();
    tracing::info!(
        "local RunPod API at {url} — try: curl -X POST {url}/runsync -H 'Content-Type: application/json' -d '{}'",
        sample_request(&settings)
    );
    let mut options = settings.loop_options();
    // A refresh ends a worker on RunPod; locally the API keeps serving.
    options.exit_on_refresh = false;
    if let Some(concurrency) = api.concurrency {
        options.concurrency = Concurrency::Fixed(concurrency);
    }
    let code = run_loop(handler, cfg, client, options, limits).await;
    emulator.shutdown().await;
    code
}

#[cfg(feature = "serve-api")]
/// The request body of the `curl` suggested by `--rp_serve_api`: the embedded test input when
/// it fits on a shell line, else an empty input.
fn sample_request(settings: &Settings) -> String {
    settings
        .test_input
        .and_then(|t| serde_json::from_str::<serde_json::Value>(t.contents).ok())
        .filter(|v| v.get("input").is_some())
        .map(|v| serde_json::json!({ "input": v["input"] }).to_string())
        .filter(|s| s.len() <= 200 && !s.contains('\''))
        .unwrap_or_else(|| r#"{"input": {}}"#.to_owned())
}
