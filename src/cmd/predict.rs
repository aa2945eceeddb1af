//! `medseg predict`: segment volumes with trained runs or an nnU-Net v2 model folder.

use super::args::{DeviceArgs, ThreadArgs};
use super::predict_output::{DoneMarker, Failure, lock_output, write_failures};
use anyhow::{Context, Result, bail};
use medseg_infer::{PredictionLayout, Predictor, RunDir, select_device, write_prediction};
use medseg_nnunet::{
    CheckpointChoice, ModelFolder, NnUnetPostprocessing, NnUnetPredictor, ensemble_cases,
};
use medseg_volume::{
    DicomOptions, ImageFormat, MultiChannel, Volume, WriteOptions, is_dicom_dir, read_channels,
    read_dicom, read_header, write_channels, write_image,
};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Segment volumes (NIfTI, MetaImage, NRRD, DICOM series) with trained runs or an nnU-Net v2
/// model folder.
///
/// --model also takes an nnU-Net v2 model folder (TRAINER__PLANS__CONFIGURATION, as
/// nnUNetv2_train writes it: plans.json, dataset.json, fold_N/checkpoint_final.pth), recognized
/// without a flag and run natively with nnU-Net's own preprocessing, sliding window (float16
/// accumulation, Gaussian weights, mirroring TTA) and export: --folds picks folds (default:
/// every fold present), --checkpoint best uses checkpoint_best.pth, --postprocessing applies
/// nnU-Net's postprocessing.pkl. Supported: PlainConvUNet and ResidualEncoderUNet (ResEnc
/// presets), 2d and 3d_fullres (and 3d_lowres) configurations, label- and region-based models
/// (sigmoid outputs, regions_class_order); cascades are refused with the reason.
///
/// Several --model runs (folds of one experiment), or several nnU-Net model folders (the
/// configurations nnUNetv2_find_best_configuration ensembles), are ensembled by averaging
/// probabilities.
/// Applies the run's plan (orientation, crop, resampling, normalization), runs the Gaussian
/// sliding window with mirroring TTA, maps probabilities back onto each input's grid, takes
/// the argmax and applies the run's postprocessing (its `[postprocess]`, then the
/// largest-component steps its final validation chose, RUN/postprocessing.json). Each output CASE.nii.gz has the input's
/// exact header geometry. Multi-channel cases follow nnU-Net's naming (CASE_0000.nii.gz,
/// CASE_0001.nii.gz, ...) in an input folder.
///
/// DICOM: a folder with DICOM files in it is one case, named after the folder, read as one
/// series (its sub-folders included; several series in it need --series UID); in an input
/// folder without DICOM files of its own, each sub-folder with DICOM files directly in it is a
/// case, named after the sub-folder (deeper PATIENT/STUDY/SERIES trees: give each series
/// folder, or the folder above it, as --input). The label map of a DICOM
/// case is written as NIfTI (CASE.nii.gz, or --output-format) with the series' geometry;
/// DICOM-SEG output is not supported.
///
/// Cluster recipe: `--shard I/N` processes the I-th of N slices of the sorted case list, so a
/// Slurm array job runs `medseg predict ... --shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT`
/// with no coordination; add `--skip-existing` to skip cases already written.
///
/// A case that cannot be read or predicted does not stop the others: the failures are listed
/// at the end and in OUTPUT/failures.json, and the exit status is 1 (`--fail-fast` stops at
/// the first one). A case counts as written once all its outputs are complete
/// (OUTPUT/.medseg/CASE.done); one predict at a time writes a folder (or one per --shard).
#[derive(clap::Args, Debug, Clone)]
pub struct PredictArgs {
    /// Run directory from `medseg train` (repeat to ensemble folds), or an nnU-Net v2 model
    /// folder (repeat to ensemble configurations, as nnUNetv2_ensemble: e.g. 2d and
    /// 3d_fullres).
    #[arg(long = "model", required = true, value_name = "RUN_DIR|NNUNET_MODEL")]
    pub models: Vec<PathBuf>,
    /// nnU-Net model folders: the folds to ensemble, e.g. 0,1,2 or all (default: every
    /// fold_N present).
    #[arg(long, value_delimiter = ',', value_name = "F,...")]
    pub folds: Vec<String>,
    /// nnU-Net model folders: which checkpoint of each fold.
    #[arg(long, value_enum, default_value_t = CheckpointArg::Final)]
    pub checkpoint: CheckpointArg,
    /// nnU-Net model folders: apply nnU-Net's postprocessing file to each label map, as
    /// nnUNetv2_apply_postprocessing does: postprocessing.pkl (or .json) from
    /// nnUNetv2_find_best_configuration, in MODEL/crossval_results_folds_0_1_2_3_4/. Without
    /// it, none is applied (as nnUNetv2_predict).
    #[arg(long, value_name = "FILE")]
    pub postprocessing: Option<PathBuf>,
    /// An image file, or a folder of them (nnU-Net channel naming: CASE_0000.nii.gz, ...):
    /// NIfTI, MetaImage (.mha/.mhd), NRRD (.nrrd/.nhdr) or PNG/TIFF; or a DICOM series folder
    /// (one case named after the folder), or a folder of DICOM series folders (one case
    /// each). Each label map is written in its input's format (DICOM: NIfTI) unless
    /// --output-format says otherwise.
    #[arg(long, value_name = "FILE|DIR")]
    pub input: PathBuf,
    /// Format of the label maps: nii.gz, mha or nrrd (default: the input's format; NIfTI for
    /// DICOM input, since medseg writes no DICOM-SEG). Probabilities are always NIfTI.
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub output_format: Option<OutputFormat>,
    /// The SeriesInstanceUID to read from a DICOM folder that holds several series.
    #[arg(long, value_name = "UID")]
    pub series: Option<String>,
    /// Output folder (created) for CASE.nii.gz. Inputs are never written.
    #[arg(long, short = 'o', alias = "out", value_name = "DIR")]
    pub output: PathBuf,
    /// Also write float32 per-class probabilities to DIR/probabilities/CASE.nii.gz (4D,
    /// background first: the layout `medseg evaluate --prob` reads; a region-based nnU-Net
    /// model's are its regions' sigmoid outputs, in dataset.json order).
    #[arg(long)]
    pub probabilities: bool,
    /// Disable mirroring test-time augmentation (about 8x faster in 3D).
    #[arg(long)]
    pub no_tta: bool,
    /// Sliding-window overlap in [0, 1) (default: the run's, 0.5; nnU-Net models: nnU-Net's
    /// -step_size is 1 - overlap, default 0.5).
    #[arg(long, value_name = "FRACTION")]
    pub overlap: Option<f64>,
    /// Skip cases whose outputs were all written completely (to finish an interrupted or
    /// sharded job); a case cut short, or without the probabilities asked for, is redone.
    // `--resume` was this option's first name; `medseg train --resume` continues a run.
    #[arg(long, alias = "resume")]
    pub skip_existing: bool,
    /// Stop at the first case that fails (default: go on, list the failures at the end).
    #[arg(long)]
    pub fail_fast: bool,
    /// Process only shard I of N (1-based, e.g. 2/8) of the sorted case list.
    #[arg(long, value_name = "I/N", value_parser = parse_shard)]
    pub shard: Option<Shard>,
    #[command(flatten)]
    pub device: DeviceArgs,
    #[command(flatten)]
    pub threads: ThreadArgs,
}

/// `--checkpoint`.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointArg {
    /// fold_N/checkpoint_final.pth
    Final,
    /// fold_N/checkpoint_best.pth
    Best,
}

/// `--output-format`.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// NIfTI, gzipped (CASE.nii.gz)
    #[value(name = "nii.gz", alias = "nifti")]
    NiiGz,
    /// MetaImage with the data attached (CASE.mha)
    Mha,
    /// NRRD, gzip (CASE.nrrd)
    Nrrd,
}

impl OutputFormat {
    fn format(self) -> ImageFormat {
        match self {
            OutputFormat::NiiGz => ImageFormat::Nifti,
            OutputFormat::Mha => ImageFormat::MetaImage,
            OutputFormat::Nrrd => ImageFormat::Nrrd,
        }
    }
}

/// The format a case's label map is written in: `--output-format`, else the input's (NIfTI
/// for DICOM input).
fn output_format(input: &Path, chosen: Option<OutputFormat>) -> ImageFormat {
    if let Some(f) = chosen {
        return f.format();
    }
    match ImageFormat::detect(input) {
        Some(ImageFormat::Dicom) | None => ImageFormat::Nifti,
        Some(other) => other,
    }
}

/// The name of a DICOM case: its folder's (or file's, less `.dcm`) name.
fn dicom_case_name(path: &Path) -> String {
    let named = path.file_name().map(|n| n.to_os_string()).or_else(|| {
        path.canonicalize()
            .ok()?
            .file_name()
            .map(|n| n.to_os_string())
    });
    let name = named
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "dicom".into());
    for ext in [".dcm", ".DCM", ".dicom"] {
        if let Some(stem) = name.strip_suffix(ext) {
            return stem.to_string();
        }
    }
    name
}

/// The channel files of a case in channel order, or why they do not make a case.
pub type CaseFiles = std::result::Result<Vec<PathBuf>, Failure>;

/// Cases of an input path: name -> channel files in channel order (or, for a case whose
/// channel files do not match the model, the failure to report).
pub fn collect_cases(input: &Path, channels: usize) -> Result<BTreeMap<String, CaseFiles>> {
    let mut cases: BTreeMap<String, BTreeMap<usize, PathBuf>> = BTreeMap::new();
    let mut dicom: Vec<String> = Vec::new();
    let strip = medseg_volume::dataset::strip_nifti_ext;
    let dicom_file = |p: &Path| ImageFormat::detect(p) == Some(ImageFormat::Dicom);
    if (input.is_file() && dicom_file(input)) || is_dicom_dir(input) {
        // one DICOM series (a folder, or one file): one single-channel case
        let case = dicom_case_name(input);
        dicom.push(case.clone());
        cases
            .entry(case)
            .or_default()
            .insert(0, input.to_path_buf());
    } else if input.is_file() {
        let name = strip(input);
        let (case, ch) = split_channel(&name);
        cases
            .entry(case)
            .or_default()
            .insert(ch.unwrap_or(0), input.to_path_buf());
    } else if input.is_dir() {
        for e in std::fs::read_dir(input).with_context(|| format!("reading {}", input.display()))? {
            let p = e?.path();
            if p.is_dir() {
                if is_dicom_dir(&p) {
                    let case = dicom_case_name(&p);
                    dicom.push(case.clone());
                    cases.entry(case).or_default().insert(0, p);
                }
                continue;
            }
            let n = p
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            let readable = matches!(
                ImageFormat::of(&p),
                Some(
                    ImageFormat::Nifti
                        | ImageFormat::MetaImage
                        | ImageFormat::Nrrd
                        | ImageFormat::Natural
                )
            );
            let raw_part = n.ends_with(".img") || n.ends_with(".img.gz");
            if !readable || raw_part || n.ends_with(".hdr") || n.starts_with('.') {
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
        let files: Vec<PathBuf> = chans.into_values().collect();
        if ids != expected {
            let last = channels.saturating_sub(1);
            let reason = if dicom.contains(&case) {
                format!(
                    "a DICOM series is one channel, but the model expects {channels}; give the cases as CASE_0000.nii.gz ... CASE_{last:04}.nii.gz"
                )
            } else {
                format!(
                    "found channel files {ids:?} but the model expects channels {expected:?} (CASE_0000.nii.gz ... CASE_{last:04}.nii.gz)"
                )
            };
            out.insert(
                case.clone(),
                Err(Failure {
                    case,
                    inputs: files,
                    reason,
                }),
            );
            continue;
        }
        out.insert(case, Ok(files));
    }
    if out.is_empty() {
        bail!(
            "{}: no image files (.nii, .nii.gz, .mha, .mhd, .nrrd, .nhdr, .png, .tif) or DICOM series folders found",
            input.display()
        );
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
    /// The cases that failed, in case order (also in the folder's failures.json).
    pub failures: Vec<Failure>,
    /// Where the failures were written.
    pub failures_file: PathBuf,
}

/// What runs the cases: medseg runs, or an nnU-Net v2 model folder.
enum Engine {
    Medseg(Box<Predictor>),
    /// One nnU-Net model folder, or several ensembled; then nnU-Net's postprocessing.
    NnUnet(Vec<NnUnetPredictor>, Option<NnUnetPostprocessing>),
}

impl Engine {
    fn channels(&self) -> usize {
        match self {
            Engine::Medseg(p) => p.plan.channel_names.len(),
            Engine::NnUnet(p, _) => p[0].num_channels(),
        }
    }

    fn num_classes(&self) -> usize {
        match self {
            Engine::Medseg(p) => p.num_classes,
            Engine::NnUnet(p, _) => p[0].num_classes(),
        }
    }

    /// Labels `[k, j, i]` and, when asked for, probabilities `[classes, k, j, i]`.
    fn predict(
        &self,
        case: &str,
        images: MultiChannel,
        probabilities: bool,
        on_window: &mut dyn FnMut(usize, usize),
    ) -> Result<(ndarray::Array3<u16>, Option<ndarray::Array4<f32>>)> {
        match self {
            Engine::Medseg(p) => {
                let pred = p.predict(case, images, probabilities, on_window)?;
                Ok((pred.labels, pred.probabilities))
            }
            Engine::NnUnet(predictors, postprocessing) => {
                let s = images.geometry.spacing;
                let spacing = [s[2], s[1], s[0]];
                if let ([p], false) = (&predictors[..], probabilities) {
                    // no probabilities to write or average: one class resampled at a time
                    let mut seg =
                        p.predict_segmentation(case, images.data.view(), spacing, on_window)?;
                    if let Some(pp) = postprocessing {
                        pp.apply(&mut seg);
                    }
                    return Ok((seg, None));
                }
                let outs = predictors
                    .iter()
                    .map(|p| p.predict(case, images.data.view(), spacing, on_window))
                    .collect::<Result<Vec<_>, _>>()?;
                let regions = predictors[0].folder.dataset.regions.as_ref();
                let mut out = match <[_; 1]>::try_from(outs) {
                    Ok([one]) => one,
                    Err(outs) => ensemble_cases(outs, regions)
                        .context("the ensembled models' outputs differ in shape")?,
                };
                if let Some(pp) = postprocessing {
                    pp.apply(&mut out.segmentation);
                }
                Ok((out.segmentation, probabilities.then_some(out.probabilities)))
            }
        }
    }
}

/// nnU-Net model folders given as --model: one, or several to ensemble (nnUNetv2_ensemble:
/// each folder's probabilities averaged), never mixed with medseg runs.
fn nnunet_engine(args: &PredictArgs) -> Result<Option<Engine>> {
    let nnunet: Vec<&PathBuf> = args
        .models
        .iter()
        .filter(|m| ModelFolder::looks_like(m))
        .collect();
    if nnunet.is_empty() {
        if !args.folds.is_empty() || args.checkpoint != CheckpointArg::Final {
            bail!(
                "--folds and --checkpoint apply to nnU-Net model folders; for medseg runs give one --model per fold"
            );
        }
        if args.postprocessing.is_some() {
            bail!(
                "--postprocessing applies to nnU-Net model folders; a medseg run applies its own (RUN/postprocessing.json)"
            );
        }
        return Ok(None);
    }
    if let Some(run) = args.models.iter().find(|m| !ModelFolder::looks_like(m)) {
        bail!(
            "{}: not an nnU-Net model folder (no plans.json and dataset.json); nnU-Net model folders are ensembled with each other only, not with medseg runs",
            run.display()
        );
    }
    // nnU-Net's -step_size is the complement of the overlap
    let step_size = match args.overlap {
        None => 0.5,
        Some(o) if (0.0..1.0).contains(&o) => 1.0 - o,
        Some(o) => bail!("--overlap {o}: must be in [0, 1) (nnU-Net's -step_size = 1 - overlap)"),
    };
    let checkpoint = match args.checkpoint {
        CheckpointArg::Final => CheckpointChoice::Final,
        CheckpointArg::Best => CheckpointChoice::Best,
    };
    let mut folders = Vec::with_capacity(nnunet.len());
    for dir in &nnunet {
        let folder = ModelFolder::open(dir)?;
        let folds = folder.select_folds(&args.folds)?;
        eprintln!("{}", folder.describe(&folds));
        if let Some(first) = folders.first().map(|(f, _): &(ModelFolder, _)| f) {
            check_ensemble_member(first, &folder)?;
        }
        folders.push((folder, folds));
    }
    let postprocessing = nnunet_postprocessing(args, &folders)?;
    args.device.device.announce()?;
    let device = select_device(&args.device.device.name())?;
    let predictors = folders
        .into_iter()
        .map(|(folder, folds)| {
            NnUnetPredictor::load(folder, folds, checkpoint, !args.no_tta, &device)?
                .with_step_size(step_size)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(Engine::NnUnet(predictors, postprocessing)))
}

/// Folders ensembled together must predict the same things from the same channels.
fn check_ensemble_member(first: &ModelFolder, other: &ModelFolder) -> Result<()> {
    let (a, b) = (&first.dataset, &other.dataset);
    if a.labels != b.labels || a.regions != b.regions {
        bail!(
            "{}: labels {:?} differ from {}'s {:?}; only models of the same labels are ensembled",
            b.path.display(),
            b.labels,
            a.path.display(),
            a.labels
        );
    }
    if a.num_channels() != b.num_channels() {
        bail!(
            "{}: {} input channels, but {} has {}; only models of the same inputs are ensembled",
            b.path.display(),
            b.num_channels(),
            a.path.display(),
            a.num_channels()
        );
    }
    Ok(())
}

/// `--postprocessing`, read and announced; without it, a hint when a single model folder
/// holds one (an ensemble's is in nnUNet_results/DATASET/ensembles/).
fn nnunet_postprocessing(
    args: &PredictArgs,
    folders: &[(ModelFolder, Vec<String>)],
) -> Result<Option<NnUnetPostprocessing>> {
    let Some(path) = &args.postprocessing else {
        if let [(folder, _)] = folders
            && let Some(found) = folder.postprocessing_files().first()
        {
            eprintln!(
                "not applied (as nnUNetv2_predict): {}; add --postprocessing {} to apply it",
                found.display(),
                found.display()
            );
        }
        return Ok(None);
    };
    let pp = NnUnetPostprocessing::read(path)?;
    let from = if pp.read_from != *path {
        format!(" (label values from {})", pp.read_from.display())
    } else {
        String::new()
    };
    eprintln!("postprocessing {}{from}: {}", path.display(), pp.describe());
    Ok(Some(pp))
}

/// Opens the runs and builds the predictor (inference settings from the first run, with the
/// command line's --no-tta and --overlap).
fn predictor_for(args: &PredictArgs) -> Result<Engine> {
    if let Some(engine) = nnunet_engine(args)? {
        return Ok(engine);
    }
    let runs: Vec<RunDir> = args
        .models
        .iter()
        .map(|m| RunDir::open(m))
        .collect::<Result<_, _>>()?;
    args.device.device.announce()?;
    let device = select_device(&args.device.device.name())?;
    let mut inference = runs[0].config.inference.clone();
    if args.no_tta {
        inference.tta = false;
    }
    if let Some(o) = args.overlap {
        inference.overlap = o;
    }
    Ok(Engine::Medseg(Box::new(Predictor::from_runs(
        &runs,
        &device,
        Some(&inference),
        None,
    )?)))
}

pub fn run_with(args: &PredictArgs) -> Result<PredictReport> {
    let predictor = predictor_for(args)?;
    let cases = collect_cases(&args.input, predictor.channels())?;
    let mut list: Vec<(String, CaseFiles)> = cases.into_iter().collect();
    let shard = args.shard.map(|s| (s.index, s.count));
    if let Some((i, n)) = shard {
        list = list
            .into_iter()
            .enumerate()
            .filter(|(k, _)| k % n == i - 1)
            .map(|(_, c)| c)
            .collect();
    }
    std::fs::create_dir_all(&args.output)
        .with_context(|| format!("creating {}", args.output.display()))?;
    let layout = PredictionLayout::new(&args.output);
    let _locks = lock_output(&layout, shard)?;
    let bar = crate::progress::bar(list.len() as u64, "predict");
    let mut report = PredictReport {
        written: Vec::new(),
        skipped: 0,
        failures: Vec::new(),
        failures_file: layout.failures(shard),
    };
    for (case, files) in list {
        bar.set_message(case.clone());
        let outcome = match files {
            Ok(files) => {
                predict_case(args, &predictor, &layout, &case, &files).map_err(|e| Failure {
                    case: case.clone(),
                    inputs: files.clone(),
                    reason: one_line(&e),
                })
            }
            Err(failure) => Err(failure),
        };
        bar.inc(1);
        match outcome {
            Ok(Some(out)) => report.written.push(out),
            Ok(None) => report.skipped += 1,
            Err(failure) => {
                bar.suspend(|| {
                    eprintln!("predict: case {} failed: {}", failure.case, failure.reason)
                });
                report.failures.push(failure);
                if args.fail_fast {
                    break;
                }
            }
        }
    }
    bar.finish_and_clear();
    write_failures(&report.failures_file, &report.failures)?;
    Ok(report)
}

/// An error and its causes as one line.
fn one_line(e: &anyhow::Error) -> String {
    e.chain()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(": ")
}

/// Predicts one case and writes its outputs (probabilities, then the label map, then the
/// done marker); `None` when `--skip-existing` finds it complete.
fn predict_case(
    args: &PredictArgs,
    predictor: &Engine,
    layout: &PredictionLayout,
    case: &str,
    files: &[PathBuf],
) -> Result<Option<PathBuf>> {
    // the label map in the input's format (NIfTI keeps the input's header exactly), or in
    // --output-format's
    let input_format = ImageFormat::detect(&files[0]).unwrap_or(ImageFormat::Nifti);
    let format = output_format(&files[0], args.output_format);
    let out = match format {
        ImageFormat::Nifti => layout.labels(case),
        other => layout
            .labels(case)
            .with_file_name(format!("{case}{}", other.extension())),
    };
    let mut outputs = Vec::new();
    if args.probabilities {
        outputs.push(layout.probabilities(case));
    }
    outputs.push(out.clone());
    if args.skip_existing && DoneMarker::is_done(layout, case, &outputs) {
        return Ok(None);
    }
    // An output must never overwrite an input.
    for o in &outputs {
        if o.exists()
            && files
                .iter()
                .any(|f| f.canonicalize().ok() == o.canonicalize().ok())
        {
            bail!(
                "the output {} would overwrite an input; choose another --output",
                o.display()
            );
        }
    }
    DoneMarker::clear(layout, case)?;
    let images: MultiChannel = if input_format == ImageFormat::Dicom {
        let options = DicomOptions {
            series: args.series.clone(),
        };
        let series = read_dicom(&files[0], &options)?;
        if !crate::progress::interactive() {
            eprintln!(
                "predict: {case}: DICOM series {} \"{}\" ({} slices)",
                series.series.uid, series.series.description, series.series.slices
            );
        }
        MultiChannel::stack(&[series.volume])
            .with_context(|| format!("{}: cannot stack the series", files[0].display()))?
    } else {
        read_channels(files)?
    };
    let non_finite: Vec<usize> = images
        .data
        .outer_iter()
        .map(medseg_preprocess::count_non_finite)
        .collect();
    if let Some(w) = medseg_preprocess::non_finite_warning(case, files, &non_finite) {
        eprintln!("{w}");
    }
    // a NIfTI input's header is the reference of every NIfTI output (probabilities included)
    let reference = match input_format {
        ImageFormat::Nifti => Some(read_header(&files[0])?),
        _ => None,
    };
    let mut last = std::time::Instant::now();
    let geometry = images.geometry;
    let (labels, probabilities) =
        predictor.predict(case, images, args.probabilities, &mut |d, n| {
            if !crate::progress::interactive() && last.elapsed().as_secs() >= 10 {
                eprintln!("predict {case}: window {d}/{n}");
                last = std::time::Instant::now();
            }
        })?;
    if let Some(probabilities) = probabilities {
        let dir = layout.probabilities_dir();
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let mc = MultiChannel {
            data: probabilities,
            geometry,
        };
        let opts = reference
            .clone()
            .map(WriteOptions::with_reference)
            .unwrap_or_default();
        write_channels(&layout.probabilities(case), &mc, &opts)?;
    }
    // The label map last: a label map without its probabilities is never left behind.
    match reference.as_ref().filter(|_| format == ImageFormat::Nifti) {
        Some(header) => write_prediction(&out, &labels, header, predictor.num_classes())?,
        None if predictor.num_classes() <= 256 => {
            write_image(&out, &Volume::new(labels.mapv(|l| l as u8), geometry))?
        }
        None => write_image(&out, &Volume::new(labels, geometry))?,
    }
    DoneMarker::of(layout, &outputs)?.write(layout, case)?;
    if !crate::progress::interactive() {
        eprintln!("predict: {case} -> {}", out.display());
    }
    Ok(Some(out))
}

pub fn run(args: &PredictArgs) -> Result<()> {
    args.threads.apply()?;
    let r = run_with(args)?;
    eprintln!(
        "wrote {} prediction(s) to {}{}",
        r.written.len(),
        args.output.display(),
        if r.skipped > 0 {
            format!(" ({} skipped: already complete)", r.skipped)
        } else {
            String::new()
        }
    );
    check_failures(&r)
}

/// An error listing the failed cases, when there are any.
pub fn check_failures(r: &PredictReport) -> Result<()> {
    if r.failures.is_empty() {
        return Ok(());
    }
    for f in &r.failures {
        eprintln!("failed: {}: {}", f.case, f.reason);
    }
    let names: Vec<&str> = r.failures.iter().map(|f| f.case.as_str()).collect();
    bail!(
        "{} case(s) failed ({}); the reasons are listed above and in {}",
        r.failures.len(),
        names.join(", "),
        r.failures_file.display()
    )
}
