//! A caller's jobs, newest first: one query of the status table's owner index (`by-owner`: partition
//! `submitted_by`, sort `created_at`). The owner is the partition key, so a listing reads nothing of another
//! owner's; a state filter is applied by DynamoDB after the read, so pages are followed until enough jobs match.

use aws_sdk_dynamodb::types::AttributeValue;
use gameforge_aws::PortError;
use gameforge_contract::{JobState, JobStatusReport};

use crate::Owner;
use crate::dynamo::{DynamoJobStore, parse};

/// The status table's index of jobs by owner and creation time (`infra/gameforge.yaml`).
pub const OWNER_INDEX: &str = "by-owner";

/// Which of the caller's jobs to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobFilter {
    /// Only jobs in this state.
    pub state: Option<JobState>,
    /// At most this many, the newest.
    pub limit: usize,
}

impl Default for JobFilter {
    fn default() -> Self {
        Self { state: None, limit: 20 }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ListError {
    /// The submit URL has no listing route: listing reads the status table's owner index.
    #[error(
        "listing jobs is not offered by the submit URL; it needs the status table (GAMEFORGE_JOBS_TABLE) and \
         dynamodb:Query on its by-owner index (GameBackendPolicy)"
    )]
    NotOverHttp,
    #[error(transparent)]
    Aws(#[from] PortError),
}

/// Items read per page while filtering by state: the filter runs after the read, so a page of `limit` items could
/// hold none that match.
const FILTERED_PAGE: i32 = 100;

impl DynamoJobStore {
    /// `owner`'s jobs, newest first, as their status reports.
    pub async fn list(&self, owner: &Owner, filter: &JobFilter) -> Result<Vec<JobStatusReport>, PortError> {
        let mut reports = Vec::new();
        let mut start = None;
        while reports.len() < filter.limit {
            let wanted = filter.limit - reports.len();
            let page = if filter.state.is_some() { FILTERED_PAGE } else { i32::try_from(wanted).unwrap_or(i32::MAX) };
            let mut query = self
                .client()
                .query()
                .table_name(self.table())
                .index_name(OWNER_INDEX)
                .key_condition_expression("submitted_by = :owner")
                .expression_attribute_values(":owner", AttributeValue::S(owner.as_str().to_owned()))
                .scan_index_forward(false)
                .limit(page)
                .set_exclusive_start_key(start.take());
            if let Some(state) = filter.state {
                query = query
                    .filter_expression("job_state = :state")
                    .expression_attribute_values(":state", AttributeValue::S(state.as_str().to_owned()));
            }
            let answer = query.send().await.map_err(|e| PortError::sdk("Query jobs by owner", &e))?;
            for item in answer.items() {
                reports.push(parse(item)?.report());
                if reports.len() == filter.limit {
                    break;
                }
            }
            match answer.last_evaluated_key() {
                Some(key) if !key.is_empty() => start = Some(key.clone()),
                _ => break,
            }
        }
        Ok(reports)
    }
}
