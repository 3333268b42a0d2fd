//! A job's final job-done post, from its outcome: the output (a streaming job's `[]` or its
//! items), or RunPod's error report, plus `stopPod`; and the output size limit, checked before
//! anything is sent. The production loop posts it; local test mode prints it.

use crate::control::Control;
use crate::handler::{Outcome, OutcomeKind};
use crate::limits::human_size;
use crate::report::Failure;
use crate::wire;

/// Log a failed job with its report, so the worker's own logs explain it too.
pub(crate) fn log_outcome(outcome: &Outcome) {
    if let OutcomeKind::Failed(failure) = &outcome.kind {
        tracing::error!(
            "job failed: {}: {}",
            failure.error_type,
            failure.error_message
        );
        tracing::debug!("{}", failure.error_traceback);
    }
}

/// The final body of `outcome`, and whether it ends a stream (`isStream=true`).
fn body(
    outcome: &Outcome,
    control: &Control,
    stop_pod: bool,
    (hostname, worker_id): (&str, &str),
) -> (Vec<u8>, bool) {
    let stream = {
        let state = control.stream();
        state.started.then(|| {
            if control.aggregates() {
                wire::stream_output(state.items.iter().map(|item| &**item))
            } else {
                wire::stream_output([])
            }
        })
    };
    let bytes = match &outcome.kind {
        OutcomeKind::Output(raw) => wire::done_body(Ok(stream.as_deref().unwrap_or(raw)), stop_pod),
        OutcomeKind::Failed(failure) => match failure.exact_error() {
            Some(exact) => wire::done_body(Err(wire::ErrorField::Exact(exact)), stop_pod),
            None => wire::done_body(
                Err(wire::ErrorField::Report(&wire::error_report(
                    failure, hostname, worker_id,
                ))),
                stop_pod,
            ),
        },
    };
    (bytes, stream.is_some())
}

/// Encode a job's final post. A body over `max_bytes` is replaced by a failure that says how
/// large it was (the platform would reject it with a 400 nobody sees); the outcome returned is
/// the one posted.
pub(crate) fn encode_final(
    outcome: Outcome,
    control: &Control,
    stop_pod: bool,
    reporter: (&str, &str),
    max_bytes: usize,
) -> (Outcome, Vec<u8>, bool) {
    let (bytes, is_stream) = body(&outcome, control, stop_pod, reporter);
    if bytes.len() <= max_bytes {
        return (outcome, bytes, is_stream);
    }
    if let OutcomeKind::Failed(failure) = &outcome.kind {
        // An error report too large to post: the same failure, cut to fit (it is not the
        // output that was too large).
        let mut max = (max_bytes / 4).clamp(64, 64 * 1024);
        loop {
            let shortened = Outcome::failed(failure.shortened(max));
            let (bytes, _) = body(&shortened, control, stop_pod, reporter);
            if bytes.len() <= max_bytes || max <= 64 {
                return (shortened, bytes, is_stream);
            }
            max /= 4;
        }
    }
    let failure = Failure::new(
        "OutputTooLarge",
        format!(
            "the job's result is {} ({} bytes), more than the {} the platform accepts \
             (WORKER_MAX_OUTPUT_BYTES); return less, or upload large data to storage and return its URL",
            human_size(bytes.len()),
            bytes.len(),
            human_size(max_bytes)
        ),
    );
    let outcome = Outcome::failed(failure);
    log_outcome(&outcome);
    let (bytes, _) = body(&outcome, control, stop_pod, reporter);
    (outcome, bytes, is_stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_huge_error_report_is_cut_to_fit_not_blamed_on_the_output() {
        let job = crate::Job::new("j", serde_json::json!(null));
        let failure = Failure::new("QuotaError", "q".repeat(3_000_000));
        let (outcome, bytes, _) = encode_final(
            Outcome::failed(failure),
            job.control(),
            false,
            ("h", "w"),
            1_000_000,
        );
        assert!(bytes.len() <= 1_000_000, "{}", bytes.len());
        let failure = outcome.failure().unwrap();
        assert_eq!(failure.error_type(), "QuotaError");
        assert!(
            failure.message().ends_with("more characters)"),
            "{}",
            &failure.message()[..80]
        );

        let (outcome, _, _) = encode_final(
            Outcome::output(&"o".repeat(2_000_000)),
            job.control(),
            false,
            ("h", "w"),
            1_000_000,
        );
        assert_eq!(outcome.failure().unwrap().error_type(), "OutputTooLarge");
    }
}
