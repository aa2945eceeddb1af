use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// `[data]`: the dataset and its cross-validation split.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// Folder holding `dataset.json` (MSD / nnU-Net v2 layout). Required.
    pub dataset: PathBuf,
    /// Number of cross-validation folds. Default 5.
    #[serde(default = "default_folds")]
    pub folds: usize,
    /// Which fold to train: an index `0..folds`, or `"all"` (train on every case, no
    /// validation). Default 0.
    #[serde(default)]
    pub fold: FoldSelection,
    /// Splits file (nnU-Net's `splits_final.json` format). Default: `splits.json` in the run
    /// directory, written on first use and honoured when present.
    #[serde(default)]
    pub splits: Option<PathBuf>,
    /// Seed of the k-fold shuffle. Default 12345.
    #[serde(default = "default_split_seed")]
    pub split_seed: u64,
}

fn default_folds() -> usize {
    5
}
fn default_split_seed() -> u64 {
    12345
}

/// A fold index or `"all"`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum FoldSelection {
    Index(usize),
    All(AllFolds),
}

/// The literal string `"all"`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AllFolds {
    All,
}

impl Default for FoldSelection {
    fn default() -> Self {
        FoldSelection::Index(0)
    }
}
