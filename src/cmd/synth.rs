//! `medseg synth`: a synthetic dataset in the MSD / nnU-Net v2 layout.

use anyhow::{Context, Result};
use medseg_volume::synth::{SynthConfig, write_dataset};
use std::path::PathBuf;

/// Write a synthetic dataset (MSD / nnU-Net v2 layout) to train and test on.
///
/// Each case is a body phantom with two organs and small lesions, anisotropic spacing, and
/// varied origins and directions; the folder gets imagesTr/labelsTr, imagesTs/labelsTs and
/// `dataset.json`. Deterministic from the seed.
#[derive(clap::Args, Debug, Clone)]
pub struct SynthArgs {
    /// Output folder (created; existing files are replaced).
    #[arg(long, short = 'o', alias = "out", value_name = "DIR")]
    pub output: PathBuf,
    /// Training cases (imagesTr/labelsTr).
    #[arg(long, default_value_t = 12, value_name = "N")]
    pub cases: usize,
    /// Held-out cases (imagesTs/labelsTs).
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub test_cases: usize,
    /// 2 (single-slice images) or 3 (volumes).
    #[arg(long, default_value_t = 3, value_name = "2|3", value_parser = clap::value_parser!(u8).range(2..=3))]
    pub dims: u8,
    /// Nominal in-plane size in voxels (the field of view is 96 mm).
    #[arg(long, default_value_t = 64, value_name = "VOXELS", value_parser = clap::value_parser!(u16).range(8..=1024))]
    pub size: u16,
    /// Random seed: the same seed gives byte-identical files.
    #[arg(long, default_value_t = 0, value_name = "SEED")]
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
    write_dataset(&args.output, &cfg, &|name| {
        bar.inc(1);
        bar.set_message(name.to_string());
    })
    .with_context(|| format!("writing the synthetic dataset to {}", args.output.display()))?;
    bar.finish_and_clear();
    eprintln!(
        "wrote {} training + {} test cases ({}D, size {}, seed {}) to {}",
        cfg.cases,
        cfg.test_cases,
        cfg.dims,
        cfg.size,
        cfg.seed,
        args.output.display()
    );
    Ok(())
}
