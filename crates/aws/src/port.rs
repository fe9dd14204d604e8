//! The error of a function's edges: a failed call to AWS (or to whatever stands in for it). Transient by nature:
//! the work is retried later.

#[derive(Debug, Clone, thiserror::Error)]
#[error("{operation}: {reason}")]
pub struct PortError {
    pub operation: &'static str,
    pub reason: String,
}

impl PortError {
    pub fn new(operation: &'static str, reason: impl std::fmt::Display) -> Self {
        Self { operation, reason: reason.to_string() }
    }
}
