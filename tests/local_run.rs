//! `gameforge-local samples`, end to end: every sample through EventBridge, the rules, the signals queue and
//! the `on-signal` binary, printed as it is classified, and nothing left running.

use std::path::PathBuf;
use std::process::Command;

use support::binary;

mod support;

/// The emulator's process id, as the run reported it.
fn moto_pid(stdout: &str) -> u32 {
    let line = stdout.lines().find(|l| l.contains("emulator (moto, pid ")).expect("emulator line");
    line.split("pid ").nth(1).and_then(|rest| rest.split(',').next()).and_then(|pid| pid.parse().ok()).expect("pid")
}

fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| !stat.rsplit(')').next().unwrap_or_default().trim_start().starts_with('Z'))
        .unwrap_or(false)
}

#[test]
fn the_samples_run_classifies_every_sample_and_exits_cleanly() {
    let output = Command::new(binary("gameforge-local")).arg("samples").output().expect("run gameforge-local");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));

    let signals = stdout.lines().filter(|l| l.contains("→ signal ")).count();
    let controls = stdout.lines().filter(|l| l.contains("→ control ")).count();
    // 25 of the 30 samples pass the rules (a running task, an instance starting, a steady service, a health
    // issue of another service and an S3 event are filtered out by the rules themselves); three of those are
    // ignored by the classifier, and the others ask for 24 control jobs (a fleet call with two failed
    // overrides and a retirement of two instances count twice).
    assert_eq!(signals, 25, "{stdout}");
    assert_eq!(controls, 24, "{stdout}");
    assert!(
        stdout.contains(
            "settled: 24 control job(s) waiting on gameforge-control.fifo for the executor, 0 signal(s) dead-lettered"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("capacity_unavailable g5.xlarge in us-east-1a (spot), cause insufficient_capacity, from fleet"),
        "{stdout}"
    );
    assert!(stdout.contains("interruption spot_interruption of i-0b662ef9931388ba0"), "{stdout}");
}

#[test]
fn the_samples_run_publishes_only_the_files_it_is_given() {
    let event = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../events/ec2/rebalance-recommendation.json");
    let output =
        Command::new(binary("gameforge-local")).arg("samples").arg(&event).output().expect("run gameforge-local");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains("publishing 1 events"), "{stdout}");
    assert!(stdout.contains("settled: 1 control job(s)"), "{stdout}");
    let pid = moto_pid(&stdout);
    for _ in 0..50 {
        if !running(pid) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("the emulator (pid {pid}) outlived the run");
}
