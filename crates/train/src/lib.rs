//! medseg-train: from a TOML experiment config to a trained, self-contained run directory.
//!
//! [`train`] plans the dataset (or reuses `plan.json`), preprocesses every case once into a
//! cache, draws augmented patches with foreground oversampling on background threads
//! ([`loader`]), runs burn training steps (Dice + CE with deep supervision by default, AdamW or
//! SGD with Nesterov, poly/cosine/constant schedules with warm-up, gradient clipping),
//! validates on whole volumes exactly as the final evaluation scores them ([`validate`]), and
//! keeps `last`/`best` checkpoints, `train_log.csv`, `curves.png` and `summary.json`.
//! Everything random derives from the config's seed; `--resume` continues where a run stopped.

pub mod cache;
mod error;
pub mod loader;
pub mod log;
pub mod schedule;
pub mod splits;
pub mod state;
mod trainer;
pub mod validate;

pub use error::TrainError;
pub use log::EpochRecord;
pub use trainer::{
    OPTIMIZER_LAST, STATE_JSON, TrainOptions, TrainSummary, network_for, plan_for, train,
};

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
