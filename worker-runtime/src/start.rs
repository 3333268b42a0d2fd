//! Starting a worker: flags and environment, logging, `#[worker::init]`, then local test mode or
//! the production loop. Both the macro's generated `main` and [`run`] come through here.

use std::any::Any;
use std::future::Future;
use std::process::ExitCode;
use std::sync::Arc;

use crate::__private::{InitFuture, InitProvider};
use crate::config::{self, Args, Mode, PlatformConfig, ProcessEnv};
use crate::erased::erased;
use crate::error::{Error, ErrorKind};
use crate::handler::Handler;
use crate::heartbeat;
use crate::job_loop::{self, Concurrency, InFlight, LoopOptions};
use crate::limits::{LimitOverrides, Limits};
use crate::local::{self, EmbeddedTestInput};
use crate::logging::{self, LogFormat, LogTarget};
use crate::platform::Platform;
use crate::report::{self, Failure};
use crate::serve_api::serve_api;
use crate::shutdown::{self, SecondSignal};

/// What `#[worker::handler(…)]` was told. Built with `const` methods by generated code.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    name: &'static str,
    concurrency: Concurrency,
    refresh_worker: bool,
    aggregate_stream: bool,
    pub(crate) test_input: Option<EmbeddedTestInput>,
    current_thread: bool,
    /// The input and output schemas, for `--schema` (computed only when asked).
    contract: Option<fn() -> crate::contract::Contract>,
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
            contract: None,
        }
    }

    pub const fn concurrency(mut self, concurrency: usize) -> Settings {
        self.concurrency = Concurrency::Fixed(concurrency);
        self
    }

    /// `concurrency = EXPR` (not a literal): a number of jobs, or a function of the current
    /// concurrency; the trait says which, and what else is wrong.
    pub fn concurrency_of(mut self, value: impl crate::__private::IntoConcurrency) -> Settings {
        self.concurrency = value.into_concurrency().0;
        self
    }

    /// `concurrency = |current| …`: a closure, whose parameter type this bound lets the
    /// compiler infer.
    pub fn concurrency_fn(
        mut self,
        modifier: impl Fn(usize) -> usize + Send + Sync + 'static,
    ) -> Settings {
        self.concurrency = Concurrency::dynamic(modifier);
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

    /// The handler's contract: its input and output schemas.
    pub const fn contract(mut self, contract: fn() -> crate::contract::Contract) -> Settings {
        self.contract = Some(contract);
        self
    }

    /// The handler's input and output schemas (`None`s when nothing named the types).
    pub(crate) fn contract_now(&self) -> crate::contract::Contract {
        self.contract.map(|contract| contract()).unwrap_or_default()
    }

    /// The handler's name (its function's).
    #[cfg(feature = "load-balancing")]
    pub(crate) fn name(&self) -> &'static str {
        self.name
    }

    /// The concurrency now (a dynamic one asked once).
    #[cfg(feature = "load-balancing")]
    pub(crate) fn concurrency_now(&self) -> usize {
        self.concurrency.initial()
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
pub struct Worker<H> {
    source: Source<H>,
    settings: Settings,
    platform: Option<Platform>,
    limits: LimitOverrides,
}

impl<H> std::fmt::Debug for Worker<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field(
                "init",
                &match &self.source {
                    Source::Ready(_) => None,
                    Source::Init { init, .. } => Some(init.name),
                },
            )
            .field("settings", &self.settings)
            .field("platform", &self.platform)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// Where the handler comes from: given, or built around the state an init function returns.
enum Source<H> {
    Ready(H),
    Init {
        init: InitStep,
        make: MakeHandler<H>,
    },
}

type MakeHandler<H> =
    Box<dyn FnOnce(&'static (dyn Any + Send + Sync)) -> Result<H, Failure> + Send + 'static>;

/// An init function to run once before the first job.
pub(crate) struct InitStep {
    name: &'static str,
    future: InitFuture,
    timeout: Option<std::time::Duration>,
}

impl<H: Handler> Worker<H> {
    /// A worker that runs `handler` for each job, one job at a time.
    pub fn new(handler: H) -> Worker<H> {
        Worker::from_source(Source::Ready(handler))
    }

    /// A worker whose handler is built around state that `init` loads once (a model): as
    /// `#[worker::init]` does, jobs are taken while `init` runs; if it fails, each is posted
    /// failed with the reason (and the lines `init` logged), and [`try_run`](Self::try_run)
    /// returns an [`ErrorKind::Init`](crate::ErrorKind::Init) error. A panic in `init` is a
    /// failure too.
    ///
    /// ```no_run
    /// struct Model { scale: f64 }
    ///
    /// #[tokio::main]
    /// async fn main() -> std::process::ExitCode {
    ///     let load = async { Ok::<_, std::io::Error>(Model { scale: 2.0 }) };
    ///     worker::Worker::with_init(load, |model: &'static Model| {
    ///         worker::handler_fn(move |x: f64, _job: worker::Job| async move {
    ///             Ok::<_, std::convert::Infallible>(x * model.scale)
    ///         })
    ///     })
    ///     .run()
    ///     .await
    /// }
    /// ```
    pub fn with_init<S, E, F, M>(init: F, make_handler: M) -> Worker<H>
    where
        F: Future<Output = Result<S, E>> + Send + 'static,
        S: Send + Sync + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
        M: FnOnce(&'static S) -> H + Send + 'static,
    {
        let future = crate::__private::init_async(async move {
            match init.await {
                Ok(state) => Ok(Box::new(state) as crate::__private::State),
                Err(e) => Err(crate::handler::failure_of_error(e)),
            }
        });
        let make: MakeHandler<H> =
            Box::new(move |state| crate::__private::state::<S>(state).map(make_handler));
        Worker::from_source(Source::Init {
            init: InitStep {
                name: "init",
                future,
                timeout: None,
            },
            make,
        })
    }

    fn from_source(source: Source<H>) -> Worker<H> {
        Worker {
            source,
            settings: Settings::new("handler"),
            platform: None,
            limits: LimitOverrides::default(),
        }
    }

    /// Bound the init function of [`with_init`](Self::with_init): one still running after
    /// `timeout` is reported as failed (`InitTimeout`). No bound by default.
    pub fn init_timeout(mut self, timeout: std::time::Duration) -> Worker<H> {
        if let Source::Init { init, .. } = &mut self.source {
            init.timeout = Some(timeout);
        }
        self
    }

    /// Run up to `concurrency` jobs at once (at least 1).
    pub fn concurrency(mut self, concurrency: usize) -> Worker<H> {
        self.settings.concurrency = Concurrency::Fixed(concurrency.max(1));
        self
    }

    /// Decide the concurrency as the worker runs: `modifier(current)` returns the next value.
    /// It is asked before every job-take (and twice a second while all slots are busy), and a
    /// change applies at once: a raise frees slots immediately, a cut as running jobs finish.
    pub fn concurrency_modifier(
        mut self,
        modifier: impl Fn(usize) -> usize + Send + Sync + 'static,
    ) -> Worker<H> {
        self.settings.concurrency = Concurrency::dynamic(modifier);
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

    /// Take jobs from this platform: the production loop runs against it whatever the
    /// environment and the command line say (no local test mode, no `--rp_serve_api`), and
    /// RunPod's `RUNPOD_WEBHOOK_*`, `RUNPOD_AI_API_KEY`, `RUNPOD_POD_ID` variables are not read.
    pub fn platform(mut self, platform: Platform) -> Worker<H> {
        self.platform = Some(platform);
        self
    }

    /// After SIGTERM, how long running jobs may take before they are reported failed
    /// (`WORKER_SHUTDOWN_GRACE_SECONDS`, default 30 s).
    pub fn shutdown_grace(mut self, grace: std::time::Duration) -> Worker<H> {
        self.limits.shutdown_grace = Some(grace);
        self
    }

    /// How long a result post keeps retrying (`WORKER_POST_RETRY_SECONDS`, default 300 s).
    pub fn post_retry(mut self, budget: std::time::Duration) -> Worker<H> {
        self.limits.post_retry = Some(budget);
        self
    }

    /// The longest one post attempt waits for its answer (`WORKER_POST_ATTEMPT_SECONDS`,
    /// default 30 s).
    pub fn post_attempt(mut self, bound: std::time::Duration) -> Worker<H> {
        self.limits.post_attempt = Some(bound);
        self
    }

    /// The largest result body the platform accepts (`WORKER_MAX_OUTPUT_BYTES`, default
    /// 20 MB): a larger one fails its job with its size.
    pub fn max_output_bytes(mut self, bytes: usize) -> Worker<H> {
        self.limits.max_output_bytes = Some(bytes);
        self
    }

    /// The input and output types, for the contract: `--schema` prints their JSON Schemas
    /// and `--rp_serve_api` serves them in `/openapi.json` (as `#[worker::handler]` does from
    /// the handler's signature).
    ///
    /// ```no_run
    /// #[derive(serde::Deserialize, worker::JsonSchema)]
    /// #[schemars(crate = "worker::schemars")]
    /// struct Prompt {
    ///     text: String,
    /// }
    ///
    /// #[tokio::main]
    /// async fn main() -> std::process::ExitCode {
    ///     let echo = worker::handler_fn(|input: Prompt, _job: worker::Job| async move {
    ///         Ok::<_, std::convert::Infallible>(input.text)
    ///     });
    ///     worker::Worker::new(echo).contract::<Prompt, String>().run().await
    /// }
    /// ```
    #[cfg(feature = "schema")]
    pub fn contract<I: schemars::JsonSchema, O: schemars::JsonSchema>(mut self) -> Worker<H> {
        self.settings = self.settings.contract(|| crate::contract::Contract {
            input: Some(crate::contract::schema_of::<I>()),
            output: Some(crate::contract::schema_of::<O>()),
        });
        self
    }

    /// After a job is cancelled, how long its handler may go on before it is dropped
    /// (`WORKER_CANCEL_GRACE_MS`, default 1 s).
    pub fn cancel_grace(mut self, grace: std::time::Duration) -> Worker<H> {
        self.limits.cancel_grace = Some(grace);
        self
    }

    /// Read the command line and environment, then run: the local test jobs when
    /// `RUNPOD_WEBHOOK_GET_JOB` is unset or `--test_input` is given, a local API under
    /// `--rp_serve_api`, else the production loop until SIGTERM/SIGINT (a second signal ends
    /// the grace period at once; only the macros' generated `main` exits the process on it).
    ///
    /// Returns `Ok` when the worker stopped as asked (or every local test job succeeded), else
    /// why not: bad configuration, a failed init, a failed test job. The error was logged too.
    pub async fn try_run(self) -> Result<(), Error> {
        report::install_panic_hook();
        let Some(args) = read_args()? else {
            return Ok(());
        };
        if args.schema {
            return match print_contract(&self.settings) {
                true => Ok(()),
                false => Err(Error::new(ErrorKind::Runtime, "could not write the schema")),
            };
        }
        if args.hub_tests {
            return write_hub_tests(&self.settings, args.test_input);
        }
        let started = Started::new(args, self.platform, self.limits)?;
        started
            .go(self.source, self.settings, SecondSignal::EndGrace)
            .await
    }

    /// [`try_run`](Self::try_run), as the process's exit code (0 or 1).
    pub async fn run(self) -> ExitCode {
        exit_code(self.try_run().await)
    }
}

fn exit_code(result: Result<(), Error>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::FAILURE,
    }
}

/// The command-line arguments the worker itself does not read (its flags are `--test_input`,
/// `--rp_log_level`, `--rp_serve_api`, `--rp_api_host`, `--rp_api_port`,
/// `--rp_api_concurrency`, `--schema`, `--hub-tests`), in order, for the user's own code: the
/// worker ignores them with a warning instead of exiting. Empty before the worker started.
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
    client: Option<crate::platform_client::Client>,
    limits: Limits,
}

impl Started {
    fn new(
        args: Args,
        platform: Option<Platform>,
        overrides: LimitOverrides,
    ) -> Result<Started, Error> {
        let level =
            config::log_level(&args, &ProcessEnv).inspect_err(|e| eprintln!("error: {e}"))?;
        let mode = match &platform {
            Some(platform) => platform.config().map(|cfg| Mode::Production(Box::new(cfg))),
            None => config::mode(&args, &ProcessEnv),
        };
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
        let capture = logging::Capture::parse(std::env::var("RUNPOD_LOG_CAPTURE").ok().as_deref())
            .inspect_err(|e| eprintln!("error: {e}"))?;
        logging::init(level, format, target, capture);
        // A failed job's report carries its log lines: never the API key.
        if let Ok(Mode::Production(cfg)) = &mode {
            crate::job_log::add_secret(&cfg.api_key);
        }
        if let Ok(key) = std::env::var("RUNPOD_AI_API_KEY") {
            crate::job_log::add_secret(&key);
        }
        if let Ok(Mode::LoadBalancing(_)) = &mode
            && std::env::var_os("RUNPOD_WEBHOOK_GET_JOB").is_some()
        {
            // RunPod does not document which variables a load-balancing endpoint's workers
            // get: the explicit choice wins, and the log says what was ignored.
            tracing::warn!(
                "RUNPOD_WEBHOOK_GET_JOB is set, but WORKER_MODE/--load-balancing asks for a \
                 load-balancing worker: serving HTTP, taking no jobs from a queue"
            );
        }
        if !Args::other().is_empty() && platform.is_none() {
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
        let mode = mode.inspect_err(|e| log_error("configuration", e))?;
        let client = match &mode {
            Mode::Production(cfg) => {
                if cfg.urls.any_https() {
                    // Read the trust store while init runs and the first job-take connects.
                    crate::tls::load_roots_in_background();
                }
                Some(
                    crate::platform_client::build(&cfg.api_key)
                        .inspect_err(|e| log_error("configuration", e))?,
                )
            }
            Mode::LocalTest { .. } | Mode::ServeApi(_) | Mode::LoadBalancing(_) => None,
        };
        let limits = overrides
            .apply(&ProcessEnv)
            .inspect_err(|e| log_error("configuration", e))?;
        Ok(Started {
            mode,
            client,
            limits,
        })
    }

    /// Run in the mode chosen: init (if any) first, except in production, where jobs are taken
    /// while it runs.
    async fn go<H: Handler>(
        self,
        source: Source<H>,
        settings: Settings,
        second: SecondSignal,
    ) -> Result<(), Error> {
        if let Mode::LoadBalancing(lb) = self.mode {
            // The server answers health (204) while init runs, so init runs inside it.
            let build: crate::load_balancing::Build<H> = match source {
                Source::Ready(handler) => Box::pin(std::future::ready(Ok(handler))),
                Source::Init { init, make } => Box::pin(async move {
                    let name = init.name;
                    run_init(init)
                        .await
                        .and_then(|state| make_handler(make, state, &settings))
                        .map_err(|failed| (init_failure(name, &failed), init_error(name, &failed)))
                }),
            };
            let serving = crate::load_balancing::serve(*lb, build, &settings, self.limits, second);
            return erased(serving).await;
        }
        let (init, make) = match source {
            // `run` erases each of its modes itself.
            Source::Ready(handler) => return self.run(handler, settings, second).await,
            Source::Init { init, make } => (init, make),
        };
        if matches!(self.mode, Mode::Production(_)) {
            return erased(self.production(init, make, settings, second)).await;
        }
        let name = init.name;
        let built = erased(async {
            run_init(init)
                .await
                .and_then(|state| make_handler(make, state, &settings))
        })
        .await;
        match built {
            Ok(handler) => self.run(handler, settings, second).await,
            Err(failed) => erased(self.init_failed(name, failed, settings, second)).await,
        }
    }

    async fn run<H: Handler>(
        self,
        handler: H,
        settings: Settings,
        second: SecondSignal,
    ) -> Result<(), Error> {
        match self.mode {
            Mode::LocalTest { test_input } => {
                let concurrency = settings.concurrency.initial();
                let jobs = local::read_test_jobs(test_input, settings.test_input)
                    .inspect_err(|e| log_error("test input", e))?;
                erased(local::run_jobs(&handler, jobs, concurrency, self.limits)).await
            }
            Mode::Production(cfg) => {
                let Some(client) = self.client else {
                    return Err(Error::new(ErrorKind::Runtime, "no platform client"));
                };
                let process = Process::start(&cfg, self.limits, second);
                erased(run_loop_from(
                    handler,
                    *cfg,
                    client,
                    settings.loop_options(),
                    self.limits,
                    process,
                    Default::default(),
                ))
                .await
            }
            Mode::ServeApi(api) => {
                erased(serve_api(handler, settings, api, self.limits, second)).await
            }
            // `go` serves load-balancing workers before it gets here.
            Mode::LoadBalancing(lb) => {
                let build: crate::load_balancing::Build<H> =
                    Box::pin(std::future::ready(Ok(handler)));
                erased(crate::load_balancing::serve(
                    *lb,
                    build,
                    &settings,
                    self.limits,
                    second,
                ))
                .await
            }
        }
    }

    /// Production with an init function: jobs are taken while init runs (see `init_gate`); on
    /// success they run first, on failure (or a signal first) each is posted failed with the
    /// reason, then the worker reports unhealthy and returns an `Init` error.
    async fn production<H: Handler>(
        self,
        init: InitStep,
        make: MakeHandler<H>,
        settings: Settings,
        second: SecondSignal,
    ) -> Result<(), Error> {
        let (Mode::Production(cfg), Some(client)) = (self.mode, self.client) else {
            return Err(Error::new(ErrorKind::Runtime, "no platform client"));
        };
        let cfg = *cfg;
        let limits = self.limits;
        let process = Process::start(&cfg, limits, second);
        let capacity = settings.concurrency.initial();
        let name = init.name;
        let (ended, handover) = crate::init_gate::take_while(
            run_init(init),
            Result::is_ok,
            (&client, &cfg),
            capacity,
            &process.in_flight,
            &process.shutdown,
        )
        .await;
        let failed = match ended {
            crate::init_gate::Ended::Init(ran) => {
                match ran.and_then(|state| make_handler(make, state, &settings)) {
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
                    Err(failed) => Some(failed),
                }
            }
            crate::init_gate::Ended::Stopped => None,
        };
        // What the held jobs are told: why init failed, or that the worker was stopped first.
        let reported = match &failed {
            Some(failed) => init_failure(name, failed),
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
        let result = match failed {
            Some(failed) => {
                heartbeat::report_unhealthy(&client, &cfg, "init", &failed.failure.to_string())
                    .await;
                Err(init_error(name, &failed))
            }
            None => Ok(()),
        };
        logging::flush();
        result
    }

    /// The init function failed outside production: local test mode prints each test job's
    /// result as failed with the reason (as a job taken in production is told);
    /// `--rp_serve_api` serves its local API and fails every job so, until stopped.
    async fn init_failed(
        self,
        name: &str,
        failed: InitFailed,
        settings: Settings,
        second: SecondSignal,
    ) -> Result<(), Error> {
        let error = init_error(name, &failed);
        let failure = init_failure(name, &failed);
        match self.mode {
            Mode::LocalTest { test_input } => {
                if let Ok(jobs) = local::read_test_jobs(test_input, settings.test_input) {
                    local::print_failed(jobs, &failure, self.limits);
                }
            }
            Mode::ServeApi(api) => {
                tracing::error!(
                    "every job sent to this local API fails until the init function is fixed \
                     and the worker restarted"
                );
                let failing = crate::handler::handler_fn(move |_: crate::Value, _| {
                    std::future::ready(Err::<(), _>(failure.clone()))
                });
                let _ = serve_api(failing, settings, api, self.limits, second).await;
            }
            Mode::Production(_) | Mode::LoadBalancing(_) => {}
        }
        Err(error)
    }
}

/// Build the handler around init's state (a state of the wrong type is a bug of the caller).
fn make_handler<H>(
    make: MakeHandler<H>,
    state: &'static (dyn Any + Send + Sync),
    settings: &Settings,
) -> Result<H, InitFailed> {
    make(state).map_err(|failure| {
        tracing::error!("could not build the handler `{}`: {failure}", settings.name);
        InitFailed {
            failure: Box::new(failure),
            lines: Vec::new(),
        }
    })
}

/// The heartbeat and signal handling of a production worker, started before init so that jobs
/// taken while init runs are in the pings and a SIGTERM during init is seen.
pub(crate) struct Process {
    in_flight: Arc<InFlight>,
    trigger: shutdown::ShutdownTrigger,
    shutdown: shutdown::Shutdown,
}

impl Process {
    pub(crate) fn start(cfg: &PlatformConfig, limits: Limits, second: SecondSignal) -> Process {
        let in_flight = Arc::new(InFlight::default());
        heartbeat::start(cfg, in_flight.clone());
        let (trigger, shutdown) = shutdown::channel();
        shutdown::on_signals(trigger.clone(), limits.shutdown_grace, second);
        Process {
            in_flight,
            trigger,
            shutdown,
        }
    }
}

/// The production loop on a started [`Process`], going on from where the job-takes made while
/// init ran left off (their jobs run first), until shutdown.
pub(crate) async fn run_loop_from<H: Handler>(
    handler: H,
    cfg: PlatformConfig,
    client: crate::platform_client::Client,
    options: LoopOptions,
    limits: Limits,
    process: Process,
    handover: crate::init_gate::Handover,
) -> Result<(), Error> {
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
    let result = looping.await.map_err(|e| {
        tracing::error!("the job loop stopped unexpectedly: {e}");
        Error::new(
            ErrorKind::Runtime,
            format!("the job loop stopped unexpectedly: {e}"),
        )
    });
    logging::flush();
    result
}

/// Log an error that stops the worker, as `what error: …`.
pub(crate) fn log_error(what: &str, error: &dyn std::fmt::Display) {
    tracing::error!("{what} error: {error}");
}

/// The `main` of a `#[worker::handler]` binary: build the runtime, read the configuration, run
/// init once, build the handler around its state, then run. Only here does a second signal
/// exit the process.
pub fn main<I: InitProvider, H: Handler>(
    settings: Settings,
    make_handler: impl FnOnce(&'static (dyn Any + Send + Sync)) -> Result<H, Failure> + Send + 'static,
) -> ExitCode {
    report::install_panic_hook();
    let args = match read_args() {
        Ok(Some(args)) => args,
        Ok(None) => return ExitCode::SUCCESS,
        // A bad command line exits 2, as argument parsers do.
        Err(_) => return ExitCode::from(2),
    };
    if args.schema {
        return match print_contract(&settings) {
            true => ExitCode::SUCCESS,
            false => ExitCode::FAILURE,
        };
    }
    if args.hub_tests {
        return exit_code(write_hub_tests(&settings, args.test_input));
    }
    let builder = if settings.current_thread {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    let runtime = match { builder }.enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: could not start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        let started = Started::new(args, None, LimitOverrides::default())?;
        let source = Source::Init {
            init: InitStep {
                name: I::NAME,
                future: I::init(),
                timeout: match I::TIMEOUT_MICROS {
                    0 => None,
                    micros => Some(std::time::Duration::from_micros(micros)),
                },
            },
            make: Box::new(make_handler),
        };
        started.go(source, settings, SecondSignal::Exit).await
    });
    // Jobs are done and reported; do not wait for blocking threads still running abandoned work.
    runtime.shutdown_background();
    exit_code(result)
}

/// The process's flags; `None` after `--help` printed the help. A bad flag's error was printed.
fn read_args() -> Result<Option<Args>, Error> {
    match Args::from_env() {
        Ok(config::Command::Run(args)) => Ok(Some(args)),
        Ok(config::Command::Help(text)) => {
            print!("{text}");
            Ok(None)
        }
        Err(e) => {
            eprintln!("error: {e}");
            Err(e)
        }
    }
}

/// `--schema`: the handler's input and output schemas on stdout, before (and without) init.
/// `false` if they could not be written.
fn print_contract(settings: &Settings) -> bool {
    let contract = settings.contract_now();
    for note in contract.notes() {
        eprintln!("{note}");
    }
    match serde_json::to_string_pretty(&contract.document()) {
        Ok(text) => {
            println!("{text}");
            true
        }
        Err(e) => {
            eprintln!("error: could not write the schema: {e}");
            false
        }
    }
}

/// `--hub-tests`: `.runpod/tests.json` in the working directory, from the test inputs; what
/// was written (and what the Hub still needs) on stderr.
fn write_hub_tests(settings: &Settings, test_input: Option<String>) -> Result<(), Error> {
    let dir = std::env::current_dir().map_err(|e| {
        Error::new(ErrorKind::TestInput, format!("no working directory: {e}")).with_source(e)
    })?;
    match crate::hub::write_hub_tests(&dir, test_input, settings.test_input, settings.name) {
        Ok(written) => {
            eprintln!(
                "wrote {} test(s) to {}",
                written.tests,
                written.path.display()
            );
            if written.needs_config {
                eprintln!(
                    "note: the Hub also needs `config` in that file (gpuTypeId, gpuCount, env, \
                     allowedCudaVersions: the machine the tests run on); --hub-tests keeps it \
                     once you add it"
                );
            }
            Ok(())
        }
        Err(e) => {
            eprintln!("error: {e}");
            Err(e)
        }
    }
}

/// Run the init function with its log lines kept; its state leaked to `&'static` (every job
/// borrows it for the life of the process).
async fn run_init(init: InitStep) -> Result<&'static (dyn Any + Send + Sync), InitFailed> {
    let InitStep {
        name,
        future,
        timeout,
    } = init;
    if !name.is_empty() {
        tracing::info!("running init function `{name}`");
    }
    logging::capture_init_lines();
    let started = std::time::Instant::now();
    let ran = match timeout {
        None => future.await,
        Some(bound) => tokio::time::timeout(bound, future)
            .await
            .unwrap_or_else(|_| {
                Err(Failure::new(
                    "InitTimeout",
                    format!(
                        "the init function `{name}` did not finish within {bound:?} (its \
                         `#[worker::init(timeout = …)]`)"
                    ),
                ))
            }),
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
            Err(InitFailed {
                failure: Box::new(failure),
                lines,
            })
        }
    }
}

/// A failed init function: its error, and the last lines it logged.
#[derive(Debug)]
pub(crate) struct InitFailed {
    // Boxed: `Result<_, InitFailed>` stays small on the start path.
    failure: Box<Failure>,
    lines: Vec<String>,
}

/// What `try_run` returns when init failed.
fn init_error(name: &str, failed: &InitFailed) -> Error {
    Error::new(
        ErrorKind::Init,
        format!("the init function `{name}` failed: {}", failed.failure),
    )
    .with_source((*failed.failure).clone())
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
