//! Choosing how one generation spends memory: full attention and a whole-image decode when they fit the budget
//! (the reference's way, and the fastest), else attention in slices of queries (exact), else the VAE decoded in
//! tiles (the reference's tiled decode: close, not exact); or, when even the most frugal plan cannot fit, a
//! refusal that names the stage, what it needs and the budget.

use std::fmt;

use super::budget::Budget;
use super::estimate::{ConvKernels, ModelShape, Precision};
use crate::attention::Slicing;
use crate::vae::DecodePlan;
use crate::vae::tiling;

/// Below this many scores per slice (8 MiB of them), slicing saves nothing worth its cost: if a plan does not
/// fit with slices this small, something other than the attention is too large.
pub const MIN_SLICE_SCORES: u64 = 1 << 20;
/// The smallest VAE tile tried, in latents per side (128 pixels for SDXL); smaller tiles see too little context
/// for the blended seams to stay invisible.
pub const MIN_TILE_LATENTS: u64 = 16;
/// Latents per side beyond which nothing is estimated (no device holds even one map of that size); it keeps the
/// tile grids small to count.
const MAX_LATENT_SIDE: u64 = 1 << 20;

/// One generation as the planner sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Job {
    pub width: u64,
    pub height: u64,
    /// UNet batch rows: 2 with classifier-free guidance, else 1.
    pub batch: u64,
}

/// What the model and device fix for every job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    pub precision: Precision,
    pub kernels: ConvKernels,
    /// The VAE's own tile size in pixels (its config's `sample_size`: 1024 for SDXL).
    pub default_tile: u64,
    /// A tile size the user asked for (`--vae-tiling`): no larger tile (nor a whole decode above it) is used.
    pub max_tile: Option<u64>,
}

/// How a generation will run, and what it is estimated to need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryPlan {
    pub unet: Slicing,
    pub vae: DecodePlan,
    pub unet_bytes: u64,
    pub vae_bytes: u64,
    pub budget: u64,
}

impl MemoryPlan {
    /// Whether the plan runs exactly as the reference does (no slicing, no tiles).
    pub fn is_full(&self) -> bool {
        self.unet == Slicing::Full && self.vae.attention == Slicing::Full && self.vae.tile.is_none()
    }
}

impl fmt::Display for MemoryPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let slicing = |s: Slicing| match s {
            Slicing::Full => "full attention".to_string(),
            Slicing::MaxScores(n) => format!("attention in slices of at most {n} scores"),
        };
        write!(f, "UNet: {}, about {}; VAE: ", slicing(self.unet), bytes(self.unet_bytes))?;
        match self.vae.tile {
            Some(tile) => write!(f, "{tile}-pixel tiles")?,
            None => write!(f, "whole image")?,
        }
        write!(f, ", {}, about {}; budget {}", slicing(self.vae.attention), bytes(self.vae_bytes), bytes(self.budget))
    }
}

/// The stage of a generation that did not fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Denoising,
    Decoding,
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stage::Denoising => write!(f, "a UNet step"),
            Stage::Decoding => write!(f, "the VAE decode"),
        }
    }
}

/// Why a job cannot run on this device.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "a {width}x{height} image does not fit in memory: {stage} needs about {} at the least ({frugal}), and the \
     memory budget is {} ({budget})",
    bytes(*needed),
    bytes(budget.bytes)
)]
pub struct DoesNotFit {
    pub width: u64,
    pub height: u64,
    pub stage: Stage,
    pub needed: u64,
    pub frugal: String,
    pub budget: Budget,
}

/// A byte count for people: `3.2 GiB`, `512 MiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["bytes", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{n} bytes") } else { format!("{value:.1} {}", UNITS[unit]) }
}

/// The fastest plan that fits `budget`, or the limit that makes the job impossible.
pub fn plan(shape: &ModelShape, job: Job, settings: Settings, budget: &Budget) -> Result<MemoryPlan, DoesNotFit> {
    let f = shape.downscale();
    let latent = (job.height / f, job.width / f);
    let refuse = |stage: Stage, needed: u64, frugal: String| DoesNotFit {
        width: job.width,
        height: job.height,
        stage,
        needed,
        frugal,
        budget: budget.clone(),
    };

    if latent.0 > MAX_LATENT_SIDE || latent.1 > MAX_LATENT_SIDE {
        return Err(refuse(Stage::Denoising, u64::MAX, "more than a million latents a side".into()));
    }
    let unet_bytes = |slicing| shape.unet_step_bytes(latent, job.batch, settings.precision, settings.kernels, slicing);
    let largest = shape.largest_unet_scores(latent, job.batch);
    let (unet, unet_needed) = fastest_fit(largest, budget.bytes, unet_bytes)
        .map_err(|(needed, frugal)| refuse(Stage::Denoising, needed, describe(frugal)))?;

    let mut smallest_need: Option<(u64, String)> = None;
    for tile in tile_candidates(shape, job, settings) {
        let region = match tile {
            Some(t) => ((t / f).min(latent.0), (t / f).min(latent.1)),
            None => latent,
        };
        let extra = tile.map_or(0, |t| tiled_extra(latent, t / f, f));
        let vae_bytes = |slicing| {
            shape.vae_decode_bytes(region, settings.precision, settings.kernels, slicing).saturating_add(extra)
        };
        match fastest_fit(shape.vae_scores(region), budget.bytes, vae_bytes) {
            Ok((attention, vae_needed)) => {
                return Ok(MemoryPlan {
                    unet,
                    vae: DecodePlan { tile: tile.map(|t| t as usize), attention },
                    unet_bytes: unet_needed,
                    vae_bytes: vae_needed,
                    budget: budget.bytes,
                });
            }
            Err((needed, frugal)) => {
                let how = match tile {
                    Some(t) => format!("{t}-pixel tiles, {}", describe(frugal)),
                    None => describe(frugal),
                };
                smallest_need = Some((needed, how));
            }
        }
    }
    let (needed, frugal) = smallest_need.unwrap_or((u64::MAX, "any tiling".into()));
    Err(refuse(Stage::Decoding, needed, frugal))
}

fn describe(slicing: Slicing) -> String {
    match slicing {
        Slicing::Full => "attention too small to slice".into(),
        Slicing::MaxScores(n) => format!("attention in slices of {n} scores"),
    }
}

/// Full attention if it fits, else the largest power-of-two slice that does, down to [`MIN_SLICE_SCORES`].
/// `Err` carries the most frugal attempt's need and slicing.
fn fastest_fit(
    largest_scores: u64,
    budget: u64,
    bytes: impl Fn(Slicing) -> u64,
) -> Result<(Slicing, u64), (u64, Slicing)> {
    let full = bytes(Slicing::Full);
    if full <= budget {
        return Ok((Slicing::Full, full));
    }
    let mut limit = (largest_scores / 2).max(1);
    limit = 1 << (63 - limit.leading_zeros());
    let mut last = (full, Slicing::Full);
    while limit >= MIN_SLICE_SCORES {
        let slicing = Slicing::MaxScores(usize::try_from(limit).unwrap_or(usize::MAX));
        let need = bytes(slicing);
        if need <= budget {
            return Ok((slicing, need));
        }
        last = (need, slicing);
        limit /= 2;
    }
    Err(last)
}

/// Decode modes to try, most exact first: the whole image (unless a tile size was asked for), then tiles from
/// the VAE's own size (or the one asked for) halving down to [`MIN_TILE_LATENTS`]. Tiles at least as large as
/// the image are the whole image and are not repeated.
fn tile_candidates(shape: &ModelShape, job: Job, settings: Settings) -> Vec<Option<u64>> {
    let f = shape.downscale();
    let larger = job.width.max(job.height);
    let mut candidates = Vec::new();
    let mut tile = match settings.max_tile {
        Some(t) => t,
        None => {
            candidates.push(None);
            settings.default_tile
        }
    };
    if tile >= larger && settings.max_tile.is_some() {
        candidates.push(None);
    }
    let smallest = (MIN_TILE_LATENTS * f).max(4 * f);
    while tile >= smallest {
        if tile < larger {
            candidates.push(Some(tile));
        }
        tile = (tile / 2) / f * f;
    }
    if candidates.is_empty() {
        candidates.push(None);
    }
    candidates
}

/// What a tiled decode holds beside the tile being decoded: every decoded tile (f32 RGB) until they are blended,
/// the blended rows and the assembled image.
fn mul(a: u64, b: u64) -> u64 {
    a.saturating_mul(b)
}

fn tiled_extra(latent: (u64, u64), latent_tile: u64, f: u64) -> u64 {
    let rows = tiling::spans(latent.0 as usize, latent_tile as usize);
    let columns = tiling::spans(latent.1 as usize, latent_tile as usize);
    let tiles: u64 = rows
        .iter()
        .flat_map(|&(_, h)| columns.iter().map(move |&(_, w)| mul(h as u64, f).saturating_mul(mul(w as u64, f))))
        .fold(0u64, u64::saturating_add);
    let image = latent.0.saturating_mul(latent.1).saturating_mul(f * f);
    tiles.saturating_add(image.saturating_mul(3)).saturating_mul(3 * 4)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{UNetConfig, VaeConfig, read_json};
    use crate::memory::Limit;

    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;

    fn shape(folder: &str) -> ModelShape {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(folder);
        let unet: UNetConfig = read_json(&dir.join("unet/config.json")).unwrap();
        let vae: VaeConfig = read_json(&dir.join("vae/config.json")).unwrap();
        ModelShape::new(&unet, &vae).unwrap()
    }

    fn tiny_b() -> ModelShape {
        shape("tests/fixtures/tiny-sdxl-b")
    }

    fn budget(bytes: u64) -> Budget {
        Budget { bytes, limit: Limit::Configured }
    }

    fn cpu(default_tile: u64) -> Settings {
        Settings { precision: Precision { unet: 4, vae: 4 }, kernels: ConvKernels::Cpu, default_tile, max_tile: None }
    }

    fn job(width: u64, height: u64) -> Job {
        Job { width, height, batch: 2 }
    }

    #[test]
    fn small_jobs_keep_the_reference_path() {
        for folder in ["tests/fixtures/tiny-sdxl-a", "tests/fixtures/tiny-sdxl-b"] {
            let plan = plan(&shape(folder), job(64, 64), cpu(128), &budget(GIB)).unwrap();
            assert!(plan.is_full(), "{folder}: {plan}");
            assert!(plan.unet_bytes <= GIB && plan.vae_bytes <= GIB);
        }
    }

    #[test]
    fn a_budget_below_full_attention_slices_before_it_tiles() {
        let shape = tiny_b();
        let full = plan(&shape, job(256, 256), cpu(128), &budget(GIB)).unwrap();
        assert!(full.is_full(), "{full}");
        let short = full.unet_bytes.max(full.vae_bytes) - 1;
        let squeezed = plan(&shape, job(256, 256), cpu(128), &budget(short)).unwrap();
        // Slicing is exact and tiling is not: with room for the whole image, the decode is not tiled.
        assert_eq!(squeezed.vae.tile, None, "{squeezed}");
        assert_ne!(squeezed.vae.attention, Slicing::Full, "{squeezed}");
        assert!(squeezed.vae_bytes <= short && squeezed.unet_bytes <= short, "{squeezed}");
    }

    #[test]
    fn tiles_shrink_until_the_decode_fits() {
        let shape = tiny_b();
        let unguided = Job { width: 512, height: 512, batch: 1 };
        let mut tiles = Vec::new();
        for bytes in [GIB, 64 * MIB, 28 * MIB] {
            let plan = plan(&shape, unguided, cpu(128), &budget(bytes)).unwrap();
            assert!(plan.vae_bytes <= bytes, "{plan}");
            tiles.push(plan.vae.tile.unwrap_or(usize::MAX));
        }
        assert!(tiles.windows(2).all(|w| w[1] < w[0]), "{tiles:?}");
    }

    #[test]
    fn a_requested_tile_is_never_exceeded() {
        let shape = tiny_b();
        let settings = Settings { max_tile: Some(64), ..cpu(128) };
        let plan = plan(&shape, job(512, 512), settings, &budget(GIB)).unwrap();
        assert_eq!(plan.vae.tile, Some(64), "{plan}");
        // An image no larger than the requested tile is decoded whole, as the reference does.
        let small = super::plan(&shape, job(64, 64), settings, &budget(GIB)).unwrap();
        assert_eq!(small.vae.tile, None, "{small}");
    }

    #[test]
    fn tile_candidates_halve_from_the_vae_size_down_to_the_smallest_useful_tile() {
        let sdxl = shape("architectures/sdxl-base");
        let candidates = tile_candidates(&sdxl, job(2048, 2048), cpu(1024));
        assert_eq!(candidates, vec![None, Some(1024), Some(512), Some(256), Some(128)]);
        let asked = Settings { max_tile: Some(512), ..cpu(1024) };
        assert_eq!(tile_candidates(&sdxl, job(2048, 2048), asked), vec![Some(512), Some(256), Some(128)]);
        // A 2048x64 image: every tile below 2048 is narrower than the image's long side.
        assert_eq!(tile_candidates(&sdxl, job(2048, 64), cpu(1024))[..2], [None, Some(1024)]);
    }

    #[test]
    fn a_unet_that_cannot_fit_is_refused_naming_the_stage_the_need_and_the_budget() {
        let err = plan(&tiny_b(), job(2048, 2048), cpu(128), &budget(MIB)).unwrap_err();
        assert_eq!(err.stage, Stage::Denoising);
        assert!(err.needed > MIB);
        let message = err.to_string();
        for part in
            ["a 2048x2048 image does not fit in memory", "a UNet step needs about", "1.0 MiB", "--memory-budget"]
        {
            assert!(message.contains(part), "{part:?} missing from: {message}");
        }
    }

    #[test]
    fn a_decode_that_cannot_fit_is_refused_even_when_the_unet_fits() {
        let shape = tiny_b();
        let full = plan(&shape, job(64, 64), cpu(128), &budget(GIB)).unwrap();
        assert!(full.unet_bytes < full.vae_bytes, "{full}");
        // A 64-pixel image has no tile smaller than itself to fall back on.
        let err = plan(&shape, job(64, 64), cpu(128), &budget(full.unet_bytes)).unwrap_err();
        assert_eq!(err.stage, Stage::Decoding);
        assert!(err.to_string().contains("the VAE decode needs about"), "{err}");
    }

    #[test]
    fn an_absurd_size_is_refused_without_sizing_anything() {
        let err = plan(&tiny_b(), job(u64::MAX, 64), cpu(128), &budget(GIB)).unwrap_err();
        assert_eq!(err.needed, u64::MAX);
    }

    #[test]
    fn byte_counts_read_as_people_write_them() {
        assert_eq!(bytes(512), "512 bytes");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(3 * GIB + GIB / 5), "3.2 GiB");
        assert_eq!(bytes(u64::MAX), "16777216.0 TiB");
    }
}
