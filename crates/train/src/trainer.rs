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

use crate::budget::{BudgetClock, BudgetInputs, Schedule};
use crate::data::FoldData;
use crate::learner::Learner;
use crate::loader::{LoaderSettings, for_each_batch};
use crate::log::{EpochRecord, write_csv, write_curves};
use crate::schedule::learning_rate;
use crate::setup::{
    check_settings, claim_run_dir, loader_settings, network_for, plan_for, plan_for_budget,
    write_network, write_resolved_config,
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
use medseg_preprocess::budget::BudgetChoice;
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
    let mut trainer = Trainer::setup(cfg, opts, started, obs)?;
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
    /// The epochs to run: the config's, or the time budget's (re-sized after every epoch).
    schedule: Schedule,
    /// With a time budget (and not resuming): when training must end.
    clock: Option<BudgetClock>,
    /// The time budget's choice, for the summary.
    budget: Option<BudgetChoice>,
    /// Seconds and optimizer steps of this invocation's epochs (the budget's step time).
    timed_steps: (f64, usize),
    /// Seconds of the last epoch spent outside steps and validation (log, curves,
    /// checkpoint).
    epoch_overhead: f64,
    interrupt: Arc<AtomicBool>,
    /// `--device` as given (`flex`, `wgpu`, `wgpu:N`), for the summary.
    device: String,
    /// Held until the run ends, so no second process writes the run meanwhile.
    _lock: DirLock,
}

/// What the optimizer steps of one complete epoch leave for the log.
struct EpochTraining {
    mean_loss: f64,
    /// Learning rate of the epoch's last step.
    learning_rate: f64,
    /// Optimizer steps taken (fewer than the schedule's when the budget ran out).
    iterations: usize,
    /// Seconds of the steps (data loading included).
    seconds: f64,
}

impl<'a> Trainer<'a> {
    /// nnU-Net's `on_train_start`: from the config to a model ready for its first (or, with
    /// `--resume`, next) step, writing config.toml, plan.json, network.json, splits.json and
    /// the cache on the way.
    fn setup(
        cfg: &'a ExperimentConfig,
        opts: &TrainOptions,
        started: Instant,
        obs: &mut dyn TrainObserver,
    ) -> Result<Self, TrainError> {
        check_settings(&cfg.train)?;
        let run = RunLayout::new(cfg.output_dir());
        let lock = claim_run_dir(&run, opts, obs)?;
        let dataset = Dataset::open(&cfg.dataset_dir())?;
        write_resolved_config(cfg, &run)?;
        let plan = plan_for(cfg, &dataset, &run, obs)?;
        let data = FoldData::load(cfg, &dataset, &plan, &run, obs)?;
        let base_device = select_device(&opts.device)?;
        let labels = ClassLabels::new(&plan.labels);
        let plan = match (opts.resume, cfg.train.time_budget) {
            (true, _) => plan,
            (false, None) => plan_for_budget(None, plan, &run, obs)?,
            (false, Some(budget)) => {
                let inputs = BudgetInputs {
                    cfg,
                    budget,
                    data: &data,
                    device: &base_device,
                    device_name: &opts.device,
                    labels: &labels,
                    started,
                };
                plan_for_budget(Some(&inputs), plan, &run, obs)?
            }
        };
        let network = network_for(cfg, &plan)?;
        write_network(&network, &run)?;
        let mut learner = Learner::new(cfg, &network, plan.num_classes, &base_device)?;
        let mut state = if opts.resume {
            learner.resume(&run, &network, obs)?
        } else {
            TrainState::new(cfg.train.seed)
        };
        let budget = plan.time_budget.clone();
        // A budgeted run resumes the schedule it had; otherwise the config's epochs decide
        // (so `--resume --set train.epochs=N` extends a run).
        let schedule = match (opts.resume, &budget, &state.schedule) {
            (true, Some(_), Some(s)) => *s,
            (false, Some(b), _) => Schedule {
                epochs: b.epochs,
                iterations_per_epoch: b.iterations_per_epoch,
                validation_interval: b.validation_interval,
            },
            _ => Schedule::of(cfg),
        };
        state.schedule = Some(schedule);
        let clock = budget
            .as_ref()
            .filter(|_| !opts.resume)
            .map(|b| BudgetClock::from_choice(b, started, data.val.len()));
        let mut validator = Validator::new(cfg, &plan, base_device, labels.ids())?;
        if budget.as_ref().is_some_and(|b| !b.final_tta) {
            validator.final_without_mirroring();
        }
        Ok(Self {
            cfg,
            loader: loader_settings(cfg, &plan)?,
            validator,
            run,
            network,
            labels,
            data,
            learner,
            state,
            schedule,
            clock,
            budget,
            timed_steps: (0.0, 0),
            epoch_overhead: 0.0,
            interrupt: opts.interrupt.clone(),
            device: opts.device.clone(),
            _lock: lock,
        })
    }

    /// The epochs still to do; each trains, ends (validation, log) and checkpoints.
    fn run(&mut self, obs: &mut dyn TrainObserver) -> Result<TrainOutcome, TrainError> {
        let mut epoch = self.state.epochs_done + 1;
        while epoch <= self.schedule.epochs {
            let started = Instant::now();
            obs.epoch_start(epoch, self.schedule.epochs);
            let Some(trained) = self.train_epoch(epoch, obs)? else {
                self.on_interrupted(epoch, obs)?;
                return Ok(TrainOutcome::Interrupted { epoch });
            };
            let steps_seconds = trained.seconds;
            self.fit_schedule_to_budget(epoch, &trained, obs);
            let validation_seconds = self.on_epoch_end(epoch, trained, started, obs)?;
            if let Some(stopped) = self.checkpoint(epoch, obs)? {
                return Ok(stopped);
            }
            self.epoch_overhead =
                (started.elapsed().as_secs_f64() - steps_seconds - validation_seconds).max(0.0);
            epoch += 1;
        }
        Ok(TrainOutcome::Finished)
    }

    /// With a time budget: the epochs that still fit at the step and validation times this
    /// run shows (the current epoch is the last when its steps ran out of time).
    fn fit_schedule_to_budget(
        &mut self,
        epoch: usize,
        trained: &EpochTraining,
        obs: &mut dyn TrainObserver,
    ) {
        let Some(clock) = &self.clock else {
            return;
        };
        self.timed_steps.0 += trained.seconds;
        self.timed_steps.1 += trained.iterations;
        let epochs = if trained.iterations < self.schedule.iterations_per_epoch {
            epoch
        } else {
            let (seconds, steps) = self.timed_steps;
            let step = seconds / steps.max(1) as f64;
            let epoch_seconds =
                self.schedule.iterations_per_epoch as f64 * step + self.epoch_overhead;
            let fit = clock
                .epochs_that_fit(epoch + 1, epoch_seconds, self.data.val.is_empty())
                .max(epoch);
            // Shrink at once (the budget is a limit); grow only by two or more, so that step
            // times that jitter around a boundary do not move the schedule every epoch.
            if fit < self.schedule.epochs || fit >= self.schedule.epochs + 2 {
                fit
            } else {
                self.schedule.epochs
            }
        };
        if epochs != self.schedule.epochs {
            obs.message(&format!(
                "time budget: {epochs} epochs fit at this run's speed (planned {})",
                self.schedule.epochs
            ));
            self.schedule.epochs = epochs;
            self.state.schedule = Some(self.schedule);
        }
    }

    /// One epoch of optimizer steps, or `None` when the interrupt flag stopped it.
    fn train_epoch(
        &mut self,
        epoch: usize,
        obs: &mut dyn TrainObserver,
    ) -> Result<Option<EpochTraining>, TrainError> {
        let t = &self.cfg.train;
        let per_epoch = self.schedule.iterations_per_epoch;
        let total_iterations = self.schedule.total_iterations();
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
        let mut losses = Vec::with_capacity(per_epoch);
        let (learner, interrupt, clock) = (&mut self.learner, &self.interrupt, &self.clock);
        let started = Instant::now();
        let flow = for_each_batch(
            &self.data.train,
            &self.loader,
            epoch,
            per_epoch,
            &mut |batch| {
                // The budget stops an epoch only after its first step, so every epoch trains.
                let out_of_time = !losses.is_empty() && clock.as_ref().is_some_and(|c| c.overdue());
                if interrupt.load(Ordering::Relaxed) || out_of_time {
                    return Ok(ControlFlow::Break(()));
                }
                let iteration = batch.index + 1;
                lr = rate(first + batch.index);
                let loss = learner.train_step(batch, lr, epoch)? as f64;
                losses.push(loss);
                obs.iteration(iteration, per_epoch, loss, lr);
                Ok(ControlFlow::Continue(()))
            },
        )?;
        if flow.is_break() && interrupt.load(Ordering::Relaxed) {
            return Ok(None);
        }
        Ok(Some(EpochTraining {
            mean_loss: losses.iter().sum::<f64>() / losses.len().max(1) as f64,
            learning_rate: lr,
            iterations: losses.len(),
            seconds: started.elapsed().as_secs_f64(),
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
    /// due (keeping the best weights), and appends to the log. Returns the validation's
    /// seconds (0 without one).
    fn on_epoch_end(
        &mut self,
        epoch: usize,
        trained: EpochTraining,
        started: Instant,
        obs: &mut dyn TrainObserver,
    ) -> Result<f64, TrainError> {
        self.state.iterations_done += trained.iterations;
        self.state.epochs_done = epoch;
        let mut record = EpochRecord {
            epoch,
            train_loss: trained.mean_loss,
            learning_rate: trained.learning_rate,
            seconds: 0.0,
            val_dice: None,
            val_dice_mean: None,
        };
        let mut validation_seconds = 0.0;
        if self.validation_due(epoch) {
            let validation_started = Instant::now();
            let v = self.validate_epoch(epoch, obs)?;
            validation_seconds = validation_started.elapsed().as_secs_f64();
            record.val_dice = Some(v.dice.iter().map(|(l, d)| (l.to_string(), *d)).collect());
            record.val_dice_mean = Some(v.foreground_mean);
        }
        record.seconds = started.elapsed().as_secs_f64();
        obs.epoch_end(&record);
        self.state.log.push(record);
        write_csv(&self.run.train_log(), &self.state.log, &self.labels)?;
        write_curves(&self.run.curves(), &self.state.log, &self.labels)?;
        Ok(validation_seconds)
    }

    /// Validation runs every `train.validation_interval` epochs and after the last one, when
    /// the fold has validation cases.
    fn validation_due(&self, epoch: usize) -> bool {
        let interval = self.schedule.validation_interval;
        !self.data.val.is_empty()
            && (epoch == self.schedule.epochs || (interval > 0 && epoch.is_multiple_of(interval)))
    }

    /// Scores the current weights; a new best foreground-mean Dice saves `checkpoint_best`.
    fn validate_epoch(
        &mut self,
        epoch: usize,
        obs: &mut dyn TrainObserver,
    ) -> Result<Validation, TrainError> {
        let model = self.learner.inference_model();
        let started = Instant::now();
        let v = self.validator.validate(
            &model,
            &self.data.val,
            ValidationKind::Periodic,
            &mut |d, n| obs.progress("validate", d, n, ""),
        )?;
        if let Some(clock) = &mut self.clock {
            clock.note_validation(started.elapsed().as_secs_f64());
        }
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
        let last = epoch == self.schedule.epochs;
        let stop_early = t.early_stopping_patience > 0
            && self.state.validations_since_best >= t.early_stopping_patience;
        if stop_early || last || epoch.is_multiple_of(t.checkpoint_interval.max(1)) {
            self.state.finished = stop_early || last;
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
            iterations_done: self.state.iterations_done,
            time_budget: self.budget.clone(),
            device: self.device.clone(),
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
