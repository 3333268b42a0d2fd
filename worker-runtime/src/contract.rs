//! The handler's contract: the JSON Schema of its input and output, from their types.
//!
//! The macro knows the types only as written, and a type may or may not derive `JsonSchema`;
//! so the generated code asks through [`SchemaOf`] by method resolution ("autoref
//! specialization", which works because the types are concrete where the macro expands):
//! a `Result<T, E>` return describes `T`, a type with a schema describes itself, and any other
//! type gives `None`, reported as `{}` with a note, never a compile error.

use std::marker::PhantomData;

use serde_json::{Value, json};

/// The input and output schemas of a handler; `None` for a type that does not derive
/// `JsonSchema`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Contract {
    pub input: Option<Value>,
    pub output: Option<Value>,
}

impl Contract {
    /// What `--schema` prints: `{"input": <schema>, "output": <schema>}`, `{}` where unknown.
    pub(crate) fn document(&self) -> Value {
        let or_any = |s: &Option<Value>| s.clone().unwrap_or_else(|| json!({}));
        json!({ "input": or_any(&self.input), "output": or_any(&self.output) })
    }

    /// Why a part is `{}` (for stderr), if one is.
    pub(crate) fn notes(&self) -> Vec<String> {
        if !cfg!(feature = "schema") {
            // No derive to suggest: the feature that brings it is off.
            return vec![
                "note: the worker crate's `schema` feature is off, so no schema is known".into(),
            ];
        }
        let mut notes = Vec::new();
        for (part, schema) in [("input", &self.input), ("output", &self.output)] {
            if schema.is_none() {
                notes.push(format!(
                    "note: the handler's {part} type does not derive `JsonSchema`, so its schema is \
                     `{{}}` (any JSON): add `#[derive(worker::JsonSchema)]` and \
                     `#[schemars(crate = \"worker::schemars\")]` to the type"
                ));
            }
        }
        notes
    }
}

/// Names a type for the schema lookup; see the module docs. `K` says what is described: the
/// type itself ([`Whole`]), or one item of the `Vec<T>` (or `Result<Vec<T>, E>`) a batch
/// handler returns ([`PerItem`]).
pub struct SchemaOf<T: ?Sized, K = Whole>(PhantomData<Names<T, K>>);

/// What a [`SchemaOf`] names: a `fn` pointer type, so it owns no `T` and is `Send` and `Sync`
/// whatever `T` is.
type Names<T, K> = (fn() -> Box<T>, K);

/// [`SchemaOf`] describes the type itself.
#[derive(Debug)]
pub enum Whole {}

/// [`SchemaOf`] describes one item of a batch handler's outputs.
#[derive(Debug)]
pub enum PerItem {}

impl<T: ?Sized, K> std::fmt::Debug for SchemaOf<T, K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(std::any::type_name::<T>())
    }
}

impl<T: ?Sized, K> SchemaOf<T, K> {
    #[allow(clippy::new_without_default)]
    pub const fn new() -> SchemaOf<T, K> {
        SchemaOf(PhantomData)
    }
}

/// The lookup's levels: called as `(&&&&SchemaOf::<T>::new()).__worker_schema()`, the first
/// that applies wins.
pub mod levels {
    use super::*;

    /// A batch handler's `Result<Vec<Result<T, E2>>, E>`: each job's own result describes `T`.
    pub trait SchemaOfOkItems {
        fn __worker_schema(&self) -> Option<Value>;
    }

    /// `Result<T, E>` with a schema for `T`: a handler's fallible return describes `T`.
    pub trait SchemaOfOk {
        fn __worker_schema(&self) -> Option<Value>;
    }

    /// A type with a schema.
    pub trait SchemaOfType {
        fn __worker_schema(&self) -> Option<Value>;
    }

    /// Anything else: no schema.
    pub trait NoSchema {
        fn __worker_schema(&self) -> Option<Value> {
            None
        }
    }

    #[cfg(feature = "schema")]
    impl<T: schemars::JsonSchema, E> SchemaOfOk for &&SchemaOf<Result<T, E>> {
        fn __worker_schema(&self) -> Option<Value> {
            Some(schema_of::<T>())
        }
    }

    #[cfg(feature = "schema")]
    impl<T: schemars::JsonSchema + ?Sized> SchemaOfType for &SchemaOf<T> {
        fn __worker_schema(&self) -> Option<Value> {
            Some(schema_of::<T>())
        }
    }

    impl<T: ?Sized, K> NoSchema for SchemaOf<T, K> {}

    #[cfg(feature = "schema")]
    impl<T: schemars::JsonSchema, E> SchemaOfOk for &&SchemaOf<Result<Vec<T>, E>, PerItem> {
        fn __worker_schema(&self) -> Option<Value> {
            Some(schema_of::<T>())
        }
    }

    #[cfg(feature = "schema")]
    impl<T: schemars::JsonSchema, E2, E> SchemaOfOkItems
        for &&&SchemaOf<Result<Vec<Result<T, E2>>, E>, PerItem>
    {
        fn __worker_schema(&self) -> Option<Value> {
            Some(schema_of::<T>())
        }
    }

    #[cfg(feature = "schema")]
    impl<T: schemars::JsonSchema, E2> SchemaOfOk for &&SchemaOf<Vec<Result<T, E2>>, PerItem> {
        fn __worker_schema(&self) -> Option<Value> {
            Some(schema_of::<T>())
        }
    }

    #[cfg(feature = "schema")]
    impl<T: schemars::JsonSchema> SchemaOfType for &SchemaOf<Vec<T>, PerItem> {
        fn __worker_schema(&self) -> Option<Value> {
            Some(schema_of::<T>())
        }
    }
}

/// The JSON Schema (draft 2020-12) of `T`, as serde (de)serializes it.
#[cfg(feature = "schema")]
pub(crate) fn schema_of<T: schemars::JsonSchema + ?Sized>() -> Value {
    schemars::SchemaGenerator::default()
        .into_root_schema_for::<T>()
        .to_value()
}

/// One step of a JSON path into a job's input.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Step {
    Key(String),
    Index,
}

/// What a missing field is, from the input's schema: `a string: The text to score.` for the
/// field `text` of the object at `at`. `None` where the schema does not say.
pub(crate) fn describe_field(schema: &Value, at: &[Step], field: &str) -> Option<String> {
    let mut here = resolve(schema, schema)?;
    for step in at {
        here = match step {
            Step::Key(key) => resolve(schema, properties(schema, here)?.get(key)?)?,
            Step::Index => resolve(schema, here.get("items")?)?,
        };
    }
    let field = resolve(schema, properties(schema, here)?.get(field)?)?;
    let what = kind(field)?;
    Some(match field.get("description").and_then(Value::as_str) {
        Some(description) => {
            let first = description.split("\n\n").next().unwrap_or(description);
            format!("{what}: {}", first.replace('\n', " "))
        }
        None => what,
    })
}

/// An object's `properties`, also through `allOf` (flattened structs) and an `Option`'s
/// non-null branch.
fn properties<'s>(
    root: &'s Value,
    schema: &'s Value,
) -> Option<&'s serde_json::Map<String, Value>> {
    if let Some(map) = schema.get("properties").and_then(Value::as_object) {
        return Some(map);
    }
    ["allOf", "anyOf", "oneOf"]
        .iter()
        .filter_map(|key| schema.get(*key)?.as_array())
        .flatten()
        .find_map(|branch| properties(root, resolve(root, branch)?))
}

/// Follow a local `$ref` (`#/$defs/Name`).
fn resolve<'s>(root: &'s Value, schema: &'s Value) -> Option<&'s Value> {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(reference) => {
            let pointer = reference.strip_prefix('#')?;
            root.pointer(pointer)
        }
        None => Some(schema),
    }
}

/// `a string`, `an integer`, `a list`, `one of "a", "b"`, `a `Name``.
fn kind(schema: &Value) -> Option<String> {
    if let Some(values) = schema.get("enum").and_then(Value::as_array) {
        let values: Vec<String> = values.iter().map(Value::to_string).collect();
        return Some(format!("one of {}", values.join(", ")));
    }
    let types: Vec<&str> = match schema.get("type") {
        Some(Value::String(one)) => vec![one.as_str()],
        Some(Value::Array(many)) => many.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let named = |ty: &str| match ty {
        "string" => Some("a string"),
        "integer" => Some("an integer"),
        "number" => Some("a number"),
        "boolean" => Some("a boolean"),
        "array" => Some("a list"),
        "object" => Some("an object"),
        _ => None,
    };
    let words: Vec<&str> = types
        .into_iter()
        .filter(|t| *t != "null")
        .filter_map(named)
        .collect();
    match (
        words.as_slice(),
        schema.get("title").and_then(Value::as_str),
    ) {
        ([_], Some(title)) => Some(format!("`{title}`, {}", words[0])),
        ([one], None) => Some((*one).to_owned()),
        ([], Some(title)) => Some(format!("`{title}`")),
        _ => None,
    }
}

#[cfg(all(test, feature = "schema"))]
// `&&&&` is the lookup: each level is one reference fewer.
#[allow(clippy::needless_borrow)]
mod tests {
    use super::levels::*;
    use super::*;
    use schemars::JsonSchema;
    use serde::Deserialize;

    /// A prompt.
    #[allow(dead_code)]
    #[derive(Deserialize, JsonSchema)]
    struct Prompt {
        /// What to say.
        text: String,
        #[serde(default)]
        steps: Option<u32>,
        #[serde(rename = "seedValue")]
        seed: u64,
    }

    #[allow(dead_code)]
    #[derive(Deserialize, JsonSchema)]
    #[serde(tag = "kind", rename_all = "snake_case")]
    enum Shape {
        Circle { radius: f64 },
        Square { side: f64 },
    }

    #[allow(dead_code)]
    #[derive(Deserialize, JsonSchema)]
    struct Outer {
        #[serde(flatten)]
        prompt: Prompt,
        shapes: Vec<Shape>,
        tags: std::collections::BTreeMap<String, u8>,
    }

    struct NoDerive;

    #[test]
    fn a_derived_type_describes_itself_with_serde_applied() {
        let schema = (&&&&SchemaOf::<Prompt>::new()).__worker_schema().unwrap();
        assert_eq!(schema["type"], "object");
        assert_eq!(schema["properties"]["text"]["description"], "What to say.");
        assert!(schema["properties"]["seedValue"].is_object(), "{schema}");
        let required: Vec<&str> = schema["required"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(required, ["text", "seedValue"], "{schema}");
    }

    #[test]
    fn a_result_describes_its_ok_type_and_other_types_have_none() {
        let ok = (&&&&SchemaOf::<Result<Prompt, std::io::Error>>::new()).__worker_schema();
        assert_eq!(ok.unwrap()["properties"]["text"]["type"], "string");
        let plain = (&&&&SchemaOf::<Vec<u32>>::new()).__worker_schema().unwrap();
        assert_eq!(plain["type"], "array");
        assert_eq!((&&&&SchemaOf::<NoDerive>::new()).__worker_schema(), None);
        assert_eq!(
            (&&&&SchemaOf::<Result<NoDerive, String>>::new()).__worker_schema(),
            None
        );
    }

    #[test]
    fn a_batch_return_describes_one_item() {
        let one = (&&&&SchemaOf::<Vec<Prompt>, PerItem>::new())
            .__worker_schema()
            .unwrap();
        assert_eq!(one["type"], "object");
        let ok = (&&&&SchemaOf::<Result<Vec<u8>, String>, PerItem>::new()).__worker_schema();
        assert_eq!(ok.unwrap()["type"], "integer");
        assert_eq!(
            (&&&&SchemaOf::<Vec<NoDerive>, PerItem>::new()).__worker_schema(),
            None
        );
        let each = (&&&&SchemaOf::<Result<Vec<Result<Prompt, String>>, String>, PerItem>::new())
            .__worker_schema();
        assert_eq!(each.unwrap()["title"], "Prompt", "each job's own Ok type");
        let each = (&&&&SchemaOf::<Vec<Result<u8, String>>, PerItem>::new()).__worker_schema();
        assert_eq!(each.unwrap()["type"], "integer");
    }

    #[test]
    fn tagged_enums_flatten_maps_and_options() {
        let schema = (&&&&SchemaOf::<Outer>::new()).__worker_schema().unwrap();
        let text = schema.to_string();
        assert!(schema["properties"]["text"].is_object(), "flatten: {text}");
        assert_eq!(schema["properties"]["tags"]["type"], "object", "{text}");
        assert!(
            text.contains("\"circle\"") && text.contains("\"kind\""),
            "{text}"
        );
        let prompt = (&&&&SchemaOf::<Prompt>::new()).__worker_schema().unwrap();
        let steps = prompt["properties"]["steps"].to_string();
        assert!(steps.contains("null"), "an Option admits null: {steps}");
    }

    #[test]
    fn the_document_and_its_notes() {
        let contract = Contract {
            input: Some(json!({"type": "string"})),
            output: None,
        };
        assert_eq!(
            contract.document(),
            json!({"input": {"type": "string"}, "output": {}})
        );
        let notes = contract.notes();
        assert_eq!(notes.len(), 1);
        assert!(notes[0].contains("output type does not derive `JsonSchema`"));
    }
}
