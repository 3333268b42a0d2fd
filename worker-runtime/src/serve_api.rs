//! `--rp_serve_api`: the local RunPod (the `runpod-emulator` crate, feature `serve-api`) in the
//! worker's process, and the ordinary production loop taking its jobs over loopback. Without
//! the feature the flag exits with a message saying so.

#[cfg(feature = "serve-api")]
use crate::config::PlatformConfig;
use crate::config::ServeApi;
use crate::error::Error;
#[cfg(feature = "serve-api")]
use crate::error::ErrorKind;
use crate::handler::Handler;
#[cfg(feature = "serve-api")]
use crate::job_loop::Concurrency;
use crate::limits::Limits;
use crate::shutdown::SecondSignal;
use crate::start::Settings;
#[cfg(feature = "serve-api")]
use crate::start::{Process, log_error, run_loop_from};
#[cfg(feature = "serve-api")]
use runpod_emulator::Emulator;

/// `--rp_serve_api` in a worker built without the `serve-api` feature.
#[cfg(not(feature = "serve-api"))]
pub(crate) async fn serve_api<H: Handler>(
    _: H,
    _: Settings,
    _: ServeApi,
    _: Limits,
    _: SecondSignal,
) -> Result<(), Error> {
    let message = "--rp_serve_api needs the `serve-api` feature of worker-runtime (on by \
                   default); this worker was built without it";
    tracing::error!("{message}");
    Err(Error::config(message))
}

/// `--rp_serve_api`: a local RunPod emulator in this process, and the ordinary production loop
/// taking its jobs over loopback.
#[cfg(feature = "serve-api")]
pub(crate) async fn serve_api<H: Handler>(
    handler: H,
    settings: Settings,
    api: ServeApi,
    limits: Limits,
    second: SecondSignal,
) -> Result<(), Error> {
    let failed = |e: &dyn std::fmt::Display| {
        log_error("--rp_serve_api", e);
        Error::new(ErrorKind::Runtime, format!("--rp_serve_api: {e}"))
    };
    let contract = settings.contract_now();
    let emulator = Emulator::builder()
        .bind_host(&api.host, api.port)
        .contract(runpod_emulator::Contract {
            input: contract.input,
            output: contract.output,
        })
        .build()
        .await
        .map_err(|e| failed(&e))?;
    let cfg =
        PlatformConfig::from_env(&emulator.worker_env("local-worker")).map_err(|e| failed(&e))?;
    let client = crate::platform_client::build(&cfg.api_key).map_err(|e| failed(&e))?;
    let url = emulator.endpoint_url();
    tracing::info!(
        "local RunPod API at {url} — try: curl -X POST {url}/runsync -H 'Content-Type: application/json' -d '{}' (its OpenAPI: {url}/openapi.json)",
        sample_request(&settings)
    );
    let mut options = settings.loop_options();
    // A refresh ends a worker on RunPod; locally the API keeps serving.
    options.exit_on_refresh = false;
    if let Some(concurrency) = api.concurrency {
        options.concurrency = Concurrency::Fixed(concurrency);
    }
    let process = Process::start(&cfg, limits, second);
    let result = run_loop_from(
        handler,
        cfg,
        client,
        options,
        limits,
        process,
        Default::default(),
    )
    .await;
    emulator.shutdown().await;
    result
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
