//! Operator alerts as EventBridge events (`source` `gameforge.executor`, detail-type `Capacity Alert`), so that
//! any rule can route them to SNS, a pager or a chat.

use aws_sdk_eventbridge::types::PutEventsRequestEntry;

use super::AwsWorld;
use gameforge_engine::ports::{Alert, Alerts, PortError};

pub const ALERT_SOURCE: &str = "gameforge.executor";
pub const ALERT_DETAIL_TYPE: &str = "Capacity Alert";

impl Alerts for AwsWorld {
    async fn alert(&self, alert: &Alert) -> Result<(), PortError> {
        let detail = serde_json::to_string(alert).map_err(|e| PortError::new("encode alert", e))?;
        let sent = self
            .events
            .put_events()
            .entries(
                PutEventsRequestEntry::builder()
                    .source(ALERT_SOURCE)
                    .detail_type(ALERT_DETAIL_TYPE)
                    .detail(detail)
                    .event_bus_name(&self.resources.alert_bus)
                    .build(),
            )
            .send()
            .await
            .map_err(|e| PortError::sdk("PutEvents", &e))?;
        if sent.failed_entry_count() > 0 {
            return Err(PortError::new("PutEvents", "the alert was refused"));
        }
        tracing::warn!(kind = ?alert.kind, message = %alert.message, "capacity alert");
        Ok(())
    }
}
