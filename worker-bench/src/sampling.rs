//! What a worker costs the machine, read from `/proc`: RSS and CPU time, summed over its
//! process group, since the Python SDK forks its heartbeat into a second process.

/// The processes of group `pgid`: each pid with the fields of its `/proc/<pid>/stat` after the
/// command name (state, ppid, pgrp, …).
fn group_processes(pgid: u32) -> Vec<(u32, Vec<String>)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let (_, rest) = stat.rsplit_once(')')?;
            let fields: Vec<String> = rest.split_whitespace().map(str::to_owned).collect();
            (fields.get(2)?.parse::<u32>().ok()? == pgid).then_some((pid, fields))
        })
        .collect()
}

/// CPU time (user + system) used so far by the processes of group `pgid`, in seconds.
pub(crate) fn cpu_seconds(pgid: u32) -> f64 {
    // utime and stime, in clock ticks (100 per second on Linux).
    const TICKS_PER_SECOND: f64 = 100.0;
    let ticks: u64 = group_processes(pgid)
        .iter()
        .flat_map(|(_, fields)| fields.get(11..13).unwrap_or_default())
        .map(|field| field.parse::<u64>().unwrap_or(0))
        .sum();
    ticks as f64 / TICKS_PER_SECOND
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
