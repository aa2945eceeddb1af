//! This fold's data in memory: the splits decide which cases train and which validate, the
//! cache holds them preprocessed, and validation cases also keep their original label maps.

use crate::cache::{self, CachedCase};
use crate::splits;
use crate::validate::ValCase;
use crate::{TrainError, TrainObserver};
use medseg_config::{ExperimentConfig, FoldSelection};
use medseg_infer::RunLayout;
use medseg_preprocess::plan::Plan;
use medseg_volume::dataset::{Case, Dataset};

/// The training cases (preprocessed, for the loader) and the validation cases.
pub struct FoldData {
    pub train: Vec<CachedCase>,
    pub val: Vec<ValCase>,
}

impl FoldData {
    /// Splits the dataset (reading or writing `splits.json`), preprocesses this fold's cases
    /// into the cache (or reads them from it) and reads the validation labels.
    pub fn load(
        cfg: &ExperimentConfig,
        dataset: &Dataset,
        plan: &Plan,
        run: &RunLayout,
        obs: &mut dyn TrainObserver,
    ) -> Result<Self, TrainError> {
        let (train_cases, val_cases) = fold_cases(cfg, dataset, run)?;
        obs.message(&format!(
            "data: {} training and {} validation cases",
            train_cases.len(),
            val_cases.len()
        ));
        let all: Vec<Case> = train_cases.iter().chain(&val_cases).cloned().collect();
        let (total, mut done) = (all.len(), 0);
        let mut train = cache::load_or_build(
            &run.cache(),
            plan,
            &all,
            cfg.train.seed,
            &mut |name, hit| {
                done += 1;
                let note = if hit { " (cached)" } else { "" };
                obs.progress("preprocess", done, total, &format!("{name}{note}"));
            },
        )?;
        for (c, case) in train.iter().zip(&all) {
            if let Some(w) =
                medseg_preprocess::non_finite_warning(&c.name, &case.images, &c.non_finite)
            {
                obs.message(&w);
            }
        }
        let val_cached = train.split_off(train_cases.len());
        let val = val_cached
            .into_iter()
            .zip(&val_cases)
            .map(|(c, case)| with_original_label(c, case))
            .collect::<Result<_, _>>()?;
        Ok(Self { train, val })
    }
}

/// The training and validation cases of `data.fold` (fold "all": every case trains, none
/// validates). The splits come from `data.splits` when set, else `RUN/splits.json`
/// (created when missing); the run directory always keeps a copy.
fn fold_cases(
    cfg: &ExperimentConfig,
    dataset: &Dataset,
    run: &RunLayout,
) -> Result<(Vec<Case>, Vec<Case>), TrainError> {
    let names: Vec<String> = dataset.cases.iter().map(|c| c.name.clone()).collect();
    let splits_path = cfg
        .data
        .splits
        .as_ref()
        .map(|p| cfg.resolve_path(p))
        .unwrap_or_else(|| run.splits());
    let splits = splits::load_or_create(&splits_path, &names, cfg.data.folds, cfg.data.split_seed)?;
    if splits_path != run.splits() {
        crate::error::write_json(&run.splits(), &splits)?;
    }
    let (train, val) = match cfg.data.fold {
        FoldSelection::All(_) => (names, Vec::new()),
        FoldSelection::Index(f) => {
            let s = splits.get(f).ok_or_else(|| {
                TrainError::Config(format!(
                    "data.fold = {f} but the splits have {} folds",
                    splits.len()
                ))
            })?;
            (s.train.clone(), s.val.clone())
        }
    };
    let pick = |list: &[String]| -> Vec<Case> {
        dataset
            .cases
            .iter()
            .filter(|c| list.contains(&c.name))
            .cloned()
            .collect()
    };
    Ok((pick(&train), pick(&val)))
}

/// A cached validation case with the label map it is scored against (the file's, not the
/// preprocessed one).
fn with_original_label(c: CachedCase, case: &Case) -> Result<ValCase, TrainError> {
    let label_path = case.label.as_ref().ok_or_else(|| TrainError::Case {
        case: case.name.clone(),
        reason: "has no label".into(),
    })?;
    Ok(ValCase {
        name: c.name,
        image: c.image,
        props: c.props,
        label: medseg_volume::read_labels(label_path)?,
    })
}
