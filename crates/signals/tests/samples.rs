//! Every sample in `events/` is classified as its hand-written expectation in `events/expected/` says.

use std::path::{Path, PathBuf};

use gameforge_localaws::tools;

use gameforge_contract::{ControlCommand, Message, Signal};
use serde_json::Value;

fn events_dir() -> PathBuf {
    tools::repo_root().join("events")
}

/// The single-event samples, as paths relative to `events/`.
fn samples() -> Vec<PathBuf> {
    tools::event_samples().into_iter().map(|p| p.strip_prefix(events_dir()).unwrap().to_path_buf()).collect()
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn classify(path: &Path) -> Signal {
    gameforge_signals::classify_json(&std::fs::read(events_dir().join(path)).unwrap())
        .unwrap_or_else(|e| panic!("{} is not an event: {e}", path.display()))
}

#[test]
fn every_sample_is_classified_as_expected() {
    let samples = samples();
    assert!(samples.len() >= 25, "samples went missing: {}", samples.len());
    let mut mismatches = Vec::new();
    for sample in &samples {
        let expected_path = events_dir().join("expected").join(sample);
        assert!(expected_path.exists(), "{} has no expectation", sample.display());
        let actual = serde_json::to_value(classify(sample)).unwrap();
        for (field, want) in read_json(&expected_path).as_object().unwrap() {
            let got = actual.get(field).unwrap_or(&Value::Null);
            if got != want {
                mismatches.push(format!("{}: {field} = {got}, expected {want}", sample.display()));
            }
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

#[test]
fn every_expectation_has_its_sample() {
    let root = events_dir().join("expected");
    for expected in tools::json_files(&root) {
        let sample = events_dir().join(expected.strip_prefix(&root).unwrap());
        assert!(sample.exists(), "{} expects a sample that does not exist", expected.display());
    }
}

#[test]
fn every_classification_satisfies_the_signal_schema() {
    for sample in samples() {
        let signal = classify(&sample);
        signal.validate().unwrap_or_else(|e| panic!("{}: {e}", sample.display()));
        assert_eq!(Signal::from_json(signal.to_json().as_bytes()).unwrap(), signal);
    }
}

#[test]
fn control_jobs_carry_one_offering_or_instance_each() {
    let now = "2026-11-27T12:00:00Z".parse().unwrap();
    for sample in samples() {
        let signal = classify(&sample);
        let jobs = gameforge_signals::control_jobs(&signal, "sdxl", now);
        let expected = match &signal {
            Signal::CapacityUnavailable(s) => 1 + s.other_offerings.len(),
            Signal::Interruption(n) => 1 + n.other_instance_ids.len(),
            Signal::Ignored(_) => 0,
        };
        assert_eq!(jobs.len(), expected, "{}", sample.display());
        let mut ids: Vec<_> = jobs.iter().map(|j| j.control_id.clone()).collect();
        ids.dedup();
        assert_eq!(ids.len(), jobs.len(), "{}: control ids repeat", sample.display());
        for job in &jobs {
            job.validate().unwrap_or_else(|e| panic!("{}: {e}", sample.display()));
            let event_id = match &job.command {
                ControlCommand::RecordCapacityFailure { shortage } => &shortage.event_id,
                ControlCommand::HandleInterruption { notice } => &notice.event_id,
                other => panic!("a signal never asks for {other:?}"),
            };
            assert_eq!(event_id, signal.event_id());
        }
        // The same event yields the same ids, whenever it is processed.
        let again = gameforge_signals::control_jobs(&signal, "sdxl", now + chrono::Duration::hours(1));
        assert_eq!(
            again.iter().map(|j| &j.control_id).collect::<Vec<_>>(),
            jobs.iter().map(|j| &j.control_id).collect::<Vec<_>>()
        );
    }
}

#[test]
fn sqs_batches_wrap_the_samples_verbatim() {
    let samples: Vec<Value> = samples().iter().map(|p| read_json(&events_dir().join(p))).collect();
    let mut malformed = 0;
    for batch in tools::event_batches() {
        let records = read_json(&batch)["Records"].as_array().unwrap().clone();
        assert!(!records.is_empty());
        for record in records {
            assert_eq!(record["eventSource"], "aws:sqs");
            let body = record["body"].as_str().unwrap();
            match serde_json::from_str::<Value>(body) {
                Ok(event) => assert!(samples.contains(&event), "{}: a body that is no sample", batch.display()),
                Err(_) => {
                    malformed += 1;
                    assert!(gameforge_signals::classify_json(body.as_bytes()).is_err());
                }
            }
        }
    }
    assert_eq!(malformed, 1, "exactly one deliberately malformed record");
}
