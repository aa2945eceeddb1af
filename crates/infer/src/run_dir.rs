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
//! RUN/checkpoint_last/      the last saved epoch, one unit (written whole, renamed at once):
//!     model.bpk             its weights
//!     optimizer.bpk         its optimizer state
//!     training_state.json   epochs and steps done, best Dice, the log: what --resume continues
//! RUN/train_log.csv         one line per epoch: loss, validation Dice per class, learning rate
//! RUN/curves.png            the log as a picture
//! RUN/summary.json          how training ended and the final validation of the best weights
//! RUN/postprocessing.json   the largest-component steps the final validation chose, with its
//!                           Dice before and after (medseg_postprocess PostprocessChoice);
//!                           `medseg predict` applies them after `[postprocess]`
//! RUN/model.safetensors     the final weights (best, else last) for exchange
//! RUN/medseg.lock           held (OS lock) by the `medseg train` writing the run
//! ```
//!
//! A checkpoint is saved as `.checkpoint_last.tmp/`, the previous one is moved aside to
//! `.checkpoint_last.old/`, the new one renamed into place, the old one removed: a kill at any
//! step leaves one complete checkpoint that [`RunLayout::last_checkpoint`] finds. Runs written
//! before that layout (`checkpoint_last.bpk`, `optimizer_last.bpk`, `training_state.json` at
//! the top) still resume and load.
//!
//! [`RunLayout`] names each of these paths, so no other code spells a file name; [`RunDir`]
//! opens a run for inference (config, plan, network and the weights to load).

use crate::InferError;
use burn::tensor::Device;
use medseg_config::ExperimentConfig;
use medseg_model::{UNet, UNetConfig};
use medseg_postprocess::PostprocessChoice;
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
    /// Folder of the last checkpoint (weights, optimizer state, training state).
    pub const CHECKPOINT_LAST: &'static str = "checkpoint_last";
    /// File name of the weights inside a checkpoint folder.
    pub const CHECKPOINT_WEIGHTS: &'static str = "model.bpk";
    /// File name of the optimizer state inside a checkpoint folder.
    pub const CHECKPOINT_OPTIMIZER: &'static str = "optimizer.bpk";
    /// File name of the resumable training state inside a checkpoint folder.
    pub const CHECKPOINT_STATE: &'static str = "training_state.json";
    /// Folder a checkpoint is written into before it is renamed to [`Self::CHECKPOINT_LAST`].
    pub const CHECKPOINT_STAGING: &'static str = ".checkpoint_last.tmp";
    /// Folder the previous checkpoint waits in while the next one is renamed into place.
    pub const CHECKPOINT_PREVIOUS: &'static str = ".checkpoint_last.old";
    /// Last weights of runs written before checkpoint folders (read only).
    pub const LEGACY_WEIGHTS_LAST: &'static str = "checkpoint_last.bpk";
    /// Optimizer state of runs written before checkpoint folders (read only).
    pub const LEGACY_OPTIMIZER_LAST: &'static str = "optimizer_last.bpk";
    /// Training state of runs written before checkpoint folders (read only).
    pub const LEGACY_TRAINING_STATE: &'static str = "training_state.json";
    /// The lock file `medseg train` holds while it writes the run.
    pub const LOCK: &'static str = "medseg.lock";
    /// File name of the per-epoch log.
    pub const TRAIN_LOG: &'static str = "train_log.csv";
    /// File name of the training curves.
    pub const CURVES: &'static str = "curves.png";
    /// File name of the training summary.
    pub const SUMMARY: &'static str = "summary.json";
    /// File name of the postprocessing chosen on the final validation.
    pub const POSTPROCESSING: &'static str = "postprocessing.json";
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

    /// The folder of the committed last checkpoint (it may be missing: see
    /// [`Self::last_checkpoint`]).
    pub fn checkpoint_last_dir(&self) -> PathBuf {
        self.root.join(Self::CHECKPOINT_LAST)
    }

    /// Where the next checkpoint is written before it is renamed into place.
    pub fn checkpoint_staging_dir(&self) -> PathBuf {
        self.root.join(Self::CHECKPOINT_STAGING)
    }

    /// Where the previous checkpoint waits while the next one is renamed into place.
    pub fn checkpoint_previous_dir(&self) -> PathBuf {
        self.root.join(Self::CHECKPOINT_PREVIOUS)
    }

    /// The files of the checkpoint folder `dir` (nothing is checked).
    pub fn checkpoint_in(dir: &Path) -> Checkpoint {
        Checkpoint {
            weights: dir.join(Self::CHECKPOINT_WEIGHTS),
            optimizer: Some(dir.join(Self::CHECKPOINT_OPTIMIZER)),
            state: dir.join(Self::CHECKPOINT_STATE),
        }
    }

    /// The checkpoint to resume from: `checkpoint_last/`, else the previous one a save was
    /// interrupted in replacing (`.checkpoint_last.old/`), else the flat files of an older
    /// run; `None` before the first saved epoch. Staging folders are never used.
    pub fn last_checkpoint(&self) -> Option<Checkpoint> {
        let folders = [self.checkpoint_last_dir(), self.checkpoint_previous_dir()];
        let found = folders
            .iter()
            .map(|d| Self::checkpoint_in(d))
            .find(Checkpoint::is_complete);
        found.or_else(|| {
            let legacy = self.root.join(Self::LEGACY_OPTIMIZER_LAST);
            let c = Checkpoint {
                weights: self.root.join(Self::LEGACY_WEIGHTS_LAST),
                optimizer: legacy.is_file().then_some(legacy),
                state: self.root.join(Self::LEGACY_TRAINING_STATE),
            };
            c.is_complete().then_some(c)
        })
    }

    /// The files of runs written before checkpoint folders, removed once a folder is saved.
    pub fn legacy_checkpoint_files(&self) -> [PathBuf; 3] {
        [
            Self::LEGACY_WEIGHTS_LAST,
            Self::LEGACY_OPTIMIZER_LAST,
            Self::LEGACY_TRAINING_STATE,
        ]
        .map(|n| self.root.join(n))
    }

    pub fn lock(&self) -> PathBuf {
        self.root.join(Self::LOCK)
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

    pub fn postprocessing(&self) -> PathBuf {
        self.root.join(Self::POSTPROCESSING)
    }

    pub fn safetensors(&self) -> PathBuf {
        self.root.join(Self::SAFETENSORS)
    }

    /// The weights a finished run stands for: the best-validation checkpoint, else (no
    /// validation, e.g. fold "all") the last one; `None` before the first saved epoch.
    pub fn final_weights(&self) -> Option<PathBuf> {
        let best = self.weights_best();
        if best.is_file() {
            return Some(best);
        }
        self.last_checkpoint().map(|c| c.weights)
    }

    /// True when there is a checkpoint to resume from.
    pub fn can_resume(&self) -> bool {
        self.last_checkpoint().is_some()
    }
}

/// The files of one saved checkpoint: weights, optimizer state and training state of the
/// same moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub weights: PathBuf,
    /// `None` in an older run that saved no optimizer state.
    pub optimizer: Option<PathBuf>,
    pub state: PathBuf,
}

impl Checkpoint {
    /// True when every file of the checkpoint is there.
    pub fn is_complete(&self) -> bool {
        self.weights.is_file()
            && self.state.is_file()
            && self.optimizer.as_ref().is_none_or(|o| o.is_file())
    }
}

/// Where each file of a prediction folder (`medseg predict --output DIR`) lives:
///
/// ```text
/// DIR/CASE.nii.gz                 the label map
/// DIR/probabilities/CASE.nii.gz   the class probabilities (--probabilities)
/// DIR/failures.json               the cases that failed and why (failures.shard-I-of-N.json
///                                 for --shard I/N)
/// DIR/.medseg/CASE.done           written after every output of the case: their sizes
/// DIR/.medseg/lock                held by the predict writing DIR (shared by --shard runs)
/// DIR/.medseg/shard-I-of-N.lock   held by the --shard I/N run
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PredictionLayout {
    root: PathBuf,
}

impl PredictionLayout {
    /// Folder of the probability maps.
    pub const PROBABILITIES: &'static str = "probabilities";
    /// Folder of medseg's own bookkeeping (done markers, locks).
    pub const STATE: &'static str = ".medseg";
    /// File name of the folder's lock.
    pub const LOCK: &'static str = "lock";

    /// The layout of the prediction folder `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The prediction folder itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn labels(&self, case: &str) -> PathBuf {
        self.root.join(format!("{case}.nii.gz"))
    }

    pub fn probabilities_dir(&self) -> PathBuf {
        self.root.join(Self::PROBABILITIES)
    }

    pub fn probabilities(&self, case: &str) -> PathBuf {
        self.probabilities_dir().join(format!("{case}.nii.gz"))
    }

    pub fn state_dir(&self) -> PathBuf {
        self.root.join(Self::STATE)
    }

    /// The marker that says every output of `case` is complete.
    pub fn done_marker(&self, case: &str) -> PathBuf {
        self.state_dir().join(format!("{case}.done"))
    }

    /// The lock of the whole folder.
    pub fn lock(&self) -> PathBuf {
        self.state_dir().join(Self::LOCK)
    }

    /// The lock of shard `i` of `n`.
    pub fn shard_lock(&self, i: usize, n: usize) -> PathBuf {
        self.state_dir().join(format!("shard-{i}-of-{n}.lock"))
    }

    /// The failure list of a whole run, or of shard `(i, n)`.
    pub fn failures(&self, shard: Option<(usize, usize)>) -> PathBuf {
        match shard {
            None => self.root.join("failures.json"),
            Some((i, n)) => self.root.join(format!("failures.shard-{i}-of-{n}.json")),
        }
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
    /// `postprocessing.json`: the steps the final validation chose (`None`: no such file,
    /// e.g. a run without validation or with `train.choose_postprocessing = false`).
    pub postprocessing: Option<PostprocessChoice>,
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
                "has no weights ({} or {}/{}); has training finished an epoch?",
                RunLayout::WEIGHTS_BEST,
                RunLayout::CHECKPOINT_LAST,
                RunLayout::CHECKPOINT_WEIGHTS
            ))
        })?;
        let postprocessing = read_postprocessing(&layout).map_err(err)?;
        Ok(RunDir {
            path: path.to_path_buf(),
            config,
            plan,
            network,
            weights,
            postprocessing,
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

/// `postprocessing.json` when the run has one, or why it cannot be read.
fn read_postprocessing(layout: &RunLayout) -> Result<Option<PostprocessChoice>, String> {
    let name = RunLayout::POSTPROCESSING;
    let text = match std::fs::read_to_string(layout.postprocessing()) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {name}: {e}")),
    };
    serde_json::from_str(&text).map(Some).map_err(|e| {
        format!("invalid {name}: {e} (delete it to predict without the chosen postprocessing)")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(dir: &Path) {
        std::fs::create_dir_all(dir).unwrap();
        for n in [
            RunLayout::CHECKPOINT_WEIGHTS,
            RunLayout::CHECKPOINT_OPTIMIZER,
            RunLayout::CHECKPOINT_STATE,
        ] {
            std::fs::write(dir.join(n), b"x").unwrap();
        }
    }

    #[test]
    fn final_weights_prefer_best_then_last() {
        let tmp = tempfile::tempdir().unwrap();
        let run = RunLayout::new(tmp.path());
        assert_eq!(run.final_weights(), None);
        assert!(!run.can_resume());
        complete(&run.checkpoint_last_dir());
        assert_eq!(
            run.final_weights(),
            Some(tmp.path().join("checkpoint_last").join("model.bpk"))
        );
        assert!(run.can_resume());
        std::fs::write(run.weights_best(), b"w").unwrap();
        assert_eq!(
            run.final_weights(),
            Some(tmp.path().join("checkpoint_best.bpk"))
        );
    }

    #[test]
    fn last_checkpoint_skips_staging_and_incomplete_folders() {
        let tmp = tempfile::tempdir().unwrap();
        let run = RunLayout::new(tmp.path());
        complete(&run.checkpoint_staging_dir());
        assert_eq!(
            run.last_checkpoint(),
            None,
            "a staging folder is never used"
        );
        complete(&run.checkpoint_previous_dir());
        let previous = RunLayout::checkpoint_in(&run.checkpoint_previous_dir());
        assert_eq!(run.last_checkpoint(), Some(previous.clone()));
        std::fs::create_dir_all(run.checkpoint_last_dir()).unwrap();
        std::fs::write(run.checkpoint_last_dir().join("model.bpk"), b"x").unwrap();
        assert_eq!(run.last_checkpoint(), Some(previous));
        complete(&run.checkpoint_last_dir());
        assert_eq!(
            run.last_checkpoint(),
            Some(RunLayout::checkpoint_in(&run.checkpoint_last_dir()))
        );
    }

    #[test]
    fn runs_before_checkpoint_folders_still_resume() {
        let tmp = tempfile::tempdir().unwrap();
        let run = RunLayout::new(tmp.path());
        std::fs::write(tmp.path().join("checkpoint_last.bpk"), b"w").unwrap();
        assert!(!run.can_resume(), "weights without a training state");
        std::fs::write(tmp.path().join("training_state.json"), b"{}").unwrap();
        let c = run.last_checkpoint().unwrap();
        assert_eq!(c.weights, tmp.path().join("checkpoint_last.bpk"));
        assert_eq!(c.optimizer, None);
        std::fs::write(tmp.path().join("optimizer_last.bpk"), b"o").unwrap();
        let c = run.last_checkpoint().unwrap();
        assert_eq!(c.optimizer, Some(tmp.path().join("optimizer_last.bpk")));
    }
}
