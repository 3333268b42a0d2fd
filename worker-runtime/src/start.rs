//! Starting a worker: flags and environment, logging, `#[worker::init]`, then local test mode or
//! the production loop. Both the macro's generated `main` and [`run`] come through here.

use std::any::Any;
use std::process::ExitCode;
use std::sync::Arc;

use crate::__private::{InitFuture, InitProvider};
use crate::config::{self, Args, Mode, PlatformConfig, ProcessEnv};
use crate::handler::Handler;
use crate::heartbeat;
use crate::job_loop::{self, Concurrency, InFlight, LoopOptions};
use crate::limits::Limits;
use crate::local::{self, EmbeddedTestInput};
use crate::logging::{self, LogFormat, LogTarget};
use crate::report::{self, Failure};
use crate::serve_api::serve_api;
use crate::shutdown;

/// What `#[worker::handler(…)]` was told. Built with `const` methods by generated code.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    name: &'static str,
    concurrency: Concurrency,
    refresh_worker: bool,
    aggregate_stream: bool,
    pub(crate) test_input: Option<EmbeddedTestInput>,
    current_thread: bool,
}

impl Settings {
    pub const fn new(name: &'static str) -> Settings {
        Settings {
            name,
            concurrency: Concurrency::Fixed(1),
            refresh_worker: false,
            aggregate_stream: false,
            test_input: None,
            current_thread: false,
        }
    }

    pub const fn concurrency(mut self, concurrency: usize) -> Settings {
        self.concurrency = Concurrency::Fixed(concurrency);
        self
    }

    pub const fn concurrency_modifier(mut self, modifier: fn(usize) -> usize) -> Settings {
        self.concurrency = Concurrency::Dynamic(modifier);
        self
    }

    pub const fn refresh_worker(mut self) -> Settings {
        self.refresh_worker = true;
        self
    }

    pub const fn return_aggregate_stream(mut self) -> Settings {
        self.aggregate_stream = true;
        self
    }

    /// Run on a single-threaded async runtime (`flavor = "current_thread"`).
    pub const fn current_thread(mut self) -> Settings {
        self.current_thread = true;
        self
    }

    pub(crate) fn loop_options(&self) -> LoopOptions {
        LoopOptions {
            concurrency: self.concurrency,
            refresh_worker: self.refresh_worker,
            aggregate_stream: self.aggregate_stream,
            exit_on_refresh: true,
        }
    }

    pub const fn test_input(mut self, path: &'static str, contents: &'static str) -> Settings {
        self.test_input = Some(EmbeddedTestInput { path, contents });
        self
    }
}

/// A worker built from a [`Handler`], for use without the macros.
///
/// ```no_run
/// #[tokio::main]
/// async fn main() -> std::process::ExitCode {
///     let echo = worker::handler_fn(|input: serde_json::Value, _job: worker::Job| async move {
///         Ok::<_, std::convert::Infallible>(input)
///     });
///     worker::Worker::new(echo).concurrency(4).run().await
/// }
/// ```
#[derive(Debug)]
pub struct Worker<H> {
    handler: H,
    settings: Settings,
}

impl<H: Handler> Worker<H> {
    /// A worker that runs `handler` for each job, one job at a time.
    pub fn new(handler: H) -> Worker<H> {
        Worker {
            handler,
            settings: Settings::new("handler"),
        }
    }

    /// Run up to `concurrency` jobs at once (at least 1).
    pub fn concurrency(mut self, concurrency: usize) -> Worker<H> {
        self.settings.concurrency = Concurrency::Fixed(concurrency.max(1));
        self
    }

    /// Decide the concurrency as the worker runs: `modifier(current)` returns the next value.
    /// It is asked before every job-take (and twice a second while all slots are busy), and a
    /// change applies at once: a raise frees slots immediately, a cut as running jobs finish.
    pub fn concurrency_modifier(mut self, modifier: fn(usize) -> usize) -> Worker<H> {
        self.settings.concurrency = Concurrency::Dynamic(modifier);
        self
    }

    /// Post every result with `stopPod: true` and exit after the first job, so the platform
    /// gives the next job a fresh worker (RunPod's `refresh_worker`).
    pub fn refresh_worker(mut self) -> Worker<H> {
        self.settings.refresh_worker = true;
        self
    }

    /// A streaming job's final output lists every streamed item, instead of `[]`.
    pub fn return_aggregate_stream(mut self) -> Worker<H> {
        self.settings.aggregate_stream = true;
        self
    }

    /// Read the command line and environment, then run: one local test job when
    /// `RUNPOD_WEBHOOK_GET_JOB` is unset or `--test_input` is given, else the production loop
    /// until SIGTERM/SIGINT. Returns the process's exit code.
    pub async fn run(self) -> ExitCode {
        report::install_panic_hook();
        let started = match Started::new(Args::from_env()) {
            Ok(s) => s,
            Err(code) => return code,
        };
        started.run(self.handler, self.settings).await
    }
}

/// The command-line arguments the worker itself does not read (its flags are `--test_input`,
/// `--rp_log_level`, `--rp_serve_api`, `--rp_api_host`, `--rp_api_port`,
/// `--rp_api_concurrency`), in order, for the user's own code: the worker ignores them with a
/// warning instead of exiting. Empty before the worker started.
///
/// ```no_run
/// #[worker::handler]
/// fn generate(input: String) -> String {
///     let verbose = worker::args().iter().any(|a| a == "--verbose");
///     if verbose { format!("input: {input}") } else { input }
/// }
/// ```
pub fn args() -> &'static [String] {
    Args::other()
}

/// Run `handler` as a worker; see [`Worker::run`].
///
/// ```no_run
/// #[tokio::main]
/// async fn main() -> std::process::ExitCode {
///     worker::run(worker::handler_fn(|name: String, _job: worker::Job| async move {
///         Ok::<_, std::convert::Infallible>(format!("Hello, {name}!"))
///     }))
///     .await
/// }
/// ```
pub async fn run<H: Handler>(handler: H) -> ExitCode {
    Worker::new(handler).run().await
}

/// The process after flags, environment and logging were read.
struct Started {
    mode: Mode,
    /// The platform client, built once (production only).
    client: Option<reqwest::Client>,
    limits: Limits,
}

impl Started {
    fn new(args: Args) -> Result<Started, ExitCode> {
        let level = match config::log_level(&args, &ProcessEnv) {
            Ok(level) => level,
            Err(e) => {
                eprintln!("error: {e}");
                return Err(ExitCode::from(2));
            }
        };
        let mode = config::mode(&args, &ProcessEnv);
        let (format, target) = match (
            &mode,
            std::env::var_os("RUNPOD_ENDPOINT_ID").is_some_and(|v| !v.is_empty()),
        ) {
            (Ok(Mode::LocalTest { .. }), json) => (
                if json {
                    LogFormat::Json
                } else {
                    LogFormat::Text
                },
                LogTarget::Stderr,
            ),
            (_, true) => (LogFormat::Json, LogTarget::Stdout),
            (_, false) => (LogFormat::Text, LogTarget::Stdout),
        };
        logging::init(level, format, target);
        if !Args::other().is_empty() {
            tracing::warn!(
                "ignoring command-line arguments the worker does not read: {} (your code can \
                 read them with worker::args())",
                Args::other().join(" ")
            );
        }
        // The runtime turns on rustls without a crypto provider; install the process's default
        // in every mode, so a handler's own reqwest or rustls clients work in local test mode
        // as they do in production (where the platform client would install it).
        crate::tls::install_crypto_provider();
        let mode = mode.map_err(|e| fail("configuration", &e))?;
        let client = match &mode {
            Mode::Production(cfg) => {
                if cfg.urls.any_https() {
                    // Read the trust store while init runs and the first job-take connects.
                    crate::tls::load_roots_in_background();
                }
                Some(crate::client::build(&cfg.api_key).map_err(|e| fail("configuration", &e))?)
            }
            Mode::LocalTest { .. } | Mode::ServeApi(_) => None,
        };
        let limits = Limits::from_env(&ProcessEnv).map_err(|e| fail("configuration", &e))?;
        Ok(Started {
            mode,
            client,
            limits,
        })
    }

    async fn run<H: Handler>(self, handler: H, settings: Settings) -> ExitCode {
        match self.mode {
            Mode::LocalTest { test_input } => {
                let concurrency = settings.concurrency.initial();
                match local::read_test_jobs(test_input, settings.test_input) {
                    Ok(jobs) => local::run_jobs(&handler, jobs, concurrency, self.limits).await,
                    Err(e) => fail("test input", &e),
                }
            }
            Mode::Production(cfg) => {
                let Some(client) = self.client else {
                    return ExitCode::FAILURE;
                };
                run_loop(handler, *cfg, client, settings.loop_options(), self.limits).await
            }
            Mode::ServeApi(api) => serve_api(handler, settings, api, self.limits).await,
        }
    }

    /// Production with `#[worker::init]`: jobs are taken while init runs (see `init_gate`); on
    /// success they run first, on failure (or a signal first) each is posted failed with the
    /// reason, then the worker reports unhealthy and exits 1.
    async fn production<I: InitProvider, H: Handler>(
        self,
        settings: Settings,
        make_handler: impl FnOnce(&'static (dyn Any + Send + Sync)) -> Result<H, Failure>,
    ) -> ExitCode {
        let (Mode::Production(cfg), Some(client)) = (self.mode, self.client) else {
            return ExitCode::FAILURE;
        };
        let cfg = *cfg;
        let limits = self.limits;
        let process = Process::start(&cfg, limits);
        let capacity = settings.concurrency.initial();
        let init = run_init(I::NAME, I::init, I::TIMEOUT_MICROS);
        let (ended, handover) = crate::init_gate::take_while(
            init,
            Result::is_ok,
            (&client, &cfg),
            capacity,
            &process.in_flight,
            &process.shutdown,
        )
        .await;
        let failure = match ended {
            crate::init_gate::Ended::Init(Ok(state)) => match make_handler(state) {
                Ok(handler) => {
                    return run_loop_from(
                        handler,
                        cfg,
                        client,
                        settings.loop_options(),
                        limits,
                        process,
                        handover,
                    )
                    .await;
                }
                Err(failure) => {
                    tracing::error!("could not build the handler `{}`: {failure}", settings.name);
                    Some(InitFailed {
                        failure,
                        lines: Vec::new(),
                    })
                }
            },
            crate::init_gate::Ended::Init(Err(failed)) => Some(failed),
            crate::init_gate::Ended::Stopped => None,
        };
        // What the held jobs are told: why init failed, or that the worker was stopped first.
        let reported = match &failure {
            Some(failed) => init_failure(I::NAME, failed),
            None => Failure::new(
                "WorkerShutdown",
                "the worker was stopped (SIGTERM) before its init function finished; the job \
                 was not run",
            ),
        };
        crate::init_gate::fail_held(
            handover.jobs,
            &reported,
            (&client, &cfg),
            &process.in_flight,
            limits.max_output_bytes,
        )
        .await;
        let code = match failure {
            Some(failed) => {
                heartbeat::report_unhealthy(&client, &cfg, "init", &failed.failure.to_string())
                    .await;
                ExitCode::FAILURE
            }
            None => ExitCode::SUCCESS,
        };
        logging::flush();
        code
    }

    /// `#[worker::init]` failed outside production: local test mode prints each test job's
    /// result as failed with the reason (as a job taken in production is told), then exit 1.
    fn init_failed(&self, name: &str, failed: &InitFailed, settings: &Settings) -> ExitCode {
        if let Mode::LocalTest { test_input } = &self.mode
            && let Ok(jobs) = local::read_test_jobs(test_input.clone(), settings.test_input)
        {
            local::print_failed(jobs, &init_failure(name, failed), self.limits);
        }
        ExitCode::FAILURE
    }
}

/// The production loop with its heartbeat and signal handling, until shutdown.
pub(crate) async fn run_loop<H: Handler>(
    handler: H,
    cfg: PlatformConfig,
    client: reqwest::Client,
    options: LoopOptions,
    limits: Limits,
) -> ExitCode {
    let process = Process::start(&cfg, limits);
    run_loop_from(
        handler,
        cfg,
        client,
        options,
        limits,
        process,
        Default::default(),
    )
    .await
}

/// The heartbeat and signal handling of a production worker, started before init so that jobs
/// taken while init runs are in the pings and a SIGTERM during init is seen.
pub(crate) struct Process {
    in_flight: Arc<InFlight>,
    trigger: shutdown::ShutdownTrigger,
    shutdown: shutdown::Shutdown,
}

impl Process {
    fn start(cfg: &PlatformConfig, limits: Limits) -> Process {
        let in_flight = Arc::new(InFlight::default());
        heartbeat::start(cfg, in_flight.clone());
        let (trigger, shutdown) = shutdown::channel();
        shutdown::on_signals(trigger.clone(), limits.shutdown_grace);
        Process {
            in_flight,
            trigger,
            shutdown,
        }
    }
}

/// [`run_loop`] on a started [`Process`], going on from where the job-takes made while init
/// ran left off (their jobs run first).
async fn run_loop_from<H: Handler>(
    handler: H,
    cfg: PlatformConfig,
    client: reqwest::Client,
    options: LoopOptions,
    limits: Limits,
    process: Process,
    handover: crate::init_gate::Handover,
) -> ExitCode {
    let Process {
        in_flight,
        trigger,
        shutdown,
    } = process;
    // The loop runs as a task, not in the caller's future: `block_on`'s future (the generated
    // `main`, `#[tokio::main]`) lives on the main thread, outside the runtime's worker threads,
    // so every job it spawned and every slot it waited on was a hand-off between threads.
    let looping = tokio::spawn(job_loop::run(
        handler,
        (cfg, client),
        in_flight,
        options,
        limits,
        (trigger, shutdown),
        handover,
    ));
    let code = match looping.await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("the job loop stopped unexpectedly: {e}");
            ExitCode::FAILURE
        }
    };
    logging::flush();
    code
}

pub(crate) fn fail(what: &str, error: &dyn std::fmt::Display) -> ExitCode {
    tracing::error!("{what} error: {error}");
    ExitCode::FAILURE
}

fn build_runtime(
    mut builder: tokio::runtime::Builder,
) -> Result<tokio::runtime::Runtime, ExitCode> {
    builder.enable_all().build().map_err(|e| {
        eprintln!("error: could not start the async runtime: {e}");
        ExitCode::FAILURE
    })
}

/// The `main` of a `#[worker::handler]` binary: build the runtime, read the configuration, run
/// init once, build the handler around its state, then run.
pub fn main<I: InitProvider, H: Handler>(
    settings: Settings,
    make_handler: impl FnOnce(&'static (dyn Any + Send + Sync)) -> Result<H, Failure>,
) -> ExitCode {
    report::install_panic_hook();
    let args = Args::from_env();
    let runtime = match build_runtime(if settings.current_thread {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    }) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let code = runtime.block_on(async move {
        let started = match Started::new(args) {
            Ok(s) => s,
            Err(code) => return code,
        };
        if matches!(started.mode, Mode::Production(_)) {
            return started.production::<I, H>(settings, make_handler).await;
        }
        let state = match run_init(I::NAME, I::init, I::TIMEOUT_MICROS).await {
            Ok(state) => state,
            Err(failed) => return started.init_failed(I::NAME, &failed, &settings),
        };
        let handler = match make_handler(state) {
            Ok(h) => h,
            Err(failure) => {
                tracing::error!("could not build the handler `{}`: {failure}", settings.name);
                return ExitCode::FAILURE;
            }
        };
        started.run(handler, settings).await
    });
    // Jobs are done and reported; do not wait for blocking threads still running abandoned work.
    runtime.shutdown_background();
    code
}

/// Run `#[worker::init]` with its log lines; its state leaked to `&'static` (every job borrows
/// it for the life of the process).
async fn run_init(
    name: &str,
    init: fn() -> InitFuture,
    timeout_micros: u64,
) -> Result<&'static (dyn Any + Send + Sync), InitFailed> {
    if !name.is_empty() {
        tracing::info!("running init function `{name}`");
    }
    logging::capture_init_lines();
    let started = std::time::Instant::now();
    let ran = match timeout_micros {
        0 => init().await,
        micros => {
            let bound = std::time::Duration::from_micros(micros);
            tokio::time::timeout(bound, init())
                .await
                .unwrap_or_else(|_| {
                    Err(Failure::new(
                        "InitTimeout",
                        format!(
                            "the init function `{name}` did not finish within {bound:?} (its \
                             `#[worker::init(timeout = …)]`)"
                        ),
                    ))
                })
        }
    };
    let lines = logging::init_lines();
    match ran {
        Ok(state) => {
            if !name.is_empty() {
                tracing::info!(
                    "init function `{name}` finished in {:.1?}",
                    started.elapsed()
                );
            }
            Ok(Box::leak(state))
        }
        Err(failure) => {
            tracing::error!(
                "init function `{name}` failed: {failure}\n{}",
                failure.traceback()
            );
            Err(InitFailed { failure, lines })
        }
    }
}

/// A failed `#[worker::init]`: its error, and the last lines it logged.
#[derive(Debug)]
pub(crate) struct InitFailed {
    failure: Failure,
    lines: Vec<String>,
}

/// What a job taken while init ran is told when init failed: the error and its chain, then
/// init's last log lines in the traceback (what it did before it failed, without the logs).
fn init_failure(name: &str, failed: &InitFailed) -> Failure {
    let InitFailed { failure, lines } = failed;
    let mut traceback = failure.traceback().to_owned();
    if !lines.is_empty() {
        if !traceback.is_empty() {
            traceback.push_str("\n\n");
        }
        traceback.push_str(&format!(
            "the last {} line(s) the init function `{name}` logged:\n",
            lines.len()
        ));
        for line in lines {
            traceback.push_str("  ");
            traceback.push_str(line);
            traceback.push('\n');
        }
    }
    Failure::new(
        "WorkerInitFailed",
        format!(
            "the worker could not start: its init function `{name}` failed: {}: {}",
            failure.error_type(),
            failure.message()
        ),
    )
    .with_traceback(traceback)
}
