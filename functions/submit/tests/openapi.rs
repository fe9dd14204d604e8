//! The OpenAPI description of the submit URL (`crates/contract/openapi/submit.openapi.json`) is what other
//! languages and tools build against: it must be what `submit::openapi::document` generates, name exactly the
//! routes the function serves, and embed exactly the contract's schemas. Regenerate it with
//! `GAMEFORGE_BLESS=1 cargo test -p submit --test openapi`.

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde_json::Value;
use submit::handler::ROUTES;
use submit::openapi::{COMMITTED_PATH, EMBEDDED, FILLED_FIELDS, contract_schema, document, references};

fn committed() -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").join(COMMITTED_PATH);
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

#[test]
fn the_committed_document_is_the_generated_one() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").join(COMMITTED_PATH);
    let expected = gameforge_contract::schemas::render(&document());
    if std::env::var_os("GAMEFORGE_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &expected).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == expected,
        "{COMMITTED_PATH} is stale; run GAMEFORGE_BLESS=1 cargo test -p submit --test openapi"
    );
}

/// Every route of the function's table is in the committed document, and nothing else is.
#[test]
fn the_document_names_exactly_the_routes_the_function_serves() {
    let document = committed();
    let mut documented = BTreeSet::new();
    for (path, item) in document["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("a path item").keys() {
            documented.insert((method.to_ascii_uppercase(), path.clone()));
        }
    }
    let served: BTreeSet<_> = ROUTES.iter().map(|(method, path, _)| (method.to_string(), path.to_string())).collect();
    assert_eq!(documented, served);
    // The table is what the function routes by.
    for (method, template, route) in ROUTES {
        let path = template.replace("{id}", "sword-0042");
        let expected_id = if template.contains("{id}") { "sword-0042" } else { "" };
        assert_eq!(submit::handler::route(method, &path), submit::handler::Routed::To(route, expected_id));
    }
}

/// The contract's schemas embedded in the committed document are exactly what the Rust types generate.
#[test]
fn the_embedded_schemas_are_the_contracts() {
    let document = committed();
    for (file, generated) in gameforge_contract::schemas::all() {
        if !EMBEDDED.contains(&file.as_str()) {
            continue;
        }
        let title = generated["title"].as_str().unwrap();
        assert_eq!(contract_schema(&document, title).as_ref(), Some(&generated), "{title} ({file})");
        // … and the same as the committed schema file.
        let committed = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../crates/contract/schemas").join(&file);
        let committed: Value = serde_json::from_str(&std::fs::read_to_string(committed).unwrap()).unwrap();
        assert_eq!(committed, generated, "{file} is stale");
    }
    // The request body is a GenerationJob whose filled fields may be left out, and nothing else differs.
    let components = &document["components"]["schemas"];
    let (mut request, mut job) = (components["SubmitRequest"].clone(), components["GenerationJob"].clone());
    for schema in [&mut request, &mut job] {
        let object = schema.as_object_mut().unwrap();
        for key in ["title", "description"] {
            object.remove(key);
        }
    }
    let required = job["required"].as_array().unwrap().iter().filter(|f| !FILLED_FIELDS.contains(&f.as_str().unwrap()));
    job["required"] = Value::Array(required.cloned().collect());
    assert_eq!(request, job);
    assert_eq!(
        document["paths"]["/jobs"]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/SubmitRequest"
    );
    assert_eq!(
        document["paths"]["/jobs/{id}"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/JobStatusReport"
    );
}

/// The request examples are jobs the function accepts once it has filled in what they leave out.
#[test]
fn the_request_examples_are_valid_jobs() {
    use gameforge_contract::Message;
    let document = committed();
    let examples = document["paths"]["/jobs"]["post"]["requestBody"]["content"]["application/json"]["examples"]
        .as_object()
        .expect("examples");
    assert!(!examples.is_empty());
    for (name, example) in examples {
        let mut job = example["value"].clone();
        let filled = serde_json::json!({"version": 1, "submitted_at": "2026-11-27T08:00:00Z", "model_id": "sdxl-base",
            "output": "s3://gf-output/images/123456789012/assumed-role/game-backend"});
        for field in FILLED_FIELDS {
            job.as_object_mut().unwrap().entry(field).or_insert(filled[field].clone());
        }
        if let Err(e) = gameforge_contract::GenerationJob::from_value(job) {
            panic!("example {name}: {:?}", e.violations());
        }
    }
}

/// Every reference in the document resolves within it.
#[test]
fn every_reference_resolves() {
    let document = committed();
    let mut pointers = Vec::new();
    collect_refs(&document, &mut pointers);
    assert!(!pointers.is_empty());
    for pointer in pointers {
        let target = pointer.strip_prefix('#').unwrap_or_else(|| panic!("{pointer} points outside the document"));
        assert!(document.pointer(target).is_some(), "{pointer} does not resolve");
    }
    assert!(references(&document["components"]["schemas"]["JobStatusReport"]).contains(&"JobResult".to_string()));
}

fn collect_refs(value: &Value, found: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                match child.as_str() {
                    Some(target) if key == "$ref" => found.push(target.to_owned()),
                    _ => collect_refs(child, found),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| collect_refs(item, found)),
        _ => {}
    }
}
