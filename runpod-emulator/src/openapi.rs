//! `GET /openapi.json`: an OpenAPI 3.1 document of the endpoint's client API (`run`,
//! `runsync`, `status`, `stream`, `cancel`) with the worker's input and output schemas inside
//! RunPod's envelopes. Without a contract (the standalone emulator) both schemas are `{}`.

use serde_json::{Map, Value, json};

/// The input and output JSON Schemas (draft 2020-12, as schemars writes them) of a worker.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Contract {
    pub input: Option<Value>,
    pub output: Option<Value>,
}

/// The document for `endpoint_id`, served at `server` (the endpoint's URL, `…/v2/{id}`).
pub(crate) fn document(endpoint_id: &str, server: &str, contract: &Contract) -> Value {
    let mut schemas = Map::new();
    let input = component(contract.input.as_ref(), "Input", &mut schemas);
    let output = component(contract.output.as_ref(), "Output", &mut schemas);
    schemas.insert("Input".into(), input);
    schemas.insert("Output".into(), output);
    schemas.insert(
        "Request".into(),
        json!({
            "type": "object",
            "required": ["input"],
            "properties": {
                "input": {"$ref": "#/components/schemas/Input"},
                "webhook": {"type": "string", "description": "called with the final status"},
                "policy": {
                    "type": "object",
                    "properties": {
                        "executionTimeout": {"type": "integer", "description": "milliseconds"},
                        "ttl": {"type": "integer", "description": "milliseconds"}
                    }
                }
            }
        }),
    );
    schemas.insert(
        "Status".into(),
        json!({
            "type": "object",
            "required": ["id", "status"],
            "properties": {
                "id": {"type": "string"},
                "status": {
                    "type": "string",
                    "enum": ["IN_QUEUE", "IN_PROGRESS", "COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"]
                },
                "output": {"$ref": "#/components/schemas/Output"},
                "error": {"description": "why the job failed: the worker's error report or the error it chose"},
                "delayTime": {"type": "integer"},
                "executionTime": {"type": "integer"}
            }
        }),
    );
    schemas.insert(
        "Stream".into(),
        json!({
            "type": "object",
            "required": ["status", "stream"],
            "properties": {
                "status": {"type": "string"},
                "stream": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {"output": {"$ref": "#/components/schemas/Output"}}
                    }
                }
            }
        }),
    );
    let id = json!([{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}]);
    let answer = |description: &str, schema: &str| {
        json!({
            "description": description,
            "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}
        })
    };
    let body = json!({
        "required": true,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Request"}}}
    });
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": format!("RunPod endpoint `{endpoint_id}`"),
            "version": "1",
            "description": "The endpoint's job API; `input` and `output` are the worker's own types."
        },
        "servers": [{"url": server}],
        "paths": {
            "/run": {"post": {
                "operationId": "run",
                "summary": "Queue a job",
                "requestBody": body,
                "responses": {"200": answer("the job's id and status", "Status")}
            }},
            "/runsync": {"post": {
                "operationId": "runsync",
                "summary": "Run a job and wait for its result",
                "parameters": [{"name": "wait", "in": "query", "required": false, "schema": {"type": "integer"}, "description": "milliseconds to wait"}],
                "requestBody": body,
                "responses": {"200": answer("the job's status, with its output when it finished", "Status")}
            }},
            "/status/{id}": {"get": {
                "operationId": "status",
                "summary": "A job's status and output",
                "parameters": id,
                "responses": {"200": answer("the job's status", "Status")}
            }},
            "/stream/{id}": {"get": {
                "operationId": "stream",
                "summary": "A streaming job's items so far",
                "parameters": id,
                "responses": {"200": answer("the items not read before", "Stream")}
            }},
            "/cancel/{id}": {"post": {
                "operationId": "cancel",
                "summary": "Cancel a job",
                "parameters": id,
                "responses": {"200": answer("the job's status", "Status")}
            }}
        },
        "components": {"schemas": schemas}
    })
}

/// A schema as a component: its `$defs` moved into `components/schemas` (where `$ref`s in an
/// OpenAPI document point), `$schema` dropped (the document says its dialect).
fn component(schema: Option<&Value>, name: &str, schemas: &mut Map<String, Value>) -> Value {
    let Some(schema) = schema else {
        return json!({"description": format!("{name}: any JSON (the type has no schema)")});
    };
    let mut schema = schema.clone();
    if let Some(object) = schema.as_object_mut() {
        object.remove("$schema");
        if let Some(Value::Object(defs)) = object.remove("$defs") {
            for (def, mut value) in defs {
                rewrite_refs(&mut value);
                schemas.insert(def, value);
            }
        }
    }
    rewrite_refs(&mut schema);
    schema
}

fn rewrite_refs(value: &mut Value) {
    match value {
        Value::Object(object) => {
            for (key, v) in object.iter_mut() {
                if key == "$ref"
                    && let Value::String(target) = v
                    && let Some(def) = target.strip_prefix("#/$defs/")
                {
                    *target = format!("#/components/schemas/{def}");
                } else {
                    rewrite_refs(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(rewrite_refs),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defs_become_components_and_refs_follow() {
        let contract = Contract {
            input: Some(json!({
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "type": "object",
                "properties": {"shape": {"$ref": "#/$defs/Shape"}},
                "$defs": {"Shape": {"oneOf": [{"$ref": "#/$defs/Circle"}]}, "Circle": {"type": "object"}}
            })),
            output: None,
        };
        let doc = document("local", "http://127.0.0.1:8000/v2/local", &contract);
        let schemas = &doc["components"]["schemas"];
        assert_eq!(
            schemas["Input"]["properties"]["shape"]["$ref"],
            "#/components/schemas/Shape"
        );
        assert_eq!(
            schemas["Shape"]["oneOf"][0]["$ref"],
            "#/components/schemas/Circle"
        );
        assert!(schemas["Input"].get("$schema").is_none());
        assert!(
            schemas["Output"]["description"]
                .as_str()
                .unwrap()
                .contains("any JSON")
        );
        assert_eq!(doc["openapi"], "3.1.0");
        assert_eq!(doc["servers"][0]["url"], "http://127.0.0.1:8000/v2/local");
    }
}
