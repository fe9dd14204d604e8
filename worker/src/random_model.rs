//! `sdxl-worker random-model`.

use std::path::PathBuf;

use anyhow::Context;
use sdxl_worker::architecture::write_random_pipeline;

use crate::generate::DTypeArg;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// A pipeline folder whose configs and tokenizers give the architecture (weights are not read), such as
    /// `worker/architectures/sdxl-base`.
    #[arg(long)]
    from: PathBuf,
    #[arg(long)]
    out: PathBuf,
    #[arg(long, value_enum, default_value = "f16")]
    dtype: DTypeArg,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    write_random_pipeline(&args.from, &args.out, args.dtype.into())
        .with_context(|| format!("writing a random {} into {}", args.from.display(), args.out.display()))?;
    eprintln!("wrote {}", args.out.display());
    Ok(())
}
