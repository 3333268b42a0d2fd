//! What a worker costs the machine, read from `/proc`: RSS and CPU time, summed over its
//! process group, since the Python SDK forks its heartbeat into a second process; and the
//! CPU time of the benchmark's own platform (its process, or the lean platform's thread).

/// The processes of group `pgid`: each pid with the fields of its `/proc/<pid>/stat` after the
/// command name (state, ppid, pgrp, …).
fn group_processes(pgid: u32) -> Vec<(u32, Vec<String>)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let fields = stat_fields(&format!("/proc/{pid}/stat"))?;
            (fields.get(2)?.parse::<u32>().ok()? == pgid).then_some((pid, fields))
        })
        .collect()
}

/// utime + stime of a `/proc/…/stat` line's fields after the command name, in seconds (clock
/// ticks of 1/100 s on Linux).
fn stat_seconds(fields: &[String]) -> f64 {
    const TICKS_PER_SECOND: f64 = 100.0;
    let ticks: u64 = fields
        .get(11..13)
        .unwrap_or_default()
        .iter()
        .map(|field| field.parse::<u64>().unwrap_or(0))
        .sum();
    ticks as f64 / TICKS_PER_SECOND
}

/// The fields of a `/proc/…/stat` file after the command name (which may hold spaces).
fn stat_fields(path: &str) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(path).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

/// CPU time (user + system) used so far by the processes of group `pgid`, in seconds.
pub(crate) fn cpu_seconds(pgid: u32) -> f64 {
    group_processes(pgid)
        .iter()
        .map(|(_, fields)| stat_seconds(fields))
        .sum()
}

/// CPU time (user + system) of this whole process so far, in seconds.
pub(crate) fn process_cpu_seconds() -> f64 {
    stat_fields("/proc/self/stat").map_or(0.0, |f| stat_seconds(&f))
}

/// CPU time (user + system) of thread `tid` of this process so far, in seconds.
pub(crate) fn thread_cpu_seconds(tid: u32) -> f64 {
    stat_fields(&format!("/proc/self/task/{tid}/stat")).map_or(0.0, |f| stat_seconds(&f))
}

/// (VmRSS, VmHWM) in MB, summed over the process group `pgid`.
pub(crate) fn rss(pgid: u32) -> (f64, f64) {
    let (mut rss, mut hwm) = (0u64, 0u64);
    for (pid, _) in group_processes(pgid) {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        for line in status.lines() {
            let kb = |l: &str| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0)
            };
            if line.starts_with("VmRSS:") {
                rss += kb(line);
            } else if line.starts_with("VmHWM:") {
                hwm += kb(line);
            }
        }
    }
    (rss as f64 / 1024.0, hwm as f64 / 1024.0)
}
