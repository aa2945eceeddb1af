//! A training run directory, as `medseg train` writes it and `medseg predict` reads it:
//!
//! ```text
//! RUN/config.toml          the resolved experiment config
//! RUN/plan.json            every preprocessing choice and statistic
//! RUN/network.json         the resolved network (medseg_model::UNetConfig)
//! RUN/checkpoint_best.bpk  weights with the best validation Dice (burnpack)
//! RUN/checkpoint_last.bpk  weights at the last saved epoch
//! RUN/model.safetensors    the final weights for exchange
//! ```

use crate::InferError;
use burn::tensor::Device;
use medseg_config::ExperimentConfig;
use medseg_model::{UNet, UNetConfig};
use medseg_preprocess::plan::Plan;
use std::path::{Path, PathBuf};

/// File name of the best-validation weights.
pub const WEIGHTS_BEST: &str = "checkpoint_best.bpk";
/// File name of the last saved weights.
pub const WEIGHTS_LAST: &str = "checkpoint_last.bpk";
/// File name of the resolved network description.
pub const NETWORK_JSON: &str = "network.json";

/// The parts of a run directory inference needs.
#[derive(Debug, Clone)]
pub struct RunDir {
    pub path: PathBuf,
    pub config: ExperimentConfig,
    pub plan: Plan,
    pub network: UNetConfig,
    /// The weights file that will be loaded (best, else last).
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
        let cfg_path = path.join("config.toml");
        if !cfg_path.is_file() {
            return Err(err("has no config.toml: not a medseg run directory".into()));
        }
        let config = ExperimentConfig::load(&cfg_path, &[]).map_err(|e| err(e.to_string()))?;
        let plan = Plan::load(&path.join("plan.json"))?;
        let net_path = path.join(NETWORK_JSON);
        let text = std::fs::read_to_string(&net_path)
            .map_err(|e| err(format!("cannot read {NETWORK_JSON}: {e}")))?;
        let network: UNetConfig =
            serde_json::from_str(&text).map_err(|e| err(format!("invalid {NETWORK_JSON}: {e}")))?;
        let weights = [WEIGHTS_BEST, WEIGHTS_LAST]
            .iter()
            .map(|w| path.join(w))
            .find(|p| p.is_file())
            .ok_or_else(|| err(format!("has no weights ({WEIGHTS_BEST} or {WEIGHTS_LAST}); has training finished an epoch?")))?;
        Ok(RunDir {
            path: path.to_path_buf(),
            config,
            plan,
            network,
            weights,
        })
    }

    /// Builds the network on `device` (no autodiff) and loads the weights.
    pub fn load_model(&self, device: &Device) -> Result<UNet, InferError> {
        Ok(medseg_model::load(&self.network, &self.weights, device)?)
    }
}
