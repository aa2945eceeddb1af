//! `--time-budget`: the best model this machine can train in the time given.
//!
//! Planning ([`plan_budget`]) times a few real training steps (the loader's batches, the
//! optimizer, this device and thread count) of candidate networks: nnU-Net's topology for the
//! dataset at first-stage widths 8, 16 and 32, narrowest first, and, when even the narrowest
//! cannot afford [`MIN_ITERATIONS`] at the plan's patch, smaller patches. It keeps the widest
//! network that affords at least [`MIN_ITERATIONS`] steps (why that rule: BENCHMARKS.md,
//! "time budget"), times the validation of one case, and sizes the schedule so that the
//! steps, the periodic and final validations and the checkpoints end within the budget.
//!
//! While training, [`BudgetClock`] re-sizes the schedule after every epoch from the step and
//! validation times this run actually shows (a shared machine is noisy), and stops an epoch
//! early if the training time runs out anyway.

use crate::data::FoldData;
use crate::learner::Learner;
use crate::loader::for_each_batch;
use crate::setup::{loader_settings, network_for};
use crate::validate::{ValidationKind, Validator};
use crate::{ClassLabels, TrainError, TrainObserver};
use burn::tensor::Device;
use medseg_config::{ExperimentConfig, TimeBudget};
use medseg_preprocess::budget::{
    BASE_WIDTHS, BudgetCandidate, BudgetChoice, MAX_PATCH_HALVINGS, PlannedShape, ReservedTime,
};
use medseg_preprocess::plan::Plan;
use serde::{Deserialize, Serialize};
use std::ops::ControlFlow;
use std::time::Instant;

/// Iterations a network must be able to afford before a wider one is preferred. On
/// hippocampus-dev (BENCHMARKS.md) a network trained for fewer steps than this loses to a
/// narrower one trained for more in the same time.
pub const MIN_ITERATIONS: usize = 2500;

/// Warm-up steps per candidate (the loader's workers start, buffers are allocated), then
/// timed steps: at least the minimum, more while they take under `TIMED_SECONDS`.
const WARMUP_STEPS: usize = 2;
const MIN_TIMED_STEPS: usize = 3;
const MAX_TIMED_STEPS: usize = 12;
/// Timing stops after this share of the budget per candidate (at most 3 s, at least 0.5 s).
const TIMED_SHARE: f64 = 0.005;

/// Epochs a budgeted schedule has at least (when the iterations allow).
pub const MIN_BUDGET_EPOCHS: usize = 40;

/// Validation cases timed to estimate the validations' cost.
const TIMED_VALIDATION_CASES: usize = 2;

/// A network one width doubling wider costs about this many times the step time (measured:
/// 8 -> 16 -> 32 first-stage features cost 0.29 -> 0.82 -> 2.77 s per step on hippocampus
/// patches, 2 threads); used to skip timing a network that cannot fit anyway.
const WIDER_STEP_FACTOR: f64 = 2.8;

/// The epochs of a run and the optimizer steps in each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedule {
    pub epochs: usize,
    pub iterations_per_epoch: usize,
    /// Validate every this many epochs (0 = after the last only).
    #[serde(default)]
    pub validation_interval: usize,
}

impl Schedule {
    /// `train.epochs` x `train.iterations_per_epoch`.
    pub fn of(cfg: &ExperimentConfig) -> Self {
        Self {
            epochs: cfg.train.epochs,
            iterations_per_epoch: cfg.train.iterations_per_epoch,
            validation_interval: cfg.train.validation_interval,
        }
    }

    pub fn total_iterations(&self) -> usize {
        self.epochs * self.iterations_per_epoch
    }
}

/// The periodic validations a schedule of `epochs` runs after epochs `from..=epochs`: every
/// `interval` epochs and after the last.
pub fn validations_between(from: usize, epochs: usize, interval: usize) -> usize {
    if from > epochs {
        return 0;
    }
    let periodic = epochs
        .checked_div(interval)
        .map_or(0, |n| n - (from - 1) / interval);
    let last_extra = usize::from(interval == 0 || !epochs.is_multiple_of(interval));
    periodic + last_extra
}

/// What the budget planner needs from the run.
pub struct BudgetInputs<'a> {
    pub cfg: &'a ExperimentConfig,
    pub budget: TimeBudget,
    pub data: &'a FoldData,
    pub device: &'a Device,
    pub device_name: &'a str,
    pub labels: &'a ClassLabels,
    /// When `medseg train` started: the budget counts from here.
    pub started: Instant,
}

/// Measures the candidates, chooses one, and returns the plan with its network, patch and
/// batch, the choice recorded in `time_budget`.
pub fn plan_budget(
    inputs: &BudgetInputs,
    plan: &Plan,
    obs: &mut dyn TrainObserver,
) -> Result<Plan, TrainError> {
    let base = plan.without_budget();
    let measuring_from = Instant::now();
    let setup_seconds = inputs.started.elapsed().as_secs_f64();
    let budget = inputs.budget.seconds();
    if budget - setup_seconds <= 2.0 * margin_seconds(budget) {
        return Err(TrainError::Config(format!(
            "train.time_budget = {}: planning and caching took {setup_seconds:.0} s, which leaves no time to time networks and train; give a longer budget (at least {:.0} s here; the plan and the cache stay in the run directory, so running the same command again skips most of that time)",
            inputs.budget,
            setup_seconds + 2.0 * margin_seconds(budget) + 10.0
        )));
    }
    obs.message(&format!(
        "time budget {}: {setup_seconds:.0} s used by planning and caching; timing candidate networks",
        inputs.budget
    ));
    let search = Search::new(inputs, &base);
    let (candidates, chosen, variant) = search.run(obs)?;
    let timing = time_validation(inputs, &variant, obs)?;
    let step = candidates[chosen].step_seconds.unwrap_or(f64::INFINITY);
    let validation = ValidationPlan::new(inputs, &timing);
    let n_val = inputs.data.val.len();
    let reserved_base = ReservedTime {
        setup_seconds,
        measuring_seconds: measuring_from.elapsed().as_secs_f64(),
        validation_seconds_per_case: timing.per_case,
        periodic_validations: 0,
        periodic_validation_seconds: 0.0,
        final_validation_seconds: timing.final_validation(n_val, validation.final_tta),
        margin_seconds: margin_seconds(budget),
    };
    let clock_for = |interval| {
        BudgetClock::new(
            budget - reserved_base.final_validation_seconds - reserved_base.margin_seconds,
            inputs.started,
            timing.periodic(n_val),
            interval,
        )
    };
    let mut interval = inputs.cfg.train.validation_interval;
    let mut schedule = clock_for(interval).first_schedule(inputs.cfg, step, n_val == 0)?;
    let periodic_total = |s: &Schedule, interval| {
        validations_between(1, s.epochs, interval) as f64 * timing.periodic(n_val)
    };
    if interval > 0 && periodic_total(&schedule, interval) > PERIODIC_VALIDATION_SHARE * budget {
        obs.message(&format!(
            "time budget {}: validating every {interval} epochs would take {:.0} s; validating after the last epoch only",
            inputs.budget,
            periodic_total(&schedule, interval)
        ));
        interval = 0;
        schedule = clock_for(interval).first_schedule(inputs.cfg, step, n_val == 0)?;
    }
    if validation.dropped_tta {
        obs.message(&format!(
            "time budget {}: the final validation with mirroring would take {:.0} s; validating without it (predict still mirrors as [inference] says)",
            inputs.budget,
            timing.final_validation(n_val, true)
        ));
    }
    schedule.validation_interval = interval;
    let periodic = if n_val == 0 {
        0
    } else {
        validations_between(1, schedule.epochs, interval)
    };
    let reserved = ReservedTime {
        periodic_validations: periodic,
        periodic_validation_seconds: periodic as f64 * timing.periodic(n_val),
        ..reserved_base
    };
    let c = &candidates[chosen];
    obs.message(&format!(
        "time budget {}: features {:?}, patch {:?}, batch {} at {:.2} s per step -> {} epochs x {} iterations",
        inputs.budget,
        c.features_per_stage,
        c.patch_size,
        c.batch_size,
        step,
        schedule.epochs,
        schedule.iterations_per_epoch
    ));
    let mut out = variant;
    out.time_budget = Some(BudgetChoice {
        budget_seconds: budget,
        budget: inputs.budget.to_string(),
        device: inputs.device_name.to_string(),
        threads: rayon::current_num_threads(),
        min_iterations: MIN_ITERATIONS,
        candidates,
        chosen,
        training_seconds: clock_for(interval).training_seconds_left(),
        iterations: schedule.total_iterations(),
        epochs: schedule.epochs,
        iterations_per_epoch: schedule.iterations_per_epoch,
        validation_interval: interval,
        final_tta: validation.final_tta,
        reserved,
        without_budget: PlannedShape::of(&base),
    });
    Ok(out)
}

/// Periodic validations may take this share of the budget; beyond it, only the last epoch
/// is validated.
const PERIODIC_VALIDATION_SHARE: f64 = 0.05;

/// The final validation may take this share of the budget with mirroring; beyond it, it
/// runs without (a large validation set would otherwise eat the training time).
const FINAL_TTA_SHARE: f64 = 0.10;

/// Whether the final validation mirrors.
struct ValidationPlan {
    final_tta: bool,
    /// Mirroring is configured but costs too much of the budget.
    dropped_tta: bool,
}

impl ValidationPlan {
    fn new(inputs: &BudgetInputs, timing: &ValidationTiming) -> Self {
        let n_val = inputs.data.val.len();
        let wanted = inputs.cfg.inference.tta;
        let affordable =
            timing.final_validation(n_val, true) <= FINAL_TTA_SHARE * inputs.budget.seconds();
        Self {
            final_tta: wanted && affordable,
            dropped_tta: wanted && !affordable,
        }
    }
}

/// Checkpoints, export and summary, plus slack for a noisy machine: 2% of the budget + 3 s.
fn margin_seconds(budget: f64) -> f64 {
    0.02 * budget + 3.0
}

/// The candidate search: widths narrowest first at each patch, patches largest first.
struct Search<'a> {
    inputs: &'a BudgetInputs<'a>,
    base: &'a Plan,
    batch_size: usize,
    bases: Vec<usize>,
    halvings: usize,
}

impl<'a> Search<'a> {
    fn new(inputs: &'a BudgetInputs<'a>, base: &'a Plan) -> Self {
        let cfg = inputs.cfg;
        let fixed_widths = cfg.model.features.is_some()
            || cfg.model.base_features.is_some()
            || cfg.model.max_features.is_some();
        let first_width = base
            .network
            .as_ref()
            .and_then(|n| n.features_per_stage.first().copied())
            .unwrap_or(BASE_WIDTHS[0]);
        // nnU-Net's smallest 3D batch: a step costs time in proportion to the batch, and in a
        // short schedule more optimizer updates of the same patches converge further. 2D
        // keeps nnU-Net's batch (its slices are cheap and its batches large).
        let batch_size = match cfg.train.batch_size {
            Some(b) => b,
            None if base.dims == 3 => base.batch_size.min(2),
            None => base.batch_size,
        };
        Self {
            inputs,
            base,
            batch_size,
            bases: if fixed_widths {
                vec![first_width]
            } else {
                BASE_WIDTHS.to_vec()
            },
            halvings: if cfg.train.patch_size.is_some() || fixed_widths {
                0
            } else {
                MAX_PATCH_HALVINGS
            },
        }
    }

    /// The plan of one candidate.
    fn variant(&self, base_width: usize, halvings: usize) -> Result<Plan, TrainError> {
        if self.bases.len() == 1 && halvings == 0 {
            let mut p = self.base.clone();
            p.batch_size = self.batch_size;
            return Ok(p);
        }
        Ok(self
            .base
            .budget_variant(base_width, halvings, self.batch_size)?)
    }

    /// Seconds the steps may take, as far as known before the validation is timed: what is
    /// left of the budget less the margin and a tenth for validation.
    fn training_seconds(&self) -> f64 {
        let left = self.inputs.budget.seconds() - self.inputs.started.elapsed().as_secs_f64();
        0.9 * left - margin_seconds(self.inputs.budget.seconds())
    }

    fn affordable(&self, step: f64) -> usize {
        (self.training_seconds().max(0.0) / step).floor() as usize
    }

    /// Times candidates until the widest one that affords [`MIN_ITERATIONS`] is known.
    fn run(
        &self,
        obs: &mut dyn TrainObserver,
    ) -> Result<(Vec<BudgetCandidate>, usize, Plan), TrainError> {
        let mut candidates: Vec<BudgetCandidate> = Vec::new();
        let mut plans: Vec<Plan> = Vec::new();
        for halvings in 0..=self.halvings {
            let mut fits = None;
            let mut previous: Option<f64> = None;
            for &width in &self.bases {
                let plan = match self.variant(width, halvings) {
                    Ok(p) => p,
                    Err(_) if halvings > 0 => break,
                    Err(e) => return Err(e),
                };
                let estimate = previous.map(|s| s * WIDER_STEP_FACTOR);
                if let Some(e) = estimate.filter(|&e| self.affordable(e) < MIN_ITERATIONS) {
                    candidates.push(candidate(&plan, None, self.affordable(e)));
                    plans.push(plan);
                    break;
                }
                let step = time_steps(self.inputs, &plan)?;
                let c = candidate(&plan, Some(step), self.affordable(step));
                obs.message(&format!(
                    "  features {:?}, patch {:?}, batch {}: {:.2} s per step, {} iterations affordable",
                    c.features_per_stage, c.patch_size, c.batch_size, step, c.affordable_iterations
                ));
                let enough = c.affordable_iterations >= MIN_ITERATIONS;
                candidates.push(c);
                plans.push(plan);
                if !enough {
                    break;
                }
                fits = Some(candidates.len() - 1);
                previous = Some(step);
            }
            if let Some(i) = fits {
                return Ok((candidates, i, plans.swap_remove(i)));
            }
        }
        // Nothing affords MIN_ITERATIONS: the measured candidate that affords the most.
        let i = (0..candidates.len())
            .filter(|&i| candidates[i].step_seconds.is_some())
            .max_by_key(|&i| candidates[i].affordable_iterations)
            .ok_or_else(|| {
                TrainError::Config("time budget: no candidate network could be timed".into())
            })?;
        obs.message(&format!(
            "warning: time budget {}: no network affords {MIN_ITERATIONS} iterations on this machine; training the fastest one ({} iterations). A longer budget gives a better model",
            self.inputs.budget, candidates[i].affordable_iterations
        ));
        Ok((candidates, i, plans.swap_remove(i)))
    }
}

fn candidate(plan: &Plan, step: Option<f64>, affordable: usize) -> BudgetCandidate {
    BudgetCandidate {
        features_per_stage: PlannedShape::of(plan).features(),
        patch_size: plan.patch_size,
        batch_size: plan.batch_size,
        step_seconds: step,
        affordable_iterations: affordable,
    }
}

/// Median seconds of a training step of `plan`'s network on real batches (after the warm-up
/// steps), data loading included; the weights are thrown away.
fn time_steps(inputs: &BudgetInputs, plan: &Plan) -> Result<f64, TrainError> {
    let cfg = inputs.cfg;
    let network = network_for(cfg, plan)?;
    let mut learner = Learner::new(cfg, &network, plan.num_classes, inputs.device)?;
    let settings = loader_settings(cfg, plan)?;
    let timed_seconds = (TIMED_SHARE * inputs.budget.seconds()).clamp(0.5, 3.0);
    let mut timed: Vec<f64> = Vec::with_capacity(MAX_TIMED_STEPS);
    let mut last = Instant::now();
    let _stopped_when_timed = for_each_batch(
        &inputs.data.train,
        &settings,
        0,
        WARMUP_STEPS + MAX_TIMED_STEPS,
        &mut |batch| {
            let warm_up = batch.index < WARMUP_STEPS;
            learner.train_step(batch, cfg.train.learning_rate, 0)?;
            if !warm_up {
                timed.push(last.elapsed().as_secs_f64());
            }
            last = Instant::now();
            let enough =
                timed.len() >= MIN_TIMED_STEPS && timed.iter().sum::<f64>() >= timed_seconds;
            Ok(if enough {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            })
        },
    )?;
    timed.sort_by(f64::total_cmp);
    Ok(timed.get(timed.len() / 2).copied().unwrap_or(f64::INFINITY))
}

/// Measured validation cost of one case, and what the final validation multiplies it by.
struct ValidationTiming {
    per_case: f64,
    /// Sliding-window passes per window in the final validation (2^mirror axes with TTA).
    final_passes: f64,
}

impl ValidationTiming {
    fn periodic(&self, cases: usize) -> f64 {
        self.per_case * cases as f64
    }

    /// The final validation: every pass of TTA (`tta`), surface metrics and the
    /// postprocessing choice (a quarter more).
    fn final_validation(&self, cases: usize, tta: bool) -> f64 {
        let passes = if tta { self.final_passes } else { 1.0 };
        self.periodic(cases) * passes * 1.25
    }
}

/// Times a periodic validation of the first few validation cases with `plan`'s (untrained)
/// network.
fn time_validation(
    inputs: &BudgetInputs,
    plan: &Plan,
    obs: &mut dyn TrainObserver,
) -> Result<ValidationTiming, TrainError> {
    let cfg = inputs.cfg;
    let window = medseg_infer::window_for(plan, &cfg.inference)?;
    let final_passes = if window.tta {
        (1usize << window.mirror_axes.len().min(3)) as f64
    } else {
        1.0
    };
    let cases = &inputs.data.val[..inputs.data.val.len().min(TIMED_VALIDATION_CASES)];
    if cases.is_empty() {
        return Ok(ValidationTiming {
            per_case: 0.0,
            final_passes,
        });
    }
    let network = network_for(cfg, plan)?;
    let model = network.init(inputs.device);
    let validator = Validator::new(cfg, plan, inputs.device.clone(), inputs.labels.ids())?;
    let started = Instant::now();
    validator.validate(&model, cases, ValidationKind::Periodic, &mut |d, n| {
        obs.progress("time validation", d, n, "")
    })?;
    Ok(ValidationTiming {
        per_case: started.elapsed().as_secs_f64() / cases.len() as f64,
        final_passes,
    })
}

/// The budget while training: when the steps must end, and how many epochs still fit.
#[derive(Debug, Clone)]
pub struct BudgetClock {
    /// When the training steps (and periodic validations) must be done.
    training_deadline: Instant,
    /// Seconds of one periodic validation (estimated, then measured).
    periodic_validation_seconds: f64,
    validation_interval: usize,
}

impl BudgetClock {
    /// The clock of a run planned as `choice` says: the budget counts from `started`, and a
    /// periodic validation scores `val_cases` cases.
    pub fn from_choice(choice: &BudgetChoice, started: Instant, val_cases: usize) -> Self {
        let r = &choice.reserved;
        Self::new(
            choice.budget_seconds - r.final_validation_seconds - r.margin_seconds,
            started,
            r.validation_seconds_per_case * val_cases as f64,
            choice.validation_interval,
        )
    }

    /// Training ends `training_seconds` after `started`.
    fn new(
        training_seconds: f64,
        started: Instant,
        periodic_validation_seconds: f64,
        validation_interval: usize,
    ) -> Self {
        Self {
            training_deadline: started
                + std::time::Duration::from_secs_f64(training_seconds.max(0.0)),
            periodic_validation_seconds,
            validation_interval,
        }
    }

    fn training_seconds_left(&self) -> f64 {
        self.training_deadline
            .saturating_duration_since(Instant::now())
            .as_secs_f64()
    }

    /// The schedule that fills the training time at `step` seconds per iteration:
    /// `train.iterations_per_epoch` per epoch while that leaves at least
    /// [`MIN_BUDGET_EPOCHS`] epochs, fewer per epoch otherwise (the schedule is re-sized in
    /// whole epochs, so short epochs leave less of the budget unused).
    fn first_schedule(
        &self,
        cfg: &ExperimentConfig,
        step: f64,
        no_validation: bool,
    ) -> Result<Schedule, TrainError> {
        let left = self.training_seconds_left();
        let iterations = (left / step).floor() as usize;
        let per_epoch = cfg
            .train
            .iterations_per_epoch
            .min(iterations / MIN_BUDGET_EPOCHS)
            .max(1);
        let epochs = self.epochs_that_fit(1, per_epoch as f64 * step, no_validation);
        if epochs == 0 {
            return Err(TrainError::Config(format!(
                "train.time_budget leaves no time to train: {:.0} s are left after planning, timing and the final validation's estimate, and one epoch of {per_epoch} steps takes {:.0} s; give a longer budget",
                left,
                per_epoch as f64 * step
            )));
        }
        Ok(Schedule {
            epochs,
            iterations_per_epoch: per_epoch,
            validation_interval: self.validation_interval,
        })
    }

    /// Total epochs such that epochs `from..=total` (`epoch_seconds` each, plus their
    /// validations) end by the deadline; `from - 1` when not even epoch `from` fits.
    pub fn epochs_that_fit(&self, from: usize, epoch_seconds: f64, no_validation: bool) -> usize {
        let left = self.training_seconds_left();
        let cost = |total: usize| {
            let vals = if no_validation {
                0
            } else {
                validations_between(from, total, self.validation_interval)
            };
            (total + 1 - from) as f64 * epoch_seconds
                + vals as f64 * self.periodic_validation_seconds
        };
        let mut total = from - 1 + (left / epoch_seconds.max(1e-9)).floor().min(1e9) as usize;
        while total >= from && cost(total) > left {
            total -= 1;
        }
        total
    }

    /// A periodic validation took `seconds`: later estimates use it.
    pub fn note_validation(&mut self, seconds: f64) {
        self.periodic_validation_seconds = seconds;
    }

    /// True once the training time is spent (an epoch then stops early).
    pub fn overdue(&self) -> bool {
        Instant::now() >= self.training_deadline
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validations_count_every_interval_and_the_last_epoch() {
        assert_eq!(validations_between(1, 15, 10), 2); // 10, 15
        assert_eq!(validations_between(1, 20, 10), 2); // 10, 20
        assert_eq!(validations_between(11, 20, 10), 1); // 20
        assert_eq!(validations_between(1, 5, 0), 1); // the last only
        assert_eq!(validations_between(1, 4, 1), 4);
        assert_eq!(validations_between(6, 5, 1), 0);
    }

    #[test]
    fn the_epochs_that_fit_leave_time_for_their_validations() {
        // 103 s of training time, 10 steps of 1 s per epoch.
        let clock = BudgetClock::new(103.0, Instant::now(), 5.0, 0);
        // 9 epochs (90 s) + the last validation (5 s) fit; 10 (105 s) would not.
        assert_eq!(clock.epochs_that_fit(1, 10.0, false), 9);
        // Without validation cases, 10 epochs fit.
        assert_eq!(clock.epochs_that_fit(1, 10.0, true), 10);
        // Validating every epoch costs 5 s each: 6 epochs = 60 + 30 s.
        let every = BudgetClock::new(103.0, Instant::now(), 5.0, 1);
        assert_eq!(every.epochs_that_fit(1, 10.0, false), 6);
        // From epoch 4 on, 103 s hold 9 more epochs and a validation: the total is 12.
        assert_eq!(clock.epochs_that_fit(4, 10.0, false), 12);
        // Nothing fits: one less than the first epoch asked about.
        let spent = BudgetClock::new(0.0, Instant::now(), 5.0, 0);
        assert_eq!(spent.epochs_that_fit(4, 10.0, false), 3);
        assert!(spent.overdue());
        assert!(!clock.overdue());
    }
}
