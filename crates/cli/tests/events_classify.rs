//! `gameforge events classify` on every file in `events/` and on garbage.

use std::io::Write;
use std::path::PathBuf;

use gameforge_localaws::tools;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

fn events_dir() -> PathBuf {
    tools::repo_root().join("events")
}

fn classify(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gameforge"))
        .args(["events", "classify"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut pipe = child.stdin.take().unwrap();
    pipe.write_all(stdin.unwrap_or_default()).unwrap();
    drop(pipe);
    child.wait_with_output().unwrap()
}

#[test]
fn every_event_sample_prints_one_classification_and_exits_zero() {
    let samples = tools::event_samples();
    assert!(samples.len() >= 25);
    for sample in samples {
        let output = classify(&[sample.to_str().unwrap()], None);
        assert!(output.status.success(), "{}: {}", sample.display(), String::from_utf8_lossy(&output.stderr));
        let stdout = String::from_utf8(output.stdout).unwrap();
        assert_eq!(stdout.lines().count(), 1, "exactly one line of JSON");
        let printed: Value = serde_json::from_str(&stdout).unwrap();
        let object = printed.as_object().unwrap();
        let order: Vec<_> =
            ["\"kind\"", "\"event_id\"", "\"region\""].iter().map(|k| stdout.find(k).unwrap()).collect();
        assert!(stdout.starts_with("{\"kind\":") && order.is_sorted(), "kind, event_id, region lead: {stdout}");
        let relative = sample.strip_prefix(events_dir()).unwrap();
        let expected: Value =
            serde_json::from_slice(&std::fs::read(events_dir().join("expected").join(relative)).unwrap()).unwrap();
        for (field, want) in expected.as_object().unwrap() {
            assert_eq!(object.get(field).unwrap_or(&Value::Null), want, "{}: {field}", sample.display());
        }
    }
}

#[test]
fn reads_standard_input() {
    let event = std::fs::read(events_dir().join("ec2/spot-interruption-warning-terminate.json")).unwrap();
    let output = classify(&["-"], Some(&event));
    assert!(output.status.success());
    let printed: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(printed["kind"], "interruption");
    assert_eq!(printed["deadline"], "2026-11-27T10:04:03Z");
}

#[test]
fn an_sqs_batch_is_not_an_event_and_says_what_to_do() {
    for batch in tools::event_batches() {
        let output = classify(&[batch.to_str().unwrap()], None);
        assert_eq!(output.status.code(), Some(2));
        assert!(output.stdout.is_empty());
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert_eq!(stderr.lines().count(), 1);
        assert!(stderr.contains("SQS batch"), "{stderr}");
    }
}

/// What `classify` says about a payload that is not an event: exit 2, nothing on stdout, one line on stderr.
fn refusal(payload: &[u8]) -> String {
    let output = classify(&["-"], Some(payload));
    assert_eq!(output.status.code(), Some(2));
    assert!(output.stdout.is_empty());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    stderr
}

#[test]
fn an_sns_notification_is_named_as_one_and_not_as_an_sqs_batch() {
    let event = std::fs::read_to_string(events_dir().join("ec2/spot-interruption-warning-terminate.json")).unwrap();
    let notification = serde_json::json!({"Records": [{
        "EventSource": "aws:sns",
        "EventVersion": "1.0",
        "EventSubscriptionArn": "arn:aws:sns:us-east-1:123456789012:gameforge-signals:2bcfbf39-05c3-41de-beaa-fcfcc21c8f55",
        "Sns": {"Type": "Notification", "MessageId": "95df01b4-ee98-5cb9-9903-4c221d41eb5e",
                "TopicArn": "arn:aws:sns:us-east-1:123456789012:gameforge-signals", "Message": event},
    }]});
    let stderr = refusal(notification.to_string().as_bytes());
    assert!(stderr.contains("SNS notification") && stderr.contains("Sns.Message"), "{stderr}");
    assert!(!stderr.contains("SQS"), "{stderr}");
}

#[test]
fn put_events_entries_are_named_as_such() {
    let entry = serde_json::json!({
        "Source": "aws.ec2",
        "DetailType": "EC2 Spot Instance Interruption Warning",
        "Detail": "{\"instance-id\":\"i-0b662ef9931388ba0\",\"instance-action\":\"terminate\"}",
        "Resources": ["arn:aws:ec2:us-east-1:123456789012:instance/i-0b662ef9931388ba0"],
    });
    for payload in [serde_json::json!({"Entries": [entry.clone()]}), entry] {
        let stderr = refusal(payload.to_string().as_bytes());
        assert!(stderr.contains("PutEvents"), "{stderr}");
        assert!(!stderr.contains("SQS"), "{stderr}");
    }
}

#[test]
fn records_of_another_service_are_not_called_an_sqs_batch() {
    let s3 = br#"{"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put", "s3": {}}]}"#;
    let stderr = refusal(s3);
    assert!(!stderr.contains("SQS") && !stderr.contains("SNS"), "{stderr}");
}

#[test]
fn garbage_exits_two_with_one_line_on_stderr() {
    for garbage in [
        &b"not json at all"[..],
        b"",
        b"[1, 2, 3]",
        b"{\"detail-type\": \"EC2 Spot Instance Interruption Warning\"}",
        b"{\"source\": \"aws.ec2\", \"id\": \"x\", \"region\": \"us-east-1\"}",
        b"{\"source\": 7, \"detail-type\": \"x\"}",
    ] {
        let output = classify(&["-"], Some(garbage));
        assert_eq!(output.status.code(), Some(2), "{}", String::from_utf8_lossy(garbage));
        assert!(output.stdout.is_empty());
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.starts_with("gameforge: "), "{stderr}");
    }
}

#[test]
fn a_missing_file_is_an_error_but_not_a_classification_verdict() {
    let output = classify(&["/nonexistent/event.json"], None);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8(output.stderr).unwrap().contains("reading /nonexistent/event.json"));
}
