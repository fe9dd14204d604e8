use std::collections::HashMap;
use std::fmt;
use std::sync::{Mutex, OnceLock};

use jsonschema::error::ValidationErrorKind;
use schemars::JsonSchema;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::CONTRACT_VERSION;

/// One thing wrong with a message, named by the field it concerns (dotted for nested fields, empty for the
/// message as a whole).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    pub field: String,
    pub message: String,
}

impl Violation {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ContractError {
    #[error("not valid JSON: {0}")]
    NotJson(String),
    #[error("unsupported contract version {found}; this build speaks version {CONTRACT_VERSION}")]
    UnsupportedVersion { found: Value },
    #[error("{} violation(s): {}", .0.len(), join(.0))]
    Invalid(Vec<Violation>),
}

impl ContractError {
    /// Every violation, for answers that list them (an empty list for errors about the message as a whole).
    pub fn violations(&self) -> Vec<Violation> {
        match self {
            ContractError::Invalid(violations) => violations.clone(),
            ContractError::NotJson(reason) => vec![Violation::new("", format!("not valid JSON: {reason}"))],
            ContractError::UnsupportedVersion { found } => {
                vec![Violation::new(
                    "version",
                    format!("unsupported contract version {found}, expected {CONTRACT_VERSION}"),
                )]
            }
        }
    }
}

fn join(violations: &[Violation]) -> String {
    violations.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

/// A versioned message of the contract: parsed only through its JSON Schema, then through the checks a schema
/// cannot express.
pub trait Message: Serialize + DeserializeOwned + JsonSchema + Sized {
    /// The file stem of the committed schema (`schemas/<name>.schema.json`).
    const SCHEMA_NAME: &'static str;

    /// Rules that span several fields.
    fn semantic_violations(&self) -> Vec<Violation> {
        Vec::new()
    }

    fn from_json(bytes: &[u8]) -> Result<Self, ContractError> {
        let value: Value = serde_json::from_slice(bytes).map_err(|e| ContractError::NotJson(e.to_string()))?;
        Self::from_value(value)
    }

    fn from_value(value: Value) -> Result<Self, ContractError> {
        // A message from a newer or older contract gets a clear answer rather than a list of field errors.
        if let Some(found) = value.get("version")
            && found.as_u64() != Some(u64::from(CONTRACT_VERSION))
            && (found.is_number() || found.is_string())
        {
            return Err(ContractError::UnsupportedVersion { found: found.clone() });
        }
        let violations = schema_violations(Self::SCHEMA_NAME, &Self::json_schema_value(), &value);
        if !violations.is_empty() {
            return Err(ContractError::Invalid(violations));
        }
        let message: Self = serde_json::from_value(value)
            .map_err(|e| ContractError::Invalid(vec![Violation::new("", e.to_string())]))?;
        let violations = message.semantic_violations();
        if violations.is_empty() { Ok(message) } else { Err(ContractError::Invalid(violations)) }
    }

    /// The checks a message built in code must pass before it is sent.
    fn validate(&self) -> Result<(), ContractError> {
        let value =
            serde_json::to_value(self).map_err(|e| ContractError::Invalid(vec![Violation::new("", e.to_string())]))?;
        let mut violations = schema_violations(Self::SCHEMA_NAME, &Self::json_schema_value(), &value);
        violations.extend(self.semantic_violations());
        if violations.is_empty() { Ok(()) } else { Err(ContractError::Invalid(violations)) }
    }

    fn to_json(&self) -> String {
        serde_json::to_string(self).expect("contract messages always serialize")
    }

    fn json_schema_value() -> Value {
        schemars::schema_for!(Self).to_value()
    }
}

fn validator(name: &'static str, schema: &Value) -> &'static jsonschema::Validator {
    static VALIDATORS: OnceLock<Mutex<HashMap<&'static str, &'static jsonschema::Validator>>> = OnceLock::new();
    let mut cache = VALIDATORS.get_or_init(Default::default).lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    cache.entry(name).or_insert_with(|| {
        let compiled = jsonschema::options()
            .should_validate_formats(true)
            .build(schema)
            .unwrap_or_else(|e| panic!("the generated schema {name} does not compile: {e}"));
        // One validator per message type for the life of the process.
        Box::leak(Box::new(compiled))
    })
}

fn schema_violations(name: &'static str, schema: &Value, value: &Value) -> Vec<Violation> {
    let mut violations: Vec<Violation> = validator(name, schema)
        .iter_errors(value)
        .flat_map(|error| {
            let path = dotted(&error.instance_path().to_string());
            match error.kind() {
                ValidationErrorKind::Required { property } => {
                    let property = property.as_str().map(str::to_owned).unwrap_or_else(|| property.to_string());
                    vec![Violation::new(child(&path, &property), "is required")]
                }
                ValidationErrorKind::AdditionalProperties { unexpected } => unexpected
                    .iter()
                    .map(|field| Violation::new(child(&path, field), "is not a field of this message"))
                    .collect(),
                _ => vec![Violation::new(path, error.to_string())],
            }
        })
        .collect();
    violations.sort_by(|a, b| a.field.cmp(&b.field));
    violations.dedup();
    violations
}

fn dotted(pointer: &str) -> String {
    pointer.trim_start_matches('/').replace('/', ".")
}

fn child(parent: &str, field: &str) -> String {
    if parent.is_empty() { field.to_owned() } else { format!("{parent}.{field}") }
}
