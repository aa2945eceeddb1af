//! medseg-train: from a TOML experiment config to a trained, self-contained run directory.
//!
//! [`train`] runs named stages, after nnU-Net's `run_training` ([`trainer`] has the outline):
//!
//! * **setup** ([`setup`], [`data`]): check the settings, write the resolved `config.toml`,
//!   plan the dataset (or reuse `plan.json`), write `network.json`, split into folds
//!   ([`splits`]) and preprocess every case once into the cache ([`cache`]); build the model,
//!   optimizer and loss ([`learner`]) and, with `--resume`, load the last checkpoint and
//!   [`state`].
//! * **epochs**: optimizer steps over augmented patches drawn with foreground oversampling on
//!   background threads ([`loader`]; Dice + CE with deep supervision by default, AdamW or SGD
//!   with Nesterov, poly/cosine/constant [`schedule`]s with warm-up, gradient clipping).
//! * **validation** ([`validate`]): whole volumes through medseg-infer's
//!   [`medseg_infer::Segmenter`], the same chain `medseg predict` runs, scored as the final
//!   evaluation scores them; the best foreground-mean Dice keeps `checkpoint_best.bpk`.
//! * **checkpointing and logging** ([`learner`], [`checkpoint`], [`log`]): `checkpoint_last/`
//!   (weights, optimizer state and training state, saved as one unit), `train_log.csv`,
//!   `curves.png`.
//! * **finish** ([`summary`]): `model.safetensors`, the final validation with every metric,
//!   `summary.json`.
//!
//! Every file name comes from [`medseg_infer::RunLayout`], the one description of a run
//! directory. A run ends in a [`TrainOutcome`] (finished, interrupted through
//! [`TrainOptions::interrupt`], early-stopped) or an error ([`TrainError::NonFiniteLoss`]
//! when the loss is no longer finite). Everything random derives from the config's seed;
//! `--resume` continues where a run stopped, with the same batches and learning rates.

// deny, not forbid: ndarray's `s!` macro expands to an `#[allow(unsafe_code)]` block.
#![deny(unsafe_code)]

pub mod budget;
pub mod cache;
pub mod checkpoint;
pub mod data;
mod error;
mod labels;
pub mod learner;
pub mod loader;
pub mod log;
pub mod schedule;
pub mod setup;
pub mod splits;
pub mod state;
pub mod summary;
pub mod trainer;
pub mod validate;

pub use error::TrainError;
pub use labels::ClassLabels;
pub use log::EpochRecord;
pub use setup::{network_for, plan_for};
pub use summary::{TrainOptions, TrainOutcome, TrainSummary};
pub use trainer::train;
pub use validate::Validation;

/// Receives progress from [`train`]; the binary draws bars, tests stay quiet.
pub trait TrainObserver {
    /// A stage message ("plan: ...", "data: ...").
    fn message(&mut self, msg: &str);
    /// Progress of a counted stage (preprocessing, validation).
    fn progress(&mut self, stage: &str, done: usize, total: usize, detail: &str);
    fn epoch_start(&mut self, epoch: usize, epochs: usize);
    /// After each optimizer step (1-based `iteration` within the epoch).
    fn iteration(&mut self, iteration: usize, iterations: usize, loss: f64, learning_rate: f64);
    fn epoch_end(&mut self, record: &EpochRecord);
}

/// An observer that ignores everything.
pub struct Quiet;

impl TrainObserver for Quiet {
    fn message(&mut self, _: &str) {}
    fn progress(&mut self, _: &str, _: usize, _: usize, _: &str) {}
    fn epoch_start(&mut self, _: usize, _: usize) {}
    fn iteration(&mut self, _: usize, _: usize, _: f64, _: f64) {}
    fn epoch_end(&mut self, _: &EpochRecord) {}
}
