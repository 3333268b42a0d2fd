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
        OutcomeKind::Failed(failure) => wire::done_body(
            Err(&wire::error_report(failure, hostname, worker_id)),
            stop_pod,
        ),
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
