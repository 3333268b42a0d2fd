//! The platform's URLs (protocol §2.1, §4.1, §5.3, §6.3, §7.1, §8): parsed once from the
//! templates at start-up, then each request's URL is a copy of its template's text with the
//! job id put in and its parameters appended ([`Target`]).
//!
//! Query values are form-encoded as `url` encodes them (as the Python SDK's `requests` encodes
//! the ping's: `,` → `%2C`, space → `+`); a job id put in a path is percent-encoded but for
//! RFC 3986's unreserved characters, so an id with `/` or `?` stays one path segment (the
//! Python SDK would split it). A template without `?` gets one before the appended parameters, instead of
//! the malformed path the Python SDK would produce.

use std::borrow::Cow;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use super::VERSION;
use super::target::Target;

/// Everything but RFC 3986's unreserved characters (`A–Z a–z 0–9 - . _ ~`).
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The longest `reason` an unhealthy report carries, as the Python SDK cuts it.
const REASON_CHARS: usize = 256;

/// The URLs of one worker, with `$ID` (job-take) and `$RUNPOD_POD_ID` (the others) already
/// replaced by the worker id. The job-done and job-stream URLs keep `$ID` for the job id.
#[derive(Debug, Clone)]
pub(crate) struct Urls {
    /// `RUNPOD_WEBHOOK_GET_JOB`.
    job_take: Target,
    /// The batch form, when the job-take URL has the platform's `/job-take/` shape.
    job_take_batch: Option<Target>,
    /// The job-stop long-poll, from the same shape; per-job cancellation is off without it.
    job_stop: Option<Target>,
    /// `RUNPOD_WEBHOOK_POST_OUTPUT`: final results, progress updates, and a stream's end.
    job_done: Target,
    /// `RUNPOD_WEBHOOK_POST_STREAM`: a streaming job's chunks.
    job_stream: Option<Target>,
    /// `RUNPOD_WEBHOOK_PING`.
    ping: Option<Target>,
}

impl Urls {
    pub(crate) fn new(
        job_take: Target,
        job_done: Target,
        job_stream: Option<Target>,
        ping: Option<Target>,
    ) -> Urls {
        Urls {
            job_take_batch: job_take.with_path_replaced("/job-take/", "/job-take-batch/"),
            job_stop: job_take.with_path_replaced("/job-take/", "/job-stop/"),
            job_take,
            job_done,
            job_stream,
            ping,
        }
    }

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
        .any(|url| url.scheme() == "https")
    }

    /// The job-take URL for `free` free slots: the single form for one, the batch form
    /// (`/job-take-batch/…&batch_size=N`) for more; `job_in_progress=1` whenever a job is in
    /// flight or queued in this worker (§4.1: `batch_size` first).
    pub(crate) fn take(&self, free: usize, job_in_progress: bool) -> Target {
        let mut url = match &self.job_take_batch {
            Some(batch) if free > 1 => {
                let mut url = batch.clone();
                url.append_pair("batch_size", &free.to_string());
                url
            }
            _ => self.job_take.clone(),
        };
        url.append_pair("job_in_progress", if job_in_progress { "1" } else { "0" });
        url
    }

    /// The job-done URL for a job: final results (`isStream=true` for a stream's end),
    /// progress updates.
    pub(crate) fn done(&self, job_id: &str, is_stream: bool) -> Target {
        let mut url = self.job_done.with_id(&encode_component(job_id));
        url.append_pair("isStream", if is_stream { "true" } else { "false" });
        url
    }

    /// The job-stream URL for a job's chunks. The Python SDK sends `isStream=false` on chunks
    /// (§7.1); keep that wire shape.
    pub(crate) fn stream(&self, job_id: &str) -> Option<Target> {
        let mut url = self.job_stream.as_ref()?.with_id(&encode_component(job_id));
        url.append_pair("isStream", "false");
        Some(url)
    }

    /// The job-stop URL (the take URL with `/job-stop/`, its query kept, §6.3), if the take URL
    /// has the platform's shape.
    pub(crate) fn stop(&self) -> Option<&Target> {
        self.job_stop.as_ref()
    }

    /// Whether a heartbeat URL is configured.
    pub(crate) fn has_ping(&self) -> bool {
        self.ping.is_some()
    }

    /// The ping URL with the in-flight job ids (comma-separated, left out when none) and our
    /// version (§8).
    pub(crate) fn ping(&self, job_ids: &[String]) -> Option<Target> {
        let mut url = self.ping.clone()?;
        if !job_ids.is_empty() {
            url.append_pair("job_id", &job_ids.join(","));
        }
        url.append_pair("runpod_version", VERSION);
        Some(url)
    }

    /// The ping URL reporting that a start-up check failed (`status=unhealthy`, §8), with the
    /// first 256 characters of the reason.
    pub(crate) fn unhealthy(&self, check: &str, reason: &str) -> Option<Target> {
        let mut url = self.ping.clone()?;
        let reason: String = reason.chars().take(REASON_CHARS).collect();
        url.append_pair("status", "unhealthy");
        url.append_pair("check", check);
        url.append_pair("reason", &reason);
        url.append_pair("runpod_version", VERSION);
        Some(url)
    }
}

/// `text` percent-encoded but for RFC 3986's unreserved characters: an id as one URL component
/// (borrowed when it has nothing to encode, as a platform job id has not).
pub(crate) fn encode_component(text: &str) -> Cow<'_, str> {
    // `COMPONENT`'s complement, checked against it byte by byte in the tests (percent-encoding
    // has no public `contains`; its own `Cow` conversion is a page of code of its own).
    let unreserved = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~');
    if text.bytes().all(unreserved) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(utf8_percent_encode(text, COMPONENT).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::Url;

    /// `Urls` from templates: take, done, then optionally stream and ping.
    fn urls_of(take: &str, done: &str, stream: Option<&str>, ping: Option<&str>) -> Urls {
        let url = |s: &str| Target::new(&Url::parse(s).unwrap());
        Urls::new(url(take), url(done), stream.map(url), ping.map(url))
    }

    /// The templates the platform gives, with the worker id `w42` substituted (§2.1).
    fn urls() -> Urls {
        urls_of(
            "http://h/v2/ep/job-take/w42?gpu=SIM",
            "http://h/v2/ep/job-done/w42/$ID?gpu=SIM",
            Some("http://h/v2/ep/job-stream/w42/$ID?gpu=SIM"),
            Some("http://h/v2/ep/ping/w42?gpu=SIM"),
        )
    }

    #[test]
    fn any_https_looks_at_every_platform_url() {
        assert!(!urls().any_https());
        let u = urls_of(
            "http://h/v2/ep/job-take/w42",
            "http://h/v2/ep/job-done/w42/$ID",
            None,
            Some("HTTPS://h/v2/ep/ping/w42"),
        );
        assert!(u.any_https(), "the scheme is case-insensitive");
        let u = urls_of(
            "http://h/v2/ep/job-take/w42",
            "http://h/v2/ep/job-done/w42/$ID",
            Some("https://h/v2/ep/job-stream/w42/$ID"),
            None,
        );
        assert!(u.any_https());
    }

    /// §4.1's observed requests.
    #[test]
    fn take_urls_match_the_python_sdk() {
        let u = urls();
        assert_eq!(
            u.take(1, false).as_str(),
            "http://h/v2/ep/job-take/w42?gpu=SIM&job_in_progress=0"
        );
        assert_eq!(
            u.take(1, true).as_str(),
            "http://h/v2/ep/job-take/w42?gpu=SIM&job_in_progress=1"
        );
        assert_eq!(
            u.take(4, false).as_str(),
            "http://h/v2/ep/job-take-batch/w42?gpu=SIM&batch_size=4&job_in_progress=0"
        );
        assert_eq!(
            u.take(2, true).as_str(),
            "http://h/v2/ep/job-take-batch/w42?gpu=SIM&batch_size=2&job_in_progress=1"
        );
    }

    #[test]
    fn a_take_url_without_the_platform_shape_has_no_batch_or_stop_form() {
        let u = urls_of("http://h/jobs/w1", "http://h/done/$ID", None, None);
        assert_eq!(
            u.take(4, false).as_str(),
            "http://h/jobs/w1?job_in_progress=0"
        );
        assert!(u.stop().is_none());
    }

    #[test]
    fn templates_without_a_query_get_one() {
        let u = urls_of(
            "http://h/job-take/w1",
            "http://h/job-done/w1/$ID",
            Some("http://h/job-stream/w1/$ID"),
            Some("http://h/ping/w1"),
        );
        assert_eq!(
            u.take(1, false).as_str(),
            "http://h/job-take/w1?job_in_progress=0"
        );
        assert_eq!(
            u.done("j", false).as_str(),
            "http://h/job-done/w1/j?isStream=false"
        );
        assert_eq!(
            u.ping(&[]).unwrap().as_str(),
            format!("http://h/ping/w1?runpod_version={VERSION}")
        );
    }

    /// §5.3 (`isStream`), §7.1 (chunks on the stream URL with `isStream=false`, the end on
    /// job-done with `isStream=true`), §6.3 (job-stop keeps the query).
    #[test]
    fn done_stream_and_stop_urls() {
        let u = urls();
        assert_eq!(
            u.done("j-1", false).as_str(),
            "http://h/v2/ep/job-done/w42/j-1?gpu=SIM&isStream=false"
        );
        assert_eq!(
            u.done("g1", true).as_str(),
            "http://h/v2/ep/job-done/w42/g1?gpu=SIM&isStream=true"
        );
        assert_eq!(
            u.stream("j-1").unwrap().as_str(),
            "http://h/v2/ep/job-stream/w42/j-1?gpu=SIM&isStream=false"
        );
        assert_eq!(
            u.stop().unwrap().as_str(),
            "http://h/v2/ep/job-stop/w42?gpu=SIM"
        );
    }

    /// The borrowed fast path keeps exactly what `COMPONENT` leaves alone.
    #[test]
    fn a_component_is_encoded_as_component_encodes_it() {
        for text in (0..=255u8)
            .map(|b| char::from(b).to_string())
            .chain(["", "sync-0b1c-e1", "a b", "%25", "é~"].map(String::from))
        {
            let encoded = encode_component(&text);
            let expected = utf8_percent_encode(&text, COMPONENT).to_string();
            assert_eq!(encoded, expected, "{text:?}");
            assert_eq!(
                matches!(encoded, Cow::Borrowed(_)),
                expected == text,
                "{text:?}"
            );
        }
    }

    #[test]
    fn a_job_id_is_one_path_segment() {
        let u = urls();
        assert_eq!(
            u.done("c 3/x?y#z%", true).as_str(),
            "http://h/v2/ep/job-done/w42/c%203%2Fx%3Fy%23z%25?gpu=SIM&isStream=true"
        );
        assert_eq!(
            u.done("sync-0b1c-e1", false).path(),
            "/v2/ep/job-done/w42/sync-0b1c-e1"
        );
        let q = urls_of("http://h/job-take/w", "http://h/done?job=$ID", None, None);
        assert_eq!(
            q.done("a b", false).as_str(),
            "http://h/done?job=a%20b&isStream=false"
        );
    }

    /// §8: idle and busy pings as `requests` encodes them, and the unhealthy report.
    #[test]
    fn ping_and_unhealthy_urls() {
        let u = urls();
        assert_eq!(
            u.ping(&[]).unwrap().as_str(),
            format!("http://h/v2/ep/ping/w42?gpu=SIM&runpod_version={VERSION}")
        );
        assert_eq!(
            u.ping(&["c2".into(), "c 3/x".into(), "c1".into()])
                .unwrap()
                .as_str(),
            format!(
                "http://h/v2/ep/ping/w42?gpu=SIM&job_id=c2%2Cc+3%2Fx%2Cc1&runpod_version={VERSION}"
            )
        );
        assert_eq!(
            u.unhealthy("init", "model file missing").unwrap().as_str(),
            format!(
                "http://h/v2/ep/ping/w42?gpu=SIM&status=unhealthy&check=init&reason=model+file+missing&runpod_version={VERSION}"
            )
        );
        let long = "é".repeat(300);
        let reported = u.unhealthy("init", &long).unwrap().to_url().unwrap();
        let reason = reported
            .query_pairs()
            .find(|(k, _)| k == "reason")
            .unwrap()
            .1;
        assert_eq!(reason.chars().count(), REASON_CHARS);
        assert!(!urls_without_ping().has_ping());
        assert!(urls_without_ping().ping(&[]).is_none());
    }

    fn urls_without_ping() -> Urls {
        urls_of("http://h/job-take/w", "http://h/job-done/w/$ID", None, None)
    }
}
