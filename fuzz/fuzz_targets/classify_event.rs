//! Any bytes offered as an EventBridge event: classification never panics; what it classifies is a valid signal,
//! and the control jobs it asks for are valid control jobs that survive a round trip.

#![no_main]

use gameforge_contract::{ControlJob, Message};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(signal) = gameforge_signals::classify_json(data) else { return };
    if let Err(e) = signal.validate() {
        panic!("classified into an invalid signal: {e}\n{}", signal.to_json());
    }
    let now = chrono::DateTime::from_timestamp(1_795_680_000, 0).expect("a valid instant");
    for job in gameforge_signals::control_jobs(&signal, "sdxl", now) {
        if let Err(e) = job.validate() {
            panic!("an invalid control job: {e}\n{}", job.to_json());
        }
        let again = ControlJob::from_json(job.to_json().as_bytes()).expect("a valid control job parses back");
        assert_eq!(again, job);
    }
});
