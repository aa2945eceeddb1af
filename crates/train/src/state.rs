//! `training_state.json`: where a run stands, so `--resume` continues exactly (together with
//! the weights and optimizer state of the same `checkpoint_last/`).

use crate::TrainError;
use crate::log::EpochRecord;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The resumable state of a run after `epochs_done` complete epochs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TrainState {
    /// Epochs finished; training resumes at epoch `epochs_done + 1`. Batches are seeded by
    /// `(seed, epoch, index)`, so this number is the whole random state of the loader.
    pub epochs_done: usize,
    /// Optimizer steps taken (drives the learning-rate schedule).
    pub iterations_done: usize,
    pub seed: u64,
    /// Best foreground-mean validation Dice so far and its epoch.
    pub best_dice: Option<f64>,
    pub best_epoch: Option<usize>,
    /// Validations since the best one (early stopping).
    pub validations_since_best: usize,
    /// True when training ended (epochs done, early stop); false after an interruption.
    pub finished: bool,
    pub log: Vec<EpochRecord>,
    /// The schedule this run follows (a time budget's re-sized one included), so `--resume`
    /// finishes the same schedule. `None` in states written before it was recorded.
    #[serde(default)]
    pub schedule: Option<crate::budget::Schedule>,
}

impl TrainState {
    pub fn new(seed: u64) -> Self {
        Self {
            epochs_done: 0,
            iterations_done: 0,
            seed,
            best_dice: None,
            best_epoch: None,
            validations_since_best: 0,
            finished: false,
            log: Vec::new(),
            schedule: None,
        }
    }

    pub fn load(path: &Path) -> Result<Self, TrainError> {
        let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
        serde_json::from_str(&text).map_err(|e| TrainError::File {
            path: path.to_path_buf(),
            reason: format!("invalid training state: {e}"),
        })
    }

    pub fn save(&self, path: &Path) -> Result<(), TrainError> {
        crate::error::write_json(path, self)
    }
}
