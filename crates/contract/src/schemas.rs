//! The JSON Schemas of every message, as committed under `crates/contract/schemas/` for other languages.

use serde_json::Value;

use crate::{ControlJob, GenerationJob, JobResult, JobStatusReport, Message, Signal};

/// `(file name, schema)` for every message of the contract.
pub fn all() -> Vec<(String, Value)> {
    vec![
        entry::<GenerationJob>(),
        entry::<JobResult>(),
        entry::<JobStatusReport>(),
        entry::<ControlJob>(),
        entry::<Signal>(),
    ]
}

fn entry<M: Message>() -> (String, Value) {
    (format!("{}.schema.json", M::SCHEMA_NAME), M::json_schema_value())
}

/// The schema as it is committed: pretty-printed, with a trailing newline.
pub fn render(schema: &Value) -> String {
    let mut text = serde_json::to_string_pretty(schema).expect("a schema always serializes");
    text.push('\n');
    text
}
