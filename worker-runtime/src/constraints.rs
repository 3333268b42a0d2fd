//! Declared constraints on a handler's input: garde's `#[garde(...)]` rules, checked after
//! deserialization and before the handler runs.
//!
//! A job that breaks several rules fails once with all of them, each at its JSON path and with
//! the value it got (`input.steps: must be at most 150 (got 400); input.prompt: length must be
//! at least 1 (got "")`). Which check an input type gets is chosen where the type is concrete,
//! in the handler macro's expansion (see [`levels`]): garde's when the type derives
//! `garde::Validate`, none otherwise.

use serde_json::Value;

use crate::report::Failure;

/// How one job's deserialized input is checked against its type's declared constraints; the
/// job's raw `input` gives each violation the value it got.
pub type Check<T> = fn(&T, &Value) -> Result<(), Failure>;

/// The check of a type that declares no constraints.
pub(crate) fn unchecked<T>(_: &T, _: &Value) -> Result<(), Failure> {
    Ok(())
}

/// The check of a type deriving `garde::Validate`: every rule, every violation.
#[cfg(feature = "validate")]
pub(crate) fn garde_check<T>(input: &T, raw: &Value) -> Result<(), Failure>
where
    T: garde::Validate,
    T::Context: Default,
{
    let report = match garde::i18n::with_i18n(Messages, || input.validate()) {
        Ok(()) => return Ok(()),
        Err(report) => report,
    };
    let violations: Vec<String> = report
        .iter()
        .map(|(path, error)| violation(&path.to_string(), error.message(), raw))
        .collect();
    let message = violations.join("; ");
    let traceback = format!(
        "InvalidInput: {}\n\nThe job's input breaks {} of the constraints declared on the \
         handler's input type `{}`.",
        violations.join("\n"),
        violations.len(),
        std::any::type_name::<T>()
    );
    Err(Failure::new("InvalidInput", message).with_traceback(traceback))
}

/// `input.steps: must be at most 150 (got 400)`, from garde's path (`steps`, `items[2].name`,
/// `[0]`) and message. The value is looked up in the raw input by the same path; a field whose
/// JSON name differs from its Rust name (`#[serde(rename)]` without `#[garde(rename)]`) has
/// none to show.
#[cfg_attr(not(feature = "validate"), allow(dead_code))]
fn violation(path: &str, message: &str, raw: &Value) -> String {
    let location = if path.is_empty() {
        "input".to_owned()
    } else if path.starts_with('[') {
        format!("input{path}")
    } else {
        format!("input.{path}")
    };
    match value_at(raw, path) {
        Some(value) => format!("{location}: {message} (got {})", shown(value)),
        None => format!("{location}: {message}"),
    }
}

/// The value at a garde path (`a.b[2].c`) in the raw input.
fn value_at<'v>(raw: &'v Value, path: &str) -> Option<&'v Value> {
    let mut value = raw;
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let (key, mut indexes) = match part.find('[') {
            Some(at) => (&part[..at], &part[at..]),
            None => (part, ""),
        };
        if !key.is_empty() {
            value = value.get(key)?;
        }
        while let Some(rest) = indexes.strip_prefix('[') {
            let end = rest.find(']')?;
            let index = &rest[..end];
            value = match value {
                Value::Array(items) => items.get(index.parse::<usize>().ok()?)?,
                Value::Object(map) => map.get(index)?,
                _ => return None,
            };
            indexes = &rest[end + 1..];
        }
    }
    Some(value)
}

/// A value as JSON, cut to a length that keeps the report small.
fn shown(value: &Value) -> String {
    const MAX: usize = 80;
    let json = value.to_string();
    let count = json.chars().count();
    if count <= MAX {
        return json;
    }
    let kept: String = json.chars().take(MAX).collect();
    format!("{kept}… ({} more characters)", count - MAX)
}

/// garde's messages as sentences about the value ("must be at most 150"), read after the JSON
/// path; the rules with a reason of their own keep garde's words.
#[cfg(feature = "validate")]
struct Messages;

#[cfg(feature = "validate")]
mod messages {
    use std::borrow::Cow;
    use std::fmt::Display;

    use garde::i18n::{
        DefaultI18n, I18n, InvalidCreditCard, InvalidEmail, InvalidPhoneNumber, InvalidUrl, IpKind,
    };

    impl I18n for super::Messages {
        fn length_lower_than(&self, min: usize) -> Cow<'static, str> {
            format!("length must be at least {min}").into()
        }
        fn length_greater_than(&self, max: usize) -> Cow<'static, str> {
            format!("length must be at most {max}").into()
        }
        fn range_lower_than(&self, min: &dyn Display) -> Cow<'static, str> {
            format!("must be at least {min}").into()
        }
        fn range_greater_than(&self, max: &dyn Display) -> Cow<'static, str> {
            format!("must be at most {max}").into()
        }
        fn pattern_no_match(&self, pattern: &dyn Display) -> Cow<'static, str> {
            format!("must match the pattern `{pattern}`").into()
        }
        fn contains_missing(&self, pattern: &dyn Display) -> Cow<'static, str> {
            format!("must contain \"{pattern}\"").into()
        }
        fn prefix_missing(&self, pattern: &dyn Display) -> Cow<'static, str> {
            format!("must start with \"{pattern}\"").into()
        }
        fn suffix_missing(&self, pattern: &dyn Display) -> Cow<'static, str> {
            format!("must end with \"{pattern}\"").into()
        }
        fn required_not_set(&self) -> Cow<'static, str> {
            "is required".into()
        }
        fn ascii_invalid(&self) -> Cow<'static, str> {
            "must be ASCII".into()
        }
        fn alphanumeric_invalid(&self) -> Cow<'static, str> {
            "must be alphanumeric".into()
        }
        fn matches_field_mismatch(&self, field: &dyn Display) -> Cow<'static, str> {
            format!("must match the field `{field}`").into()
        }
        fn credit_card_invalid(&self, reason: InvalidCreditCard) -> Cow<'static, str> {
            DefaultI18n.credit_card_invalid(reason)
        }
        fn url_invalid(&self, reason: InvalidUrl) -> Cow<'static, str> {
            DefaultI18n.url_invalid(reason)
        }
        fn phone_number_invalid(&self, reason: InvalidPhoneNumber) -> Cow<'static, str> {
            DefaultI18n.phone_number_invalid(reason)
        }
        fn ip_invalid(&self, kind: IpKind) -> Cow<'static, str> {
            DefaultI18n.ip_invalid(kind)
        }
        fn email_invalid(&self, reason: InvalidEmail) -> Cow<'static, str> {
            DefaultI18n.email_invalid(reason)
        }
    }
}

/// The check for `T`, chosen by autoref where `T` is concrete: the generated code calls
/// `(&&ChecksOf::<T>::new()).__worker_check()` with both traits in scope, and method lookup
/// takes the `&ChecksOf<T>` impl when `T: garde::Validate`, else the by-value one.
pub mod levels {
    use std::marker::PhantomData;

    use super::Check;

    /// The type whose check is looked up.
    pub struct ChecksOf<T>(PhantomData<fn() -> T>);

    impl<T> std::fmt::Debug for ChecksOf<T> {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "ChecksOf<{}>", std::any::type_name::<T>())
        }
    }

    impl<T> ChecksOf<T> {
        #[allow(clippy::new_without_default)]
        pub fn new() -> Self {
            ChecksOf(PhantomData)
        }
    }

    /// The input derives `garde::Validate` (implemented with the `validate` feature only).
    pub trait GardeChecks<T> {
        fn __worker_check(&self) -> Check<T>;
    }

    #[cfg(feature = "validate")]
    impl<T> GardeChecks<T> for &ChecksOf<T>
    where
        T: garde::Validate,
        T::Context: Default,
    {
        fn __worker_check(&self) -> Check<T> {
            super::garde_check::<T>
        }
    }

    /// Any other input: nothing to check.
    pub trait NoChecks<T> {
        fn __worker_check(&self) -> Check<T>;
    }

    impl<T> NoChecks<T> for ChecksOf<T> {
        fn __worker_check(&self) -> Check<T> {
            super::unchecked::<T>
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn violations_read_as_paths_with_the_values_they_got() {
        let raw = json!({"steps": 400, "prompt": "", "items": [{"name": "x"}, {"name": "yy"}]});
        assert_eq!(
            violation("steps", "must be at most 150", &raw),
            "input.steps: must be at most 150 (got 400)"
        );
        assert_eq!(
            violation("prompt", "length must be at least 1", &raw),
            "input.prompt: length must be at least 1 (got \"\")"
        );
        assert_eq!(
            violation("items[1].name", "length must be at most 1", &raw),
            "input.items[1].name: length must be at most 1 (got \"yy\")"
        );
        assert_eq!(
            violation("renamed", "is required", &raw),
            "input.renamed: is required"
        );
        assert_eq!(
            violation("[1]", "must be at most 3", &json!([1, 9])),
            "input[1]: must be at most 3 (got 9)"
        );
        assert_eq!(violation("", "bad", &raw).split(':').next(), Some("input"));
    }

    #[cfg(feature = "validate")]
    #[derive(serde::Deserialize, garde::Validate)]
    struct Prompt {
        #[garde(length(min = 1))]
        prompt: String,
        #[garde(range(max = 150))]
        steps: u32,
        #[garde(inner(length(max = 3)))]
        tags: Vec<String>,
    }

    #[derive(serde::Deserialize)]
    struct Plain {
        #[allow(dead_code)]
        steps: u32,
    }

    #[cfg(feature = "validate")]
    #[test]
    fn a_garde_type_is_checked_with_every_violation_and_its_value() {
        #[allow(unused_imports)]
        use super::levels::{ChecksOf, GardeChecks as _, NoChecks as _};
        let check = (&&ChecksOf::<Prompt>::new()).__worker_check();
        let job = crate::Job::new(
            "j",
            json!({"prompt": "", "steps": 400, "tags": ["ok", "toolong"]}),
        );
        let failure = crate::handler::deserialize_checked::<Prompt>(&job, check, || None)
            .err()
            .expect("three violations");
        assert_eq!(failure.error_type(), "InvalidInput");
        let message = failure.message();
        for part in [
            "input.prompt: length must be at least 1 (got \"\")",
            "input.steps: must be at most 150 (got 400)",
            "input.tags[1]: length must be at most 3 (got \"toolong\")",
        ] {
            assert!(message.contains(part), "{part} in {message}");
        }
        let fine = crate::Job::new("j", json!({"prompt": "a", "steps": 1, "tags": []}));
        assert!(crate::handler::deserialize_checked::<Prompt>(&fine, check, || None).is_ok());
    }

    #[test]
    #[allow(clippy::needless_borrow)] // the autoref is the point
    fn a_type_without_constraints_is_not_checked() {
        #[allow(unused_imports)]
        use super::levels::{ChecksOf, GardeChecks as _, NoChecks as _};
        let check = (&&ChecksOf::<Plain>::new()).__worker_check();
        let job = crate::Job::new("j", json!({"steps": 400}));
        assert!(crate::handler::deserialize_checked::<Plain>(&job, check, || None).is_ok());
    }

    #[test]
    fn map_entries_and_long_values() {
        let raw = json!({"tags": {"a b": "v"}, "text": "z".repeat(500)});
        assert_eq!(value_at(&raw, "tags[a b]"), Some(&json!("v")));
        assert_eq!(value_at(&raw, "tags[zz]"), None);
        assert_eq!(value_at(&raw, "text[0]"), None);
        let long = violation("text", "length must be at most 10", &raw);
        assert!(long.ends_with("… (422 more characters))"), "{long}");
        assert!(long.len() < 200, "{long}");
    }
}
