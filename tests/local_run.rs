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
    // 31 of the 36 samples pass the rules (a running task, an instance starting, a steady service, a health
    // issue of another service and an S3 event are filtered out by the rules themselves); three of those are
    // ignored by the classifier, and the others ask for 30 control jobs (a fleet call with two failed
    // overrides and a retirement of two instances count twice).
    assert_eq!(signals, 31, "{stdout}");
    assert_eq!(controls, 30, "{stdout}");
    assert!(
        stdout.contains(
            "settled: 30 control job(s) waiting on gameforge-control.fifo for the executor, 0 signal(s) dead-lettered"
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

/// `gameforge-local serve` prints a submit command and a fleet command; run as printed (from the repository root),
/// the first gets an image and the second the fleet it ran on.
#[test]
fn the_submit_command_serve_prints_works_as_printed() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut serve = Command::new(binary("gameforge-local"))
        .arg("serve")
        .current_dir(&root)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run gameforge-local serve");
    let mut lines = BufReader::new(serve.stdout.take().expect("stdout")).lines();
    let mut printed = Vec::new();
    let mut command = None;
    let mut fleet_command = None;
    for line in lines.by_ref() {
        let line = line.expect("serve's output");
        if let Some((_, rest)) = line.split_once("submit a job: ") {
            command = Some(rest.to_owned());
        }
        if let Some((_, rest)) = line.split_once("see the fleet: ") {
            fleet_command = Some(rest.to_owned());
        }
        printed.push(line.clone());
        if line.contains("serving; Ctrl-C stops everything") {
            break;
        }
    }
    // Keep reading, so that serve never blocks on a full pipe.
    let drain = std::thread::spawn(move || lines.map_while(Result::ok).count());
    let command = command.unwrap_or_else(|| panic!("no submit command in {printed:#?}"));
    let out = root.join("out/mine");
    let _ = std::fs::remove_dir_all(&out);
    let submitted = Command::new("bash").arg("-c").arg(&command).current_dir(&root).output().expect("run the command");
    // After a job, the executor has run: the fleet's status shows where it is and what it decided.
    let fleet_command = fleet_command.unwrap_or_else(|| panic!("no fleet command in {printed:#?}"));
    let fleet = Command::new("bash").arg("-c").arg(&fleet_command).current_dir(&root).output().expect("run it");

    // Ctrl-C, as the banner says, and everything stops.
    Command::new("kill").args(["-INT", &serve.id().to_string()]).status().expect("kill -INT");
    let stopped = serve.wait().expect("serve exits");
    drain.join().expect("reader");
    assert!(
        submitted.status.success(),
        "{command}\n{}\n{}",
        String::from_utf8_lossy(&submitted.stdout),
        String::from_utf8_lossy(&submitted.stderr)
    );
    let images: Vec<_> = std::fs::read_dir(&out)
        .map(|entries| {
            entries.filter_map(Result::ok).filter(|e| e.path().extension().is_some_and(|x| x == "png")).collect()
        })
        .unwrap_or_default();
    assert_eq!(images.len(), 1, "{command}: {}", String::from_utf8_lossy(&submitted.stdout));
    let status = String::from_utf8_lossy(&fleet.stdout);
    assert!(fleet.status.success(), "{fleet_command}\n{status}\n{}", String::from_utf8_lossy(&fleet.stderr));
    assert!(status.contains("region     us-east-1 since") && status.contains("launching  "), "{status}");
    assert!(stopped.success(), "serve did not stop cleanly: {stopped}");
    let _ = std::fs::remove_dir_all(&out);
}
