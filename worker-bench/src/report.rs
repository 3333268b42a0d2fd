//! The report: medians of the samples as a Markdown table (with each worker's share of the
//! ceiling and our ratios to the peers), the logging note, the machine it ran on, and the block
//! of BENCHMARKS.md between the `bench:begin`/`bench:end` markers that it replaces.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::kind::Kind;
use crate::measure::{SLEEP_MS, Samples};
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
        Report {
            medians,
            runs,
            kinds,
            sizes,
            missing,
        }
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
            if quick {
                " -- --quick"
            } else if self.runs != 3 {
                " -- --runs N"
            } else {
                ""
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

    fn logging(&self) -> String {
        let mut t = String::new();
        for (c, tput, cpu) in [(1, "tput_c1", "cpu_c1"), (8, "tput_c8", "cpu_c8")] {
            if let (Some(on), Some(off)) =
                (self.get(Kind::Ours, tput), self.get(Kind::OursQuiet, tput))
            {
                let _ = write!(
                    t,
                    "- concurrency {c}: {} jobs/s with two INFO lines per job to stdout (a file), {} jobs/s with logging off ({:+.0} %)",
                    fmt_num(on),
                    fmt_num(off),
                    100.0 * (on / off - 1.0)
                );
                if let (Some(on), Some(off)) =
                    (self.get(Kind::Ours, cpu), self.get(Kind::OursQuiet, cpu))
                {
                    let _ = write!(
                        t,
                        "; CPU per job {} µs with logging, {} µs without: logging costs {:.0} % of the CPU",
                        fmt_num(on),
                        fmt_num(off),
                        100.0 * (on / off - 1.0)
                    );
                }
                let _ = writeln!(t, ".");
            }
        }
        t
    }
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
