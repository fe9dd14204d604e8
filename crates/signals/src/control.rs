use chrono::{DateTime, Utc};
use gameforge_contract::{CONTRACT_VERSION, ControlCommand, ControlJob, Signal};
use sha2::{Digest, Sha256};

/// The control jobs a signal asks for: one per failed offering, one per interrupted instance, none when
/// ignored. Their ids derive from the event id, so a redelivered event yields the same ids (and the FIFO queue
/// drops the copies within its deduplication window).
pub fn control_jobs(signal: &Signal, fleet: &str, now: DateTime<Utc>) -> Vec<ControlJob> {
    let job = |index: usize, command: ControlCommand| ControlJob {
        version: CONTRACT_VERSION,
        control_id: control_id(signal.event_id(), index),
        fleet: fleet.to_owned(),
        emitted_at: now,
        command,
    };
    match signal {
        Signal::CapacityUnavailable(shortage) => shortage
            .offerings()
            .into_iter()
            .enumerate()
            .map(|(index, offering)| {
                let mut one = shortage.clone();
                one.instance_type = offering.instance_type;
                one.availability_zone = offering.availability_zone;
                one.capacity_type = offering.capacity_type;
                one.other_offerings.clear();
                job(index, ControlCommand::RecordCapacityFailure { shortage: one })
            })
            .collect(),
        Signal::Interruption(notice) => notice
            .instance_ids()
            .into_iter()
            .enumerate()
            .map(|(index, instance_id)| {
                let mut one = notice.clone();
                one.instance_id = instance_id;
                one.other_instance_ids.clear();
                job(index, ControlCommand::HandleInterruption { notice: one })
            })
            .collect(),
        Signal::Ignored(_) => Vec::new(),
    }
}

/// `sig-<event id>-<index>` when the event id is short and plain (EventBridge ids are UUIDs); otherwise a
/// digest of it, so the id always fits a FIFO deduplication id.
fn control_id(event_id: &str, index: usize) -> String {
    let plain = event_id.len() <= 96
        && event_id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
    if plain {
        format!("sig-{event_id}-{index}")
    } else {
        let digest = Sha256::digest(event_id.as_bytes());
        format!("sig-h{}-{index}", hex::encode(&digest[..20]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_fit_a_fifo_deduplication_id() {
        assert_eq!(control_id("3e3c153a-8339-4e30-8c35-687ebef853fe", 0), "sig-3e3c153a-8339-4e30-8c35-687ebef853fe-0");
        let odd = control_id(&"x/y ".repeat(100), 3);
        assert!(odd.len() <= 128 && odd.starts_with("sig-h") && odd.ends_with("-3"), "{odd}");
        assert_eq!(odd, control_id(&"x/y ".repeat(100), 3));
    }
}
