//! medseg-config: the experiment config file (TOML) that every `--config` command reads.
//!
//! One [`ExperimentConfig`] holds one section per pipeline stage; each section lives in its own
//! module and documents its keys and defaults. Unknown or misspelt keys are errors that name the
//! key and the file (`deny_unknown_fields` on every section). `--set section.key=value`
//! overrides are applied to the TOML document before it is deserialized, so an override is
//! validated exactly like a key written in the file. Relative paths are resolved against the
//! folder of the config file by [`ExperimentConfig::resolve_path`].

// deny, not forbid: ndarray's `s!` macro expands to an `#[allow(unsafe_code)]` block.
#![deny(unsafe_code)]

mod data;
mod error;
mod inference;
mod loss;
mod model;
mod overrides;
mod postprocess;
mod preprocess;
mod time_budget;
mod train;

pub use data::{AllFolds, DataConfig, FoldSelection};
pub use error::ConfigError;
pub use inference::InferenceConfig;
pub use loss::LossConfig;
pub use model::{BottleneckKind, ModelConfig, NormKind};
pub use overrides::apply_override;
pub use postprocess::PostprocessConfig;
pub use preprocess::PreprocessConfig;
pub use time_budget::TimeBudget;
pub use train::{OptimizerKind, ScheduleKind, TrainConfig};

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The whole experiment: what `configs/*.toml` contain.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ExperimentConfig {
    /// Where the dataset is and how it is split.
    pub data: DataConfig,
    #[serde(default)]
    pub preprocess: PreprocessConfig,
    #[serde(default)]
    pub model: ModelConfig,
    #[serde(default)]
    pub loss: LossConfig,
    #[serde(default)]
    pub train: TrainConfig,
    #[serde(default)]
    pub inference: InferenceConfig,
    #[serde(default)]
    pub postprocess: PostprocessConfig,
    /// Folder of the config file; relative paths are resolved against it. Not part of the file.
    #[serde(skip)]
    pub base_dir: PathBuf,
}

impl ExperimentConfig {
    /// Reads `path`, applies each `section.key=value` override in order, and deserializes.
    pub fn load(path: &Path, overrides: &[String]) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Self::from_toml_str(&text, overrides, path, base_dir)
    }

    /// Parses a config from text. `origin` only names the source in errors.
    pub fn from_toml_str(
        text: &str,
        overrides: &[String],
        origin: &Path,
        base_dir: PathBuf,
    ) -> Result<Self, ConfigError> {
        let mut doc: toml::Table = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_path_buf(),
            message: one_line(&e.to_string()),
        })?;
        let file_doc = doc.clone();
        for o in overrides {
            apply_override(&mut doc, o)?;
        }
        let mut cfg = match deserialize(doc) {
            Ok(cfg) => cfg,
            Err(message) => return Err(blame(file_doc, overrides, origin, message)),
        };
        cfg.base_dir = base_dir;
        cfg.validate(overrides, origin)?;
        Ok(cfg)
    }

    /// Settings that parse but cannot work; the error names the key and where it was set.
    fn validate(&self, overrides: &[String], origin: &Path) -> Result<(), ConfigError> {
        let set_by = |key: &str| {
            overrides
                .iter()
                .rev()
                .find(|o| o.split_once('=').is_some_and(|(k, _)| k.trim() == key))
                .map(|o| format!("--set {o}"))
                .unwrap_or_else(|| format!("config {}", origin.display()))
        };
        if self.data.folds < 2 && !matches!(self.data.fold, FoldSelection::All(_)) {
            return Err(ConfigError::Value {
                origin: set_by("data.folds"),
                key: "data.folds".into(),
                reason: format!(
                    "= {} leaves no held-out cases: validation would score the training cases; use data.folds >= 2 (default 5), or data.fold = \"all\" to train on every case without validation",
                    self.data.folds
                ),
            });
        }
        Ok(())
    }

    /// A path from the config, made absolute against the config file's folder.
    pub fn resolve_path(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            normalize_lexically(&self.base_dir.join(p))
        }
    }

    /// The dataset folder (the one holding `dataset.json`).
    pub fn dataset_dir(&self) -> PathBuf {
        self.resolve_path(&self.data.dataset)
    }

    /// The run directory (`[train] output`).
    pub fn output_dir(&self) -> PathBuf {
        self.resolve_path(&self.train.output)
    }

    /// The resolved config as TOML text (what a run directory stores as `config.toml`). Fails
    /// only on what TOML cannot hold, e.g. a path that is not valid UTF-8.
    pub fn to_toml(&self) -> Result<String, ConfigError> {
        toml::to_string_pretty(self).map_err(ConfigError::Serialize)
    }

    /// The resolved config as TOML text, or an empty string when it cannot be written.
    #[deprecated(note = "use `to_toml`, which returns the error instead of an empty file")]
    pub fn to_toml_string(&self) -> String {
        self.to_toml().unwrap_or_default()
    }
}

fn deserialize(doc: toml::Table) -> Result<ExperimentConfig, String> {
    toml::Value::Table(doc)
        .try_into()
        .map_err(|e: toml::de::Error| one_line(&e.to_string()))
}

/// Whom a schema error belongs to: the file when the file alone gives it, else the first
/// `--set` after which it appears (so `--set train.epochs=abc` is named, not the file).
fn blame(
    file_doc: toml::Table,
    overrides: &[String],
    origin: &Path,
    message: String,
) -> ConfigError {
    let file_error = || ConfigError::Parse {
        path: origin.to_path_buf(),
        message: message.clone(),
    };
    if overrides.is_empty() || deserialize(file_doc.clone()).err().as_ref() == Some(&message) {
        return file_error();
    }
    let mut doc = file_doc;
    for o in overrides {
        if apply_override(&mut doc, o).is_err() {
            break;
        }
        if deserialize(doc.clone()).err().as_ref() == Some(&message) {
            return ConfigError::SetValue {
                spec: o.clone(),
                reason: message,
            };
        }
    }
    file_error()
}

/// Removes `.` and `dir/..` pairs without touching the file system (`configs/../data` ->
/// `data`), so paths printed to the user read naturally.
fn normalize_lexically(p: &Path) -> PathBuf {
    use std::path::Component;
    let mut out: Vec<Component> = Vec::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => match out.last() {
                Some(Component::Normal(_)) => {
                    out.pop();
                }
                Some(Component::RootDir) => {}
                _ => out.push(c),
            },
            other => out.push(other),
        }
    }
    if out.is_empty() {
        PathBuf::from(".")
    } else {
        out.iter().collect()
    }
}

/// toml's messages span several lines (source excerpt); errors here are one line.
fn one_line(s: &str) -> String {
    s.split('\n')
        .map(str::trim)
        .filter(|l| {
            !l.is_empty() && !l.starts_with('|') && !l.chars().all(|c| c == '^' || c == ' ')
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> ExperimentConfig {
        ExperimentConfig::from_toml_str(text, &[], Path::new("test.toml"), PathBuf::new()).unwrap()
    }

    fn parse_with(text: &str, sets: &[&str]) -> Result<ExperimentConfig, ConfigError> {
        let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
        ExperimentConfig::from_toml_str(text, &sets, Path::new("exp.toml"), PathBuf::new())
    }

    #[test]
    fn a_bad_set_value_names_the_set_not_the_file() {
        let text = "[data]\ndataset = 'd'\n";
        let e = parse_with(text, &["train.epochs=3", "train.epochs=abc"]).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("--set train.epochs=abc"), "{msg}");
        assert!(!msg.contains("exp.toml"), "{msg}");
        let e = parse_with(text, &["train.bogus=1"])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("--set train.bogus=1") && e.contains("bogus"),
            "{e}"
        );
        // An error the file alone has is still the file's.
        let e = parse_with(
            "[data]\ndataset = 'd'\n[train]\nepochs = 'x'\n",
            &["train.seed=1"],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("exp.toml") && !e.contains("--set"), "{e}");
    }

    #[test]
    fn fewer_than_two_folds_is_refused_unless_fold_all() {
        for folds in [0, 1] {
            let text = format!("[data]\ndataset = 'd'\nfolds = {folds}\n");
            let e = parse_with(&text, &[]).unwrap_err().to_string();
            assert!(e.contains("exp.toml") && e.contains("data.folds"), "{e}");
            assert!(e.contains("fold = \"all\""), "the fix is named: {e}");
            let e = parse_with("[data]\ndataset = 'd'\n", &[&format!("data.folds={folds}")])
                .unwrap_err()
                .to_string();
            assert!(e.contains(&format!("--set data.folds={folds}")), "{e}");
            parse_with(&text, &["data.fold=\"all\""]).unwrap();
        }
        parse_with("[data]\ndataset = 'd'\nfolds = 2\n", &[]).unwrap();
    }

    #[test]
    fn a_time_budget_parses_from_the_file_and_a_bad_one_names_its_source() {
        let cfg = parse("[data]\ndataset = 'd'\n[train]\ntime_budget = \"1h30m\"\n");
        assert_eq!(cfg.train.time_budget.unwrap().seconds(), 5400.0);
        assert_eq!(parse(&cfg.to_toml().unwrap()), cfg);
        let e = parse_with("[data]\ndataset = 'd'\n", &["train.time_budget=\"20\""])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("--set train.time_budget") && e.contains("20m"),
            "{e}"
        );
        assert!(parse("[data]\ndataset = 'd'\n").train.time_budget.is_none());
    }

    #[test]
    fn to_toml_round_trips() {
        let cfg = parse("[data]\ndataset = \"data/Task01\"\n[train]\nepochs = 7\n");
        let again = parse(&cfg.to_toml().unwrap());
        assert_eq!(again, cfg);
        assert_eq!(again.train.epochs, 7);
    }

    #[cfg(unix)]
    #[test]
    fn to_toml_returns_the_error_for_a_path_toml_cannot_hold() {
        use std::os::unix::ffi::OsStrExt;
        let mut cfg = parse("[data]\ndataset = \"data\"\n");
        cfg.data.dataset = PathBuf::from(std::ffi::OsStr::from_bytes(b"data/\xff"));
        let err = cfg.to_toml().unwrap_err();
        assert!(matches!(err, ConfigError::Serialize(_)), "{err}");
        assert!(std::error::Error::source(&err).is_some());
    }
}
