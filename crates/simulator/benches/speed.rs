//! Simulator speed: simulated hours per wall-clock second on the story scenario (3 simulated hours, a decision
//! every minute). Run: `cargo bench -p gameforge-simulator --bench speed`.

use std::path::PathBuf;
use std::time::Instant;

fn main() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../infra/scenarios/shortage-then-recovery.json");
    let loaded = gameforge_simulator::load(&path).expect("scenario");
    let hours = loaded.scenario.duration.0.as_secs_f64() / 3600.0;
    let mut lines = 0usize;
    gameforge_simulator::run(&loaded, |_| {});
    let runs = 20;
    let started = Instant::now();
    for _ in 0..runs {
        gameforge_simulator::run(&loaded, |_| lines += 1);
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{} runs of {hours} simulated hours in {seconds:.3} s: {:.0} simulated hours per second ({:.1} ms per run, {} lines per run)",
        runs,
        runs as f64 * hours / seconds,
        seconds * 1000.0 / runs as f64,
        lines / runs
    );
}
