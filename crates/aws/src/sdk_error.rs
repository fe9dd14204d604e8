//! How a failed SDK call is described and recognised, the same way at every edge.

use std::error::Error;
use std::fmt::Debug;

use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::PortError;

/// The error with its whole chain of causes: the SDK's own `Display` says only "service error".
pub fn describe<E: Error + 'static, R: Debug>(error: &SdkError<E, R>) -> String {
    DisplayErrorContext(error).to_string()
}

/// Whether a conditional write lost: another writer got there first, which is an answer, not a failure.
pub fn lost_condition<E: ProvideErrorMetadata, R>(error: &SdkError<E, R>) -> bool {
    error.as_service_error().and_then(ProvideErrorMetadata::code) == Some("ConditionalCheckFailedException")
}

impl PortError {
    /// A failed SDK call, described with its causes.
    pub fn sdk<E: Error + 'static, R: Debug>(operation: &'static str, error: &SdkError<E, R>) -> Self {
        Self::new(operation, describe(error))
    }
}

#[cfg(test)]
mod tests {
    use aws_smithy_types::error::ErrorMetadata;

    use super::*;

    fn service_error(code: &str) -> SdkError<ErrorMetadata, ()> {
        SdkError::service_error(ErrorMetadata::builder().code(code).message("no").build(), ())
    }

    #[test]
    fn only_a_failed_condition_is_a_lost_condition() {
        assert!(lost_condition(&service_error("ConditionalCheckFailedException")));
        assert!(!lost_condition(&service_error("ProvisionedThroughputExceededException")));
        assert!(!lost_condition(&SdkError::<ErrorMetadata, ()>::timeout_error("slow")));
    }

    #[test]
    fn the_description_names_the_cause() {
        let text = describe(&service_error("ThrottlingException"));
        assert!(text.contains("ThrottlingException"), "{text}");
        let port = PortError::sdk("PutItem", &SdkError::<ErrorMetadata, ()>::timeout_error("attempt timed out"));
        assert!(port.to_string().starts_with("PutItem: ") && port.to_string().contains("attempt timed out"), "{port}");
    }
}
