//! Who a job belongs to, and its identity in the status store. Every job submitted through the library, the CLI
//! or the submit endpoint has an owner: the IAM principal that submitted it. Job ids are the owner's own: the
//! stored key is the owner and the id together, so two owners can use the same id, and one owner can neither see
//! nor cancel (nor learn of) another's jobs. A job sent to the queue by other means has no owner; its record is
//! keyed by the bare id and is nobody's to read through the library or the endpoint.

use std::fmt;

/// The SQS message attribute that carries a job's owner from the submitter to the worker.
pub const OWNER_ATTRIBUTE: &str = "owner";

/// Between the owner and the job id in a stored key. Neither an ARN nor a job id contains it, so a key reads back
/// unambiguously.
const SCOPE: char = '#';

/// The IAM principal a job belongs to, as an ARN.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Owner(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not the ARN of an IAM principal (arn:<partition>:<service>::<account>:<resource>)")]
pub struct InvalidOwner(pub String);

impl Owner {
    /// The owner an identity's ARN stands for. An assumed role's session name is left out: a backend's sessions
    /// come and go, and its jobs (and its rate at the endpoint) are the role's.
    pub fn from_arn(arn: &str) -> Result<Self, InvalidOwner> {
        let invalid = || InvalidOwner(arn.to_string());
        let parts: Vec<&str> = arn.splitn(6, ':').collect();
        let ["arn", partition, service, "", account, resource] = parts.as_slice() else { return Err(invalid()) };
        let plain = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_graphic() && c != SCOPE);
        if !plain(partition) || !plain(service) || !plain(resource) || arn.len() > 1024 {
            return Err(invalid());
        }
        if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid());
        }
        if *service == "sts"
            && let Some(rest) = resource.strip_prefix("assumed-role/")
        {
            let role = rest.split('/').next().filter(|r| !r.is_empty()).ok_or_else(invalid)?;
            return Ok(Self(format!("arn:{partition}:sts::{account}:assumed-role/{role}")));
        }
        Ok(Self(arn.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The owner's own folder under a shared prefix (`<account>/<resource>`, e.g.
    /// `123456789012/assumed-role/game-backend`): readable, and distinct for distinct owners.
    pub fn folder(&self) -> String {
        let parts: Vec<&str> = self.0.splitn(6, ':').collect();
        format!("{}/{}", parts[4], parts[5])
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A job's identity in the status store: its id within its owner's jobs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct JobKey {
    owner: Option<Owner>,
    job_id: String,
}

impl JobKey {
    pub fn owned(owner: &Owner, job_id: impl Into<String>) -> Self {
        Self { owner: Some(owner.clone()), job_id: job_id.into() }
    }

    /// A job sent to the queue without the library: no owner vouches for it.
    pub fn unowned(job_id: impl Into<String>) -> Self {
        Self { owner: None, job_id: job_id.into() }
    }

    pub fn new(owner: Option<Owner>, job_id: impl Into<String>) -> Self {
        Self { owner, job_id: job_id.into() }
    }

    pub fn owner(&self) -> Option<&Owner> {
        self.owner.as_ref()
    }

    pub fn job_id(&self) -> &str {
        &self.job_id
    }

    /// The table's key: `<owner ARN>#<job id>`, or the bare id for a job without an owner.
    pub fn stored(&self) -> String {
        match &self.owner {
            Some(owner) => format!("{owner}{SCOPE}{}", self.job_id),
            None => self.job_id.clone(),
        }
    }

    /// The key a stored key came from, given the owner recorded with it.
    pub fn from_stored(stored: &str, owner: Option<Owner>) -> Self {
        let job_id = owner
            .as_ref()
            .and_then(|o| stored.strip_prefix(o.as_str())?.strip_prefix(SCOPE))
            .unwrap_or(stored)
            .to_string();
        Self { owner, job_id }
    }
}

impl fmt::Display for JobKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.owner {
            Some(owner) => write!(f, "job {} of {owner}", self.job_id),
            None => write!(f, "job {} (no owner)", self.job_id),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_role_is_one_owner_whatever_its_session() {
        let a = Owner::from_arn("arn:aws:sts::123456789012:assumed-role/game-backend/i-0abc").unwrap();
        let b = Owner::from_arn("arn:aws:sts::123456789012:assumed-role/game-backend/i-0def").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.as_str(), "arn:aws:sts::123456789012:assumed-role/game-backend");
        assert_eq!(Owner::from_arn(a.as_str()).unwrap(), a, "mapping an owner again changes nothing");
        let user = Owner::from_arn("arn:aws:iam::123456789012:user/ci").unwrap();
        assert_eq!(user.as_str(), "arn:aws:iam::123456789012:user/ci");
        assert_eq!(user.folder(), "123456789012/user/ci");
        assert_eq!(a.folder(), "123456789012/assumed-role/game-backend");
    }

    #[test]
    fn only_principal_arns_own_jobs() {
        for bad in [
            "",
            "AROAEXAMPLE:session",
            "arn:aws:iam::123:user/ci",
            "arn:aws:iam::123456789012:user/c i",
            "arn:aws:iam::123456789012:user/a#b",
            "arn:aws:sts::123456789012:assumed-role/",
            "arn:aws:iam:us-east-1:123456789012:user/ci",
        ] {
            assert!(Owner::from_arn(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn keys_are_scoped_by_owner_and_read_back() {
        let owner = Owner::from_arn("arn:aws:iam::123456789012:role/game-backend").unwrap();
        let key = JobKey::owned(&owner, "sword-1");
        assert_eq!(key.stored(), "arn:aws:iam::123456789012:role/game-backend#sword-1");
        assert_eq!(JobKey::from_stored(&key.stored(), Some(owner.clone())), key);
        assert_ne!(key.stored(), JobKey::unowned("sword-1").stored());
        assert_eq!(JobKey::from_stored("sword-1", None), JobKey::unowned("sword-1"));
    }
}
