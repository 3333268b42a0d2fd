//! The report: medians of the samples as a Markdown table (with each worker's share of the
//! ceiling and our ratios to the peers), the logging note, the machine it ran on, and the block
//! of BENCHMARKS.md between the `bench:begin`/`bench:end` markers that it replaces.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::kind::Kind;
use crate::measure::{PlatformKind, SLEEP_MS, Samples};
use crate::peers::{RUNPOD_PY, RUNPOD_SDK};

const BEGIN: &str = "<!-- bench:begin (written by `cargo run --release -p worker-bench`) -->";
const END: &str = "<!-- bench:end -->";

fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    })
}

/// The load average now (1, 5, 15 minutes): quoted so that a noisy machine shows.
pub(crate) fn load_average() -> String {
    shell("cut -d' ' -f1-3 /proc/loadavg")
}

/// The trimmed stdout of `sh -c cmd` (empty when it fails): the report's facts about the machine.
fn shell(cmd: &str) -> String {
    Command::new("sh")
        .args(["-c", cmd])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

/// The machine, for a report's first line.
pub(crate) fn machine() -> String {
    let cpu = shell("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2");
    let mem = shell("free -g | awk '/Mem:/ {print $2}'");
    format!(
        "{} cores (`nproc`), {}, {} GB RAM, Linux {}, {}",
        shell("nproc"),
        cpu.trim(),
        mem,
        shell("uname -r"),
        shell("rustc -V")
    )
}

/// A table cell's number: whole from 100 up (with thousands separators), else about three
/// significant digits.
fn fmt_num(v: f64) -> String {
    if v >= 1000.0 {
        let s = format!("{:.0}", v);
        let mut out = String::new();
        for (i, ch) in s.chars().enumerate() {
            if i > 0 && (s.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(ch);
        }
        out
    } else if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else if v >= 0.1 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

/// What the run found: a median per worker and metric, plus what the table needs besides.
pub(crate) struct Report {
    medians: BTreeMap<(Kind, &'static str), f64>,
    /// The largest value over the runs (the held-jobs figure and cold start's target are about
    /// every run, not the median one).
    maxima: BTreeMap<(Kind, &'static str), f64>,
    platform: PlatformKind,
    /// The ceiling against the emulator, when the table's platform is the lean one.
    emulator: BTreeMap<(Kind, &'static str), f64>,
    runs: usize,
    /// The workers measured (the table's columns, in its own order).
    kinds: Vec<Kind>,
    /// On-disk size per worker, in MB.
    sizes: BTreeMap<Kind, f64>,
    /// The workers left out, and why.
    missing: Vec<(Kind, String)>,
}

impl Report {
    pub(crate) fn new(
        samples: &Samples,
        runs: usize,
        kinds: Vec<Kind>,
        sizes: BTreeMap<Kind, f64>,
        missing: Vec<(Kind, String)>,
    ) -> Report {
        let medians = samples
            .iter()
            .filter_map(|(k, v)| median(v).map(|m| (*k, m)))
            .collect();
        let maxima = samples
            .iter()
            .filter_map(|(k, v)| v.iter().copied().reduce(f64::max).map(|m| (*k, m)))
            .collect();
        Report {
            medians,
            maxima,
            platform: PlatformKind::Emulator,
            emulator: BTreeMap::new(),
            runs,
            kinds,
            sizes,
            missing,
        }
    }

    /// The platform the table was measured on, and the ceiling's samples against the emulator
    /// (empty when not measured).
    pub(crate) fn platform(mut self, platform: PlatformKind, emulator: &Samples) -> Report {
        self.platform = platform;
        self.emulator = emulator
            .iter()
            .filter_map(|(k, v)| median(v).map(|m| (*k, m)))
            .collect();
        self
    }

    /// The whole block for BENCHMARKS.md, markers included: how it was run, on what, the table,
    /// the logging note and the workers not measured.
    pub(crate) fn render(&self, quick: bool, load_before: &str, elapsed: Duration) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "{BEGIN}");
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "Command: `cargo run --release -p worker-bench{}` (from a clean clone; it builds the \
             workers, the runpod-sdk {RUNPOD_SDK} echo under `target/bench/` and a venv with \
             runpod=={RUNPOD_PY}).",
            match (quick, self.runs != 3, self.platform) {
                (true, _, PlatformKind::Lean) => " -- --quick",
                (true, _, PlatformKind::Emulator) => " -- --quick --platform emulator",
                (false, true, _) => " -- --runs N",
                (false, false, PlatformKind::Emulator) => " -- --platform emulator",
                (false, false, PlatformKind::Lean) => "",
            }
        );
        let _ = writeln!(out);
        let _ = writeln!(out, "Machine: {}.", machine());
        let _ = writeln!(
            out,
            "Load average before the run: {load_before}; the run took {:.0} s; medians of {} run(s).",
            elapsed.as_secs_f64(),
            self.runs
        );
        let _ = writeln!(out);
        out.push_str(&self.table());
        let _ = writeln!(out);
        out.push_str(&self.platform_note());
        let _ = writeln!(out);
        let targets = self.targets();
        if !targets.is_empty() {
            let _ = writeln!(out, "Targets (ratios in this run):\n");
            out.push_str(&targets);
            let _ = writeln!(out);
        }
        let logging = self.logging();
        if !logging.is_empty() {
            let _ = writeln!(out, "Logging (ours):\n");
            out.push_str(&logging);
            let _ = writeln!(out);
        }
        for (kind, why) in &self.missing {
            let _ = writeln!(
                out,
                "- {} not measured: {}",
                kind.name(),
                why.replace('\n', " ")
            );
        }
        let _ = writeln!(out, "{END}");
        out
    }

    fn get(&self, kind: Kind, metric: &str) -> Option<f64> {
        self.medians
            .iter()
            .find(|((k, m), _)| *k == kind && *m == metric)
            .map(|(_, v)| *v)
    }

    fn table(&self) -> String {
        let rows: &[(&str, &str, bool)] = &[
            ("cold start: spawn → first job-take (ms)", "cold_ms", false),
            (
                "throughput, trivial echo, concurrency 1 (jobs/s)",
                "tput_c1",
                true,
            ),
            (
                "throughput, trivial echo, concurrency 8 (jobs/s)",
                "tput_c8",
                true,
            ),
            (
                "throughput, trivial echo, concurrency 64 (jobs/s)",
                "tput_c64",
                true,
            ),
            (
                "throughput, 100 ms handler, concurrency 8 (jobs/s; ideal 80)",
                "sleep_c8",
                true,
            ),
            (
                "throughput, 100 ms handler, concurrency 64 (jobs/s; ideal 640)",
                "sleep_c64",
                true,
            ),
            (
                "per-job overhead p50, handed-out → final result, concurrency 1 (ms)",
                "ovh_p50_ms",
                false,
            ),
            ("per-job overhead p99 (ms)", "ovh_p99_ms", false),
            (
                "per-job latency in a trivial burst, concurrency 8, p50 (ms)",
                "burst_p50_c8",
                false,
            ),
            (
                "per-job latency in a trivial burst, concurrency 8, p99 (ms)",
                "burst_p99_c8",
                false,
            ),
            (
                "last job of a burst, handed-out → final result, concurrency 1 (ms)",
                "tail_ms",
                false,
            ),
            (
                "CPU per job, trivial echo, concurrency 1 (µs, user + system)",
                "cpu_c1",
                false,
            ),
            (
                "CPU per job, trivial echo, concurrency 8 (µs)",
                "cpu_c8",
                false,
            ),
            ("RSS idle (MB)", "idle_rss_mb", false),
            ("RSS peak under load, VmHWM (MB)", "peak_rss_mb", false),
        ];
        let cols: Vec<Kind> = [
            Kind::Ceiling,
            Kind::Ours,
            Kind::OursCurrentThread,
            Kind::RunpodSdk,
            Kind::PySync,
            Kind::PyAsync,
        ]
        .into_iter()
        .filter(|k| self.kinds.contains(k))
        .collect();
        let mut t = String::new();
        let _ = write!(t, "| measurement |");
        for k in &cols {
            let _ = write!(t, " {} |", k.name());
        }
        let _ = writeln!(t, " ours ÷ runpod-sdk | ours ÷ best Python |");
        let _ = write!(t, "|---|");
        for _ in &cols {
            let _ = write!(t, "---:|");
        }
        let _ = writeln!(t, "---:|---:|");
        for (label, metric, higher_better) in rows {
            let _ = write!(t, "| {label} |");
            let ceiling = self.get(Kind::Ceiling, metric);
            for k in &cols {
                let cell = match self.get(*k, metric) {
                    None => "–".to_owned(),
                    Some(v) => {
                        let mut cell = fmt_num(v);
                        let ideal = match *metric {
                            "sleep_c8" => Some(8.0 * 1000.0 / SLEEP_MS as f64),
                            "sleep_c64" => Some(64.0 * 1000.0 / SLEEP_MS as f64),
                            _ => None,
                        };
                        if let Some(ideal) = ideal {
                            let _ = write!(cell, " ({:.0} % of ideal)", 100.0 * v / ideal);
                        } else if *higher_better
                            && *k != Kind::Ceiling
                            && let Some(c) = ceiling
                        {
                            let _ = write!(cell, " ({:.0} % of ceiling)", 100.0 * v / c);
                        }
                        cell
                    }
                };
                let _ = write!(t, " {cell} |");
            }
            let ours = self.get(Kind::Ours, metric);
            let ratio = |other: Option<f64>| match (ours, other) {
                (Some(o), Some(p)) if o > 0.0 && p > 0.0 => {
                    let r = if *higher_better { o / p } else { p / o };
                    format!("{} ×", fmt_num(r))
                }
                _ => "–".to_owned(),
            };
            let best_py = [Kind::PySync, Kind::PyAsync]
                .iter()
                .filter_map(|k| self.get(*k, metric))
                .reduce(|a, b| if *higher_better { a.max(b) } else { a.min(b) });
            let _ = writeln!(
                t,
                " {} | {} |",
                ratio(self.get(Kind::RunpodSdk, metric)),
                ratio(best_py)
            );
        }
        // The platform's count of jobs handed out and not finished, at its largest in any run.
        let _ = write!(
            t,
            "| most jobs held at once, concurrency 1 / 8 / 64 (the platform's count, any run) |"
        );
        for k in &cols {
            let held: Vec<String> = ["held_c1", "held_c8", "held_c64"]
                .iter()
                .map(|m| {
                    self.max(*k, m)
                        .map(|v| format!("{v:.0}"))
                        .unwrap_or("–".into())
                })
                .collect();
            let _ = write!(t, " {} |", held.join(" / "));
        }
        let _ = writeln!(t, " | |");
        let _ = write!(t, "| release binary, stripped (MB) |");
        for k in &cols {
            let cell = self.sizes.get(k).map(|v| fmt_num(*v)).unwrap_or("–".into());
            let _ = write!(t, " {cell} |");
        }
        let size_ratio = |other: Option<&f64>| match (self.sizes.get(&Kind::Ours), other) {
            (Some(o), Some(p)) => format!("{} ×", fmt_num(p / o)),
            _ => "–".to_owned(),
        };
        let best_py = self.sizes.get(&Kind::PyAsync);
        let _ = writeln!(
            t,
            " {} | {} |",
            size_ratio(self.sizes.get(&Kind::RunpodSdk)),
            size_ratio(best_py)
        );
        t
    }

    fn max(&self, kind: Kind, metric: &str) -> Option<f64> {
        self.maxima
            .iter()
            .find(|((k, m), _)| *k == kind && *m == metric)
            .map(|(_, v)| *v)
    }

    /// How the ceiling was measured: on which platform, at what CPU per request.
    fn platform_note(&self) -> String {
        let mut t = String::new();
        let cpu = |c1: Option<f64>, c8: Option<f64>| match (c1, c8) {
            (Some(a), Some(b)) => {
                format!("{} µs at concurrency 1, {} µs at 8", fmt_num(a), fmt_num(b))
            }
            _ => "not measured".to_owned(),
        };
        let at = |m: &BTreeMap<(Kind, &'static str), f64>, metric: &str| {
            m.iter()
                .find(|((k, name), _)| *k == Kind::Ceiling && *name == metric)
                .map(|(_, v)| *v)
        };
        match self.platform {
            PlatformKind::Lean => {
                let _ = write!(
                    t,
                    "Platform: the lean one (`worker-bench/src/lean.rs`: the worker routes only, \
                     hand-written HTTP/1.1 on one thread); its CPU per request while the ceiling \
                     ran: {}.",
                    cpu(
                        at(&self.medians, "platform_cpu_c1"),
                        at(&self.medians, "platform_cpu_c8")
                    )
                );
                if let (Some(c1), Some(c8)) =
                    (at(&self.emulator, "tput_c1"), at(&self.emulator, "tput_c8"))
                {
                    let _ = write!(
                        t,
                        " Against the emulator (`--platform emulator`) the ceiling does {} jobs/s \
                         at concurrency 1 and {} at 8, the emulator costing {} of CPU per request \
                         (the benchmark's whole process, which is the emulator's threads while a \
                         burst runs).",
                        fmt_num(c1),
                        fmt_num(c8),
                        cpu(
                            at(&self.emulator, "platform_cpu_c1"),
                            at(&self.emulator, "platform_cpu_c8")
                        )
                    );
                }
            }
            PlatformKind::Emulator => {
                let _ = write!(
                    t,
                    "Platform: the emulator; its CPU per request while the ceiling ran (the \
                     benchmark's whole process): {}.",
                    cpu(
                        at(&self.medians, "platform_cpu_c1"),
                        at(&self.medians, "platform_cpu_c8")
                    )
                );
            }
        }
        let _ = writeln!(t);
        t
    }

    /// The per-job overhead targets, each with its figure, its ratio and whether it holds.
    fn targets(&self) -> String {
        let mut t = String::new();
        let ours = |m: &str| self.get(Kind::Ours, m);
        let mut line = |what: String, holds: Option<bool>| {
            let verdict = match holds {
                Some(true) => "**holds**",
                Some(false) => "**missed**",
                None => "not measured",
            };
            let _ = writeln!(t, "- {what}: {verdict}");
        };
        for (c, metric) in [(1, "tput_c1"), (8, "tput_c8")] {
            let (o, ceil) = (ours(metric), self.get(Kind::Ceiling, metric));
            let ratio = o.zip(ceil).map(|(o, c)| o / c);
            line(
                format!(
                    "trivial echo at concurrency {c} ≥ 0.8 × the ceiling: {} jobs/s against {} ({})",
                    o.map(fmt_num).unwrap_or("–".into()),
                    ceil.map(fmt_num).unwrap_or("–".into()),
                    ratio.map(|r| format!("{r:.2} ×")).unwrap_or("–".into())
                ),
                ratio.map(|r| r >= 0.8),
            );
        }
        for (c, metric) in [(1, "ovh_p50_ms"), (8, "burst_p50_c8")] {
            let (o, sdk) = (ours(metric), self.get(Kind::RunpodSdk, metric));
            line(
                format!(
                    "per-job p50 at concurrency {c} ≤ runpod-sdk's: {} ms against {} ms ({})",
                    o.map(fmt_num).unwrap_or("–".into()),
                    sdk.map(fmt_num).unwrap_or("–".into()),
                    o.zip(sdk)
                        .map(|(o, s)| format!("{:.2} ×", o / s))
                        .unwrap_or("–".into())
                ),
                o.zip(sdk).map(|(o, s)| o <= s),
            );
        }
        for (c, metric) in [(1, "ovh_p99_ms"), (8, "burst_p99_c8")] {
            let o = ours(metric);
            line(
                format!(
                    "per-job p99 at concurrency {c} < 0.5 ms: {} ms",
                    o.map(fmt_num).unwrap_or("–".into())
                ),
                o.map(|o| o < 0.5),
            );
        }
        for (what, metric) in [("idle RSS", "idle_rss_mb"), ("peak RSS", "peak_rss_mb")] {
            let (o, sdk) = (ours(metric), self.get(Kind::RunpodSdk, metric));
            line(
                format!(
                    "{what} ≤ runpod-sdk's: {} MB against {} MB",
                    o.map(fmt_num).unwrap_or("–".into()),
                    sdk.map(fmt_num).unwrap_or("–".into())
                ),
                o.zip(sdk).map(|(o, s)| o <= s),
            );
        }
        let cold = self.max(Kind::Ours, "cold_ms");
        line(
            format!(
                "cold start ≤ 5 ms in every run: at most {} ms",
                cold.map(fmt_num).unwrap_or("–".into())
            ),
            cold.map(|c| c <= 5.0),
        );
        let held: Vec<(usize, Option<f64>)> = [(1, "held_c1"), (8, "held_c8"), (64, "held_c64")]
            .into_iter()
            .map(|(c, m)| (c, self.max(Kind::Ours, m)))
            .collect();
        let all_held = held.iter().all(|(_, h)| h.is_some());
        line(
            format!(
                "never more jobs held than the concurrency: {}",
                held.iter()
                    .map(|(c, h)| format!(
                        "{} at {c}",
                        h.map(|h| format!("{h:.0}")).unwrap_or("–".into())
                    ))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            all_held.then(|| held.iter().all(|(c, h)| h.unwrap_or(0.0) <= *c as f64)),
        );
        t
    }

    fn logging(&self) -> String {
        let mut t = String::new();
        for (c, tput, cpu) in [(1, "tput_c1", "cpu_c1"), (8, "tput_c8", "cpu_c8")] {
            if let (Some(on), Some(off)) =
                (self.get(Kind::Ours, tput), self.get(Kind::OursQuiet, tput))
            {
                let _ = write!(
                    t,
                    "- concurrency {c}: {} jobs/s with two INFO lines per job to stdout (a file), {} jobs/s with logging off (with logging {})",
                    fmt_num(on),
                    fmt_num(off),
                    signed_change(on, off, "throughput")
                );
                if let (Some(on), Some(off)) =
                    (self.get(Kind::Ours, cpu), self.get(Kind::OursQuiet, cpu))
                {
                    let _ = write!(
                        t,
                        "; CPU per job {} µs with logging, {} µs without (with logging {})",
                        fmt_num(on),
                        fmt_num(off),
                        signed_change(on, off, "CPU")
                    );
                    if on <= off {
                        let _ = write!(
                            t,
                            ": no cost measurable, the difference is the run-to-run spread"
                        );
                    }
                }
                let _ = writeln!(t, ".");
            }
        }
        t
    }
}

/// `with` against `without` as a signed percentage of `what`: "+12 % throughput".
fn signed_change(with: f64, without: f64, what: &str) -> String {
    format!("{:+.0} % {what}", 100.0 * (with / without - 1.0))
}

/// Put `block` (from [`Report::render`]) into the file at `path` in place of the previous one
/// between the markers, or append it when there is none; the rest of the file is left as is.
pub(crate) fn write_into(path: &Path, block: &str) {
    write_between(path, block, (BEGIN, END));
}

/// Put `block` (which starts with `begin` and ends with `end`) into the file at `path` in place
/// of the previous block between those markers, or append it.
pub(crate) fn write_between(path: &Path, block: &str, (begin, end): (&str, &str)) {
    let old = std::fs::read_to_string(path).unwrap_or_default();
    let new = match (old.find(begin), old.find(end)) {
        (Some(b), Some(e)) if b < e => {
            format!("{}{}{}", &old[..b], block.trim_end(), &old[e + end.len()..])
        }
        _ => format!("{}\n\n{}\n", old.trim_end(), block.trim_end()),
    };
    std::fs::write(path, new).expect("BENCHMARKS.md");
    eprintln!("wrote {}", path.display());
}
