//! SDK configuration. Throttling (`ThrottlingException`, `ProvisionedThroughputExceededException`,
//! `RequestLimitExceeded`), 5xx answers and attempts that time out are retried by the SDK's standard strategy:
//! exponential backoff with full jitter, up to `max_attempts`.

use std::time::Duration;

use aws_config::{BehaviorVersion, ConfigLoader, SdkConfig};
use aws_runtime::env_config::file::EnvConfigFiles;
use aws_smithy_types::retry::RetryConfig;
use aws_smithy_types::timeout::TimeoutConfig;
use aws_types::os_shim_internal::{Env, Fs};

/// Retry and timeout settings, read from `GAMEFORGE_AWS_*` variables so that tests and operators can tune
/// them without a rebuild.
#[derive(Debug, Clone, PartialEq)]
pub struct AwsSettings {
    pub max_attempts: u32,
    /// AWS's `adaptive` retry mode (client-side rate limiting on throttling) instead of `standard`.
    pub adaptive: bool,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// One HTTP attempt; a hung attempt is abandoned and retried.
    pub attempt_timeout: Duration,
    /// The whole call, retries included.
    pub operation_timeout: Duration,
}

impl Default for AwsSettings {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            adaptive: false,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(5),
            attempt_timeout: Duration::from_secs(10),
            operation_timeout: Duration::from_secs(30),
        }
    }
}

impl AwsSettings {
    /// The defaults, overridden by `GAMEFORGE_AWS_MAX_ATTEMPTS` (or AWS's own `AWS_MAX_ATTEMPTS`),
    /// `AWS_RETRY_MODE` (`standard`, `adaptive`; `legacy` reads as `standard`), `GAMEFORGE_AWS_INITIAL_BACKOFF_MS`,
    /// `GAMEFORGE_AWS_MAX_BACKOFF_MS`, `GAMEFORGE_AWS_ATTEMPT_TIMEOUT_MS` and `GAMEFORGE_AWS_OPERATION_TIMEOUT_MS`.
    pub fn from_env() -> Self {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let defaults = Self::default();
        let millis = |name: &str, default: Duration| {
            lookup(name).and_then(|v| v.trim().parse::<u64>().ok()).map(Duration::from_millis).unwrap_or(default)
        };
        Self {
            max_attempts: ["GAMEFORGE_AWS_MAX_ATTEMPTS", "AWS_MAX_ATTEMPTS"]
                .iter()
                .find_map(|name| lookup(name).and_then(|v| v.trim().parse().ok()).filter(|n| *n >= 1))
                .unwrap_or(defaults.max_attempts),
            adaptive: lookup("AWS_RETRY_MODE").is_some_and(|mode| mode.trim().eq_ignore_ascii_case("adaptive")),
            initial_backoff: millis("GAMEFORGE_AWS_INITIAL_BACKOFF_MS", defaults.initial_backoff),
            max_backoff: millis("GAMEFORGE_AWS_MAX_BACKOFF_MS", defaults.max_backoff),
            attempt_timeout: millis("GAMEFORGE_AWS_ATTEMPT_TIMEOUT_MS", defaults.attempt_timeout),
            operation_timeout: millis("GAMEFORGE_AWS_OPERATION_TIMEOUT_MS", defaults.operation_timeout),
        }
    }

    pub fn retry_config(&self) -> RetryConfig {
        let mode = if self.adaptive { RetryConfig::adaptive() } else { RetryConfig::standard() };
        mode.with_max_attempts(self.max_attempts)
            .with_initial_backoff(self.initial_backoff)
            .with_max_backoff(self.max_backoff)
    }

    pub fn timeout_config(&self) -> TimeoutConfig {
        TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(3))
            .operation_attempt_timeout(self.attempt_timeout)
            .operation_timeout(self.operation_timeout)
            .build()
    }

    /// Applies these settings to a loader; region, credentials and endpoint come from wherever the loader
    /// finds them (the environment on Lambda and ECS, `AWS_ENDPOINT_URL` against the emulator).
    pub fn apply(&self, loader: ConfigLoader) -> ConfigLoader {
        loader.retry_config(self.retry_config()).timeout_config(self.timeout_config())
    }
}

/// SQS holds a long poll open for up to its wait before answering empty. An attempt timeout shorter than the
/// wait abandons an idle poll, and SQS may still hand that abandoned request a message, which then stays hidden
/// for the queue's visibility timeout with its receive count raised. So a long poll's attempt outlasts its wait by
/// this much.
pub const LONG_POLL_GRACE: Duration = Duration::from_secs(10);

/// Timeouts for one long poll (`ReceiveMessage` with `wait`): apply them to that call with
/// `.customize().config_override(…timeout_config(long_poll_timeouts(wait)))`.
pub fn long_poll_timeouts(wait: Duration) -> TimeoutConfig {
    let attempt = wait + LONG_POLL_GRACE;
    TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(3))
        .operation_attempt_timeout(attempt)
        .operation_timeout(attempt * 3)
        .build()
}

/// The configuration every gameforge binary uses: the environment's region, credentials and endpoint, with
/// the retry and timeout settings above.
pub async fn load() -> SdkConfig {
    load_as(&Caller::default()).await
}

/// Who a command-line tool acts as, where its user said so (`--profile`, `--region`); the environment and the
/// shared config files otherwise, as every AWS tool reads them.
#[derive(Debug, Clone, Default)]
pub struct Caller {
    pub profile: Option<String>,
    pub region: Option<String>,
}

/// [`load`] for `caller`. AWS's standard retry settings (`AWS_MAX_ATTEMPTS`, `AWS_RETRY_MODE`, else the profile's
/// `max_attempts` and `retry_mode`) are honoured; the project's defaults apply only where none is set.
pub async fn load_as(caller: &Caller) -> SdkConfig {
    let profile = profile_settings(&Fs::real(), &Env::real(), caller.profile.as_deref()).await;
    let settings = AwsSettings::from_lookup(|name| std::env::var(name).ok().or_else(|| profile(name)));
    let mut loader = settings.apply(aws_config::defaults(BehaviorVersion::latest()));
    if let Some(profile) = &caller.profile {
        loader = loader.profile_name(profile);
    }
    if let Some(region) = &caller.region {
        loader = loader.region(aws_config::Region::new(region.clone()));
    }
    loader.load().await
}

/// The selected profile's retry settings, under the environment names they stand in for; nothing when there are
/// no shared config files (on Lambda, in a container) or they cannot be read (the loader reports those itself).
async fn profile_settings(fs: &Fs, env: &Env, profile: Option<&str>) -> impl Fn(&str) -> Option<String> + use<> {
    let chosen = profile.map(|p| std::borrow::Cow::Owned(p.to_owned()));
    let set = aws_config::profile::load(fs, env, &EnvConfigFiles::default(), chosen).await.ok();
    move |name: &str| {
        let key = match name {
            "AWS_MAX_ATTEMPTS" => "max_attempts",
            "AWS_RETRY_MODE" => "retry_mode",
            _ => return None,
        };
        set.as_ref().and_then(|s| s.get(key)).map(str::to_owned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_profiles_retry_settings_apply_where_the_environment_sets_none() {
        let fs = Fs::from_slice(&[(
            "/home/u/.aws/config",
            "[default]\nmax_attempts = 7\n[profile batch]\nmax_attempts = 9\nretry_mode = adaptive\n",
        )]);
        let env = Env::from_slice(&[("HOME", "/home/u")]);
        let default = profile_settings(&fs, &env, None).await;
        assert_eq!(AwsSettings::from_lookup(&default).max_attempts, 7);
        let batch = profile_settings(&fs, &env, Some("batch")).await;
        let settings = AwsSettings::from_lookup(&batch);
        assert_eq!((settings.max_attempts, settings.adaptive), (9, true));
        // The environment wins over the profile, and ours over AWS's.
        let both = |name: &str| (name == "AWS_MAX_ATTEMPTS").then(|| "3".to_owned()).or_else(|| batch(name));
        assert_eq!(AwsSettings::from_lookup(both).max_attempts, 3);
        let none = profile_settings(&Fs::from_slice(&[]), &env, None).await;
        assert_eq!(AwsSettings::from_lookup(&none), AwsSettings::default());
    }

    #[test]
    fn environment_overrides_defaults_and_ignores_nonsense() {
        let settings = AwsSettings::from_lookup(|name| match name {
            "GAMEFORGE_AWS_MAX_ATTEMPTS" => Some("8".into()),
            "GAMEFORGE_AWS_INITIAL_BACKOFF_MS" => Some("50".into()),
            "GAMEFORGE_AWS_ATTEMPT_TIMEOUT_MS" => Some("soon".into()),
            _ => None,
        });
        assert_eq!(settings.max_attempts, 8);
        assert_eq!(settings.initial_backoff, Duration::from_millis(50));
        assert_eq!(settings.attempt_timeout, AwsSettings::default().attempt_timeout);
        assert_eq!(settings.retry_config().max_attempts(), 8);
    }

    #[test]
    fn a_long_poll_attempt_outlasts_its_wait() {
        for wait in [Duration::ZERO, Duration::from_secs(1), Duration::from_secs(20)] {
            let timeouts = long_poll_timeouts(wait);
            assert_eq!(timeouts.operation_attempt_timeout(), Some(wait + LONG_POLL_GRACE));
            assert!(timeouts.operation_timeout().unwrap() > wait + LONG_POLL_GRACE);
        }
        // The default attempt timeout is shorter than SQS's longest wait: that is why long polls get their own.
        assert!(AwsSettings::default().attempt_timeout < Duration::from_secs(20));
    }

    #[test]
    fn aws_own_retry_variables_are_honoured_and_ours_win() {
        let aws = |name: &str| match name {
            "AWS_MAX_ATTEMPTS" => Some("3".into()),
            "AWS_RETRY_MODE" => Some("adaptive".into()),
            _ => None,
        };
        let settings = AwsSettings::from_lookup(aws);
        assert_eq!((settings.max_attempts, settings.adaptive), (3, true));
        assert_eq!(settings.retry_config().mode(), aws_smithy_types::retry::RetryMode::Adaptive);
        let ours =
            AwsSettings::from_lookup(
                |name| {
                    if name == "GAMEFORGE_AWS_MAX_ATTEMPTS" { Some("7".into()) } else { aws(name) }
                },
            );
        assert_eq!(ours.max_attempts, 7);
        let legacy = AwsSettings::from_lookup(|name| (name == "AWS_RETRY_MODE").then(|| "legacy".into()));
        assert_eq!(legacy.retry_config().mode(), aws_smithy_types::retry::RetryMode::Standard);
    }

    #[test]
    fn zero_attempts_falls_back_to_the_default() {
        let settings = AwsSettings::from_lookup(|name| (name == "GAMEFORGE_AWS_MAX_ATTEMPTS").then(|| "0".into()));
        assert_eq!(settings.max_attempts, AwsSettings::default().max_attempts);
    }
}
