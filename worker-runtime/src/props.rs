//! Property tests (proptest, on the stable toolchain) of what the worker reads from outside:
//! job-take answers, job inputs against typed handlers, outputs, and the platform's URLs with
//! any job or worker id. Each runs [`cases`] cases: 2,000 by default (CI), `PROPTEST_CASES`
//! for more (`PROPTEST_CASES=1000000 cargo test -p worker-runtime --lib props`).

use std::collections::BTreeMap;

use proptest::prelude::*;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::config::{Env, PlatformConfig};
use crate::handler::deserialize_input;
use crate::job::Job;
use crate::wire::parse_jobs;

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(2_000)
}

pub(crate) fn config() -> ProptestConfig {
    ProptestConfig {
        cases: cases(),
        // Shrinking a failure is worth the time; a passing run should stay quick.
        max_shrink_iters: 2_000,
        ..ProptestConfig::default()
    }
}

/// Keys a nested input type knows, and some it does not: generated values hit every branch of
/// its deserialization, not just "unknown field".
const KEYS: [&str; 9] = [
    "name", "items", "opt", "map", "n", "tags", "kind", "x", "a b",
];

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => proptest::sample::select(&KEYS[..]).prop_map(str::to_owned),
        1 => "[a-z]{1,6}",
    ]
}

/// Any JSON value, up to a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("JSON numbers are finite", |f| f.is_finite())
            .prop_map(Value::from),
        any::<String>().prop_map(Value::String),
        proptest::sample::select(vec!["plain", "fancy", "", "Plain"]).prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 64, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map(key(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

#[derive(Debug, Deserialize)]
#[allow(dead_code)]
struct Outer {
    name: String,
    items: Vec<Inner>,
    opt: Option<Inner>,
    #[serde(default)]
    map: BTreeMap<String, u8>,
}

#[derive(Debug, Deserialize)]
#[allow(dead_code)]
struct Inner {
    n: i32,
    tags: Vec<String>,
    kind: Kind,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Kind {
    Plain,
    Fancy,
}

/// Walk `input.a[2].b` over `value`: whether every step exists.
fn resolves(location: &str, value: &Value) -> bool {
    let Some(mut rest) = location.strip_prefix("input") else {
        return false;
    };
    let mut node = value;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('[') {
            let Some((index, tail)) = after.split_once(']') else {
                return false;
            };
            let Some(next) = index.parse::<usize>().ok().and_then(|i| node.get(i)) else {
                return false;
            };
            node = next;
            rest = tail;
        } else if let Some(after) = rest.strip_prefix('.') {
            // A key runs to the next `.` or `[`; the generated keys hold neither.
            let end = after.find(['.', '[']).unwrap_or(after.len());
            let Some(next) = node.get(&after[..end]) else {
                return false;
            };
            node = next;
            rest = &after[end..];
        } else {
            return false;
        }
    }
    true
}

/// A job id or worker id as the platform (or a fuzzer) might send it. `.` and `..` are left
/// out: no URL can carry them as a path segment (WHATWG URL parsing removes dot segments, even
/// percent-encoded), and RunPod's ids are never those.
fn id() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[a-z0-9/%?#&=+ .-]{0,12}",
        Just(String::new()),
    ]
    .prop_filter("dot segments cannot be carried", |s| s != "." && s != "..")
}

/// The last path segment of `url`, percent-decoded.
fn last_segment(url: &crate::wire::Target) -> String {
    let segment = url.path().rsplit('/').next().unwrap_or_default();
    percent_encoding::percent_decode_str(segment)
        .decode_utf8()
        .unwrap()
        .into_owned()
}

struct Vars(Vec<(&'static str, String)>);

impl Env for Vars {
    fn var(&self, name: &str) -> Option<String> {
        self.0
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.clone())
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn job_take_answers_of_any_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = parse_jobs(&body);
    }

    #[test]
    fn job_take_answers_of_any_json_never_panic(answer in json_value()) {
        let _ = parse_jobs(answer.to_string().as_bytes());
    }

    #[test]
    fn a_valid_job_always_parses_to_its_id_and_input(
        jobs in proptest::collection::vec((any::<String>(), json_value()), 1..5),
        batch in any::<bool>(),
    ) {
        let bodies: Vec<Value> =
            jobs.iter().map(|(id, input)| json!({"id": id, "input": input})).collect();
        let answer = if batch || bodies.len() > 1 { Value::Array(bodies) } else { bodies[0].clone() };
        let parsed = parse_jobs(answer.to_string().as_bytes());
        prop_assert_eq!(parsed.len(), jobs.len());
        for (job, (id, input)) in parsed.iter().zip(&jobs) {
            prop_assert_eq!(job.id(), id.as_str());
            prop_assert_eq!(job.input(), input);
        }
    }

    #[test]
    fn a_bad_input_names_a_location_that_exists(input in json_value()) {
        let job = Job::new("j", input.clone());
        if let Err(failure) = deserialize_input::<Outer>(&job) {
            let message = failure.message();
            let location = message.split(": ").next().unwrap();
            prop_assert!(resolves(location, &input), "{message} for {input}");
        }
    }

    #[test]
    fn a_non_finite_float_is_found_where_it_is(
        value in json_value(),
        path in proptest::collection::vec(0usize..6, 0..4),
        bad in prop_oneof![Just(f64::NAN), Just(f64::INFINITY), Just(f64::NEG_INFINITY)],
    ) {
        // Finite values never trip the check.
        prop_assert_eq!(crate::finite::find_non_finite(&value, "output"), None);
        // Put a non-finite float at a spot reached by `path` (as far as it goes), in a value
        // serde_json can hold only as a typed structure: a tree of Vec<Node>.
        #[derive(serde::Serialize, Clone, Debug)]
        #[serde(untagged)]
        enum Node { Leaf(f64), List(Vec<Node>) }
        let mut tree = Node::List(vec![Node::Leaf(1.0); 6]);
        let mut expected = String::from("output");
        {
            let mut node = &mut tree;
            for &i in &path {
                let Node::List(items) = node else { break };
                items[i] = Node::List(vec![Node::Leaf(0.5); 6]);
                expected.push_str(&format!("[{i}]"));
                node = &mut items[i];
            }
            if let Node::List(items) = node {
                items[0] = Node::Leaf(bad);
                expected.push_str("[0]");
            }
        }
        let found = crate::finite::find_non_finite(&tree, "output");
        prop_assert_eq!(found.map(|(p, _)| p), Some(expected));
    }

    #[test]
    fn urls_carry_any_job_and_worker_id_as_one_segment(job_id in id(), worker_id in id()) {
        let vars = Vars(vec![
            ("RUNPOD_WEBHOOK_GET_JOB", "http://h/v2/ep/job-take/$ID?gpu=x".into()),
            ("RUNPOD_WEBHOOK_POST_OUTPUT", "http://h/v2/ep/job-done/$RUNPOD_POD_ID/$ID?gpu=x".into()),
            ("RUNPOD_WEBHOOK_POST_STREAM", "http://h/v2/ep/job-stream/$RUNPOD_POD_ID/$ID?gpu=x".into()),
            ("RUNPOD_WEBHOOK_PING", "http://h/v2/ep/ping/$RUNPOD_POD_ID?gpu=x".into()),
            ("RUNPOD_POD_ID", worker_id.clone()),
        ]);
        let cfg = PlatformConfig::from_env(&vars).unwrap();
        // An empty pod id means "none": the worker makes up its own.
        let worker = if worker_id.is_empty() { cfg.worker_id.clone() } else { worker_id };
        let take = cfg.urls.take(1, false);
        prop_assert_eq!(last_segment(&take), worker.clone());
        prop_assert_eq!(take.query(), Some("gpu=x&job_in_progress=0"));
        for url in [cfg.urls.done(&job_id, false), cfg.urls.stream(&job_id).unwrap()] {
            let segments: Vec<&str> = url.path().split('/').collect();
            prop_assert_eq!(segments.len(), 6, "{}", url);
            let decode = |s: &str| percent_encoding::percent_decode_str(s).decode_utf8().unwrap().into_owned();
            prop_assert_eq!(decode(segments[4]), worker.clone());
            prop_assert_eq!(decode(segments[5]), job_id.clone());
            prop_assert!(url.query().unwrap().starts_with("gpu=x&isStream="), "{}", url);
        }
        let ping = cfg.urls.ping(std::slice::from_ref(&job_id)).unwrap();
        prop_assert_eq!(last_segment(&ping), worker);
        let pairs: Vec<(String, String)> = ping.to_url().unwrap().query_pairs().into_owned().collect();
        prop_assert!(pairs.contains(&("job_id".to_owned(), job_id.clone())) || job_id.contains(','), "{:?}", pairs);
    }
}
