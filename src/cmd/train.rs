//! `medseg train`: a config in, a trained run directory out.

use super::args::{Device, DeviceArgs, SET_HELP, SET_VALUE_NAME, ThreadArgs};
use anyhow::Result;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use medseg_config::{ExperimentConfig, TimeBudget};
use medseg_train::{
    ClassLabels, EpochRecord, TrainObserver, TrainOptions, TrainOutcome, TrainSummary,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Train a UNet into a run directory (from a config, or the template with --dataset).
///
/// Without --config, the shipped template (configs/msd-template.toml) is used. The shortest way: `medseg train --dataset DIR -o RUN --time-budget 20m` (the budget picks
/// the network for this machine and fits the schedule to it). Plans the dataset (or reuses RUN/plan.json), preprocesses each case once into RUN/cache,
/// trains with background data loading, validates on whole volumes every
/// `train.validation_interval` epochs (per-class Dice as `medseg evaluate` computes it), and
/// writes a self-contained run directory: config.toml, plan.json, splits.json, network.json,
/// checkpoint_best.bpk, checkpoint_last/, model.safetensors, train_log.csv, curves.png,
/// summary.json. Ctrl-C saves checkpoint_last/; `--resume` continues from it.
///
/// `--threads` sizes the compute pool; the data-loading workers are the config's
/// `[train] threads`. Every config key: configs/README.md.
#[derive(clap::Args, Debug, Clone)]
pub struct TrainArgs {
    /// Experiment config (TOML; every key and its default: configs/README.md). Without it,
    /// the shipped template (configs/msd-template.toml) with --dataset and --output.
    #[arg(long, value_name = "CONFIG.toml", required_unless_present = "dataset")]
    pub config: Option<PathBuf>,
    /// Dataset folder (the one holding dataset.json); overrides the config's data.dataset.
    #[arg(long, value_name = "DIR")]
    pub dataset: Option<PathBuf>,
    /// Run directory; overrides the config's train.output.
    #[arg(short = 'o', long, value_name = "RUN")]
    pub output: Option<PathBuf>,
    /// Train the best model this machine can in this time, e.g. 20m, 1h30m, 90s (sets
    /// train.time_budget): times candidate networks, picks one and sizes the schedule so that
    /// training, validation and the final checkpoint end within it.
    #[arg(long, value_name = "DURATION")]
    pub time_budget: Option<TimeBudget>,
    #[arg(long = "set", value_name = SET_VALUE_NAME, help = SET_HELP)]
    pub set: Vec<String>,
    /// Continue an interrupted run from its last checkpoint (weights, optimizer, epoch, schedule).
    #[arg(long)]
    pub resume: bool,
    /// Start again in a run directory that already holds a run: deletes its checkpoints, log
    /// and summary (keeps plan.json and the cache). Without it, or --resume, such a directory
    /// is refused.
    #[arg(long, conflicts_with = "resume")]
    pub overwrite: bool,
    #[command(flatten)]
    pub device: DeviceArgs,
    #[command(flatten)]
    pub threads: ThreadArgs,
}

/// Bars on a terminal, one log line per epoch otherwise.
pub struct Observer {
    bars: MultiProgress,
    epoch_bar: Option<ProgressBar>,
    iter_bar: Option<ProgressBar>,
    stage_bar: Option<ProgressBar>,
    interactive: bool,
    label_names: Vec<(String, String)>,
    iter_started: std::time::Instant,
}

impl Observer {
    pub fn new(label_names: Vec<(String, String)>) -> Self {
        let interactive = crate::progress::interactive();
        let bars = MultiProgress::new();
        if !interactive {
            bars.set_draw_target(ProgressDrawTarget::hidden());
        }
        Self {
            bars,
            epoch_bar: None,
            iter_bar: None,
            stage_bar: None,
            interactive,
            label_names,
            iter_started: std::time::Instant::now(),
        }
    }

    fn style(t: &str) -> ProgressStyle {
        ProgressStyle::with_template(t)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ")
    }

    fn print(&self, line: &str) {
        if self.interactive {
            let _ = self.bars.println(line);
        } else {
            eprintln!("{line}");
        }
    }

    pub fn finish(&mut self) {
        for b in [
            self.iter_bar.take(),
            self.epoch_bar.take(),
            self.stage_bar.take(),
        ]
        .into_iter()
        .flatten()
        {
            b.finish_and_clear();
        }
    }
}

impl TrainObserver for Observer {
    fn message(&mut self, msg: &str) {
        self.print(msg);
    }

    fn progress(&mut self, stage: &str, done: usize, total: usize, detail: &str) {
        if !self.interactive {
            if done == total {
                self.print(&format!("{stage}: {done}/{total} done"));
            }
            return;
        }
        let bar = self.stage_bar.get_or_insert_with(|| {
            let b = self.bars.add(ProgressBar::new(total as u64));
            b.set_style(Self::style("{prefix:>16} [{bar:30}] {pos}/{len} {msg}"));
            b
        });
        bar.set_length(total as u64);
        bar.set_prefix(stage.to_string());
        bar.set_position(done as u64);
        bar.set_message(detail.to_string());
        if done >= total {
            bar.finish_and_clear();
            self.stage_bar = None;
        }
    }

    fn epoch_start(&mut self, epoch: usize, epochs: usize) {
        self.iter_started = std::time::Instant::now();
        if !self.interactive {
            return;
        }
        let eb = self.epoch_bar.get_or_insert_with(|| {
            let b = self.bars.add(ProgressBar::new(epochs as u64));
            b.set_style(Self::style(
                "{prefix:>16} [{bar:30}] {pos}/{len} epochs ({elapsed}, eta {eta}) {msg}",
            ));
            b.set_prefix("train");
            b
        });
        eb.set_position((epoch - 1) as u64);
    }

    fn iteration(&mut self, iteration: usize, iterations: usize, loss: f64, lr: f64) {
        if !self.interactive {
            return;
        }
        let ib = self.iter_bar.get_or_insert_with(|| {
            let b = self.bars.add(ProgressBar::new(iterations as u64));
            b.set_style(Self::style("{prefix:>16} [{bar:30}] {pos}/{len} it {msg}"));
            b.set_prefix("epoch");
            b
        });
        ib.set_length(iterations as u64);
        ib.set_position(iteration as u64);
        let rate = iteration as f64 / self.iter_started.elapsed().as_secs_f64().max(1e-9);
        ib.set_message(format!("loss {loss:.4}  lr {lr:.2e}  {rate:.2} it/s"));
    }

    fn epoch_end(&mut self, r: &EpochRecord) {
        let mut line = format!(
            "epoch {:>3}  loss {:.4}  lr {:.2e}  {:.1}s",
            r.epoch, r.train_loss, r.learning_rate, r.seconds
        );
        if let (Some(m), Some(d)) = (r.val_dice_mean, &r.val_dice) {
            line.push_str(&format!("  val Dice {m:.4} ("));
            let parts: Vec<String> = self
                .label_names
                .iter()
                .filter_map(|(id, n)| d.get(id).map(|v| format!("{n} {v:.3}")))
                .collect();
            line.push_str(&parts.join(", "));
            line.push(')');
        }
        if let Some(eb) = &self.epoch_bar {
            eb.set_position(r.epoch as u64);
            if let Some(m) = r.val_dice_mean {
                eb.set_message(format!("val Dice {m:.3}"));
            }
        }
        if let Some(ib) = self.iter_bar.take() {
            ib.finish_and_clear();
        }
        self.print(&line);
    }
}

/// Ctrl-C sets the flag (training saves `last` and stops); a second Ctrl-C exits at once.
pub fn install_interrupt() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let f = flag.clone();
    let _ = ctrlc::set_handler(move || {
        if f.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!(
            "\ninterrupt: finishing the current step and saving checkpoint_last/ (Ctrl-C again to quit now)"
        );
    });
    flag
}

pub fn label_names_of(cfg: &ExperimentConfig) -> Vec<(String, String)> {
    medseg_volume::dataset::Dataset::open(&cfg.dataset_dir())
        .map(|d| {
            ClassLabels::new(&d.labels)
                .iter()
                .map(|(id, n)| (id.to_string(), n.to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// How `run_with` treats a run directory that already holds a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existing {
    /// Refuse it (a new run only).
    Refuse,
    /// Continue it (`--resume`).
    Resume,
    /// Delete it and start again (`--overwrite`).
    Overwrite,
}

pub fn run_with(
    cfg: &ExperimentConfig,
    existing: Existing,
    device: Device,
    interrupt: Arc<AtomicBool>,
) -> Result<TrainSummary> {
    device.announce()?;
    let mut obs = Observer::new(label_names_of(cfg));
    let opts = TrainOptions {
        resume: existing == Existing::Resume,
        overwrite: existing == Existing::Overwrite,
        device: device.name().to_string(),
        interrupt,
    };
    let result = medseg_train::train(cfg, &opts, &mut obs);
    obs.finish();
    Ok(result?)
}

/// The shipped template, what `medseg train --dataset DIR` trains with no config.
const TEMPLATE: &str = include_str!("../../configs/msd-template.toml");

impl TrainArgs {
    /// The config (or the template) with `--dataset`, `--output`, `--time-budget` and the
    /// `--set` overrides applied, in that order.
    pub fn load(&self) -> Result<ExperimentConfig> {
        let quoted = |p: &Path| toml::Value::String(p.display().to_string()).to_string();
        let mut sets = Vec::new();
        if let Some(d) = &self.dataset {
            sets.push(format!("data.dataset={}", quoted(&absolute(d))));
        }
        if let Some(o) = &self.output {
            sets.push(format!("train.output={}", quoted(&absolute(o))));
        }
        if let Some(b) = &self.time_budget {
            sets.push(format!("train.time_budget=\"{b}\""));
        }
        sets.extend(self.set.iter().cloned());
        Ok(match &self.config {
            Some(path) => ExperimentConfig::load(path, &sets)?,
            None => ExperimentConfig::from_toml_str(
                TEMPLATE,
                &sets,
                Path::new("built-in template (configs/msd-template.toml)"),
                std::env::current_dir()?,
            )?,
        })
    }
}

/// `p` against the working directory (a config resolves relative paths against its own
/// folder, but a path typed on the command line means the shell's).
fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

pub fn run(args: &TrainArgs) -> Result<()> {
    args.threads.apply()?;
    let cfg = args.load()?;
    let interrupt = install_interrupt();
    let existing = match (args.resume, args.overwrite) {
        (true, _) => Existing::Resume,
        (false, true) => Existing::Overwrite,
        (false, false) => Existing::Refuse,
    };
    let s = run_with(&cfg, existing, args.device.device, interrupt)?;
    print_summary(&s);
    Ok(())
}

pub fn print_summary(s: &TrainSummary) {
    let mins = s.seconds / 60.0;
    match s.outcome {
        TrainOutcome::Interrupted { .. } => eprintln!(
            "interrupted after {} epochs ({mins:.1} min); resume with --resume",
            s.epochs_done
        ),
        TrainOutcome::EarlyStopped { .. } => eprintln!(
            "trained {} epochs in {mins:.1} min (early stop)",
            s.epochs_done
        ),
        TrainOutcome::Finished => {
            eprintln!("trained {} epochs in {mins:.1} min", s.epochs_done)
        }
    }
    if let Some((b, c)) = s
        .time_budget
        .as_ref()
        .and_then(|b| Some((b, b.chosen_candidate()?)))
    {
        eprintln!(
            "time budget {}: used {mins:.1} of {:.1} min ({:.0}%): {} iterations of features {:?}, patch {:?}, batch {}",
            b.budget,
            b.budget_seconds / 60.0,
            100.0 * s.seconds / b.budget_seconds,
            s.iterations_done,
            c.features_per_stage,
            c.patch_size,
            c.batch_size
        );
    }
    if let (Some(d), Some(e)) = (s.best_dice, s.best_epoch) {
        eprintln!("best validation Dice {d:.4} (foreground mean, epoch {e})");
    }
    if let Some(v) = &s.final_validation {
        eprintln!(
            "final validation (best weights, TTA as configured): foreground-mean Dice {:.4}",
            v.foreground_mean
        );
        if let Some(p) = v.postprocessing.as_ref().filter(|p| !p.is_identity()) {
            eprintln!(
                "  after the postprocessing chosen on it ({}); {:.4} before",
                medseg_infer::RunLayout::POSTPROCESSING,
                p.foreground_mean_before
            );
        }
    }
    eprintln!("run directory: {}", s.run_dir.display());
}
