use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// `[train]`: the training loop.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Run directory. Default "runs/default".
    #[serde(default = "default_output")]
    pub output: PathBuf,
    /// Patch size in voxels, `(x, y, z)` order (2 values for 2D). Default: from the plan.
    #[serde(default)]
    pub patch_size: Option<Vec<usize>>,
    /// Patches per batch. Default: from the plan (2 in 3D).
    #[serde(default)]
    pub batch_size: Option<usize>,
    /// Epochs. Default 100.
    #[serde(default = "default_epochs")]
    pub epochs: usize,
    /// Iterations per epoch. Default 250 (nnU-Net).
    #[serde(default = "default_iters")]
    pub iterations_per_epoch: usize,
    /// adamw | sgd. Default adamw.
    #[serde(default)]
    pub optimizer: OptimizerKind,
    /// Initial learning rate. Default 1e-3 (adamw); nnU-Net's SGD uses 1e-2.
    #[serde(default = "default_lr")]
    pub learning_rate: f64,
    /// poly | cosine | constant. Default poly (exponent 0.9).
    #[serde(default)]
    pub schedule: ScheduleKind,
    /// Linear warm-up iterations. Default 0.
    #[serde(default)]
    pub warmup_iterations: usize,
    /// Weight decay. Default 3e-5.
    #[serde(default = "default_wd")]
    pub weight_decay: f64,
    /// SGD momentum (Nesterov). Default 0.99.
    #[serde(default = "default_momentum")]
    pub momentum: f64,
    /// Clip the gradient norm to this value (0 = off). Default 12 (nnU-Net).
    #[serde(default = "default_clip")]
    pub grad_clip: f64,
    /// Seed of every random choice. Default 42.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Fraction of each batch centred on foreground. Default 0.33.
    #[serde(default = "default_fg")]
    pub foreground_oversampling: f64,
    /// Augmentations and their probabilities, e.g. `{ mirror = 0.5, rotate = 0.2 }`.
    /// Default: nnU-Net's set with nnU-Net's probabilities.
    #[serde(default)]
    pub augmentation: Option<toml::Table>,
    /// Validate every N epochs (0 = only at the end). Default 1.
    #[serde(default = "one")]
    pub validation_interval: usize,
    /// Stop after this many validations without improvement (0 = never). Default 0.
    #[serde(default)]
    pub early_stopping_patience: usize,
    /// Save `last` every N epochs. Default 1.
    #[serde(default = "one")]
    pub checkpoint_interval: usize,
    /// Data-loading worker threads. Default 2.
    #[serde(default = "default_threads")]
    pub threads: usize,
    /// After training, keep the largest connected component (of the whole foreground, then
    /// per class) only where it raises the final validation Dice, as nnU-Net's
    /// `determine_postprocessing` does; the choice goes to `postprocessing.json` and
    /// `medseg predict` applies it. Default true.
    #[serde(default = "yes")]
    pub choose_postprocessing: bool,
    /// Wall-clock budget of the whole run, e.g. `"20m"` or `"1h30m"` (`medseg train
    /// --time-budget`). With one, the planner times a few steps of candidate networks on this
    /// machine, picks the width (and, if needed, a smaller patch) that the budget affords
    /// enough iterations for, and the trainer sets the schedule length (`epochs` x
    /// `iterations_per_epoch` become the budget's) so that training, validation and the final
    /// checkpoint end within it. Default: none (the schedule above).
    #[serde(default)]
    pub time_budget: Option<crate::TimeBudget>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    #[default]
    Adamw,
    Sgd,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum ScheduleKind {
    #[default]
    Poly,
    Cosine,
    Constant,
}

fn default_output() -> PathBuf {
    PathBuf::from("runs/default")
}
fn default_epochs() -> usize {
    100
}
fn default_iters() -> usize {
    250
}
fn default_lr() -> f64 {
    1e-3
}
fn default_wd() -> f64 {
    3e-5
}
fn default_momentum() -> f64 {
    0.99
}
fn default_clip() -> f64 {
    12.0
}
fn default_seed() -> u64 {
    42
}
fn default_fg() -> f64 {
    0.33
}
fn one() -> usize {
    1
}
fn yes() -> bool {
    true
}
fn default_threads() -> usize {
    2
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            output: default_output(),
            patch_size: None,
            batch_size: None,
            epochs: default_epochs(),
            iterations_per_epoch: default_iters(),
            optimizer: OptimizerKind::default(),
            learning_rate: default_lr(),
            schedule: ScheduleKind::default(),
            warmup_iterations: 0,
            weight_decay: default_wd(),
            momentum: default_momentum(),
            grad_clip: default_clip(),
            seed: default_seed(),
            foreground_oversampling: default_fg(),
            augmentation: None,
            validation_interval: 1,
            early_stopping_patience: 0,
            checkpoint_interval: 1,
            threads: default_threads(),
            choose_postprocessing: true,
            time_budget: None,
        }
    }
}
