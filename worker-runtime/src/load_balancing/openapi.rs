//! `/openapi.json` of a load-balancing worker: its routes with the handler's input and output
//! schemas inside RunPod's envelopes, the schemas' `$defs` in `components/schemas`.

use serde_json::{Map, Value, json};

use crate::contract::Contract;

pub(super) fn document(name: &str, health_path: &str, contract: &Contract) -> Vec<u8> {
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
            "properties": {"input": {"$ref": "#/components/schemas/Input"}}
        }),
    );
    schemas.insert(
        "Completed".into(),
        json!({
            "type": "object",
            "required": ["id", "status", "output"],
            "properties": {
                "id": {"type": "string"},
                "status": {"const": "COMPLETED"},
                "output": {"$ref": "#/components/schemas/Output"}
            }
        }),
    );
    schemas.insert(
        "Failed".into(),
        json!({
            "type": "object",
            "required": ["id", "status", "error"],
            "properties": {
                "id": {"type": "string"},
                "status": {"const": "FAILED"},
                "error": {
                    "description": "RunPod's error report as a JSON string (error_type, \
                                    error_message, error_traceback, hostname, worker_id, \
                                    runpod_version), or the error the handler chose"
                }
            }
        }),
    );
    schemas.insert(
        "Refused".into(),
        json!({
            "type": "object",
            "required": ["error"],
            "properties": {"error": {"type": "string"}}
        }),
    );
    let body = |schema: &str| json!({"content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}});
    let answered = |what: &str, schema: &str| {
        let mut response = body(schema);
        response["description"] = Value::String(what.to_owned());
        response
    };
    let job_responses = json!({
        "200": answered("the job completed", "Completed"),
        "400": answered("the request or its input does not fit the handler", "Failed"),
        "413": answered("the request body is too large", "Refused"),
        "429": answered("every slot is taken (the worker's concurrency); retry after Retry-After", "Refused"),
        "500": answered("the handler failed or panicked", "Failed"),
        "503": answered("the worker is initializing, failed to start, or is shutting down", "Refused")
    });
    let run = |summary: &str| {
        json!({"post": {
            "summary": summary,
            "requestBody": {"required": true, "content": body("Request")["content"].clone()},
            "responses": job_responses.clone()
        }})
    };
    let mut stream_responses = job_responses.clone();
    stream_responses["200"] = json!({
        "description": "server-sent events: `progress` ({\"status\": \"IN_PROGRESS\", \
                        \"output\": update}), `stream` ({\"output\": item}), then `result` \
                        (the /runsync answer); a job failing before its first event answers \
                        as /runsync does",
        "content": {"text/event-stream": {"schema": {"type": "string"}}}
    });
    let mut paths = Map::new();
    paths.insert(
        "/runsync".into(),
        run("Run the handler on the input; the answer holds its output"),
    );
    paths.insert(
        "/run".into(),
        run("The same as /runsync (no queue: the answer waits)"),
    );
    paths.insert(
        "/stream".into(),
        json!({"post": {
            "summary": "Run the handler; its progress and stream items as server-sent events",
            "requestBody": {"required": true, "content": body("Request")["content"].clone()},
            "responses": stream_responses
        }}),
    );
    paths.insert(
        health_path.into(),
        json!({"get": {
            "summary": "Health, as RunPod's load balancer polls it",
            "responses": {
                "200": {"description": "ready"},
                "204": {"description": "initializing (the init function runs)"},
                "503": {"description": "init failed (the reason in the body) or shutting down"}
            }
        }}),
    );
    let document = json!({
        "openapi": "3.1.0",
        "info": {
            "title": format!("{name}: a load-balancing worker"),
            "version": crate::wire::VERSION,
        },
        "paths": paths,
        "components": {"schemas": schemas}
    });
    serde_json::to_vec(&document).unwrap_or_default()
}

/// A schema as a component: its `$defs` moved into `components/schemas` (where an OpenAPI
/// document's `$ref`s point), `$schema` dropped. The emulator's `/openapi.json` does the same
/// for a queue endpoint (it does not depend on the runtime).
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
                match v {
                    Value::String(target) if key == "$ref" => {
                        if let Some(def) = target.strip_prefix("#/$defs/") {
                            *target = format!("#/components/schemas/{def}");
                        }
                    }
                    _ => rewrite_refs(v),
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
    fn the_contract_sits_in_runpods_envelopes_with_defs_as_components() {
        let contract = Contract {
            input: Some(json!({
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "type": "object",
                "properties": {"shape": {"$ref": "#/$defs/Shape"}},
                "$defs": {"Shape": {"type": "string"}}
            })),
            output: None,
        };
        let doc: Value = serde_json::from_slice(&document("w", "/ping", &contract)).unwrap();
        let schemas = &doc["components"]["schemas"];
        assert_eq!(
            schemas["Input"]["properties"]["shape"]["$ref"],
            "#/components/schemas/Shape"
        );
        assert_eq!(schemas["Shape"]["type"], "string");
        assert!(schemas["Input"].get("$schema").is_none());
        assert_eq!(
            doc["paths"]["/runsync"]["post"]["requestBody"]["content"]["application/json"]["schema"]
                ["$ref"],
            "#/components/schemas/Request"
        );
        assert!(doc["paths"]["/ping"]["get"]["responses"]["204"].is_object());
        assert!(
            doc["paths"]["/stream"]["post"]["responses"]["200"]["content"]["text/event-stream"]
                .is_object()
        );
    }
}
