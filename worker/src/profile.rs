//! The profile mode: when on, the model's layers time themselves (convolutions, norms, the attention's stages,
//! and each UNet and VAE block as a whole), each record with its shape, so `benches/profile.rs` can say where a
//! step goes at the real shapes. Off (always, outside that bench) it costs one atomic load per layer.
//!
//! Each record has two times: when the op returned (what the host saw: on a GPU, the time to enqueue) and after
//! the device finished it (the device synchronised before and after, so records do not bleed into each other).

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use candle_core::Device;

static ENABLED: AtomicBool = AtomicBool::new(false);
static RECORDS: Mutex<Vec<Record>> = Mutex::new(Vec::new());

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// `block` for a whole UNet/VAE block (which contains op records), else the op's kind.
    pub kind: &'static str,
    /// The block's name, or the op's shape (`b×c×h×w→…`).
    pub name: String,
    pub returned: Duration,
    pub finished: Duration,
}

/// Turns the profile mode on or off; turning it on forgets what was recorded before.
pub fn enable(on: bool) {
    if on {
        RECORDS.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
    ENABLED.store(on, Ordering::SeqCst);
}

/// Everything recorded since [`enable`], oldest first.
pub fn take() -> Vec<Record> {
    std::mem::take(&mut *RECORDS.lock().unwrap_or_else(|e| e.into_inner()))
}

/// Runs `op`, recording its time under `kind` and `name()` when the profile mode is on.
pub fn time<T>(
    kind: &'static str,
    name: impl FnOnce() -> String,
    device: &Device,
    op: impl FnOnce() -> candle_core::Result<T>,
) -> candle_core::Result<T> {
    if !ENABLED.load(Ordering::Relaxed) {
        return op();
    }
    device.synchronize()?;
    let start = Instant::now();
    let out = op()?;
    let returned = start.elapsed();
    device.synchronize()?;
    let finished = start.elapsed();
    RECORDS.lock().unwrap_or_else(|e| e.into_inner()).push(Record { kind, name: name(), returned, finished });
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    // One test touches the global switch, so parallel tests cannot see each other's records.
    #[test]
    fn records_only_while_on() {
        let cpu = Device::Cpu;
        time("conv", || "off".into(), &cpu, || Ok(())).unwrap();
        enable(true);
        let out = time("conv", || "1×2".into(), &cpu, || Ok(7)).unwrap();
        enable(false);
        time("conv", || "off again".into(), &cpu, || Ok(())).unwrap();
        assert_eq!(out, 7);
        // Other tests' layers may record while the mode is on; only this test's names are looked at.
        let records: Vec<Record> =
            take().into_iter().filter(|r| r.name.contains('×') || r.name.starts_with("off")).collect();
        let ours: Vec<&Record> = records.iter().filter(|r| r.name == "1×2" || r.name.starts_with("off")).collect();
        assert_eq!(ours.len(), 1, "{ours:?}");
        assert_eq!((ours[0].kind, ours[0].name.as_str()), ("conv", "1×2"));
        assert!(ours[0].finished >= ours[0].returned);
    }
}
