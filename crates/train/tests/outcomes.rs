//! How a run ends: interrupted (and resumed), early-stopped, stopped by a non-finite loss.
//! Tiny networks on tiny phantoms, a few steps each (CI has two cores).

use medseg_config::ExperimentConfig;
use medseg_infer::RunLayout;
use medseg_train::state::TrainState;
use medseg_train::{
    EpochRecord, Quiet, TrainError, TrainObserver, TrainOptions, TrainOutcome, train,
};
use medseg_volume::synth::{SynthConfig, write_dataset};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Three 16-voxel phantoms in `dir/data`.
fn tiny_dataset(dir: &Path) {
    let cfg = SynthConfig {
        cases: 3,
        test_cases: 0,
        dims: 3,
        size: 16,
        seed: 1,
    };
    write_dataset(&dir.join("data"), &cfg, &|_| {}).unwrap();
}

/// A two-stage UNet with 4 and 8 features on 16^3 patches, with `--set` style overrides.
fn tiny_config(dir: &Path, epochs: usize, overrides: &[&str]) -> ExperimentConfig {
    let text = format!(
        r#"
[data]
dataset = "data"
folds = 3
fold = 0

[model]
dims = 3
features = [4, 8]
deep_supervision = true

[inference]
tta = false

[train]
output = "run"
patch_size = [16, 16, 16]
batch_size = 1
epochs = {epochs}
iterations_per_epoch = 3
learning_rate = 0.01
schedule = "constant"
seed = 5
validation_interval = 1
threads = 1
"#
    );
    let overrides: Vec<String> = overrides.iter().map(|o| o.to_string()).collect();
    ExperimentConfig::from_toml_str(&text, &overrides, Path::new("tiny.toml"), dir.to_path_buf())
        .unwrap()
}

/// Sets the interrupt flag at step `at_iteration` of epoch `at_epoch`, as Ctrl-C would.
struct InterruptAt {
    flag: Arc<AtomicBool>,
    epoch: usize,
    at_epoch: usize,
    at_iteration: usize,
}

impl InterruptAt {
    /// Interrupts `opts`' run at step `at_iteration` of epoch `at_epoch`.
    fn new(opts: &TrainOptions, at_epoch: usize, at_iteration: usize) -> Self {
        Self {
            flag: opts.interrupt.clone(),
            epoch: 0,
            at_epoch,
            at_iteration,
        }
    }
}

impl TrainObserver for InterruptAt {
    fn message(&mut self, _: &str) {}
    fn progress(&mut self, _: &str, _: usize, _: usize, _: &str) {}
    fn epoch_start(&mut self, epoch: usize, _: usize) {
        self.epoch = epoch;
    }
    fn iteration(&mut self, iteration: usize, _: usize, _: f64, _: f64) {
        if self.epoch == self.at_epoch && iteration == self.at_iteration {
            self.flag.store(true, Ordering::SeqCst);
        }
    }
    fn epoch_end(&mut self, _: &EpochRecord) {}
}

#[test]
fn interrupt_saves_last_and_resume_finishes() {
    let tmp = tempfile::tempdir().unwrap();
    tiny_dataset(tmp.path());
    let cfg = tiny_config(tmp.path(), 3, &[]);
    let run = RunLayout::new(cfg.output_dir());
    let opts = TrainOptions::default();
    let mut obs = InterruptAt::new(&opts, 2, 1);
    let s = train(&cfg, &opts, &mut obs).unwrap();
    assert_eq!(s.outcome, TrainOutcome::Interrupted { epoch: 2 });
    assert_eq!(s.epochs_done, 1);
    assert!(s.final_validation.is_none());
    let state = TrainState::load(&run.last_checkpoint().unwrap().state).unwrap();
    assert_eq!((state.epochs_done, state.iterations_done), (1, 3));
    assert!(!state.finished);
    assert_eq!(state.log.len(), 1);
    let last = run.last_checkpoint().unwrap();
    assert!(last.weights.is_file() && last.optimizer.is_some_and(|o| o.is_file()));
    assert!(
        !run.safetensors().exists(),
        "an interrupted run exports nothing"
    );
    let summary = std::fs::read_to_string(run.summary()).unwrap();
    assert!(summary.contains("\"interrupted\": true"), "{summary}");

    let resumed = TrainOptions {
        resume: true,
        ..TrainOptions::default()
    };
    let s = train(&cfg, &resumed, &mut Quiet).unwrap();
    assert_eq!(s.outcome, TrainOutcome::Finished);
    assert_eq!(s.epochs_done, 3);
    let state = TrainState::load(&run.last_checkpoint().unwrap().state).unwrap();
    assert_eq!((state.epochs_done, state.iterations_done), (3, 9));
    assert!(state.finished);
    assert_eq!(state.log.len(), 3);
    assert!(s.final_validation.is_some() && run.safetensors().is_file());
}

#[test]
fn no_improvement_stops_early() {
    let tmp = tempfile::tempdir().unwrap();
    tiny_dataset(tmp.path());
    // A learning rate far below f32 resolution of the weights: validation Dice cannot improve.
    let cfg = tiny_config(
        tmp.path(),
        5,
        &[
            "train.early_stopping_patience=1",
            "train.learning_rate=1e-12",
        ],
    );
    let s = train(&cfg, &TrainOptions::default(), &mut Quiet).unwrap();
    match s.outcome {
        TrainOutcome::EarlyStopped {
            epoch, best_epoch, ..
        } => assert_eq!((epoch, best_epoch), (2, 1)),
        other => panic!("expected an early stop, got {other:?}"),
    }
    assert_eq!(s.epochs_done, 2);
    let state = TrainState::load(
        &RunLayout::new(cfg.output_dir())
            .last_checkpoint()
            .unwrap()
            .state,
    )
    .unwrap();
    assert!(state.finished, "an early stop is the end of the run");
}

#[test]
fn non_finite_loss_is_a_typed_error() {
    let tmp = tempfile::tempdir().unwrap();
    tiny_dataset(tmp.path());
    // An absurd learning rate makes the weights, then the loss, non-finite.
    let cfg = tiny_config(
        tmp.path(),
        3,
        &[
            "train.learning_rate=1e30",
            "train.grad_clip=0",
            "train.optimizer=\"sgd\"",
        ],
    );
    match train(&cfg, &TrainOptions::default(), &mut Quiet) {
        Err(TrainError::NonFiniteLoss { value, .. }) => assert!(!value.is_finite()),
        other => panic!("expected NonFiniteLoss, got {other:?}"),
    }
}

#[test]
fn a_budgeted_run_resumes_its_own_schedule_and_an_unbudgeted_one_restores_nnunets_plan() {
    use medseg_preprocess::plan::Plan;
    let tmp = tempfile::tempdir().unwrap();
    tiny_dataset(tmp.path());
    let cfg = tiny_config(tmp.path(), 1000, &["train.time_budget=\"10s\""]);
    let run = RunLayout::new(cfg.output_dir());
    let opts = TrainOptions::default();
    let mut obs = InterruptAt::new(&opts, 2, 1);
    let s = train(&cfg, &opts, &mut obs).unwrap();
    assert_eq!(s.outcome, TrainOutcome::Interrupted { epoch: 2 });
    let choice = Plan::load(&run.plan()).unwrap().time_budget.unwrap();
    assert_eq!(choice.budget_seconds, 10.0);
    let state = TrainState::load(&run.last_checkpoint().unwrap().state).unwrap();
    let schedule = state
        .schedule
        .expect("a budgeted state records its schedule");
    assert!(schedule.epochs < 1000, "{schedule:?}");

    let resumed = TrainOptions {
        resume: true,
        ..TrainOptions::default()
    };
    let s = train(&cfg, &resumed, &mut Quiet).unwrap();
    assert_eq!(s.outcome, TrainOutcome::Finished);
    assert_eq!(
        s.epochs_done, schedule.epochs,
        "the budget's schedule, not 1000 epochs"
    );
    assert!(s.time_budget.is_some());

    let plain = tiny_config(tmp.path(), 1, &[]);
    let again = TrainOptions {
        overwrite: true,
        ..TrainOptions::default()
    };
    let s = train(&plain, &again, &mut Quiet).unwrap();
    assert_eq!(s.epochs_done, 1);
    assert!(s.time_budget.is_none());
    assert!(Plan::load(&run.plan()).unwrap().time_budget.is_none());
}
