//! `medseg evaluate`: segmentation and classification metrics of predictions against ground
//! truths, with a JSON, CSV, Markdown and PNG report.

use super::args::ThreadArgs;
use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use medseg_eval::cases::{discover_labels, read_label_names};
use medseg_eval::{EvalOptions, MissingPolicy, evaluate_cases, find_cases};
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

/// Evaluate predicted label maps against ground truth (Dice, HD95, NSD, AUC, ...).
///
/// Metrics: Dice, IoU, precision/recall, volumes, HD/HD95/ASSD/MASD/NSD in mm, voxel ROC AUC
/// and case-level classification. Cases are matched by file name without the extension (`.nii`, `.nii.gz`, `.mha`, `.mhd`, `.nrrd`, `.nhdr`). Conventions (surfaces, HD95,
/// empty masks) are those of MONAI and are listed in the report's `conventions`.
#[derive(clap::Args, Debug, Clone)]
pub struct EvaluateArgs {
    /// Predicted label map, or a folder of them (CASE.nii.gz).
    #[arg(long, value_name = "FILE|DIR")]
    pub pred: PathBuf,
    /// Ground-truth label map, or a folder of them. Every ground truth is a case.
    #[arg(long, value_name = "FILE|DIR")]
    pub gt: PathBuf,
    /// Folder of float32 probability maps CASE.nii.gz: 4D with one channel per class
    /// (background first), or 3D = foreground probability of a binary task. Enables voxel ROC
    /// AUC and ranks cases by their maximum probability (otherwise by predicted volume).
    #[arg(long, value_name = "DIR")]
    pub prob: Option<PathBuf>,
    /// dataset.json whose `labels` are evaluated (every label, present or not). Default: a
    /// dataset.json in the --gt folder or its parent; else every non-zero label found.
    #[arg(long, value_name = "dataset.json")]
    pub labels: Option<PathBuf>,
    /// NSD tolerance in mm (default 1.0), or LABEL=MM for one label; repeatable,
    /// e.g. `--nsd-tolerance 2 --nsd-tolerance 3=0.5`.
    #[arg(long, value_name = "MM|LABEL=MM")]
    pub nsd_tolerance: Vec<String>,
    /// What to do with a ground truth that has no prediction (the report counts the cases
    /// scored as `worst`).
    #[arg(long, value_enum, default_value_t = Missing::Error, value_name = "POLICY")]
    pub missing: Missing,
    /// Largest accepted difference of spacing/origin (mm) and direction cosines between the
    /// grids of prediction and ground truth. Shapes must match exactly.
    #[arg(long, default_value_t = 1e-3, value_name = "TOL")]
    pub geometry_tolerance: f64,
    /// Skip the surface metrics (HD, HD95, ASSD, MASD, NSD): overlap metrics only, much faster.
    #[arg(long)]
    pub no_surface: bool,
    /// Write metrics.csv, summary.json, report.md, boxplots.png (and roc.png) into this folder.
    #[arg(long, short = 'o', alias = "out", value_name = "DIR")]
    pub output: Option<PathBuf>,
    /// Print the report as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
    /// Fail (exit 1) when a prediction or ground truth holds a label the evaluated labels
    /// (dataset.json) do not declare; without it such labels are reported as warnings.
    #[arg(long)]
    pub strict: bool,
    #[command(flatten)]
    pub threads: ThreadArgs,
}

/// What `--missing` does with a ground truth that has no prediction.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    /// Stop with an error naming the case.
    Error,
    /// Score the case as an empty prediction.
    Worst,
}

fn parse_tolerances(values: &[String], opts: &mut EvalOptions) -> Result<()> {
    for v in values {
        let parse_mm = |s: &str| -> Result<f64> {
            let mm: f64 = s
                .trim()
                .parse()
                .with_context(|| format!("--nsd-tolerance {v:?}: {s:?} is not a number of mm"))?;
            if !(mm.is_finite() && mm >= 0.0) {
                bail!("--nsd-tolerance {v:?}: the tolerance must be a finite number >= 0 mm");
            }
            Ok(mm)
        };
        match v.split_once('=') {
            Some((label, mm)) => {
                let label: u16 = label.trim().parse().with_context(|| {
                    format!("--nsd-tolerance {v:?}: {label:?} is not a label id")
                })?;
                opts.nsd_tolerance_per_label.insert(label, parse_mm(mm)?);
            }
            None => opts.nsd_tolerance_mm = parse_mm(v)?,
        }
    }
    Ok(())
}

/// dataset.json next to the ground truth: in the --gt folder (or the file's folder), then its parent.
fn find_dataset_json(gt: &Path) -> Option<PathBuf> {
    let dir = if gt.is_dir() {
        gt.to_path_buf()
    } else {
        gt.parent()?.to_path_buf()
    };
    let dir = if dir.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        dir
    };
    [Some(dir.clone()), dir.parent().map(Path::to_path_buf)]
        .into_iter()
        .flatten()
        .map(|d| d.join("dataset.json"))
        .find(|p| p.is_file())
}

/// Runs `medseg evaluate`.
pub fn run(args: &EvaluateArgs) -> Result<()> {
    args.threads.apply()?;
    let mut opts = EvalOptions {
        surface_metrics: !args.no_surface,
        geometry_tolerance: args.geometry_tolerance,
        ..EvalOptions::default()
    };
    parse_tolerances(&args.nsd_tolerance, &mut opts)?;
    let list = find_cases(&args.pred, &args.gt, args.prob.as_deref())?;
    let dataset_json = args.labels.clone().or_else(|| find_dataset_json(&args.gt));
    let (labels, names): (Vec<u16>, BTreeMap<u16, String>) = match &dataset_json {
        Some(p) => {
            let names = read_label_names(p)?;
            (names.keys().copied().collect(), names)
        }
        None => (discover_labels(&list)?, BTreeMap::new()),
    };
    if labels.is_empty() {
        bail!(
            "no foreground label to evaluate: every ground truth and prediction is empty; pass --labels dataset.json"
        );
    }
    let missing = match args.missing {
        Missing::Error => MissingPolicy::Error,
        Missing::Worst => MissingPolicy::Worst,
    };
    let n = list.cases.len() as u64;
    let terminal = std::io::stderr().is_terminal();
    let bar = if terminal {
        let bar = ProgressBar::new(n);
        bar.set_style(
            ProgressStyle::with_template("evaluate {bar:40} {pos}/{len} cases [{elapsed}<{eta}]")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    } else {
        ProgressBar::hidden()
    };
    let done = std::sync::atomic::AtomicU64::new(0);
    let on_case_done = || {
        bar.inc(1);
        let k = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        if !terminal {
            eprintln!("evaluate: {k}/{n} cases");
        }
    };
    let ev = evaluate_cases(&list, &labels, &names, &opts, missing, &on_case_done)?;
    bar.finish_and_clear();
    let undeclared = ev.undeclared_label_warnings();
    for w in &undeclared {
        eprintln!("warning: {w}");
    }
    if args.strict && !undeclared.is_empty() {
        bail!(
            "--strict: {} undeclared label(s) found (first: {}); declare them in dataset.json \"labels\" or fix the label maps",
            undeclared.len(),
            undeclared[0]
        );
    }
    if !ev.unmatched_predictions.is_empty() {
        eprintln!(
            "warning: {} prediction(s) without ground truth were not evaluated: {}",
            ev.unmatched_predictions.len(),
            ev.unmatched_predictions.join(", ")
        );
    }
    if let Some(out) = &args.output {
        let written = ev.write_report(out)?;
        if !args.json {
            for p in &written {
                println!("wrote {}", p.display());
            }
        }
    }
    if args.json {
        println!("{}", serde_json::to_string(&ev.to_json())?);
        return Ok(());
    }
    print_summary(&ev, &names);
    Ok(())
}

/// The per-label means (Dice, HD95, ASSD, NSD, AUC) as a table on stdout.
fn print_summary(ev: &medseg_eval::Evaluation, names: &BTreeMap<u16, String>) {
    let f = |v: Option<f64>| v.map_or("–".to_string(), |x| format!("{x:.4}"));
    println!(
        "{} cases ({} missing predictions), labels {:?}",
        ev.cases.len(),
        ev.n_missing,
        ev.labels
    );
    println!(
        "{:<20} {:>8} {:>10} {:>8} {:>8} {:>8}",
        "label", "dice", "hd95 mm", "assd mm", "nsd", "auc"
    );
    for l in &ev.labels {
        let t = &ev.summary.per_label[l];
        let m = |k: &str| t.get(k).and_then(|s| s.mean);
        let name = names.get(l).map_or(l.to_string(), |n| format!("{l} {n}"));
        println!(
            "{:<20} {:>8} {:>10} {:>8} {:>8} {:>8}",
            name,
            f(m("dice")),
            f(m("hd95")),
            f(m("assd")),
            f(m("nsd")),
            f(m("auc"))
        );
    }
}
