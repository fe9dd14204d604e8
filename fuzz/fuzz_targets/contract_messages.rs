//! Any bytes offered as a generation job, a result, a control job or a status report: parsing never panics, and
//! whatever it accepts passes validation and survives a round trip unchanged (what the worker, the submit
//! endpoint and the executor rely on before acting on a message).

#![no_main]

use gameforge_contract::{ControlJob, GenerationJob, JobResult, JobStatusReport, Message};
use libfuzzer_sys::fuzz_target;

fn holds<M: Message + PartialEq + std::fmt::Debug>(data: &[u8]) {
    let Ok(message) = M::from_json(data) else { return };
    if let Err(e) = message.validate() {
        panic!("accepted but invalid: {e}\n{}", message.to_json());
    }
    let again = M::from_json(message.to_json().as_bytes()).expect("an accepted message parses back");
    assert_eq!(again, message);
}

fuzz_target!(|data: &[u8]| {
    holds::<GenerationJob>(data);
    holds::<JobResult>(data);
    holds::<ControlJob>(data);
    holds::<JobStatusReport>(data);
});
