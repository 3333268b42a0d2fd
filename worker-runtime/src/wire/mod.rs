//! The wire: every URL the worker calls and every body it sends to RunPod (job-take and its
//! batch form, job-done for results and progress, job-stream chunks, job-stop, ping and the
//! unhealthy report), the headers that go with them, and how the platform's answers are read.
//! The one place that knows §3–§8 of the protocol document
//! (`shared/reference/runpod-protocol.md`); the job loop, local test mode and the heartbeat
//! call it, and their tests read the wire through the emulator.

mod answers;
mod bodies;
mod target;
mod urls;

pub(crate) use answers::{parse_jobs, parse_stop, snippet};
pub(crate) use bodies::{
    ErrorField, done_body, error_report, post_headers, progress_body, stream_chunk, stream_output,
};
pub(crate) use target::Target;
pub(crate) use urls::{Urls, encode_component};

/// The version reported as `runpod_version` in pings and error reports.
pub(crate) const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The User-Agent of every request to the platform, shaped like the Python SDK's
/// (`RunPod-Python-SDK/<version> (<os> <release>; <arch>) Language/Python <version>`).
pub(crate) fn user_agent() -> String {
    // Pieces joined, not `format!`: at start-up this was the only formatting of strings.
    let (os, arch) = (std::env::consts::OS, std::env::consts::ARCH);
    [
        "RunPod-Rust-Worker/",
        VERSION,
        " (",
        os,
        " ",
        arch,
        ") Language/Rust",
    ]
    .concat()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_user_agent_names_the_worker_its_version_and_platform() {
        let ua = user_agent();
        assert!(
            ua.starts_with(&format!("RunPod-Rust-Worker/{VERSION} (")),
            "{ua}"
        );
        assert!(ua.ends_with(") Language/Rust"), "{ua}");
        assert!(ua.contains(std::env::consts::ARCH));
    }
}
