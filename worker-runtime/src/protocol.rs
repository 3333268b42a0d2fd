//! The wire: URL building and body shapes of RunPod's worker protocol (job-take, job-done,
//! job-stream, job-stop, ping). The one place that knows §4–§8 of the protocol document.

use serde::Serialize;
use serde_json::value::RawValue;

/// The version reported as `runpod_version` in pings and error reports.
pub(crate) const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Appends `name=value` to a URL the way the platform's templates expect: they already carry a
/// query (`?gpu=…`), so parameters join with `&`. A template without `?` gets one, instead of
/// the malformed path the Python SDK would produce.
pub(crate) fn push_query(url: &mut String, name: &str, value: &str) {
    url.push(if url.contains('?') { '&' } else { '?' });
    url.push_str(name);
    url.push('=');
    url.push_str(value);
}

/// Percent-encodes everything but RFC 3986 unreserved characters, for a path segment or a
/// query value.
pub(crate) fn encode_component(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(byte as char)
            }
            _ => {
                const HEX: &[u8; 16] = b"0123456789ABCDEF";
                out.push('%');
                out.push(HEX[(byte >> 4) as usize] as char);
                out.push(HEX[(byte & 15) as usize] as char);
            }
        }
    }
    out
}

/// The URLs of one worker, with `$ID` / `$RUNPOD_POD_ID` already replaced by the worker id.
#[derive(Debug, Clone)]
pub(crate) struct Urls {
    /// `RUNPOD_WEBHOOK_GET_JOB`, `$ID` replaced by the worker id.
    pub(crate) job_take: String,
    /// `RUNPOD_WEBHOOK_POST_OUTPUT`; `$ID` is replaced per job.
    pub(crate) job_done: String,
    /// `RUNPOD_WEBHOOK_POST_STREAM`; `$ID` is replaced per job. Streaming handlers post here.
    pub(crate) job_stream: Option<String>,
    /// `RUNPOD_WEBHOOK_PING`.
    pub(crate) ping: Option<String>,
}

impl Urls {
    /// Whether any platform URL is https (then the TLS trust store will be needed).
    pub(crate) fn any_https(&self) -> bool {
        [
            Some(&self.job_take),
            Some(&self.job_done),
            self.job_stream.as_ref(),
            self.ping.as_ref(),
        ]
        .into_iter()
        .flatten()
        .any(|url| {
            url.get(..8)
                .is_some_and(|s| s.eq_ignore_ascii_case("https://"))
        })
    }

    /// The job-take URL for `free` free slots: the single form for one, the batch form
    /// (`/job-take-batch/…&batch_size=N`) for more; `job_in_progress=1` whenever a job is in
    /// flight or queued in this worker.
    pub(crate) fn take(&self, free: usize, job_in_progress: bool) -> String {
        let mut url = if free > 1 && self.job_take.contains("/job-take/") {
            let mut url = self.job_take.replacen("/job-take/", "/job-take-batch/", 1);
            push_query(&mut url, "batch_size", &free.to_string());
            url
        } else {
            self.job_take.clone()
        };
        push_query(
            &mut url,
            "job_in_progress",
            if job_in_progress { "1" } else { "0" },
        );
        url
    }

    /// The job-done URL for a job: final results, progress updates, and a stream's end.
    pub(crate) fn done(&self, job_id: &str, is_stream: bool) -> String {
        let mut url = self.job_done.replace("$ID", &encode_component(job_id));
        push_query(
            &mut url,
            "isStream",
            if is_stream { "true" } else { "false" },
        );
        url
    }

    /// The job-stream URL for a job's chunks. The Python SDK sends `isStream=false` on chunks;
    /// keep that wire shape.
    pub(crate) fn stream(&self, job_id: &str) -> Option<String> {
        let mut url = self
            .job_stream
            .as_ref()?
            .replace("$ID", &encode_component(job_id));
        push_query(&mut url, "isStream", "false");
        Some(url)
    }

    /// The job-stop URL (the take URL with `/job-stop/`), if the take URL has the platform's
    /// shape; the per-job stop channel is off otherwise.
    pub(crate) fn stop(&self) -> Option<String> {
        self.job_take
            .contains("/job-take/")
            .then(|| self.job_take.replacen("/job-take/", "/job-stop/", 1))
    }

    /// The ping URL with the in-flight job ids (comma-separated) and our version.
    pub(crate) fn ping(&self, job_ids: &[String]) -> Option<String> {
        let mut url = self.ping.clone()?;
        if !job_ids.is_empty() {
            push_query(&mut url, "job_id", &encode_component(&job_ids.join(",")));
        }
        push_query(&mut url, "runpod_version", VERSION);
        Some(url)
    }

    /// The ping URL reporting that a start-up check failed (`status=unhealthy`).
    pub(crate) fn unhealthy(&self, check: &str, reason: &str) -> Option<String> {
        let mut url = self.ping.clone()?;
        push_query(&mut url, "status", "unhealthy");
        push_query(&mut url, "check", &encode_component(check));
        let reason: String = reason.chars().take(256).collect();
        push_query(&mut url, "reason", &encode_component(&reason));
        push_query(&mut url, "runpod_version", VERSION);
        Some(url)
    }
}

/// The body of a final job-done post: `{"output": …}` or `{"error": "<report JSON>"}`, plus
/// `stopPod` when the worker asks to be recycled.
#[derive(Serialize)]
pub(crate) struct DoneBody<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) output: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
    #[serde(rename = "stopPod", skip_serializing_if = "std::ops::Not::not")]
    pub(crate) stop_pod: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn urls() -> Urls {
        Urls {
            job_take: "http://h/v2/ep/job-take/w42?gpu=SIM".into(),
            job_done: "http://h/v2/ep/job-done/w42/$ID?gpu=SIM".into(),
            job_stream: Some("http://h/v2/ep/job-stream/w42/$ID?gpu=SIM".into()),
            ping: Some("http://h/v2/ep/ping/w42?gpu=SIM".into()),
        }
    }

    #[test]
    fn any_https_looks_at_every_platform_url() {
        assert!(!urls().any_https());
        let mut u = urls();
        u.ping = Some("HTTPS://h/v2/ep/ping/w42".into());
        assert!(u.any_https(), "the scheme is case-insensitive");
        let mut u = urls();
        u.ping = None;
        u.job_stream = Some("https://h/v2/ep/job-stream/w42/$ID".into());
        assert!(u.any_https());
    }

    #[test]
    fn take_urls_match_the_python_sdk() {
        let u = urls();
        assert_eq!(
            u.take(1, false),
            "http://h/v2/ep/job-take/w42?gpu=SIM&job_in_progress=0"
        );
        assert_eq!(
            u.take(1, true),
            "http://h/v2/ep/job-take/w42?gpu=SIM&job_in_progress=1"
        );
        assert_eq!(
            u.take(4, false),
            "http://h/v2/ep/job-take-batch/w42?gpu=SIM&batch_size=4&job_in_progress=0"
        );
    }

    #[test]
    fn templates_without_a_query_get_one() {
        let mut u = urls();
        u.job_take = "http://h/job-take/w1".into();
        assert_eq!(u.take(1, false), "http://h/job-take/w1?job_in_progress=0");
    }

    #[test]
    fn done_and_ping_urls() {
        let u = urls();
        assert_eq!(
            u.done("j-1", false),
            "http://h/v2/ep/job-done/w42/j-1?gpu=SIM&isStream=false"
        );
        assert_eq!(
            u.done("c 3/x", true),
            "http://h/v2/ep/job-done/w42/c%203%2Fx?gpu=SIM&isStream=true"
        );
        assert_eq!(
            u.ping(&[]).unwrap(),
            format!("http://h/v2/ep/ping/w42?gpu=SIM&runpod_version={VERSION}")
        );
        assert_eq!(
            u.ping(&["c2".into(), "c 3/x".into()]).unwrap(),
            format!(
                "http://h/v2/ep/ping/w42?gpu=SIM&job_id=c2%2Cc%203%2Fx&runpod_version={VERSION}"
            )
        );
        assert_eq!(
            u.stream("j-1").unwrap(),
            "http://h/v2/ep/job-stream/w42/j-1?gpu=SIM&isStream=false"
        );
        assert_eq!(u.stop().unwrap(), "http://h/v2/ep/job-stop/w42?gpu=SIM");
        let unhealthy = u.unhealthy("init", "model file missing").unwrap();
        assert!(unhealthy.contains("&status=unhealthy&check=init&reason=model%20file%20missing&"));
    }

    #[test]
    fn done_bodies() {
        let out = RawValue::from_string("{\"a\":1}".into()).unwrap();
        let ok = DoneBody {
            output: Some(&out),
            error: None,
            stop_pod: false,
        };
        assert_eq!(serde_json::to_string(&ok).unwrap(), r#"{"output":{"a":1}}"#);
        let failed = DoneBody {
            output: None,
            error: Some("x".into()),
            stop_pod: true,
        };
        assert_eq!(
            serde_json::to_string(&failed).unwrap(),
            r#"{"error":"x","stopPod":true}"#
        );
    }
}
