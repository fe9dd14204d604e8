//! The harness itself: the emulator starts, answers through the injector, resets, and never outlives its owner.

use std::time::Duration;

use gameforge_localaws::Emulator;

fn alive(pid: u32) -> bool {
    // A zombie has given up its resources; only a running process counts.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| !stat.rsplit(')').next().unwrap_or_default().trim_start().starts_with('Z'))
        .unwrap_or(false)
}

fn wait_dead(pid: u32) -> bool {
    for _ in 0..100 {
        if !alive(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[tokio::test]
async fn answers_through_the_injector_and_resets() {
    let emulator = Emulator::start().unwrap();
    let sqs = aws_sdk_sqs::Client::new(&emulator.sdk_config().await);
    let url = sqs.create_queue().queue_name("harness").send().await.unwrap().queue_url.unwrap();
    assert!(url.starts_with(&emulator.endpoint()), "queue URLs point back through the injector: {url}");
    sqs.send_message().queue_url(&url).message_body("hello").send().await.unwrap();
    assert_eq!(emulator.faults().count("sqs", "SendMessage"), 1);

    emulator.reset().unwrap();
    let queues = sqs.list_queues().send().await.unwrap();
    assert!(queues.queue_urls().is_empty(), "reset wipes every resource");
    assert!(emulator.faults().requests().len() <= 1, "reset forgets the request log");
}

#[test]
fn stops_the_emulator_on_drop() {
    let emulator = Emulator::start().unwrap();
    let pid = emulator.moto_pid();
    assert!(alive(pid));
    drop(emulator);
    assert!(wait_dead(pid), "moto {pid} outlived its emulator");
}

#[test]
fn stops_the_emulator_when_a_test_panics() {
    let (tx, rx) = std::sync::mpsc::channel();
    let outcome = std::panic::catch_unwind(move || {
        let emulator = Emulator::start().unwrap();
        tx.send(emulator.moto_pid()).unwrap();
        panic!("a failing test");
    });
    assert!(outcome.is_err());
    let pid = rx.recv().unwrap();
    assert!(wait_dead(pid), "moto {pid} outlived a panicking test");
}

/// Run by `stops_the_emulator_when_its_process_is_killed` in a child process, which is then SIGKILLed: no
/// destructor runs, so only the emulator's own watch on its parent can stop it.
#[test]
#[ignore = "helper, started by another test"]
fn helper_holds_an_emulator_until_killed() {
    if std::env::var_os("GAMEFORGE_HELPER").is_none() {
        return;
    }
    let emulator = Emulator::start().unwrap();
    println!("moto-pid {}", emulator.moto_pid());
    std::thread::sleep(Duration::from_secs(120));
}

#[test]
fn stops_the_emulator_when_its_process_is_killed() {
    use std::io::BufRead;
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "helper_holds_an_emulator_until_killed", "--ignored", "--nocapture", "--test-threads=1"])
        .env("GAMEFORGE_HELPER", "1")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let pid: u32 = stdout
        .lines()
        .map_while(Result::ok)
        // libtest prints the test's name on the same line.
        .find_map(|line| line.split("moto-pid ").nth(1).map(|p| p.trim().parse().unwrap()))
        .expect("the helper reports its emulator");
    assert!(alive(pid));
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(wait_dead(pid), "moto {pid} outlived a killed test process");
}
