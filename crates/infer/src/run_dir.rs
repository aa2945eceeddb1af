//! The run directory: the one layout that `medseg train` writes and `medseg predict` and
//! `medseg demo` read.
//!
//! ```text
//! RUN/config.toml           the resolved experiment config (absolute dataset and output paths)
//! RUN/plan.json             every preprocessing choice and statistic (medseg_preprocess Plan)
//! RUN/splits.json           the cross-validation folds (nnU-Net's splits_final.json format)
//! RUN/network.json          the resolved network (medseg_model::UNetConfig)
//! RUN/cache/                every case preprocessed once (see medseg_train::cache)
//! RUN/checkpoint_best.bpk   weights with the best validation Dice (burnpack)
//! RUN/checkpoint_last.bpk   weights at the last saved epoch
//! RUN/optimizer_last.bpk    the optimizer state saved with checkpoint_last.bpk
//! RUN/training_state.json   epochs and steps done, best Dice, the log: what --resume continues
//! RUN/train_log.csv         one line per epoch: loss, validation Dice per class, learning rate
//! RUN/curves.png            the log as a picture
//! RUN/summary.json          how training ended and the final validation of the best weights
//! RUN/model.safetensors     the final weights (best, else last) for exchange
//! ```
//!
//! [`RunLayout`] names each of these paths, so no other code spells a file name; [`RunDir`]
//! opens a run for inference (config, plan, network and the weights to load).

use crate::InferError;
use burn::tensor::Device;
use medseg_config::ExperimentConfig;
use medseg_model::{UNet, UNetConfig};
use medseg_preprocess::plan::Plan;
use std::path::{Path, PathBuf};

/// Where each file of a run directory lives (nothing is read or created here).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunLayout {
    root: PathBuf,
}

impl RunLayout {
    /// File name of the resolved experiment config.
    pub const CONFIG: &'static str = "config.toml";
    /// File name of the preprocessing plan.
    pub const PLAN: &'static str = "plan.json";
    /// File name of the cross-validation splits.
    pub const SPLITS: &'static str = "splits.json";
    /// File name of the resolved network description.
    pub const NETWORK: &'static str = "network.json";
    /// Folder of the preprocessed-case cache.
    pub const CACHE: &'static str = "cache";
    /// File name of the best-validation weights.
    pub const WEIGHTS_BEST: &'static str = "checkpoint_best.bpk";
    /// File name of the last saved weights.
    pub const WEIGHTS_LAST: &'static str = "checkpoint_last.bpk";
    /// File name of the optimizer state saved with the last weights.
    pub const OPTIMIZER_LAST: &'static str = "optimizer_last.bpk";
    /// File name of the resumable training state.
    pub const TRAINING_STATE: &'static str = "training_state.json";
    /// File name of the per-epoch log.
    pub const TRAIN_LOG: &'static str = "train_log.csv";
    /// File name of the training curves.
    pub const CURVES: &'static str = "curves.png";
    /// File name of the training summary.
    pub const SUMMARY: &'static str = "summary.json";
    /// File name of the final weights in safetensors format.
    pub const SAFETENSORS: &'static str = "model.safetensors";

    /// The layout of the run directory `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The run directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn config(&self) -> PathBuf {
        self.root.join(Self::CONFIG)
    }

    pub fn plan(&self) -> PathBuf {
        self.root.join(Self::PLAN)
    }

    pub fn splits(&self) -> PathBuf {
        self.root.join(Self::SPLITS)
    }

    pub fn network(&self) -> PathBuf {
        self.root.join(Self::NETWORK)
    }

    pub fn cache(&self) -> PathBuf {
        self.root.join(Self::CACHE)
    }

    pub fn weights_best(&self) -> PathBuf {
        self.root.join(Self::WEIGHTS_BEST)
    }

    pub fn weights_last(&self) -> PathBuf {
        self.root.join(Self::WEIGHTS_LAST)
    }

    pub fn optimizer_last(&self) -> PathBuf {
        self.root.join(Self::OPTIMIZER_LAST)
    }

    pub fn training_state(&self) -> PathBuf {
        self.root.join(Self::TRAINING_STATE)
    }

    pub fn train_log(&self) -> PathBuf {
        self.root.join(Self::TRAIN_LOG)
    }

    pub fn curves(&self) -> PathBuf {
        self.root.join(Self::CURVES)
    }

    pub fn summary(&self) -> PathBuf {
        self.root.join(Self::SUMMARY)
    }

    pub fn safetensors(&self) -> PathBuf {
        self.root.join(Self::SAFETENSORS)
    }

    /// The weights a finished run stands for: the best-validation checkpoint, else (no
    /// validation, e.g. fold "all") the last one; `None` before the first saved epoch.
    pub fn final_weights(&self) -> Option<PathBuf> {
        [self.weights_best(), self.weights_last()]
            .into_iter()
            .find(|p| p.is_file())
    }

    /// True when the last weights and the training state are there to resume from.
    pub fn can_resume(&self) -> bool {
        self.weights_last().is_file() && self.training_state().is_file()
    }
}

/// The parts of a run directory inference needs.
#[derive(Debug, Clone)]
pub struct RunDir {
    pub path: PathBuf,
    pub config: ExperimentConfig,
    pub plan: Plan,
    pub network: UNetConfig,
    /// The weights file that will be loaded ([`RunLayout::final_weights`]).
    pub weights: PathBuf,
}

impl RunDir {
    /// Reads a run directory; names the missing file and how to get it when incomplete.
    pub fn open(path: &Path) -> Result<RunDir, InferError> {
        let err = |reason: String| InferError::RunDir {
            path: path.to_path_buf(),
            reason,
        };
        if !path.is_dir() {
            return Err(err(
                "is not a run directory (train one with `medseg train --config CONFIG.toml`)"
                    .into(),
            ));
        }
        let layout = RunLayout::new(path);
        let cfg_path = layout.config();
        if !cfg_path.is_file() {
            return Err(err(format!(
                "has no {}: not a medseg run directory",
                RunLayout::CONFIG
            )));
        }
        let config = ExperimentConfig::load(&cfg_path, &[]).map_err(|e| err(e.to_string()))?;
        let plan = Plan::load(&layout.plan())?;
        let network = read_network(&layout).map_err(err)?;
        let weights = layout.final_weights().ok_or_else(|| {
            err(format!(
                "has no weights ({} or {}); has training finished an epoch?",
                RunLayout::WEIGHTS_BEST,
                RunLayout::WEIGHTS_LAST
            ))
        })?;
        Ok(RunDir {
            path: path.to_path_buf(),
            config,
            plan,
            network,
            weights,
        })
    }

    /// The layout of this run's directory.
    pub fn layout(&self) -> RunLayout {
        RunLayout::new(&self.path)
    }

    /// Builds the network on `device` (no autodiff) and loads the weights.
    pub fn load_model(&self, device: &Device) -> Result<UNet, InferError> {
        Ok(medseg_model::load(&self.network, &self.weights, device)?)
    }
}

/// `network.json`, or why it cannot be read.
fn read_network(layout: &RunLayout) -> Result<UNetConfig, String> {
    let name = RunLayout::NETWORK;
    let text = std::fs::read_to_string(layout.network())
        .map_err(|e| format!("cannot read {name}: {e}"))?;
    serde_json::from_str(&text).map_err(|e| format!("invalid {name}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_weights_prefer_best_then_last() {
        let tmp = tempfile::tempdir().unwrap();
        let run = RunLayout::new(tmp.path());
        assert_eq!(run.final_weights(), None);
        assert!(!run.can_resume());
        std::fs::write(run.weights_last(), b"w").unwrap();
        assert_eq!(
            run.final_weights(),
            Some(tmp.path().join("checkpoint_last.bpk"))
        );
        std::fs::write(run.weights_best(), b"w").unwrap();
        assert_eq!(
            run.final_weights(),
            Some(tmp.path().join("checkpoint_best.bpk"))
        );
        std::fs::write(run.training_state(), b"{}").unwrap();
        assert!(run.can_resume());
    }
}
