//! What goes into a run and what comes out: [`TrainOptions`], [`TrainOutcome`],
//! [`TrainSummary`] and its `summary.json`.

use crate::validate::Validation;
use crate::{ClassLabels, TrainError};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

/// Run-time choices that are not part of the experiment.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// Continue from `checkpoint_last/` (weights, optimizer state, training state).
    pub resume: bool,
    /// Start again in a run directory that already holds a run (its checkpoints, log and
    /// summary are deleted; the plan and the cache are kept). Without it (or `resume`),
    /// training into such a directory is [`crate::TrainError::RunExists`].
    pub overwrite: bool,
    /// `flex`, `wgpu` or `wgpu:N` (see `medseg_model::select_device`).
    pub device: String,
    /// Set (by the binary's Ctrl-C handler, or a test) to stop before the next optimizer
    /// step, saving `last`: training then returns [`TrainOutcome::Interrupted`].
    pub interrupt: Arc<AtomicBool>,
}

impl Default for TrainOptions {
    fn default() -> Self {
        Self {
            resume: false,
            overwrite: false,
            device: "flex".into(),
            interrupt: Arc::new(AtomicBool::new(false)),
        }
    }
}

/// How a run that did not fail ended. (A non-finite loss is an error:
/// [`TrainError::NonFiniteLoss`].)
#[derive(Debug, Clone, PartialEq)]
pub enum TrainOutcome {
    /// Every configured epoch ran.
    Finished,
    /// The interrupt flag was set during `epoch`: `checkpoint_last/` holds the weights of
    /// that moment, and `--resume` runs the epoch again.
    Interrupted { epoch: usize },
    /// `train.early_stopping_patience` validations after epoch `best_epoch` brought no better
    /// foreground-mean Dice than `best_dice`; training stopped after `epoch`.
    EarlyStopped {
        epoch: usize,
        best_epoch: usize,
        best_dice: f64,
    },
}

impl TrainOutcome {
    pub fn is_interrupted(&self) -> bool {
        matches!(self, TrainOutcome::Interrupted { .. })
    }

    pub fn is_early_stopped(&self) -> bool {
        matches!(self, TrainOutcome::EarlyStopped { .. })
    }
}

/// What a finished (or interrupted) run reports.
#[derive(Debug, Clone)]
pub struct TrainSummary {
    pub run_dir: PathBuf,
    pub outcome: TrainOutcome,
    pub epochs_done: usize,
    pub best_dice: Option<f64>,
    pub best_epoch: Option<usize>,
    /// Final validation of the best weights with every metric (surface metrics included).
    pub final_validation: Option<Validation>,
    pub seconds: f64,
    /// Optimizer steps taken in all.
    pub iterations_done: usize,
    /// What `--time-budget` measured and chose (as in `plan.json`).
    pub time_budget: Option<medseg_preprocess::budget::BudgetChoice>,
    /// The device it trained on (`flex`, `wgpu`, `wgpu:N`).
    pub device: String,
}

/// Writes `summary.json`: the outcome, the best validation and the final validation per class.
pub fn write_summary(
    path: &Path,
    s: &TrainSummary,
    labels: &ClassLabels,
) -> Result<(), TrainError> {
    let json = serde_json::json!({
        "run_dir": s.run_dir,
        "epochs_done": s.epochs_done,
        "interrupted": s.outcome.is_interrupted(),
        "early_stopped": s.outcome.is_early_stopped(),
        "best_validation_dice": s.best_dice,
        "best_epoch": s.best_epoch,
        "final_validation": s.final_validation.as_ref().map(|v| validation_json(v, labels)),
        "seconds": s.seconds,
        "iterations_done": s.iterations_done,
        "device": s.device,
        "time_budget": s.time_budget.as_ref().map(|b| serde_json::json!({
            "budget": b.budget,
            "budget_seconds": b.budget_seconds,
            "seconds_used": s.seconds,
            "within_budget": s.seconds <= b.budget_seconds,
            "chosen": b.chosen_candidate(),
            "planned_iterations": b.iterations,
            "candidates": b.candidates,
        })),
    });
    crate::error::write_json(path, &json)
}

fn validation_json(v: &Validation, labels: &ClassLabels) -> serde_json::Value {
    let per_class: serde_json::Map<String, serde_json::Value> = v
        .dice
        .iter()
        .map(|(l, d)| {
            let hd95: Vec<f64> = v
                .cases
                .iter()
                .filter_map(|c| c.labels.get(l).and_then(|m| m.hd95))
                .collect();
            let mean_hd95 =
                (!hd95.is_empty()).then(|| hd95.iter().sum::<f64>() / hd95.len() as f64);
            (
                l.to_string(),
                serde_json::json!({"name": labels.name(*l), "dice": d, "hd95": mean_hd95}),
            )
        })
        .collect();
    // Dice is after the chosen postprocessing (when one was chosen), HD95 of the predictions
    // as scored before it: "postprocessing" holds the choice and the Dice before and after.
    serde_json::json!({
        "foreground_mean_dice": v.foreground_mean,
        "per_class": per_class,
        "cases": v.cases.iter().map(|c| c.case.clone()).collect::<Vec<_>>(),
        "postprocessing": v.postprocessing,
        "hd95_before_postprocessing": v.postprocessing.is_some(),
    })
}
