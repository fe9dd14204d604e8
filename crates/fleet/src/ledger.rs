//! The ledger in one DynamoDB table, partition key `pk` (the fleet), sort key `sk`: `offering#…`, `quota#…`,
//! `interruptions#<region>`, `state`, `lock`. Done markers live under `<fleet>#done`, and the decisions kept for
//! operators under `<fleet>#decisions` (sorted by time), so that the executor's read of its ledger never pages
//! through either. Every item carries `expires_at` for TTL.

use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, TimeZone, Utc};
use gameforge_planner::ledger::{Interruption, LedgerView, OfferingBlock, QuotaBlock};
use serde::Serialize;
use serde::de::DeserializeOwned;

use gameforge_aws::sdk_error::lost_condition;
use gameforge_engine::journal::Decisions;
use gameforge_engine::ports::{DECISIONS_KEPT, LedgerStore, LockOutcome, PortError, SaveOutcome};
use gameforge_engine::state::FleetState;

/// Ledger entries outlive their block by this much, so that a repeated failure still finds the streak.
const KEEP_AFTER: chrono::Duration = chrono::Duration::days(1);
const DONE_RETENTION: chrono::Duration = chrono::Duration::days(2);

#[derive(Debug, Clone)]
pub struct DynamoLedger {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn n(value: i64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn json<T: Serialize>(value: &T) -> Result<AttributeValue, PortError> {
    serde_json::to_string(value).map(AttributeValue::S).map_err(|e| PortError::new("encode ledger item", e))
}

fn parse<T: DeserializeOwned>(item: &std::collections::HashMap<String, AttributeValue>) -> Option<T> {
    item.get("body").and_then(|b| b.as_s().ok()).and_then(|text| serde_json::from_str(text).ok())
}

impl DynamoLedger {
    pub fn new(client: aws_sdk_dynamodb::Client, table: &str) -> Self {
        Self { client, table: table.to_owned() }
    }

    async fn put(
        &self,
        fleet: &str,
        sk: String,
        body: AttributeValue,
        expires: DateTime<Utc>,
    ) -> Result<(), PortError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(fleet))
            .item("sk", s(sk))
            .item("body", body)
            .item("expires_at", n(expires.timestamp()))
            .send()
            .await
            .map_err(|e| PortError::sdk("write ledger", &e))?;
        Ok(())
    }
}

impl LedgerStore for DynamoLedger {
    async fn load_ledger(&self, fleet: &str) -> Result<(LedgerView, Option<FleetState>), PortError> {
        let mut view = LedgerView::default();
        let mut state = None;
        let mut start = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", s(fleet))
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| PortError::sdk("read ledger", &e))?;
            for item in page.items() {
                let sk = item.get("sk").and_then(|v| v.as_s().ok()).map(String::as_str).unwrap_or_default();
                if sk.starts_with("offering#") {
                    if let Some(block) = parse::<OfferingBlock>(item) {
                        view.apply_block(block);
                    }
                } else if sk.starts_with("quota#") {
                    if let Some(block) = parse::<QuotaBlock>(item) {
                        view.apply_quota(block);
                    }
                } else if let Some(region) = sk.strip_prefix("interruptions#") {
                    if let Some(recent) = parse::<Vec<Interruption>>(item) {
                        view.interruptions.insert(region.to_owned(), recent);
                    }
                } else if sk == "state" {
                    state = parse::<FleetState>(item);
                }
            }
            match page.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok((view, state)),
            }
        }
    }

    async fn put_block(&self, fleet: &str, block: &OfferingBlock) -> Result<(), PortError> {
        self.put(fleet, format!("offering#{}", block.offering.key()), json(block)?, block.until + KEEP_AFTER).await
    }

    async fn put_quota(&self, fleet: &str, block: &QuotaBlock) -> Result<(), PortError> {
        self.put(fleet, format!("quota#{}", block.bucket.key()), json(block)?, block.until + KEEP_AFTER).await
    }

    async fn put_interruptions(&self, fleet: &str, region: &str, recent: &[Interruption]) -> Result<(), PortError> {
        let newest = recent.iter().map(|i| i.at).max().unwrap_or_else(Utc::now);
        self.put(fleet, format!("interruptions#{region}"), json(&recent)?, newest + KEEP_AFTER).await
    }

    async fn save_state(&self, fleet: &str, state: &FleetState) -> Result<SaveOutcome, PortError> {
        let mut put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(fleet))
            .item("sk", s("state"))
            .item("body", json(state)?)
            .item("version", n(state.version as i64));
        put = if state.version <= 1 {
            put.condition_expression("attribute_not_exists(pk)")
        } else {
            put.condition_expression("version = :previous")
                .expression_attribute_values(":previous", n(state.version as i64 - 1))
        };
        match put.send().await {
            Ok(_) => Ok(SaveOutcome::Saved),
            Err(e) if lost_condition(&e) => Ok(SaveOutcome::Conflict),
            Err(e) => Err(PortError::sdk("save fleet state", &e)),
        }
    }

    async fn lock(
        &self,
        fleet: &str,
        owner: &str,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<LockOutcome, PortError> {
        let until = now + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::MAX);
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(fleet))
            .item("sk", s("lock"))
            .item("owner", s(owner))
            .item("lease_until", n(until.timestamp_millis()))
            .item("expires_at", n((until + KEEP_AFTER).timestamp()))
            .condition_expression("attribute_not_exists(pk) OR lease_until < :now OR #owner = :owner")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":now", n(now.timestamp_millis()))
            .expression_attribute_values(":owner", s(owner))
            .send()
            .await;
        match put {
            Ok(_) => Ok(LockOutcome::Acquired),
            Err(e) if lost_condition(&e) => {
                let held = self
                    .client
                    .get_item()
                    .table_name(&self.table)
                    .key("pk", s(fleet))
                    .key("sk", s("lock"))
                    .consistent_read(true)
                    .send()
                    .await
                    .map_err(|e| PortError::sdk("read fleet lock", &e))?;
                let until = held
                    .item()
                    .and_then(|i| i.get("lease_until"))
                    .and_then(|v| v.as_n().ok())
                    .and_then(|v| v.parse::<i64>().ok())
                    .and_then(|ms| Utc.timestamp_millis_opt(ms).single())
                    .unwrap_or(now);
                Ok(LockOutcome::HeldElsewhere { until })
            }
            Err(e) => Err(PortError::sdk("take fleet lock", &e)),
        }
    }

    async fn unlock(&self, fleet: &str, owner: &str) -> Result<(), PortError> {
        let delete = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(fleet))
            .key("sk", s("lock"))
            .condition_expression("#owner = :owner")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":owner", s(owner))
            .send()
            .await;
        match delete {
            Ok(_) => Ok(()),
            Err(e) if lost_condition(&e) => Ok(()),
            Err(e) => Err(PortError::sdk("release fleet lock", &e)),
        }
    }

    async fn is_done(&self, fleet: &str, control_id: &str) -> Result<bool, PortError> {
        let item = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(format!("{fleet}#done")))
            .key("sk", s(control_id))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| PortError::sdk("read done marker", &e))?;
        Ok(item.item().is_some())
    }

    async fn mark_done(&self, fleet: &str, control_id: &str, now: DateTime<Utc>) -> Result<(), PortError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(format!("{fleet}#done")))
            .item("sk", s(control_id))
            .item("done_at", s(now.to_rfc3339()))
            .item("expires_at", n((now + DONE_RETENTION).timestamp()))
            .send()
            .await
            .map_err(|e| PortError::sdk("write done marker", &e))?;
        Ok(())
    }

    async fn record_decisions(&self, fleet: &str, decisions: &Decisions) -> Result<(), PortError> {
        // Time first, so that a query reads them in order; the control id keeps two invocations apart.
        let sk = format!("{}#{}", decisions.at.format("%Y-%m-%dT%H:%M:%S%.6fZ"), decisions.control_id);
        self.put(&format!("{fleet}#decisions"), sk, json(decisions)?, decisions.at + DECISIONS_KEPT).await
    }

    async fn recent_decisions(&self, fleet: &str, limit: usize) -> Result<Vec<Decisions>, PortError> {
        let mut kept = Vec::new();
        let mut start = None;
        while kept.len() < limit {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", s(format!("{fleet}#decisions")))
                .scan_index_forward(false)
                .limit(i32::try_from(limit - kept.len()).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| PortError::sdk("read decisions", &e))?;
            kept.extend(page.items().iter().filter_map(parse::<Decisions>));
            match page.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => break,
            }
        }
        Ok(kept)
    }
}
