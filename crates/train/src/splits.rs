//! Cross-validation splits in nnU-Net's `splits_final.json` format:
//! `[{"train": ["case_a", ...], "val": ["case_b", ...]}, ...]`, one entry per fold.

use crate::TrainError;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// One fold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Split {
    pub train: Vec<String>,
    pub val: Vec<String>,
}

/// k-fold splits of `cases`: the sorted names shuffled by `seed`, cut into `folds` nearly equal
/// validation sets. With one case, or `folds` < 2, the single fold trains and validates on
/// everything.
pub fn kfold(cases: &[String], folds: usize, seed: u64) -> Vec<Split> {
    let mut names: Vec<String> = cases.to_vec();
    names.sort();
    if folds < 2 || names.len() < 2 {
        return vec![Split {
            train: names.clone(),
            val: names,
        }];
    }
    let folds = folds.min(names.len());
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    names.shuffle(&mut rng);
    (0..folds)
        .map(|f| {
            let mut val: Vec<String> = names.iter().skip(f).step_by(folds).cloned().collect();
            let mut train: Vec<String> =
                names.iter().filter(|n| !val.contains(n)).cloned().collect();
            val.sort();
            train.sort();
            Split { train, val }
        })
        .collect()
}

/// Reads `path` when it exists (an edited file is honoured; every name must be a case of the
/// dataset), otherwise computes [`kfold`] and writes it there.
pub fn load_or_create(
    path: &Path,
    cases: &[String],
    folds: usize,
    seed: u64,
) -> Result<Vec<Split>, TrainError> {
    if path.is_file() {
        let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
        let splits: Vec<Split> = serde_json::from_str(&text).map_err(|e| TrainError::File {
            path: path.to_path_buf(),
            reason: format!(
                "invalid splits file: {e} (expected [{{\"train\": [...], \"val\": [...]}}, ...])"
            ),
        })?;
        for (f, s) in splits.iter().enumerate() {
            if let Some(bad) = s.train.iter().chain(&s.val).find(|n| !cases.contains(n)) {
                return Err(TrainError::File {
                    path: path.to_path_buf(),
                    reason: format!("fold {f} names case \"{bad}\", which is not in the dataset"),
                });
            }
        }
        if splits.is_empty() {
            return Err(TrainError::File {
                path: path.to_path_buf(),
                reason: "holds no folds".into(),
            });
        }
        return Ok(splits);
    }
    let splits = kfold(cases, folds, seed);
    crate::error::write_json(path, &splits)?;
    Ok(splits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_partition_the_cases() {
        let cases: Vec<String> = (0..11).map(|i| format!("c{i:02}")).collect();
        let s = kfold(&cases, 5, 3);
        assert_eq!(s.len(), 5);
        let mut all_val: Vec<String> = s.iter().flat_map(|f| f.val.clone()).collect();
        all_val.sort();
        assert_eq!(all_val, cases);
        for f in &s {
            assert_eq!(f.train.len() + f.val.len(), 11);
            assert!(f.val.iter().all(|v| !f.train.contains(v)));
        }
        assert_eq!(kfold(&cases, 5, 3), s, "deterministic");
        assert_ne!(kfold(&cases, 5, 4), s, "seeded");
    }
}
