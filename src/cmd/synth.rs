//! `medseg synth`: a synthetic dataset in the MSD / nnU-Net v2 layout.

use anyhow::{Context, Result};
use medseg_volume::synth::{SynthConfig, write_dataset};
use std::path::PathBuf;

/// Write a synthetic segmentation dataset (body phantom with two organs and small lesions,
/// anisotropic spacing, varied origins and directions) in the nnU-Net v2 layout, with
/// `dataset.json`. Deterministic from the seed.
#[derive(clap::Args, Debug, Clone)]
pub struct SynthArgs {
    /// Output folder (created; existing files are replaced).
    #[arg(long)]
    pub out: PathBuf,
    /// Training cases (imagesTr/labelsTr).
    #[arg(long, default_value_t = 12)]
    pub cases: usize,
    /// Held-out cases (imagesTs/labelsTs).
    #[arg(long, default_value_t = 4)]
    pub test_cases: usize,
    /// 2 (single-slice images) or 3 (volumes).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(2..=3))]
    pub dims: u8,
    /// Nominal in-plane size in voxels (the field of view is 96 mm).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(8..=1024))]
    pub size: u16,
    /// Random seed: the same seed gives byte-identical files.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

pub fn run(args: &SynthArgs) -> Result<()> {
    let cfg = SynthConfig {
        cases: args.cases,
        test_cases: args.test_cases,
        dims: args.dims as usize,
        size: args.size as usize,
        seed: args.seed,
    };
    let bar = crate::progress::bar((cfg.cases + cfg.test_cases) as u64, "synth");
    write_dataset(&args.out, &cfg, &|name| {
        bar.inc(1);
        bar.set_message(name.to_string());
    })
    .with_context(|| format!("writing the synthetic dataset to {}", args.out.display()))?;
    bar.finish_and_clear();
    eprintln!(
        "wrote {} training + {} test cases ({}D, size {}, seed {}) to {}",
        cfg.cases,
        cfg.test_cases,
        cfg.dims,
        cfg.size,
        cfg.seed,
        args.out.display()
    );
    Ok(())
}
