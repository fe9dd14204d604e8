//! From an EventBridge event to what it means for the fleet.
//!
//! [`classify`] never fails on an EventBridge event: anything it does not understand is [`Signal::Ignored`] with
//! a reason. Only input that is not an EventBridge event at all is an [`EnvelopeError`]. Parsers are chosen by
//! `(source, detail-type)` from one table in [`registry`]; free text in events is read leniently by [`text`].
//! Nothing here performs I/O, so the Lambda function, the CLI and the benchmarks all run the same code.

mod control;
mod envelope;
mod parsers;
pub mod registry;
pub mod text;

pub use control::control_jobs;
pub use envelope::{EnvelopeError, EventEnvelope};
pub use gameforge_contract::Signal;

/// Classifies one parsed event.
pub fn classify(event: &EventEnvelope) -> Signal {
    match registry::parser_for(&event.source, &event.detail_type) {
        Some(parse) => parse(event),
        None => parsers::ignored(
            event,
            gameforge_contract::IgnoreReason::UnsupportedEvent,
            format!("no parser for source {:?} and detail-type {:?}", event.source, event.detail_type),
        ),
    }
}

/// Parses and classifies one event given as JSON text.
pub fn classify_json(bytes: &[u8]) -> Result<Signal, EnvelopeError> {
    Ok(classify(&EventEnvelope::from_json(bytes)?))
}
