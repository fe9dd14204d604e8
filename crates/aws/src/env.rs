//! Reading a function's configuration from its environment, naming every missing or invalid variable at once.

use std::time::Duration;

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
        (self.lookup)(name).filter(|v| !v.trim().is_empty())
    }

    /// A whole number of seconds, `default` when unset; recorded as invalid otherwise.
    pub fn seconds(&mut self, name: &str, default: u64) -> Duration {
        match (self.lookup)(name) {
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
}
