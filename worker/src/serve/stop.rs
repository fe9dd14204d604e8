//! Where a stop comes from: SIGTERM or SIGINT (ECS draining, `docker stop`), or a spot interruption notice in the
//! instance metadata. Each sets the instant the process will be killed.

use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::sync::watch;

use super::imds::Imds;

/// The kill instant `after` from now. A kill more than a year away is a year away: the worker drains the same,
/// and the clock cannot represent every duration a setting or a notice may name.
fn kill_after(after: Duration) -> Instant {
    Instant::now() + after.min(Duration::from_secs(365 * 86_400))
}

/// Sets the kill instant `stop_timeout` after the first SIGTERM or SIGINT.
pub fn on_signals(stop: watch::Sender<Option<Instant>>, stop_timeout: Duration) -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: draining"),
            _ = int.recv() => tracing::info!("SIGINT: draining"),
        }
        let kill = kill_after(stop_timeout);
        stop.send_if_modified(|current| {
            let earlier = current.is_none_or(|c| kill < c);
            if earlier {
                *current = Some(kill);
            }
            earlier
        });
    });
    Ok(())
}

/// Polls `spot/instance-action` every `every`; a notice sets the kill instant to the notice's time.
pub fn on_spot_notice(stop: watch::Sender<Option<Instant>>, imds: Imds, every: Duration) {
    tokio::spawn(async move {
        loop {
            match imds.spot_action().await {
                Ok(Some(action)) => {
                    let left = (action.time - Utc::now()).to_std().unwrap_or(Duration::ZERO);
                    tracing::info!(action = %action.action, time = %action.time, "spot interruption notice: draining");
                    let kill = kill_after(left);
                    stop.send_if_modified(|current| {
                        let earlier = current.is_none_or(|c| kill < c);
                        if earlier {
                            *current = Some(kill);
                        }
                        earlier
                    });
                    return;
                }
                Ok(None) => {}
                Err(e) => tracing::debug!(error = %e, "instance metadata unavailable"),
            }
            tokio::time::sleep(every).await;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kill_beyond_what_the_clock_holds_is_a_year_away_not_a_panic() {
        let before = Instant::now();
        let kill = kill_after(Duration::MAX);
        assert!(kill >= before + Duration::from_secs(365 * 86_400));
        assert!(kill_after(Duration::from_secs(120)) < kill);
    }
}
