//! Reading a binary's configuration from its environment, naming every missing or invalid variable at once.
//!
//! Every setting of ours is `GAMEFORGE_…` in every binary (AWS's own settings keep AWS's names); the names some
//! binaries read before that ([`RENAMED`]) are still accepted, with a warning, so that a deployment made with an
//! older template keeps working until it is updated.

use std::time::Duration;

/// `(name, former name)`: every setting that was read under another name.
pub const RENAMED: &[(&str, &str)] = &[
    ("GAMEFORGE_JOB_QUEUE_URL", "JOB_QUEUE_URL"),
    ("GAMEFORGE_JOBS_TABLE", "JOBS_TABLE"),
    ("GAMEFORGE_LEDGER_TABLE", "LEDGER_TABLE"),
    ("GAMEFORGE_RETRY_QUEUE_URL", "RETRY_QUEUE_URL"),
    ("GAMEFORGE_CONTROL_DLQ_URL", "CONTROL_DLQ_URL"),
    ("GAMEFORGE_CONTROL_QUEUE_URL", "CONTROL_QUEUE_URL"),
    ("GAMEFORGE_ALERT_BUS", "ALERT_BUS"),
    ("GAMEFORGE_SIGNALS_QUEUE_URL", "SIGNALS_QUEUE_URL"),
    ("GAMEFORGE_SIGNALS_DLQ_URL", "SIGNALS_DLQ_URL"),
    ("GAMEFORGE_SIGNAL_DEDUP_TABLE", "SIGNAL_DEDUP_TABLE"),
    ("GAMEFORGE_SIGNAL_CLAIM_LEASE_SECONDS", "SIGNAL_CLAIM_LEASE_SECONDS"),
    ("GAMEFORGE_SIGNAL_DEDUP_RETENTION_SECONDS", "SIGNAL_DEDUP_RETENTION_SECONDS"),
    ("GAMEFORGE_RATE_LIMIT_TABLE", "RATE_LIMIT_TABLE"),
    ("GAMEFORGE_RATE_LIMIT_PER_SECOND", "RATE_LIMIT_PER_SECOND"),
    ("GAMEFORGE_RATE_LIMIT_BURST", "RATE_LIMIT_BURST"),
    ("GAMEFORGE_MAX_BODY_BYTES", "MAX_BODY_BYTES"),
    ("GAMEFORGE_OUTPUT_PREFIX", "OUTPUT_PREFIX"),
    ("GAMEFORGE_OUTPUT_PREFIX", "GAMEFORGE_OUTPUT"),
    ("GAMEFORGE_DEFAULT_MODEL", "DEFAULT_MODEL"),
    ("GAMEFORGE_JOB_RETENTION_DAYS", "JOB_RETENTION_DAYS"),
    ("GAMEFORGE_RESULT_EVENT_BUS", "RESULT_EVENT_BUS"),
    ("GAMEFORGE_HEALTH_ADDR", "HEALTH_ADDR"),
    ("GAMEFORGE_IMDS_POLL_MS", "IMDS_POLL_MS"),
    ("GAMEFORGE_VISIBILITY_SECONDS", "VISIBILITY_SECONDS"),
    ("GAMEFORGE_RECEIVE_WAIT_SECONDS", "RECEIVE_WAIT_SECONDS"),
    ("GAMEFORGE_STOP_TIMEOUT_SECONDS", "STOP_TIMEOUT_SECONDS"),
    ("GAMEFORGE_STOP_MARGIN_SECONDS", "STOP_MARGIN_SECONDS"),
    ("GAMEFORGE_PROGRESS_EVERY", "PROGRESS_EVERY"),
    ("AWS_EC2_METADATA_SERVICE_ENDPOINT", "IMDS_ENDPOINT"),
];

/// `name`'s value: under `name`, else under a former name (with a warning naming both). Blank is unset.
pub fn lookup_renamed(lookup: &impl Fn(&str) -> Option<String>, name: &str) -> Option<String> {
    let set = |n: &str| lookup(n).filter(|v| !v.trim().is_empty());
    set(name).or_else(|| {
        RENAMED.iter().filter(|(new, _)| *new == name).find_map(|(_, old)| {
            let value = set(old)?;
            tracing::warn!(old = %old, new = %name, "{old} is a former name: set {name} instead");
            Some(value)
        })
    })
}

/// `command` (and its subcommands) reading each setting [`set_under_former_names`] finds under its former name,
/// and those settings, to [`warn_former_names`] once logging is set up.
#[cfg(feature = "cli")]
pub fn with_former_names(command: clap::Command) -> (clap::Command, Vec<(&'static str, &'static str)>) {
    let renamed = set_under_former_names(|name| std::env::var(name).ok());
    if renamed.is_empty() {
        return (command, renamed);
    }
    fn adopt(command: clap::Command, renamed: &[(&'static str, &'static str)]) -> clap::Command {
        command
            .mut_args(|arg| {
                let former = arg
                    .get_env()
                    .and_then(|env| renamed.iter().find(|(new, _)| env == std::ffi::OsStr::new(new)))
                    .map(|(_, old)| *old);
                match former {
                    Some(old) => arg.env(old),
                    None => arg,
                }
            })
            .mut_subcommands(|sub| adopt(sub, renamed))
    }
    (adopt(command, &renamed), renamed)
}

pub fn warn_former_names(renamed: &[(&str, &str)]) {
    for (new, old) in renamed {
        tracing::warn!(old = %old, new = %new, "{old} is a former name: set {new} instead");
    }
}

/// The settings set only under a former name, as `(name, former name)`: for a command-line parser that reads the
/// environment itself, to read the former name for them.
pub fn set_under_former_names(lookup: impl Fn(&str) -> Option<String>) -> Vec<(&'static str, &'static str)> {
    let set = |n: &str| lookup(n).is_some_and(|v| !v.trim().is_empty());
    let mut found: Vec<(&str, &str)> = Vec::new();
    for (new, old) in RENAMED {
        if !set(new) && set(old) && !found.iter().any(|(n, _)| n == new) {
            found.push((new, old));
        }
    }
    found
}

/// Every missing or invalid variable of a configuration, named at once.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("missing or invalid environment: {}", .0.join("; "))]
pub struct SettingsError(pub Vec<String>);

pub struct EnvReader<F> {
    lookup: F,
    problems: Vec<String>,
}

impl<F> std::fmt::Debug for EnvReader<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnvReader").field("problems", &self.problems).finish_non_exhaustive()
    }
}

impl<F: Fn(&str) -> Option<String>> EnvReader<F> {
    pub fn new(lookup: F) -> Self {
        Self { lookup, problems: Vec::new() }
    }

    /// A variable that must be set and not blank; recorded as missing otherwise.
    pub fn required(&mut self, name: &str) -> String {
        match self.optional(name) {
            Some(value) => value,
            None => {
                self.problems.push(format!("{name} is missing"));
                String::new()
            }
        }
    }

    pub fn optional(&self, name: &str) -> Option<String> {
        lookup_renamed(&self.lookup, name)
    }

    /// A whole number of seconds, `default` when unset; recorded as invalid otherwise.
    pub fn seconds(&mut self, name: &str, default: u64) -> Duration {
        match self.optional(name) {
            None => Duration::from_secs(default),
            Some(value) => value.trim().parse().map(Duration::from_secs).unwrap_or_else(|_| {
                self.problems.push(format!("{name} is not a number of seconds"));
                Duration::from_secs(default)
            }),
        }
    }

    pub fn problem(&mut self, problem: impl Into<String>) {
        self.problems.push(problem.into());
    }

    /// Every problem found, in the order found.
    pub fn finish(self) -> Result<(), SettingsError> {
        if self.problems.is_empty() { Ok(()) } else { Err(SettingsError(self.problems)) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_every_problem() {
        let mut env = EnvReader::new(|name| match name {
            "SET" => Some("value".into()),
            "BLANK" => Some("  ".into()),
            "LEASE" => Some("soon".into()),
            _ => None,
        });
        assert_eq!(env.required("SET"), "value");
        env.required("BLANK");
        env.required("ABSENT");
        assert_eq!(env.seconds("LEASE", 30), Duration::from_secs(30));
        assert_eq!(env.seconds("UNSET", 7), Duration::from_secs(7));
        assert_eq!(
            env.finish().unwrap_err().0,
            vec!["BLANK is missing", "ABSENT is missing", "LEASE is not a number of seconds"]
        );
    }

    #[test]
    fn a_former_name_is_read_when_the_name_is_unset_and_never_wins() {
        let env = EnvReader::new(|name| match name {
            "JOB_QUEUE_URL" => Some("old".into()),
            "LEDGER_TABLE" => Some("old".into()),
            "GAMEFORGE_LEDGER_TABLE" => Some("new".into()),
            "GAMEFORGE_OUTPUT" => Some("s3://b/p".into()),
            _ => None,
        });
        assert_eq!(env.optional("GAMEFORGE_JOB_QUEUE_URL").as_deref(), Some("old"));
        assert_eq!(env.optional("GAMEFORGE_LEDGER_TABLE").as_deref(), Some("new"));
        assert_eq!(env.optional("GAMEFORGE_OUTPUT_PREFIX").as_deref(), Some("s3://b/p"));
        assert_eq!(env.optional("GAMEFORGE_JOBS_TABLE"), None);
        let lookup = |name: &str| (name == "JOB_QUEUE_URL" || name == "GAMEFORGE_LEDGER_TABLE").then(|| "x".into());
        assert_eq!(set_under_former_names(lookup), vec![("GAMEFORGE_JOB_QUEUE_URL", "JOB_QUEUE_URL")]);
    }

    #[test]
    fn every_setting_is_ours_or_aws_and_each_former_name_is_another_name() {
        for (new, old) in RENAMED {
            assert!(new.starts_with("GAMEFORGE_") || new.starts_with("AWS_"), "{new}");
            assert_ne!(new, old);
            assert!(!RENAMED.iter().any(|(n, _)| n == old), "{old} is a current name too");
        }
    }
}
