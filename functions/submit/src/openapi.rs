//! The OpenAPI 3.1 description of the submit function's URL, generated from the route table
//! ([`crate::handler::ROUTES`]) and the contract's JSON Schemas (`gameforge_contract::schemas`), and committed as
//! `crates/contract/openapi/submit.openapi.json` beside those schemas for other languages
//! (`functions/submit/tests/openapi.rs` checks the committed file, the routes and the embedded schemas).
//!
//! The contract's schemas are embedded under `components/schemas`, each under its title, with their `$defs`
//! hoisted beside them (a `#/$defs/X` reference becomes `#/components/schemas/X`), so that the document stands
//! alone: every OpenAPI tool resolves references within one document, few resolve a schema's own `$defs` inside
//! it. [`contract_schema`] undoes the hoisting, so the tests compare what is embedded with what the types
//! generate.

use std::collections::BTreeMap;

use gameforge_contract::{CONTRACT_VERSION, schemas};
use serde_json::{Map, Value, json};

use crate::handler::{ROUTES, Route};

/// Where the document is committed, relative to the repository's root.
pub const COMMITTED_PATH: &str = "crates/contract/openapi/submit.openapi.json";

/// The fields of a `GenerationJob` that `POST /jobs` lets a caller leave out: the function fills them.
pub const FILLED_FIELDS: [&str; 4] = ["version", "submitted_at", "model_id", "output"];

/// The contract's schemas the document embeds, by file name.
pub const EMBEDDED: [&str; 3] = ["generation-job.schema.json", "job-result.schema.json", "job-status.schema.json"];

const COMPONENTS: &str = "#/components/schemas/";
const DEFS: &str = "#/$defs/";

/// The document, as committed.
pub fn document() -> Value {
    let mut components = contract_components();
    components.insert("SubmitRequest".into(), submit_request(&components["GenerationJob"]));
    for (name, schema) in answer_schemas() {
        components.insert(name.into(), schema);
    }
    let mut paths = Map::new();
    for (method, template, route) in ROUTES {
        let path = paths.entry(template).or_insert_with(|| json!({}));
        path[method.to_ascii_lowercase()] = operation(route);
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "gameforge submit",
            "version": CONTRACT_VERSION.to_string(),
            "description": "The game backend's HTTP way in: the `submit` Lambda function behind a function URL with \
                IAM auth (`functions/submit`). Jobs are validated and enqueued exactly as the `gameforge-jobs` \
                library does it. Every request must be signed with SigV4 (service `lambda`) by an IAM principal \
                allowed `lambda:InvokeFunctionUrl` and `lambda:InvokeFunction` on the function (the template's \
                `SubmitCallerPolicy`). The caller owns the jobs it submits and job ids are its own: another \
                caller's job is answered 404 exactly as an id nobody used. Every request is rate limited per \
                caller (429 with `Retry-After`). Generated from the route table and the contract's schemas \
                (`functions/submit/src/openapi.rs`); do not edit by hand."
        },
        "servers": [{
            "url": "https://{url_id}.lambda-url.{region}.on.aws",
            "description": "The URL of the stack's SubmitFunction: `aws lambda get-function-url-config \
                --function-name <prefix>-submit`.",
            "variables": {
                "url_id": {"default": "url-id", "description": "The function URL's id."},
                "region": {"default": "us-east-1", "description": "The home region."}
            }
        }],
        "security": [{"sigv4": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "sigv4": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "Authorization",
                    "description": "AWS Signature Version 4 (service `lambda`, the URL's region) with the caller's \
                        IAM credentials, as the function URL's `AuthType: AWS_IAM` requires: `Authorization`, \
                        `X-Amz-Date`, `X-Amz-Content-Sha256` where the signer sets it, and `X-Amz-Security-Token` \
                        for temporary credentials. An unsigned request, or one whose signer IAM does not allow, \
                        is answered 403 by the URL and never reaches the function.",
                    "x-amazon-apigateway-authtype": "awsSigv4"
                }
            },
            "schemas": components,
            "headers": {
                "Retry-After": {
                    "description": "Seconds to wait before trying again.",
                    "required": true,
                    "schema": {"type": "integer", "minimum": 1}
                }
            },
            "responses": common_responses()
        }
    })
}

/// The contract's schemas (those of [`EMBEDDED`]) under their titles, their `$defs` hoisted beside them.
fn contract_components() -> BTreeMap<String, Value> {
    let mut components = BTreeMap::new();
    let mut add = |name: String, schema: Value| {
        if let Some(existing) = components.get(&name) {
            assert_eq!(existing, &schema, "two contract schemas define {name} differently");
        }
        components.insert(name, schema);
    };
    for (file, mut schema) in schemas::all() {
        if !EMBEDDED.contains(&file.as_str()) {
            continue;
        }
        let object = schema.as_object_mut().expect("a schema is an object");
        object.remove("$schema");
        let defs = object.remove("$defs");
        let name = object["title"].as_str().expect("every contract schema has a title").to_owned();
        for (def, mut body) in defs.and_then(|d| d.as_object().cloned()).unwrap_or_default() {
            rewrite_refs(&mut body, DEFS, COMPONENTS);
            add(def, body);
        }
        rewrite_refs(&mut schema, DEFS, COMPONENTS);
        add(name, schema);
    }
    components
}

/// The contract's schema of `title` as `gameforge_contract::schemas` generates it, rebuilt from the document:
/// the component with every component it references (transitively) back under `$defs`.
pub fn contract_schema(document: &Value, title: &str) -> Option<Value> {
    let components = document["components"]["schemas"].as_object()?;
    let mut schema = components.get(title)?.clone();
    let mut defs = Map::new();
    let mut pending = references(&schema);
    while let Some(name) = pending.pop() {
        if defs.contains_key(&name) || name == title {
            continue;
        }
        let def = components.get(&name)?.clone();
        pending.extend(references(&def));
        defs.insert(name, def);
    }
    for def in defs.values_mut() {
        rewrite_refs(def, COMPONENTS, DEFS);
    }
    rewrite_refs(&mut schema, COMPONENTS, DEFS);
    let object = schema.as_object_mut()?;
    if !defs.is_empty() {
        object.insert("$defs".into(), Value::Object(defs));
    }
    object.insert("$schema".into(), json!("https://json-schema.org/draft/2020-12/schema"));
    Some(schema)
}

/// The component names `schema` references.
pub fn references(schema: &Value) -> Vec<String> {
    let mut found = Vec::new();
    walk(schema, &mut |key, value| {
        if let (Some(name), "$ref") = (value.as_str().and_then(|r| r.strip_prefix(COMPONENTS)), key) {
            found.push(name.to_owned());
        }
    });
    found
}

fn walk(value: &Value, visit: &mut impl FnMut(&str, &Value)) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                visit(key, child);
                walk(child, visit);
            }
        }
        Value::Array(items) => items.iter().for_each(|item| walk(item, visit)),
        _ => {}
    }
}

fn rewrite_refs(value: &mut Value, from: &str, to: &str) {
    match value {
        Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                match child {
                    Value::String(target) if key == "$ref" => {
                        if let Some(name) = target.strip_prefix(from) {
                            *target = format!("{to}{name}");
                        }
                    }
                    _ => rewrite_refs(child, from, to),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|item| rewrite_refs(item, from, to)),
        _ => {}
    }
}

/// `POST /jobs`'s body: a `GenerationJob` whose [`FILLED_FIELDS`] may be left out.
fn submit_request(job: &Value) -> Value {
    let mut schema = job.clone();
    let required: Vec<Value> = schema["required"]
        .as_array()
        .expect("GenerationJob lists its required fields")
        .iter()
        .filter(|field| !FILLED_FIELDS.iter().any(|filled| field.as_str() == Some(filled)))
        .cloned()
        .collect();
    schema["required"] = Value::Array(required);
    schema["title"] = json!("SubmitRequest");
    schema["description"] = json!(
        "A `GenerationJob` (contract version 1) whose `version`, `submitted_at`, `model_id` and `output` may be left \
         out: the function fills them in (the deployment's model, the caller's own folder of the deployment's \
         output prefix). An `output` must be that folder or under it, and a `reply_to` one of the deployment's \
         reply queues; both are checked after the schema, with the contract's cross-field rules, and a violation \
         is a 400 like any other."
    );
    schema
}

fn reference(name: &str) -> Value {
    json!({"$ref": format!("{COMPONENTS}{name}")})
}

/// The schemas of the function's own answers.
fn answer_schemas() -> Vec<(&'static str, Value)> {
    let job_id = json!({"type": "string", "description": "The job's id, as submitted."});
    let status_path = json!({"type": "string", "description": "Where the job's status is: `/jobs/{id}`."});
    vec![
        (
            "Error",
            json!({
                "type": "object", "additionalProperties": false, "required": ["error"],
                "properties": {"error": {"type": "string", "description": "What went wrong, in words."}}
            }),
        ),
        (
            "UrlMessage",
            json!({
                "type": "object", "required": ["Message"],
                "description": "An answer of the function URL itself, which the function never saw.",
                "properties": {"Message": {"type": ["string", "null"]}}
            }),
        ),
        (
            "InvalidJob",
            json!({
                "type": "object", "additionalProperties": false, "required": ["error", "violations"],
                "properties": {
                    "error": {"const": "invalid job"},
                    "violations": {
                        "type": "array", "minItems": 1,
                        "description": "Every violation at once: the schema's, the cross-field rules', the \
                            `output` folder's and the `reply_to` queue's.",
                        "items": {
                            "type": "object", "additionalProperties": false, "required": ["field", "message"],
                            "properties": {
                                "field": {"type": "string", "description": "The field (`width`, `labels.asset`); \
                                    empty for the body as a whole."},
                                "message": {"type": "string"}
                            }
                        }
                    }
                }
            }),
        ),
        (
            "Submitted",
            json!({
                "type": "object", "additionalProperties": false, "required": ["job_id", "state", "status"],
                "description": "A new job, recorded and on the queue.",
                "properties": {"job_id": job_id, "state": {"const": "queued"}, "status": status_path}
            }),
        ),
        (
            "AlreadySubmitted",
            json!({
                "type": "object", "additionalProperties": false,
                "required": ["job_id", "state", "status", "duplicate"],
                "description": "The caller submitted this id before with the same request: nothing new was enqueued.",
                "properties": {
                    "job_id": job_id, "state": reference("JobState"), "status": status_path,
                    "duplicate": {"const": true}
                }
            }),
        ),
        (
            "CancelAnswer",
            json!({
                "type": "object", "additionalProperties": false, "required": ["job_id", "outcome", "state"],
                "properties": {
                    "job_id": job_id,
                    "outcome": {
                        "enum": ["cancelled", "requested", "already_final"],
                        "description": "`cancelled` (200): no worker had taken it, its result is `cancelled`; \
                            `requested` (202): a worker runs it and stops at its next step; `already_final` \
                            (409): it had finished."
                    },
                    "state": reference("JobState")
                }
            }),
        ),
        (
            "RateLimited",
            json!({
                "type": "object", "additionalProperties": false, "required": ["error", "retry_after_seconds"],
                "properties": {
                    "error": {"const": "rate limited"},
                    "retry_after_seconds": {"type": "integer", "minimum": 1}
                }
            }),
        ),
    ]
}

fn json_content(schema: Value) -> Value {
    json!({"application/json": {"schema": schema}})
}

fn answer(description: &str, schema: &str) -> Value {
    json!({"description": description, "content": json_content(reference(schema))})
}

fn retry_answer(description: &str, schema: &str) -> Value {
    let mut answer = answer(description, schema);
    answer["headers"] = json!({"Retry-After": {"$ref": "#/components/headers/Retry-After"}});
    answer
}

/// `answer` with links to the job's status and its cancellation (the `job_id` it names).
fn linked(mut answer: Value) -> Value {
    let id = json!({"id": "$response.body#/job_id"});
    answer["links"] = json!({
        "GetJobStatus": {"operationId": "getJobStatus", "parameters": id,
            "description": "The job's status."},
        "CancelJob": {"operationId": "cancelJob", "parameters": id, "description": "Cancel the job."}
    });
    answer
}

/// The answers every route may give, under `components/responses`.
fn common_responses() -> Value {
    json!({
        "Forbidden": {
            "description": "Unsigned, signed by a principal IAM does not allow (the URL's own answer, `{\"Message\": \
                \"Forbidden\"}`), or signed by an identity that cannot own jobs (the function's).",
            "content": json_content(json!({"anyOf": [reference("UrlMessage"), reference("Error")]}))
        },
        "RateLimited": retry_answer("Over the caller's rate: retry after `Retry-After` seconds.", "RateLimited"),
        "BadGateway": answer("The function failed or timed out (the URL's own answer).", "UrlMessage"),
        "Unavailable": retry_answer("The job store or queue is unavailable: retry shortly.", "Error")
    })
}

fn common(name: &str) -> Value {
    json!({"$ref": format!("#/components/responses/{name}")})
}

fn id_parameter() -> Value {
    json!({
        "name": "id", "in": "path", "required": true,
        "description": "A job id of the caller's own (another caller's ids are unknown to it).",
        "schema": {"type": "string", "minLength": 1},
        "example": "sword-0042"
    })
}

fn operation(route: Route) -> Value {
    let mut responses = match route {
        Route::Submit => json!({
            "202": linked(answer("A new job: recorded and on the queue.", "Submitted")),
            "200": linked(answer("The caller submitted this id before with the same request: nothing new was \
                enqueued.", "AlreadySubmitted")),
            "400": answer("Not a valid job: every violation is listed.", "InvalidJob"),
            "409": answer("The caller used this id before for a different request.", "Error"),
            "413": answer("The body is larger than the deployment accepts (64 KiB unless configured otherwise).",
                "Error"),
        }),
        Route::Status => json!({
            "200": answer("The job's status.", "JobStatusReport"),
            "404": answer("No job of the caller's has this id.", "Error"),
        }),
        Route::Cancel => json!({
            "200": answer("Cancelled before any worker took it.", "CancelAnswer"),
            "202": answer("Requested: the worker running it stops at its next step.", "CancelAnswer"),
            "404": answer("No job of the caller's has this id.", "Error"),
            "409": answer("The job had already finished.", "CancelAnswer"),
        }),
    };
    for (status, name) in [("403", "Forbidden"), ("429", "RateLimited"), ("502", "BadGateway"), ("503", "Unavailable")]
    {
        responses[status] = common(name);
    }
    let mut operation = match route {
        Route::Submit => json!({
            "operationId": "submitJob",
            "summary": "Submit a generation job (idempotent by job id).",
            "requestBody": {"required": true, "content": {"application/json": {
                "schema": reference("SubmitRequest"),
                "examples": {
                    "minimal": {
                        "summary": "The deployment fills the model, the output folder and the submission time.",
                        "value": {"job_id": "sword-0042", "prompt": "a rusty sword, game icon"}
                    },
                    "full": {
                        "summary": "Size, steps, seed, scheduler and labels chosen by the caller.",
                        "value": {
                            "job_id": "shield-0007", "prompt": "a round wooden shield, game icon",
                            "negative_prompt": "text, watermark", "width": 768, "height": 768, "steps": 25,
                            "guidance": 6.5, "seed": 42, "scheduler": "euler_a",
                            "labels": {"asset": "shield-0007"}
                        }
                    }
                }
            }}},
        }),
        Route::Status => json!({
            "operationId": "getJobStatus",
            "summary": "A job's status: state, placement, progress, and its result once final.",
            "parameters": [id_parameter()],
        }),
        Route::Cancel => json!({
            "operationId": "cancelJob",
            "summary": "Cancel a job: at once if no worker took it, at the worker's next step if one runs it.",
            "parameters": [id_parameter()],
        }),
    };
    operation["responses"] = responses;
    operation
}
