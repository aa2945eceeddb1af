//! The training run as named stages, after nnU-Net's `run_training`:
//!
//! ```text
//! train()
//!   Trainer::setup        settings, config.toml, plan, network.json, splits + cache, model,
//!                         optimizer, resume state, validator
//!   Trainer::run          for each epoch:
//!     train_epoch           optimizer steps over the loader's batches (stops on interrupt)
//!     on_epoch_end          progress, periodic validation + best checkpoint, log and curves
//!     checkpoint            last checkpoint, early-stopping decision
//!   Trainer::finish       model.safetensors, final validation (choosing the postprocessing:
//!                         postprocessing.json), summary.json
//! ```

use crate::data::FoldData;
use crate::learner::Learner;
use crate::loader::{LoaderSettings, for_each_batch};
use crate::log::{EpochRecord, write_csv, write_curves};
use crate::schedule::learning_rate;
use crate::setup::{
    check_settings, claim_run_dir, loader_settings, network_for, plan_for, write_network,
    write_resolved_config,
};
use crate::state::TrainState;
use crate::summary::write_summary;
use crate::validate::{ValidationKind, Validator};
use crate::{
    ClassLabels, TrainError, TrainObserver, TrainOptions, TrainOutcome, TrainSummary, Validation,
};
use medseg_config::ExperimentConfig;
use medseg_infer::{DirLock, RunLayout, select_device};
use medseg_model::UNetConfig;
use medseg_postprocess::PostprocessChoice;
use medseg_volume::dataset::Dataset;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// Trains the experiment `cfg` into its run directory (`[train] output`). Interruption and
/// early stopping end in `Ok` with their [`TrainOutcome`]; a non-finite loss is
/// [`TrainError::NonFiniteLoss`].
pub fn train(
    cfg: &ExperimentConfig,
    opts: &TrainOptions,
    obs: &mut dyn TrainObserver,
) -> Result<TrainSummary, TrainError> {
    let started = Instant::now();
    let mut trainer = Trainer::setup(cfg, opts, obs)?;
    let outcome = trainer.run(obs)?;
    trainer.finish(outcome, started, obs)
}

/// Everything a run needs between setup and the summary.
struct Trainer<'a> {
    cfg: &'a ExperimentConfig,
    run: RunLayout,
    network: UNetConfig,
    labels: ClassLabels,
    data: FoldData,
    loader: LoaderSettings,
    learner: Learner,
    validator: Validator,
    state: TrainState,
    interrupt: Arc<AtomicBool>,
    /// Held until the run ends, so no second process writes the run meanwhile.
    _lock: DirLock,
}

/// What the optimizer steps of one complete epoch leave for the log.
struct EpochTraining {
    mean_loss: f64,
    /// Learning rate of the epoch's last step.
    learning_rate: f64,
}

impl<'a> Trainer<'a> {
    /// nnU-Net's `on_train_start`: from the config to a model ready for its first (or, with
    /// `--resume`, next) step, writing config.toml, plan.json, network.json, splits.json and
    /// the cache on the way.
    fn setup(
        cfg: &'a ExperimentConfig,
        opts: &TrainOptions,
        obs: &mut dyn TrainObserver,
    ) -> Result<Self, TrainError> {
        check_settings(&cfg.train)?;
        let run = RunLayout::new(cfg.output_dir());
        let lock = claim_run_dir(&run, opts, obs)?;
        let dataset = Dataset::open(&cfg.dataset_dir())?;
        write_resolved_config(cfg, &run)?;
        let plan = plan_for(cfg, &dataset, &run, obs)?;
        let network = network_for(cfg, &plan)?;
        write_network(&network, &run)?;
        let data = FoldData::load(cfg, &dataset, &plan, &run, obs)?;
        let base_device = select_device(&opts.device)?;
        let mut learner = Learner::new(cfg, &network, plan.num_classes, &base_device)?;
        let state = if opts.resume {
            learner.resume(&run, &network, obs)?
        } else {
            TrainState::new(cfg.train.seed)
        };
        let labels = ClassLabels::new(&plan.labels);
        Ok(Self {
            cfg,
            loader: loader_settings(cfg, &plan)?,
            validator: Validator::new(cfg, &plan, base_device, labels.ids())?,
            run,
            network,
            labels,
            data,
            learner,
            state,
            interrupt: opts.interrupt.clone(),
            _lock: lock,
        })
    }

    /// The epochs still to do; each trains, ends (validation, log) and checkpoints.
    fn run(&mut self, obs: &mut dyn TrainObserver) -> Result<TrainOutcome, TrainError> {
        let epochs = self.cfg.train.epochs;
        for epoch in (self.state.epochs_done + 1)..=epochs {
            let started = Instant::now();
            obs.epoch_start(epoch, epochs);
            let Some(trained) = self.train_epoch(epoch, obs)? else {
                self.on_interrupted(epoch, obs)?;
                return Ok(TrainOutcome::Interrupted { epoch });
            };
            self.on_epoch_end(epoch, trained, started, obs)?;
            if let Some(stopped) = self.checkpoint(epoch, obs)? {
                return Ok(stopped);
            }
        }
        Ok(TrainOutcome::Finished)
    }

    /// One epoch of optimizer steps, or `None` when the interrupt flag stopped it.
    fn train_epoch(
        &mut self,
        epoch: usize,
        obs: &mut dyn TrainObserver,
    ) -> Result<Option<EpochTraining>, TrainError> {
        let cfg = self.cfg;
        let t = &cfg.train;
        let total_iterations = t.epochs * t.iterations_per_epoch;
        let rate = |it| {
            learning_rate(
                t.schedule,
                t.learning_rate,
                it,
                total_iterations,
                t.warmup_iterations,
            )
        };
        let first = self.state.iterations_done;
        let mut lr = rate(first);
        let mut losses = Vec::with_capacity(t.iterations_per_epoch);
        let (learner, interrupt) = (&mut self.learner, &self.interrupt);
        let flow = for_each_batch(
            &self.data.train,
            &self.loader,
            epoch,
            t.iterations_per_epoch,
            &mut |batch| {
                if interrupt.load(Ordering::Relaxed) {
                    return Ok(ControlFlow::Break(()));
                }
                let iteration = batch.index + 1;
                lr = rate(first + batch.index);
                let loss = learner.train_step(batch, lr, epoch)? as f64;
                losses.push(loss);
                obs.iteration(iteration, t.iterations_per_epoch, loss, lr);
                Ok(ControlFlow::Continue(()))
            },
        )?;
        if flow.is_break() {
            return Ok(None);
        }
        Ok(Some(EpochTraining {
            mean_loss: losses.iter().sum::<f64>() / losses.len().max(1) as f64,
            learning_rate: lr,
        }))
    }

    /// Saves the weights as they are; the state still says the epoch before, so `--resume`
    /// runs the interrupted epoch again.
    fn on_interrupted(&self, epoch: usize, obs: &mut dyn TrainObserver) -> Result<(), TrainError> {
        self.learner.save_last(&self.run, &self.state)?;
        obs.message(&format!(
            "interrupted in epoch {epoch}: saved {}/ (resume with --resume)",
            RunLayout::CHECKPOINT_LAST
        ));
        Ok(())
    }

    /// nnU-Net's `on_epoch_end` + `on_validation_epoch_end`: counts the epoch, validates when
    /// due (keeping the best weights), and appends to the log.
    fn on_epoch_end(
        &mut self,
        epoch: usize,
        trained: EpochTraining,
        started: Instant,
        obs: &mut dyn TrainObserver,
    ) -> Result<(), TrainError> {
        self.state.iterations_done += self.cfg.train.iterations_per_epoch;
        self.state.epochs_done = epoch;
        let mut record = EpochRecord {
            epoch,
            train_loss: trained.mean_loss,
            learning_rate: trained.learning_rate,
            seconds: 0.0,
            val_dice: None,
            val_dice_mean: None,
        };
        if self.validation_due(epoch) {
            let v = self.validate_epoch(epoch, obs)?;
            record.val_dice = Some(v.dice.iter().map(|(l, d)| (l.to_string(), *d)).collect());
            record.val_dice_mean = Some(v.foreground_mean);
        }
        record.seconds = started.elapsed().as_secs_f64();
        obs.epoch_end(&record);
        self.state.log.push(record);
        write_csv(&self.run.train_log(), &self.state.log, &self.labels)?;
        write_curves(&self.run.curves(), &self.state.log, &self.labels)
    }

    /// Validation runs every `train.validation_interval` epochs and after the last one, when
    /// the fold has validation cases.
    fn validation_due(&self, epoch: usize) -> bool {
        let t = &self.cfg.train;
        !self.data.val.is_empty()
            && (epoch == t.epochs
                || (t.validation_interval > 0 && epoch.is_multiple_of(t.validation_interval)))
    }

    /// Scores the current weights; a new best foreground-mean Dice saves `checkpoint_best`.
    fn validate_epoch(
        &mut self,
        epoch: usize,
        obs: &mut dyn TrainObserver,
    ) -> Result<Validation, TrainError> {
        let model = self.learner.inference_model();
        let v = self.validator.validate(
            &model,
            &self.data.val,
            ValidationKind::Periodic,
            &mut |d, n| obs.progress("validate", d, n, ""),
        )?;
        let s = &mut self.state;
        if s.best_dice.is_none_or(|b| v.foreground_mean > b) {
            s.best_dice = Some(v.foreground_mean);
            s.best_epoch = Some(epoch);
            s.validations_since_best = 0;
            self.learner.save_best(&self.run)?;
        } else {
            s.validations_since_best += 1;
        }
        Ok(v)
    }

    /// Saves `last` every `train.checkpoint_interval` epochs, after the last epoch and when
    /// stopping early; returns the early-stopping outcome when patience has run out.
    fn checkpoint(
        &mut self,
        epoch: usize,
        obs: &mut dyn TrainObserver,
    ) -> Result<Option<TrainOutcome>, TrainError> {
        let t = &self.cfg.train;
        let stop_early = t.early_stopping_patience > 0
            && self.state.validations_since_best >= t.early_stopping_patience;
        if stop_early || epoch == t.epochs || epoch.is_multiple_of(t.checkpoint_interval.max(1)) {
            self.state.finished = stop_early || epoch == t.epochs;
            self.learner.save_last(&self.run, &self.state)?;
        }
        if !stop_early {
            return Ok(None);
        }
        let (best_dice, best_epoch) = (
            self.state.best_dice.unwrap_or(0.0),
            self.state.best_epoch.unwrap_or(0),
        );
        obs.message(&format!(
            "early stopping: no improvement in {} validations (best {best_dice:.4} at epoch {best_epoch})",
            self.state.validations_since_best,
        ));
        Ok(Some(TrainOutcome::EarlyStopped {
            epoch,
            best_epoch,
            best_dice,
        }))
    }

    /// nnU-Net's `on_train_end`: unless interrupted, exports the final weights (best, else
    /// last) as safetensors and validates them with every metric; then `summary.json`.
    fn finish(
        self,
        outcome: TrainOutcome,
        started: Instant,
        obs: &mut dyn TrainObserver,
    ) -> Result<TrainSummary, TrainError> {
        let final_validation = match outcome {
            TrainOutcome::Interrupted { .. } => None,
            _ => {
                let v = self.export_and_validate_final(obs)?;
                let choice = v.as_ref().and_then(|v| v.postprocessing.as_ref());
                write_postprocessing(&self.run, choice, obs)?;
                v
            }
        };
        let summary = TrainSummary {
            run_dir: self.run.root().to_path_buf(),
            outcome,
            epochs_done: self.state.epochs_done,
            best_dice: self.state.best_dice,
            best_epoch: self.state.best_epoch,
            final_validation,
            seconds: started.elapsed().as_secs_f64(),
        };
        write_summary(&self.run.summary(), &summary, &self.labels)?;
        Ok(summary)
    }

    /// The final validation of the best weights; `None` without weights or validation cases.
    fn export_and_validate_final(
        &self,
        obs: &mut dyn TrainObserver,
    ) -> Result<Option<Validation>, TrainError> {
        let Some(weights) = self.run.final_weights() else {
            return Ok(None);
        };
        let model = medseg_model::load(&self.network, &weights, self.validator.device())?;
        medseg_model::save_safetensors(&model, &self.run.safetensors())?;
        if self.data.val.is_empty() {
            return Ok(None);
        }
        obs.message("final validation of the best weights (all metrics)");
        let v = self.validator.validate(
            &model,
            &self.data.val,
            ValidationKind::Final,
            &mut |d, n| obs.progress("final validation", d, n, ""),
        )?;
        Ok(Some(v))
    }
}

/// Writes `postprocessing.json` (the steps the final validation chose), or removes one left
/// by an earlier training of this run when nothing was chosen this time, so `medseg predict`
/// never applies a choice made for other weights.
fn write_postprocessing(
    run: &RunLayout,
    choice: Option<&PostprocessChoice>,
    obs: &mut dyn TrainObserver,
) -> Result<(), TrainError> {
    let path = run.postprocessing();
    let Some(c) = choice else {
        return match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(TrainError::io(&path, e)),
            _ => Ok(()),
        };
    };
    let mut steps = Vec::new();
    if c.largest_foreground {
        steps.push("largest component of the foreground".to_string());
    }
    if !c.largest_component_labels.is_empty() {
        steps.push(format!(
            "largest component of class(es) {:?}",
            c.largest_component_labels
        ));
    }
    let steps = if steps.is_empty() {
        "none (no largest-component step raised the Dice)".to_string()
    } else {
        steps.join(", then ")
    };
    obs.message(&format!(
        "postprocessing chosen on {} validation case(s): {steps}; foreground-mean Dice {:.4} -> {:.4} ({})",
        c.cases,
        c.foreground_mean_before,
        c.foreground_mean_after,
        RunLayout::POSTPROCESSING
    ));
    crate::error::write_json(&path, c)
}
