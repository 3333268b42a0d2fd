//! How the worker reads the platform's answers: job-take (one job, a batch, or none; §4.2) and
//! job-stop (§6.3). A malformed answer is logged and skipped, never fatal.

use serde_json::Value;

use crate::job::Job;

/// Read a job-take answer: an object is one job, an array a batch. Anything else is "no job";
/// a malformed job is logged and skipped, never fatal.
pub(crate) fn parse_jobs(body: &[u8]) -> Vec<Job> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Vec::new();
    }
    let value: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(
                "job-take answered with something that is not JSON ({e}); ignoring it: {}",
                snippet(&String::from_utf8_lossy(body))
            );
            return Vec::new();
        }
    };
    let items = match value {
        Value::Array(items) => items,
        object @ Value::Object(_) => vec![object],
        Value::Null => return Vec::new(),
        other => {
            tracing::warn!(
                "job-take answered with JSON that is not a job; ignoring it: {}",
                snippet(&other.to_string())
            );
            return Vec::new();
        }
    };
    items
        .into_iter()
        .filter_map(|item| match Job::parse(item) {
            Ok(job) => Some(job),
            Err(why) => {
                tracing::error!("skipping a malformed job from job-take: {why}");
                None
            }
        })
        .collect()
}

/// `{"jobsToStop": ["id", …]}`; ids that are not strings are skipped with a warning.
pub(crate) fn parse_stop(body: &[u8]) -> Vec<String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Vec::new();
    }
    let Ok(Value::Object(object)) = serde_json::from_slice::<Value>(body) else {
        tracing::warn!("job-stop answered with something other than a JSON object; ignoring it");
        return Vec::new();
    };
    let Some(Value::Array(ids)) = object.get("jobsToStop") else {
        tracing::warn!("job-stop answered without a `jobsToStop` list; ignoring it");
        return Vec::new();
    };
    ids.iter()
        .filter_map(|id| match id {
            Value::String(id) => Some(id.clone()),
            other => {
                tracing::warn!(
                    "job-stop listed a job id that is not a string ({other}); ignoring it"
                );
                None
            }
        })
        .collect()
}

/// The start of a response body, for log lines.
pub(crate) fn snippet(text: &str) -> String {
    let text = text.trim();
    match text.char_indices().nth(300) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_take_answers() {
        assert!(parse_jobs(b"").is_empty());
        assert!(parse_jobs(b"not json").is_empty());
        assert!(parse_jobs(b"null").is_empty());
        assert!(parse_jobs(b"42").is_empty());
        let one = parse_jobs(br#"{"id":"a","input":{"x":1}}"#);
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].id(), "a");
        let batch =
            parse_jobs(br#"[{"id":"a","input":1},{"input":2},{"id":"c","input":3},"junk"]"#);
        assert_eq!(batch.iter().map(|j| j.id()).collect::<Vec<_>>(), ["a", "c"]);
    }

    #[test]
    fn job_stop_answers() {
        assert_eq!(parse_stop(br#"{"jobsToStop": ["a", "b", 5]}"#), ["a", "b"]);
        assert!(parse_stop(b"").is_empty());
        assert!(parse_stop(b"[]").is_empty());
        assert!(parse_stop(br#"{"jobsToStop": "a"}"#).is_empty());
        assert!(parse_stop(b"{nope").is_empty());
    }
}
