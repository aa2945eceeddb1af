//! `medseg predict`: segment NIfTI volumes with one or more trained runs.

use super::args::{DeviceArgs, ThreadArgs};
use anyhow::{Context, Result, bail};
use medseg_infer::{Predictor, RunDir, select_device, write_prediction};
use medseg_volume::{MultiChannel, WriteOptions, read_channels, read_header, write_channels};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Segment NIfTI volumes with trained run directories.
///
/// Several --model runs (folds of one experiment) are ensembled by averaging probabilities.
/// Applies the run's plan (orientation, crop, resampling, normalization), runs the Gaussian
/// sliding window with mirroring TTA, maps probabilities back onto each input's grid, takes
/// the argmax and applies the run's postprocessing. Each output CASE.nii.gz has the input's
/// exact header geometry. Multi-channel cases follow nnU-Net's naming (CASE_0000.nii.gz,
/// CASE_0001.nii.gz, ...) in an input folder.
///
/// Cluster recipe: `--shard I/N` processes the I-th of N slices of the sorted case list, so a
/// Slurm array job runs `medseg predict ... --shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT`
/// with no coordination; add `--skip-existing` to skip cases already written.
#[derive(clap::Args, Debug, Clone)]
pub struct PredictArgs {
    /// Run directory from `medseg train` (repeat to ensemble folds).
    #[arg(long = "model", required = true, value_name = "RUN_DIR")]
    pub models: Vec<PathBuf>,
    /// A NIfTI file, or a folder of them (nnU-Net channel naming: CASE_0000.nii.gz, ...).
    #[arg(long, value_name = "FILE|DIR")]
    pub input: PathBuf,
    /// Output folder (created) for CASE.nii.gz. Inputs are never written.
    #[arg(long, short = 'o', alias = "out", value_name = "DIR")]
    pub output: PathBuf,
    /// Also write float32 per-class probabilities to DIR/probabilities/CASE.nii.gz (4D,
    /// background first: the layout `medseg evaluate --prob` reads).
    #[arg(long)]
    pub probabilities: bool,
    /// Disable mirroring test-time augmentation (about 8x faster in 3D).
    #[arg(long)]
    pub no_tta: bool,
    /// Sliding-window overlap in [0, 1) (default: the run's, 0.5).
    #[arg(long, value_name = "FRACTION")]
    pub overlap: Option<f64>,
    /// Skip cases whose output already exists (to finish an interrupted or sharded job).
    // `--resume` was this option's first name; `medseg train --resume` continues a run.
    #[arg(long, alias = "resume")]
    pub skip_existing: bool,
    /// Process only shard I of N (1-based, e.g. 2/8) of the sorted case list.
    #[arg(long, value_name = "I/N", value_parser = parse_shard)]
    pub shard: Option<Shard>,
    #[command(flatten)]
    pub device: DeviceArgs,
    #[command(flatten)]
    pub threads: ThreadArgs,
}

/// Cases of an input path: name -> channel files in channel order.
pub fn collect_cases(input: &Path, channels: usize) -> Result<BTreeMap<String, Vec<PathBuf>>> {
    let mut cases: BTreeMap<String, BTreeMap<usize, PathBuf>> = BTreeMap::new();
    let strip = medseg_volume::dataset::strip_nifti_ext;
    if input.is_file() {
        let name = strip(input);
        let (case, ch) = split_channel(&name);
        cases
            .entry(case)
            .or_default()
            .insert(ch.unwrap_or(0), input.to_path_buf());
    } else if input.is_dir() {
        for e in std::fs::read_dir(input).with_context(|| format!("reading {}", input.display()))? {
            let p = e?.path();
            let n = p
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            if !(n.ends_with(".nii") || n.ends_with(".nii.gz")) || n.starts_with('.') {
                continue;
            }
            let (case, ch) = split_channel(&strip(&p));
            cases.entry(case).or_default().insert(ch.unwrap_or(0), p);
        }
    } else {
        bail!("{}: no such file or folder", input.display());
    }
    let mut out = BTreeMap::new();
    for (case, chans) in cases {
        let ids: Vec<usize> = chans.keys().copied().collect();
        let expected: Vec<usize> = (0..channels).collect();
        if ids != expected {
            bail!(
                "case {case}: found channel files {ids:?} but the model expects channels {expected:?} (CASE_0000.nii.gz ... CASE_{:04}.nii.gz)",
                channels.saturating_sub(1)
            );
        }
        out.insert(case, chans.into_values().collect());
    }
    if out.is_empty() {
        bail!("{}: no NIfTI files (.nii, .nii.gz) found", input.display());
    }
    Ok(out)
}

/// `CASE_0003` -> (`CASE`, Some(3)); anything else -> (name, None).
fn split_channel(name: &str) -> (String, Option<usize>) {
    if let Some((case, ch)) = name.rsplit_once('_')
        && ch.len() == 4
        && ch.bytes().all(|b| b.is_ascii_digit())
    {
        return (case.to_string(), ch.parse().ok());
    }
    (name.to_string(), None)
}

/// `--shard I/N`: the I-th (1-based) of N slices of the sorted case list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

/// Parses `I/N` (1-based). A clap value parser, so that a bad value is a usage error (exit 2)
/// like any other malformed option.
pub fn parse_shard(s: &str) -> Result<Shard, String> {
    let usage = || format!("'{s}' is not I/N with 1 <= I <= N (e.g. --shard 2/8)");
    let (i, n) = s.split_once('/').ok_or_else(usage)?;
    let (index, count): (usize, usize) = (
        i.trim().parse().map_err(|_| usage())?,
        n.trim().parse().map_err(|_| usage())?,
    );
    if count == 0 || index == 0 || index > count {
        return Err(usage());
    }
    Ok(Shard { index, count })
}

pub struct PredictReport {
    pub written: Vec<PathBuf>,
    pub skipped: usize,
}

pub fn run_with(args: &PredictArgs) -> Result<PredictReport> {
    let runs: Vec<RunDir> = args
        .models
        .iter()
        .map(|m| RunDir::open(m))
        .collect::<Result<_, _>>()?;
    let device = select_device(args.device.device.name())?;
    let mut inference = runs[0].config.inference.clone();
    if args.no_tta {
        inference.tta = false;
    }
    if let Some(o) = args.overlap {
        inference.overlap = o;
    }
    let predictor = Predictor::from_runs(&runs, &device, Some(&inference), None)?;
    let cases = collect_cases(&args.input, predictor.plan.channel_names.len())?;
    let mut list: Vec<(String, Vec<PathBuf>)> = cases.into_iter().collect();
    if let Some(Shard { index: i, count: n }) = args.shard {
        list = list
            .into_iter()
            .enumerate()
            .filter(|(k, _)| k % n == i - 1)
            .map(|(_, c)| c)
            .collect();
    }
    std::fs::create_dir_all(&args.output)
        .with_context(|| format!("creating {}", args.output.display()))?;
    let bar = crate::progress::bar(list.len() as u64, "predict");
    let mut report = PredictReport {
        written: Vec::new(),
        skipped: 0,
    };
    for (case, files) in &list {
        let out = args.output.join(format!("{case}.nii.gz"));
        if args.skip_existing && out.is_file() {
            report.skipped += 1;
            bar.inc(1);
            continue;
        }
        // An output must never overwrite an input.
        if files
            .iter()
            .any(|f| f.canonicalize().ok() == out.canonicalize().ok() && out.exists())
        {
            bail!(
                "case {case}: the output {} would overwrite an input; choose another --output",
                out.display()
            );
        }
        bar.set_message(case.clone());
        let images: MultiChannel = read_channels(files)?;
        let non_finite: Vec<usize> = images
            .data
            .outer_iter()
            .map(medseg_preprocess::count_non_finite)
            .collect();
        if let Some(w) = medseg_preprocess::non_finite_warning(case, files, &non_finite) {
            bar.suspend(|| eprintln!("{w}"));
        }
        let reference = read_header(&files[0])?;
        let mut last = std::time::Instant::now();
        let geometry = images.geometry;
        let pred = predictor.predict(case, images, args.probabilities, &mut |d, n| {
            if !crate::progress::interactive() && last.elapsed().as_secs() >= 10 {
                eprintln!("predict {case}: window {d}/{n}");
                last = std::time::Instant::now();
            }
        })?;
        write_prediction(&out, &pred.labels, &reference, predictor.num_classes)?;
        if let Some(probabilities) = pred.probabilities {
            let dir = args.output.join("probabilities");
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            let p = dir.join(format!("{case}.nii.gz"));
            let mc = MultiChannel {
                data: probabilities,
                geometry,
            };
            write_channels(&p, &mc, &WriteOptions::with_reference(reference.clone()))?;
        }
        if !crate::progress::interactive() {
            eprintln!("predict: {case} -> {}", out.display());
        }
        report.written.push(out);
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(report)
}

pub fn run(args: &PredictArgs) -> Result<()> {
    args.threads.apply()?;
    let r = run_with(args)?;
    eprintln!(
        "wrote {} prediction(s) to {}{}",
        r.written.len(),
        args.output.display(),
        if r.skipped > 0 {
            format!(" ({} skipped: already present)", r.skipped)
        } else {
            String::new()
        }
    );
    Ok(())
}
