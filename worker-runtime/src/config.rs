//! Configuration: command-line flags and environment variables, validated once at start-up,
//! and the choice of mode (local test or production).
//!
//! The flags are parsed by hand from one table ([`FLAGS`]): a dozen flags do not need an
//! argument-parsing crate, and clap was 230 KB of every worker's code (idle memory is code pages).
//! Long with its tests: the tests of every variable's and flag's messages belong next to the
//! parsing they pin.

use std::time::Duration;

use crate::error::Error;
use crate::logging::LogLevel;
use crate::wire::{Target, Urls};
use reqwest::Url;

/// The worker's command-line flags (the Python SDK's names, so existing scripts keep working).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Args {
    /// `--test_input`: the whole job JSON of one local test job.
    pub(crate) test_input: Option<String>,
    /// `--rp_log_level`, overriding `RUNPOD_LOG_LEVEL`.
    pub(crate) log_level: Option<String>,
    pub(crate) serve_api: bool,
    pub(crate) api_host: String,
    pub(crate) api_port: u16,
    pub(crate) api_concurrency: usize,
    pub(crate) schema: bool,
    pub(crate) hub_tests: bool,
    pub(crate) load_balancing: bool,
}

impl Default for Args {
    fn default() -> Args {
        Args {
            test_input: None,
            log_level: None,
            serve_api: false,
            api_host: "127.0.0.1".to_owned(),
            api_port: 8000,
            api_concurrency: 1,
            schema: false,
            hub_tests: false,
            load_balancing: false,
        }
    }
}

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Command {
    /// Run the worker with these flags.
    Run(Args),
    /// `--help` / `-h`: print this text on stdout and exit successfully.
    Help(String),
}

/// One flag the worker reads: its name, what it takes, its help.
struct Flag {
    name: &'static str,
    takes: Takes,
    help: &'static str,
}

/// What a flag takes, and what it sets.
#[derive(Clone, Copy)]
enum Takes {
    /// A switch: the field it turns on.
    Nothing(fn(&mut Args) -> &mut bool),
    /// A value (its name in `--help`), and how it is stored.
    Value(&'static str, fn(&mut Args, String) -> Result<(), Error>),
    /// `--help` / `-h`: the help text instead of running.
    Help,
}

/// The flags the worker reads, in the order `--help` lists them.
const FLAGS: &[Flag] = &[
    Flag {
        name: "--test_input",
        takes: Takes::Value("JSON", |a, v| {
            a.test_input = Some(v);
            Ok(())
        }),
        help: "Run one job locally and exit: the whole job JSON, e.g. '{\"input\": {\"prompt\": \"hi\"}}'",
    },
    Flag {
        name: "--rp_log_level",
        takes: Takes::Value("LEVEL", |a, v| {
            a.log_level = Some(v);
            Ok(())
        }),
        help: "Log level: NOTSET, TRACE, DEBUG, INFO, WARN or ERROR (or 0-5). Overrides RUNPOD_LOG_LEVEL",
    },
    Flag {
        name: "--rp_serve_api",
        takes: Takes::Nothing(|a| &mut a.serve_api),
        help: "Serve a local RunPod API (a platform emulator) and take its jobs in this process",
    },
    Flag {
        name: "--rp_api_host",
        takes: Takes::Value("HOST", |a, v| {
            a.api_host = v;
            Ok(())
        }),
        help: "The address the local API listens on (with --rp_serve_api) [default: 127.0.0.1]",
    },
    Flag {
        name: "--rp_api_port",
        takes: Takes::Value("PORT", Args::set_port),
        help: "The port the local API listens on (with --rp_serve_api) [default: 8000]",
    },
    Flag {
        name: "--rp_api_concurrency",
        takes: Takes::Value("N", Args::set_concurrency),
        help: "Jobs run at once with --rp_serve_api; above 1 it overrides the handler's concurrency [default: 1]",
    },
    Flag {
        name: "--schema",
        takes: Takes::Nothing(|a| &mut a.schema),
        help: "Print the JSON Schema of the handler's input and output ({\"input\": …, \"output\": …}) and exit, without running init",
    },
    Flag {
        name: "--hub-tests",
        takes: Takes::Nothing(|a| &mut a.hub_tests),
        help: "Write the RunPod Hub's .runpod/tests.json from the test input(s) (--test_input, ./test_input.json or the built-in one) and exit, without running init",
    },
    Flag {
        name: "--load-balancing",
        takes: Takes::Nothing(|a| &mut a.load_balancing),
        help: "Serve requests over HTTP, as a load-balancing endpoint's worker (PORT, PORT_HEALTH, HEALTH_CHECK_PATH), instead of taking jobs from a queue. Same as WORKER_MODE=load-balancing",
    },
    Flag {
        name: "--help",
        takes: Takes::Help,
        help: "Print help",
    },
];

fn flag(name: &str) -> Option<&'static Flag> {
    match name {
        "-h" => FLAGS.iter().find(|f| matches!(f.takes, Takes::Help)),
        name => FLAGS.iter().find(|f| f.name == name),
    }
}

/// The arguments the worker did not recognise, for the user's code ([`crate::args`]).
static OTHER_ARGS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();

impl Args {
    /// Parse the process's flags. Arguments the worker does not know are left to the user's
    /// code (`worker::args()`, and a warning once logging is up), as the Python SDK's
    /// `parse_known_args` does; a known flag with a bad or missing value is an error that names
    /// the flag and what it takes.
    pub(crate) fn from_env() -> Result<Command, Error> {
        let all: Vec<String> = std::env::args_os()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let (known, other) = split_known(&all);
        let _ = OTHER_ARGS.set(other);
        Args::parse(&known)
    }

    /// Parse the worker's own flags, the program name first (what [`split_known`] kept).
    pub(crate) fn parse(known: &[String]) -> Result<Command, Error> {
        let program = known.first().map_or("worker", |p| program_name(p));
        let mut args = Args::default();
        let mut seen: Vec<&'static str> = Vec::new();
        let mut items = known.iter().skip(1);
        while let Some(item) = items.next() {
            let (name, inline) = match item.split_once('=') {
                Some((name, value)) => (name, Some(value)),
                None => (item.as_str(), None),
            };
            let Some(flag) = flag(name) else {
                // split_known keeps known flags only; a caller passing more is told plainly.
                return Err(Error::config(format!(
                    "unknown flag {item:?}; see {program} --help"
                )));
            };
            if matches!(flag.takes, Takes::Help) {
                return Ok(Command::Help(help(program)));
            }
            if seen.contains(&flag.name) {
                return Err(Error::config(format!(
                    "{} was given more than once; give it once",
                    flag.name
                )));
            }
            seen.push(flag.name);
            match (flag.takes, inline) {
                // Answered above, before the once-only check (`--help --help` is still help).
                (Takes::Help, _) => {}
                (Takes::Nothing(field), None) => *field(&mut args) = true,
                (Takes::Nothing(_), Some(_)) => {
                    return Err(Error::config(format!(
                        "{} takes no value (write `{}` alone, not {item:?})",
                        flag.name, flag.name
                    )));
                }
                (Takes::Value(_, set), Some(value)) => set(&mut args, value.to_owned())?,
                (Takes::Value(what, set), None) => match items.next() {
                    Some(value) => set(&mut args, value.clone())?,
                    None => {
                        return Err(Error::config(format!(
                            "{} needs a value: {} <{what}>",
                            flag.name, flag.name
                        )));
                    }
                },
            }
        }
        Ok(Command::Run(args))
    }

    fn set_port(&mut self, value: String) -> Result<(), Error> {
        self.api_port = value.trim_ascii().parse().map_err(|_| {
            Error::config(format!(
                "--rp_api_port {value:?} is not a port: give a number from 0 to 65535"
            ))
        })?;
        Ok(())
    }

    fn set_concurrency(&mut self, value: String) -> Result<(), Error> {
        self.api_concurrency = match value.trim_ascii().parse::<usize>() {
            Ok(n) if n > 0 => n,
            _ => {
                return Err(Error::config(format!(
                    "--rp_api_concurrency {value:?} is not a number of jobs: give a whole \
                     number, 1 or more"
                )));
            }
        };
        Ok(())
    }

    /// The arguments [`from_env`](Self::from_env) left out.
    pub(crate) fn other() -> &'static [String] {
        OTHER_ARGS.get().map_or(&[], Vec::as_slice)
    }
}

/// The program's file name, as `--help` shows it.
fn program_name(path: &str) -> &str {
    std::path::Path::new(path)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or(path)
}

/// `--help`: what the worker is, then every flag with its value and help, aligned.
fn help(program: &str) -> String {
    let shown = |f: &Flag| match f.takes {
        Takes::Help => format!("-h, {}", f.name),
        Takes::Value(value, _) => format!("    {} <{value}>", f.name),
        Takes::Nothing(_) => format!("    {}", f.name),
    };
    let width = FLAGS.iter().map(|f| shown(f).len()).max().unwrap_or(0);
    let mut text = format!(
        "A RunPod serverless worker.\n\nUsage: {program} [OPTIONS]\n\n\
         Arguments the worker does not read are left to the handler's code (worker::args()).\n\n\
         Options:\n"
    );
    for f in FLAGS {
        text.push_str(&format!("  {:<width$}  {}\n", shown(f), f.help));
    }
    text
}

/// `args` (the program name first) split into the worker's own flags (with their values, as
/// `--flag value` or `--flag=value`) and everything else, in order.
fn split_known(args: &[String]) -> (Vec<String>, Vec<String>) {
    let mut known = Vec::new();
    let mut other = Vec::new();
    let mut items = args.iter();
    if let Some(program) = items.next() {
        known.push(program.clone());
    }
    while let Some(arg) = items.next() {
        let name = arg.split_once('=').map_or(arg.as_str(), |(name, _)| name);
        match flag(name) {
            Some(flag) => {
                known.push(arg.clone());
                if matches!(flag.takes, Takes::Value(..))
                    && !arg.contains('=')
                    && let Some(value) = items.next()
                {
                    known.push(value.clone());
                }
            }
            None => other.push(arg.clone()),
        }
    }
    (known, other)
}

/// Where to read environment variables from (the process, or a map in tests).
pub(crate) trait Env {
    fn var(&self, name: &str) -> Option<String>;
}

/// The real process environment.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

/// Name/value pairs, such as the emulator's `worker_env` (for `--rp_serve_api` and tests).
impl Env for Vec<(String, String)> {
    fn var(&self, name: &str) -> Option<String> {
        self.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }
}

impl<F: Fn(&str) -> Option<String>> Env for F {
    fn var(&self, name: &str) -> Option<String> {
        self(name)
    }
}

/// The things the process can be.
#[derive(Debug)]
pub(crate) enum Mode {
    /// Run one job from `--test_input`, `./test_input.json` or the embedded default, then exit.
    LocalTest { test_input: Option<String> },
    /// Take jobs from the platform until stopped.
    Production(Box<PlatformConfig>),
    /// `--rp_serve_api`: serve a local RunPod emulator and take its jobs until stopped.
    ServeApi(ServeApi),
    /// `--load-balancing` or `WORKER_MODE=load-balancing`: serve the handler over HTTP, as a
    /// load-balancing endpoint's worker, until stopped.
    LoadBalancing(Box<LoadBalancing>),
}

/// A load-balancing worker's server, as RunPod documents it: `PORT` (default 80) for requests,
/// `PORT_HEALTH` (default `PORT`) and `HEALTH_CHECK_PATH` (default `/ping`) for health.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LoadBalancing {
    pub(crate) port: u16,
    /// `PORT_HEALTH` when it is another port than `PORT` (then it serves health only).
    pub(crate) health_port: Option<u16>,
    pub(crate) health_path: String,
    /// `WORKER_MAX_REQUEST_BYTES`: the largest request body (default 30 MiB, RunPod's limit).
    pub(crate) max_request_bytes: usize,
    /// `RUNPOD_POD_HOSTNAME` and `RUNPOD_POD_ID` for error reports (`unknown` without them).
    pub(crate) hostname: String,
    pub(crate) worker_id: String,
}

/// The routes a load-balancing worker serves besides health (a health path cannot be one).
pub(crate) const LOAD_BALANCING_ROUTES: &[&str] = &["/runsync", "/run", "/stream", "/openapi.json"];

/// Where `--rp_serve_api` listens, and how many jobs it runs at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServeApi {
    pub(crate) host: String,
    pub(crate) port: u16,
    /// `--rp_api_concurrency` when above 1, else the handler's own.
    pub(crate) concurrency: Option<usize>,
}

/// Everything the production loop needs to talk to the platform.
#[derive(Clone)]
pub(crate) struct PlatformConfig {
    pub(crate) urls: Urls,
    /// `RUNPOD_AI_API_KEY`, sent raw in `Authorization`. Never logged: `Debug` hides it.
    pub(crate) api_key: String,
    /// The id substituted for `$ID` / `$RUNPOD_POD_ID`: `RUNPOD_POD_ID`, or a random one.
    pub(crate) worker_id: String,
    /// `RUNPOD_POD_ID` itself; reports say `unknown` without it, as the Python SDK does.
    pub(crate) pod_id: Option<String>,
    /// `RUNPOD_POD_HOSTNAME`, or `unknown`.
    pub(crate) hostname: String,
    /// `RUNPOD_PING_INTERVAL`, in milliseconds (default 10 000).
    pub(crate) ping_interval: Duration,
}

impl std::fmt::Debug for PlatformConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlatformConfig")
            .field("urls", &self.urls)
            .field(
                "api_key",
                &if self.api_key.is_empty() {
                    "<empty>"
                } else {
                    "<redacted>"
                },
            )
            .field("worker_id", &self.worker_id)
            .field("pod_id", &self.pod_id)
            .field("hostname", &self.hostname)
            .field("ping_interval", &self.ping_interval)
            .finish()
    }
}

/// Pick the mode. A load-balancing worker only when asked (`--load-balancing` or
/// `WORKER_MODE=load-balancing`), never guessed from the environment, and never together with
/// another mode's flag. Else `--rp_serve_api` first (as the Python SDK does), then local test
/// when `--test_input` is given or `RUNPOD_WEBHOOK_GET_JOB` is unset, else production.
pub(crate) fn mode(args: &Args, env: &impl Env) -> Result<Mode, Error> {
    if load_balancing_asked(args, env)? {
        let other = if args.serve_api {
            Some("--rp_serve_api (the local queue API)")
        } else if args.test_input.is_some() {
            Some("--test_input (one local test job)")
        } else {
            None
        };
        if let Some(other) = other {
            return Err(Error::config(format!(
                "a load-balancing worker (--load-balancing or WORKER_MODE=load-balancing) cannot \
                 also run {other}: drop one of them"
            )));
        }
        return Ok(Mode::LoadBalancing(Box::new(LoadBalancing::from_env(env)?)));
    }
    if args.serve_api {
        return Ok(Mode::ServeApi(ServeApi {
            host: args.api_host.clone(),
            port: args.api_port,
            concurrency: (args.api_concurrency > 1).then_some(args.api_concurrency),
        }));
    }
    if args.test_input.is_some() || env.var("RUNPOD_WEBHOOK_GET_JOB").is_none() {
        return Ok(Mode::LocalTest {
            test_input: args.test_input.clone(),
        });
    }
    Ok(Mode::Production(Box::new(PlatformConfig::from_env(env)?)))
}

/// Whether the worker was asked to serve as a load-balancing endpoint's worker: the flag, or
/// `WORKER_MODE` (`queue`, the default, or `load-balancing`); the two contradicting is an error.
fn load_balancing_asked(args: &Args, env: &impl Env) -> Result<bool, Error> {
    let by_env = match env.var("WORKER_MODE") {
        None => None,
        Some(value) => match value.trim_ascii() {
            "" => None,
            "queue" => Some(false),
            "load-balancing" => Some(true),
            other => {
                return Err(Error::config(format!(
                    "WORKER_MODE={other:?} is not a mode; use `queue` (take jobs from the \
                     endpoint's queue, the default) or `load-balancing` (serve HTTP requests)"
                )));
            }
        },
    };
    match (args.load_balancing, by_env) {
        (true, Some(false)) => Err(Error::config(
            "--load-balancing asks for a load-balancing worker, but WORKER_MODE=queue asks for a \
             queue worker: drop one of them",
        )),
        (flag, by_env) => Ok(flag || by_env == Some(true)),
    }
}

impl LoadBalancing {
    pub(crate) fn from_env(env: &impl Env) -> Result<LoadBalancing, Error> {
        let main = port(env, "PORT")?.unwrap_or(80);
        // A health port of its own only when it differs (0, "any free port", always does).
        let health_port = port(env, "PORT_HEALTH")?.filter(|&p| p != main || p == 0);
        let health_path = match env
            .var("HEALTH_CHECK_PATH")
            .map(|v| v.trim_ascii().to_owned())
        {
            None => "/ping".to_owned(),
            Some(path) if path.is_empty() => "/ping".to_owned(),
            Some(path) if !path.starts_with('/') || path.contains(['?', '#', ' ']) => {
                return Err(Error::config(format!(
                    "HEALTH_CHECK_PATH={path:?} must be a path starting with `/`, like `/ping`"
                )));
            }
            Some(path) if LOAD_BALANCING_ROUTES.contains(&path.as_str()) => {
                return Err(Error::config(format!(
                    "HEALTH_CHECK_PATH={path:?} is one of the worker's own routes ({}); pick \
                     another path, like `/ping`",
                    LOAD_BALANCING_ROUTES.join(", ")
                )));
            }
            Some(path) => path,
        };
        let max_request_bytes = match env
            .var("WORKER_MAX_REQUEST_BYTES")
            .filter(|v| !v.trim_ascii().is_empty())
        {
            None => 30 * 1024 * 1024,
            Some(raw) => match raw.trim_ascii().parse::<usize>() {
                Ok(n) if n > 0 => n,
                _ => {
                    return Err(Error::config(format!(
                        "WORKER_MAX_REQUEST_BYTES={raw:?} is not a positive whole number of bytes"
                    )));
                }
            },
        };
        Ok(LoadBalancing {
            port: main,
            health_port,
            health_path,
            max_request_bytes,
            hostname: env
                .var("RUNPOD_POD_HOSTNAME")
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| "unknown".into()),
            worker_id: env
                .var("RUNPOD_POD_ID")
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| "unknown".into()),
        })
    }
}

/// A port number from `name`, if set and not blank.
fn port(env: &impl Env, name: &str) -> Result<Option<u16>, Error> {
    match env.var(name).map(|v| v.trim_ascii().to_owned()) {
        None => Ok(None),
        Some(raw) if raw.is_empty() => Ok(None),
        Some(raw) => raw.parse::<u16>().map(Some).map_err(|_| {
            Error::config(format!(
                "{name}={raw:?} is not a port number (0 to 65535; 0 lets the system pick one)"
            ))
        }),
    }
}

/// The log level: `--rp_log_level`, else `RUNPOD_LOG_LEVEL`, else `RUNPOD_DEBUG_LEVEL`, else INFO.
pub(crate) fn log_level(args: &Args, env: &impl Env) -> Result<LogLevel, Error> {
    let (source, value) = if let Some(level) = &args.log_level {
        ("--rp_log_level", level.clone())
    } else if let Some(level) = env.var("RUNPOD_LOG_LEVEL") {
        ("RUNPOD_LOG_LEVEL", level)
    } else if let Some(level) = env.var("RUNPOD_DEBUG_LEVEL") {
        ("RUNPOD_DEBUG_LEVEL", level)
    } else {
        return Ok(LogLevel::Info);
    };
    LogLevel::parse(&value).ok_or_else(|| {
        Error::config(format!(
            "{source}={value:?} is not a log level; use NOTSET, TRACE, DEBUG, INFO, WARN or ERROR (or 0-5)"
        ))
    })
}

impl PlatformConfig {
    pub(crate) fn from_env(env: &impl Env) -> Result<PlatformConfig, Error> {
        let pod_id = env.var("RUNPOD_POD_ID").filter(|v| !v.is_empty());
        let worker_id = pod_id
            .clone()
            .unwrap_or_else(|| format!("{:032x}", fastrand::u128(..)));

        // §2.1: job-take substitutes only `$ID` (the worker id); the others `$RUNPOD_POD_ID`,
        // and job-done and job-stream keep `$ID` for each job's id.
        const TAKE: &str = "RUNPOD_WEBHOOK_GET_JOB";
        const DONE: &str = "RUNPOD_WEBHOOK_POST_OUTPUT";
        const STREAM: &str = "RUNPOD_WEBHOOK_POST_STREAM";
        const PING: &str = "RUNPOD_WEBHOOK_PING";
        // Percent-encoded, as job ids are: a worker id with `/`, `?` or `#` stays one segment.
        let encoded = crate::wire::encode_component(&worker_id);
        let job_take = check_url(TAKE, &required_url(env, TAKE)?.replace("$ID", &encoded))?;
        let pod_url = |template: String, name: &str| {
            check_url(name, &template.replace("$RUNPOD_POD_ID", &encoded))
        };
        let job_done = pod_url(required_url(env, DONE)?, DONE)?;
        let job_stream = optional_url(env, STREAM)
            .map(|u| pod_url(u, STREAM))
            .transpose()?;
        let ping = optional_url(env, PING)
            .map(|u| pod_url(u, PING))
            .transpose()?;

        let ping_interval = match env
            .var("RUNPOD_PING_INTERVAL")
            .filter(|v| !v.trim_ascii().is_empty())
        {
            None => Duration::from_millis(10_000),
            Some(raw) => match raw.trim_ascii().parse::<u64>() {
                Ok(ms) if ms > 0 => Duration::from_millis(ms),
                _ => {
                    return Err(Error::config(format!(
                        "RUNPOD_PING_INTERVAL={raw:?} is not a positive whole number of milliseconds"
                    )));
                }
            },
        };

        Ok(PlatformConfig {
            urls: Urls::new(job_take, job_done, job_stream, ping),
            api_key: env.var("RUNPOD_AI_API_KEY").unwrap_or_default(),
            worker_id,
            pod_id,
            hostname: env
                .var("RUNPOD_POD_HOSTNAME")
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| "unknown".into()),
            ping_interval,
        })
    }

    /// The `worker_id` of error reports: `RUNPOD_POD_ID` or `unknown`.
    pub(crate) fn report_worker_id(&self) -> &str {
        self.pod_id.as_deref().unwrap_or("unknown")
    }
}

fn required_url(env: &impl Env, name: &str) -> Result<String, Error> {
    match env.var(name) {
        Some(v) if !v.trim_ascii().is_empty() => Ok(v.trim_ascii().to_owned()),
        Some(_) => Err(Error::config(format!(
            "{name} is set but empty; it must be the platform's URL"
        ))),
        None => Err(Error::config(format!(
            "{name} is not set; RunPod sets it in production (RUNPOD_WEBHOOK_GET_JOB being set selects production mode)"
        ))),
    }
}

/// The variable's value, if set and not blank; checked as a URL once its worker id is in
/// (`check_url`).
fn optional_url(env: &impl Env, name: &str) -> Option<String> {
    env.var(name)
        .map(|v| v.trim_ascii().to_owned())
        .filter(|v| !v.is_empty())
}

fn check_url(name: &str, url: &str) -> Result<Target, Error> {
    if let Some(plain) = Target::parse_plain(url) {
        return Ok(plain);
    }
    match Url::parse(url) {
        Ok(u) if u.scheme() == "http" || u.scheme() == "https" => Ok(Target::new(&u)),
        Ok(u) => Err(Error::config(format!(
            "{name}={url:?} must be an http or https URL, not {}",
            u.scheme()
        ))),
        Err(e) => Err(Error::config(format!(
            "{name}={url:?} is not a valid URL: {e}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn unknown_arguments_are_left_to_the_user() {
        let args = |list: &[&str]| -> Vec<String> { list.iter().map(|s| s.to_string()).collect() };
        let (known, other) = super::split_known(&args(&[
            "worker",
            "--model",
            "big",
            "--test_input",
            "{\"input\": 1}",
            "-v",
            "--rp_log_level=DEBUG",
            "--rp_serve_api",
            "extra",
        ]));
        assert_eq!(
            known,
            args(&[
                "worker",
                "--test_input",
                "{\"input\": 1}",
                "--rp_log_level=DEBUG",
                "--rp_serve_api"
            ])
        );
        assert_eq!(other, args(&["--model", "big", "-v", "extra"]));
    }

    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Env {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name: &str| map.get(name).cloned()
    }

    fn args() -> Args {
        parse(&["worker"])
    }

    fn parse(list: &[&str]) -> Args {
        let list: Vec<String> = list.iter().map(|s| s.to_string()).collect();
        match Args::parse(&list) {
            Ok(Command::Run(args)) => args,
            other => panic!("{list:?}: {other:?}"),
        }
    }

    fn parse_error(list: &[&str]) -> String {
        let list: Vec<String> = list.iter().map(|s| s.to_string()).collect();
        match Args::parse(&list) {
            Err(e) => e.to_string(),
            other => panic!("{list:?}: {other:?}"),
        }
    }

    #[test]
    fn flags_take_values_as_the_python_sdk_spells_them() {
        assert_eq!(args(), Args::default());
        let a = parse(&[
            "worker",
            "--test_input={\"input\": 1}",
            "--rp_log_level",
            "DEBUG",
            "--rp_api_port=9001",
            "--schema",
        ]);
        assert_eq!(a.test_input.as_deref(), Some("{\"input\": 1}"));
        assert_eq!(a.log_level.as_deref(), Some("DEBUG"));
        assert_eq!(a.api_port, 9001);
        assert!(a.schema && !a.serve_api && !a.hub_tests && !a.load_balancing);
        let a = parse(&[
            "worker",
            "--rp_serve_api",
            "--rp_api_host",
            "0.0.0.0",
            "--rp_api_concurrency=4",
            "--hub-tests",
            "--load-balancing",
        ]);
        assert_eq!(
            (a.serve_api, a.api_host.as_str(), a.api_concurrency),
            (true, "0.0.0.0", 4)
        );
        assert!(a.hub_tests && a.load_balancing && !a.schema);
        // A value may itself contain `=`.
        let a = parse(&["worker", "--test_input", "{\"input\": \"a=b\"}"]);
        assert_eq!(a.test_input.as_deref(), Some("{\"input\": \"a=b\"}"));
    }

    #[test]
    fn a_bad_flag_says_which_and_what_it_takes() {
        let e = parse_error(&["worker", "--rp_api_port", "http"]);
        assert!(e.contains("--rp_api_port \"http\" is not a port"), "{e}");
        let e = parse_error(&["worker", "--rp_api_port", "70000"]);
        assert!(e.contains("0 to 65535"), "{e}");
        let e = parse_error(&["worker", "--rp_api_concurrency", "0"]);
        assert!(e.contains("1 or more"), "{e}");
        let e = parse_error(&["worker", "--test_input"]);
        assert!(
            e.contains("--test_input needs a value: --test_input <JSON>"),
            "{e}"
        );
        let e = parse_error(&["worker", "--rp_serve_api=yes"]);
        assert!(e.contains("--rp_serve_api takes no value"), "{e}");
        let e = parse_error(&["worker", "--schema", "--schema"]);
        assert!(e.contains("--schema was given more than once"), "{e}");
    }

    #[test]
    fn help_lists_every_flag() {
        for asked in ["--help", "-h"] {
            let list = ["/app/target/release/my-worker".to_owned(), asked.to_owned()];
            let Ok(Command::Help(text)) = Args::parse(&list) else {
                panic!("{asked} is not help")
            };
            assert!(text.contains("Usage: my-worker [OPTIONS]"), "{text}");
            for f in FLAGS {
                assert!(text.contains(f.name), "{} missing from {text}", f.name);
            }
            assert!(text.contains("--rp_api_port <PORT>"), "{text}");
        }
    }

    const PROD: &[(&str, &str)] = &[
        (
            "RUNPOD_WEBHOOK_GET_JOB",
            "http://h/v2/ep/job-take/$ID?gpu=A",
        ),
        (
            "RUNPOD_WEBHOOK_POST_OUTPUT",
            "http://h/v2/ep/job-done/$RUNPOD_POD_ID/$ID?gpu=A",
        ),
        (
            "RUNPOD_WEBHOOK_POST_STREAM",
            "http://h/v2/ep/job-stream/$RUNPOD_POD_ID/$ID?gpu=A",
        ),
        (
            "RUNPOD_WEBHOOK_PING",
            "http://h/v2/ep/ping/$RUNPOD_POD_ID?gpu=A",
        ),
        ("RUNPOD_AI_API_KEY", "secret-key"),
        ("RUNPOD_POD_ID", "w42"),
        ("RUNPOD_PING_INTERVAL", "1500"),
    ];

    #[test]
    fn production_config_substitutes_ids() {
        let Mode::Production(cfg) = mode(&args(), &env(PROD)).unwrap() else {
            panic!("not production")
        };
        let urls = &cfg.urls;
        assert_eq!(
            urls.take(1, false).as_str(),
            "http://h/v2/ep/job-take/w42?gpu=A&job_in_progress=0"
        );
        assert_eq!(
            urls.done("j", false).as_str(),
            "http://h/v2/ep/job-done/w42/j?gpu=A&isStream=false"
        );
        assert_eq!(
            urls.stream("j").unwrap().as_str(),
            "http://h/v2/ep/job-stream/w42/j?gpu=A&isStream=false"
        );
        assert!(
            urls.ping(&[])
                .unwrap()
                .as_str()
                .starts_with("http://h/v2/ep/ping/w42?gpu=A&runpod_version=")
        );
        assert_eq!(cfg.ping_interval, Duration::from_millis(1500));
        assert_eq!(cfg.report_worker_id(), "w42");
        assert_eq!(cfg.hostname, "unknown");
        assert!(!format!("{cfg:?}").contains("secret-key"));
    }

    #[test]
    fn local_mode_when_unset_or_test_input_given() {
        assert!(matches!(
            mode(&args(), &env(&[])).unwrap(),
            Mode::LocalTest { test_input: None }
        ));
        let a = Args {
            test_input: Some("{}".into()),
            ..args()
        };
        assert!(matches!(
            mode(&a, &env(PROD)).unwrap(),
            Mode::LocalTest {
                test_input: Some(_)
            }
        ));
    }

    #[test]
    fn clear_errors_for_bad_configuration() {
        let err = |pairs: &[(&str, &str)]| mode(&args(), &env(pairs)).unwrap_err().to_string();
        assert_eq!(
            err(&[("RUNPOD_WEBHOOK_GET_JOB", "")]),
            "RUNPOD_WEBHOOK_GET_JOB is set but empty; it must be the platform's URL"
        );
        assert!(
            err(&[("RUNPOD_WEBHOOK_GET_JOB", "http://h/job-take/$ID")])
                .starts_with("RUNPOD_WEBHOOK_POST_OUTPUT is not set")
        );
        assert!(
            err(&[
                ("RUNPOD_WEBHOOK_GET_JOB", "not a url"),
                ("RUNPOD_WEBHOOK_POST_OUTPUT", "http://h/$ID")
            ])
            .starts_with("RUNPOD_WEBHOOK_GET_JOB=\"not a url\" is not a valid URL")
        );
        let mut bad_ping = PROD.to_vec();
        bad_ping.retain(|(k, _)| *k != "RUNPOD_PING_INTERVAL");
        bad_ping.push(("RUNPOD_PING_INTERVAL", "10s"));
        assert_eq!(
            err(&bad_ping),
            "RUNPOD_PING_INTERVAL=\"10s\" is not a positive whole number of milliseconds"
        );
    }

    #[test]
    fn random_worker_id_without_pod_id() {
        let mut pairs = PROD.to_vec();
        pairs.retain(|(k, _)| *k != "RUNPOD_POD_ID");
        let Mode::Production(cfg) = mode(&args(), &env(&pairs)).unwrap() else {
            panic!()
        };
        assert_eq!(cfg.worker_id.len(), 32);
        assert!(cfg.urls.take(1, false).as_str().contains(&cfg.worker_id));
        assert_eq!(cfg.report_worker_id(), "unknown");
    }

    #[test]
    fn serve_api_comes_first_and_defaults_to_loopback() {
        let a = parse(&["worker", "--rp_serve_api", "--test_input", "{}"]);
        let Mode::ServeApi(api) = mode(&a, &env(PROD)).unwrap() else {
            panic!("not serve-api")
        };
        assert_eq!(
            api,
            ServeApi {
                host: "127.0.0.1".into(),
                port: 8000,
                concurrency: None
            }
        );
        let a = parse(&[
            "worker",
            "--rp_serve_api",
            "--rp_api_host",
            "0.0.0.0",
            "--rp_api_port",
            "9000",
            "--rp_api_concurrency",
            "4",
        ]);
        let Mode::ServeApi(api) = mode(&a, &env(&[])).unwrap() else {
            panic!("not serve-api")
        };
        assert_eq!((api.host.as_str(), api.port), ("0.0.0.0", 9000));
        assert_eq!(api.concurrency, Some(4));
    }

    #[test]
    fn log_levels() {
        assert_eq!(log_level(&args(), &env(&[])).unwrap(), LogLevel::Info);
        assert_eq!(
            log_level(&args(), &env(&[("RUNPOD_LOG_LEVEL", "debug")])).unwrap(),
            LogLevel::Debug
        );
        assert_eq!(
            log_level(&args(), &env(&[("RUNPOD_DEBUG_LEVEL", "5")])).unwrap(),
            LogLevel::Error
        );
        let a = Args {
            log_level: Some("WARN".into()),
            ..args()
        };
        assert_eq!(
            log_level(&a, &env(&[("RUNPOD_LOG_LEVEL", "debug")])).unwrap(),
            LogLevel::Warn
        );
        assert!(
            log_level(&args(), &env(&[("RUNPOD_LOG_LEVEL", "loud")]))
                .unwrap_err()
                .to_string()
                .contains("is not a log level")
        );
    }

    fn load_balancing(a: &Args, pairs: &[(&str, &str)]) -> Result<LoadBalancing, String> {
        match mode(a, &env(pairs)) {
            Ok(Mode::LoadBalancing(lb)) => Ok(*lb),
            Ok(other) => Err(format!("not load-balancing: {other:?}")),
            Err(e) => Err(e.to_string()),
        }
    }

    #[test]
    fn load_balancing_is_asked_for_never_guessed() {
        let lb = load_balancing(&args(), &[("WORKER_MODE", "load-balancing")]).unwrap();
        assert_eq!(
            lb,
            LoadBalancing {
                port: 80,
                health_port: None,
                health_path: "/ping".into(),
                max_request_bytes: 30 * 1024 * 1024,
                hostname: "unknown".into(),
                worker_id: "unknown".into(),
            }
        );
        let flag = Args {
            load_balancing: true,
            ..args()
        };
        let lb = load_balancing(
            &flag,
            &[
                ("PORT", "5000"),
                ("PORT_HEALTH", "5001"),
                ("HEALTH_CHECK_PATH", "/health"),
                ("RUNPOD_POD_ID", "pod-1"),
            ],
        )
        .unwrap();
        assert_eq!(
            (
                lb.port,
                lb.health_port,
                lb.health_path.as_str(),
                lb.worker_id.as_str()
            ),
            (5000, Some(5001), "/health", "pod-1")
        );
        // PORT_HEALTH equal to PORT is the same listener.
        let lb = load_balancing(&flag, &[("PORT", "5000"), ("PORT_HEALTH", "5000")]).unwrap();
        assert_eq!(lb.health_port, None);
        // The explicit choice wins over the queue's variables (logged at start-up).
        assert!(load_balancing(&flag, PROD).is_ok());
        // A `PORT` alone, or WORKER_MODE=queue, is a queue worker.
        assert!(matches!(
            mode(&args(), &env(&[("PORT", "80")])).unwrap(),
            Mode::LocalTest { .. }
        ));
        let mut queue = PROD.to_vec();
        queue.push(("WORKER_MODE", "queue"));
        assert!(matches!(
            mode(&args(), &env(&queue)).unwrap(),
            Mode::Production(_)
        ));
    }

    #[test]
    fn load_balancing_settings_that_contradict_or_are_wrong_are_errors() {
        let flag = Args {
            load_balancing: true,
            ..args()
        };
        let lb = &[("WORKER_MODE", "load-balancing")];
        type Case<'a> = (Args, Vec<(&'a str, &'a str)>, &'a str);
        let cases: Vec<Case> = vec![
            (
                flag,
                vec![("WORKER_MODE", "queue")],
                "--load-balancing asks for a load-balancing worker, but WORKER_MODE=queue asks for a queue worker",
            ),
            (
                Args {
                    serve_api: true,
                    ..args()
                },
                lb.to_vec(),
                "cannot also run --rp_serve_api",
            ),
            (
                Args {
                    test_input: Some("{}".into()),
                    ..args()
                },
                lb.to_vec(),
                "cannot also run --test_input",
            ),
            (
                args(),
                vec![("WORKER_MODE", "lb")],
                "WORKER_MODE=\"lb\" is not a mode",
            ),
            (
                args(),
                vec![lb[0], ("PORT", "eighty")],
                "PORT=\"eighty\" is not a port number",
            ),
            (
                args(),
                vec![lb[0], ("PORT_HEALTH", "70000")],
                "PORT_HEALTH=\"70000\" is not a port number",
            ),
            (
                args(),
                vec![lb[0], ("HEALTH_CHECK_PATH", "ping")],
                "must be a path starting with `/`",
            ),
            (
                args(),
                vec![lb[0], ("HEALTH_CHECK_PATH", "/runsync")],
                "is one of the worker's own routes",
            ),
            (
                args(),
                vec![lb[0], ("WORKER_MAX_REQUEST_BYTES", "0")],
                "not a positive whole number of bytes",
            ),
        ];
        for (a, pairs, expected) in cases {
            let error = load_balancing(&a, &pairs).unwrap_err();
            assert!(error.contains(expected), "{pairs:?}: {error}");
        }
    }
}
