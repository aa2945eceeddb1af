//! `medseg demo`: the whole pipeline on synthetic data — synth, train, predict, evaluate.

use super::args::{DeviceArgs, SET_HELP, SET_VALUE_NAME, ThreadArgs};
use anyhow::{Context, Result};
use medseg_config::ExperimentConfig;
use medseg_eval::{EvalOptions, MissingPolicy, evaluate_cases, find_cases};
use medseg_volume::png::{render_overlay, write_panels};
use medseg_volume::synth::{SynthConfig, write_dataset};
use std::path::{Path, PathBuf};
use std::time::Instant;

const DEMO_CONFIG: &str = include_str!("../../configs/demo-3d.toml");

/// The whole pipeline on synthetic data: synth -> train -> predict -> evaluate.
///
/// Creates data/demo (when missing), trains configs/demo-3d.toml, predicts the held-out cases,
/// evaluates them, and prints Dice and HD95 per label with the paths of everything written
/// (run, predictions, report, overlay PNG).
#[derive(clap::Args, Debug, Clone)]
pub struct DemoArgs {
    /// Experiment config (default: configs/demo-3d.toml, or the copy built into medseg).
    #[arg(long, value_name = "CONFIG.toml")]
    pub config: Option<PathBuf>,
    #[arg(long = "set", value_name = SET_VALUE_NAME, help = SET_HELP)]
    pub set: Vec<String>,
    /// Training cases of the synthetic dataset (when it is created).
    #[arg(long, default_value_t = 16, value_name = "N")]
    pub cases: usize,
    /// Held-out cases of the synthetic dataset (when it is created).
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub test_cases: usize,
    /// In-plane size of the synthetic volumes in voxels (96 mm field of view).
    #[arg(long, default_value_t = 64, value_name = "VOXELS")]
    pub size: u16,
    /// Retrain even when the run directory already holds a finished run.
    #[arg(long)]
    pub fresh: bool,
    #[command(flatten)]
    pub device: DeviceArgs,
    #[command(flatten)]
    pub threads: ThreadArgs,
}

fn stage(n: usize, what: &str) {
    eprintln!("\n[{n}/4] {what}");
}

pub fn run(args: &DemoArgs) -> Result<()> {
    args.threads.apply()?;
    let t0 = Instant::now();
    let cfg = match &args.config {
        Some(p) => ExperimentConfig::load(p, &args.set)?,
        None => {
            let p = Path::new("configs/demo-3d.toml");
            if p.is_file() {
                ExperimentConfig::load(p, &args.set)?
            } else {
                let base = std::env::current_dir()?.join("configs");
                ExperimentConfig::from_toml_str(
                    DEMO_CONFIG,
                    &args.set,
                    Path::new("<built-in demo-3d.toml>"),
                    base,
                )?
            }
        }
    };
    let data = cfg.dataset_dir();
    let run_dir = cfg.output_dir();

    stage(1, "synthetic data");
    if data.join("dataset.json").is_file() {
        eprintln!("using the existing dataset {}", data.display());
    } else {
        let sc = SynthConfig {
            cases: args.cases,
            test_cases: args.test_cases,
            dims: cfg.model.dims,
            size: args.size as usize,
            seed: 0,
        };
        let bar = crate::progress::bar((sc.cases + sc.test_cases) as u64, "synth");
        write_dataset(&data, &sc, &|_| bar.inc(1))
            .with_context(|| format!("writing {}", data.display()))?;
        bar.finish_and_clear();
        eprintln!(
            "wrote {} training + {} test phantoms to {}",
            sc.cases,
            sc.test_cases,
            data.display()
        );
    }

    stage(2, "training");
    let run = medseg_infer::RunLayout::new(&run_dir);
    let finished = run
        .last_checkpoint()
        .is_some_and(|c| medseg_train::state::TrainState::load(&c.state).is_ok_and(|s| s.finished));
    if finished && !args.fresh {
        eprintln!(
            "using the finished run in {} (--fresh retrains)",
            run_dir.display()
        );
    } else {
        if args.fresh && run_dir.exists() {
            std::fs::remove_dir_all(&run_dir)
                .with_context(|| format!("removing {}", run_dir.display()))?;
        }
        // Not finished: continue what a previous demo started.
        let existing = if run.can_resume() {
            super::train::Existing::Resume
        } else {
            super::train::Existing::Refuse
        };
        let s = super::train::run_with(
            &cfg,
            existing,
            args.device.device,
            super::train::install_interrupt(),
        )?;
        super::train::print_summary(&s);
        if s.outcome.is_interrupted() {
            anyhow::bail!("training was interrupted; run `medseg demo` again to resume");
        }
    }

    stage(3, "prediction of the held-out cases");
    let preds = run_dir.join("predictions");
    let pa = super::predict::PredictArgs {
        models: vec![run_dir.clone()],
        folds: Vec::new(),
        checkpoint: super::predict::CheckpointArg::Final,
        postprocessing: None,
        input: data.join("imagesTs"),
        output_format: None,
        series: None,
        output: preds.clone(),
        probabilities: true,
        no_tta: false,
        overlap: None,
        skip_existing: false,
        fail_fast: false,
        shard: None,
        device: args.device.clone(),
        threads: ThreadArgs::default(),
    };
    let t_pred = Instant::now();
    let report = super::predict::run_with(&pa)?;
    super::predict::check_failures(&report)?;
    eprintln!(
        "predicted {} cases in {:.1}s -> {}",
        report.written.len(),
        t_pred.elapsed().as_secs_f64(),
        preds.display()
    );

    stage(4, "evaluation");
    let gt = data.join("labelsTs");
    let list = find_cases(&preds, &gt, Some(&preds.join("probabilities")))?;
    let names = medseg_eval::cases::read_label_names(&data.join("dataset.json"))?;
    let labels: Vec<u16> = names.keys().copied().filter(|&l| l != 0).collect();
    let ev = evaluate_cases(
        &list,
        &labels,
        &names,
        &EvalOptions::default(),
        MissingPolicy::Error,
        &|| {},
    )?;
    let report_dir = run_dir.join("report");
    ev.write_report(&report_dir)?;
    let overlay = run_dir.join("overlay.png");
    if let Some(first) = report.written.first() {
        write_case_overlay(&data, first, &overlay)?;
    }

    println!();
    println!(
        "{:<12} {:>8} {:>10} {:>8}",
        "label", "Dice", "HD95 (mm)", "cases"
    );
    for &l in &labels {
        let s = &ev.summary.per_label[&l];
        let d = s.get("dice").and_then(|x| x.mean);
        let h = s.get("hd95").and_then(|x| x.mean);
        let f =
            |v: Option<f64>, p: usize| v.map(|x| format!("{x:.p$}")).unwrap_or_else(|| "-".into());
        println!(
            "{:<12} {:>8} {:>10} {:>8}",
            names.get(&l).cloned().unwrap_or_else(|| l.to_string()),
            f(d, 4),
            f(h, 2),
            ev.cases.len()
        );
    }
    let fg = ev
        .summary
        .foreground_mean
        .get("dice")
        .and_then(|x| x.mean)
        .unwrap_or(f64::NAN);
    println!("{:<12} {:>8.4}", "mean", fg);
    println!();
    println!("run          {}", run_dir.display());
    println!("predictions  {}", preds.display());
    println!("report       {}", report_dir.join("report.md").display());
    println!("overlay      {}", overlay.display());
    println!("curves       {}", run.curves().display());
    eprintln!(
        "demo finished in {:.1} min",
        t0.elapsed().as_secs_f64() / 60.0
    );
    Ok(())
}

/// image | ground truth | prediction on the axial slice with the most ground-truth foreground.
fn write_case_overlay(data: &Path, pred_path: &Path, out: &Path) -> Result<()> {
    let case = medseg_volume::dataset::strip_nifti_ext(pred_path);
    let img =
        medseg_volume::read_volume(&data.join("imagesTs").join(format!("{case}_0000.nii.gz")))?;
    let gt = medseg_volume::read_labels(&data.join("labelsTs").join(format!("{case}.nii.gz")))?;
    let pred = medseg_volume::read_labels(pred_path)?;
    let k = (0..gt.data.shape()[0])
        .max_by_key(|&k| {
            gt.data
                .index_axis(ndarray::Axis(0), k)
                .iter()
                .filter(|&&v| v > 0)
                .count()
        })
        .unwrap_or(0);
    let ax = ndarray::Axis(0);
    let scale = (256 / img.data.shape()[2].max(1)).clamp(1, 8) as u32;
    let panels = [
        render_overlay(img.data.index_axis(ax, k), None, scale),
        render_overlay(
            img.data.index_axis(ax, k),
            Some(gt.data.index_axis(ax, k)),
            scale,
        ),
        render_overlay(
            img.data.index_axis(ax, k),
            Some(pred.data.index_axis(ax, k)),
            scale,
        ),
    ];
    write_panels(out, &panels)?;
    Ok(())
}
