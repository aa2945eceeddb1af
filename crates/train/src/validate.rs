//! Validation on whole volumes, exactly as `medseg predict` + `medseg evaluate` would score
//! them: the cached preprocessed case goes through medseg-infer's [`Segmenter`] (the same
//! sliding window -> restore -> argmax -> postprocess chain `medseg predict` runs), then
//! per-class Dice from medseg-eval against the original label map. (nnU-Net's patch-level
//! "pseudo Dice" does not match the final evaluation; this does.)

use crate::TrainError;
use burn::tensor::Device;
use medseg_config::ExperimentConfig;
use medseg_eval::{CaseMetrics, EvalOptions, evaluate_pair};
use medseg_infer::{Segmenter, SlidingWindow, window_for};
use medseg_model::UNet;
use medseg_postprocess::{LccCandidates, PostprocessChoice, Postprocessor};
use medseg_preprocess::pipeline::CaseProperties;
use medseg_preprocess::plan::Plan;
use medseg_volume::Volume;
use ndarray::Array4;
use std::collections::BTreeMap;

/// A validation case: the network input (from the cache) and the original label map.
pub struct ValCase {
    pub name: String,
    pub image: Array4<f32>,
    pub props: CaseProperties,
    pub label: Volume<u16>,
}

/// Per-class mean Dice over the validation cases, and the per-case metrics.
#[derive(Debug, Clone)]
pub struct Validation {
    /// Label -> mean Dice over cases (cases where Dice is undefined are skipped).
    pub dice: BTreeMap<u16, f64>,
    /// Mean of `dice` over foreground labels.
    pub foreground_mean: f64,
    /// Per-case metrics of the predictions as scored (before `postprocessing`).
    pub cases: Vec<CaseMetrics>,
    /// Final validation with `train.choose_postprocessing`: the largest-component steps kept
    /// because they raised the Dice, with the Dice before and after. `dice` and
    /// `foreground_mean` are then the values after it.
    pub postprocessing: Option<PostprocessChoice>,
}

/// Which validation: the periodic one that ranks checkpoints, or the final one of the best
/// weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValidationKind {
    /// Every `train.validation_interval` epochs: no mirroring (cheaper, same ranking), Dice
    /// only.
    Periodic,
    /// After training: TTA as `[inference]` configures it, surface metrics included.
    Final,
}

/// The run's inference settings, ready to score networks on the validation cases.
pub struct Validator {
    device: Device,
    postprocess: Postprocessor,
    periodic_window: SlidingWindow,
    final_window: SlidingWindow,
    labels: Vec<u16>,
    /// `train.choose_postprocessing`: the final validation chooses largest-component steps.
    choose_postprocessing: bool,
}

impl Validator {
    /// From the experiment's `[inference]` and `[postprocess]` sections; `device` is the
    /// inference (non-autodiff) device; `labels` the foreground labels to score.
    pub fn new(
        cfg: &ExperimentConfig,
        plan: &Plan,
        device: Device,
        labels: Vec<u16>,
    ) -> Result<Self, TrainError> {
        let final_window = window_for(plan, &cfg.inference)?;
        let mut periodic_window = final_window.clone();
        periodic_window.tta = false;
        Ok(Self {
            device,
            postprocess: Postprocessor::new(&cfg.postprocess)?,
            periodic_window,
            final_window,
            labels,
            choose_postprocessing: cfg.train.choose_postprocessing,
        })
    }

    /// The final validation runs without mirroring (a time budget's choice when mirroring
    /// would cost too much of it).
    pub fn final_without_mirroring(&mut self) {
        self.final_window.tta = false;
    }

    /// The inference device the model to validate must live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Scores `model` (on [`Self::device`]) on every case; `on_case(done, total)` reports
    /// progress. The final validation also chooses the postprocessing (when configured),
    /// scoring each case's largest-component variants as it goes so no prediction is kept.
    pub fn validate(
        &self,
        model: &UNet,
        cases: &[ValCase],
        kind: ValidationKind,
        on_case: &mut dyn FnMut(usize, usize),
    ) -> Result<Validation, TrainError> {
        let segmenter = Segmenter {
            models: std::slice::from_ref(model),
            device: &self.device,
            window: match kind {
                ValidationKind::Periodic => &self.periodic_window,
                ValidationKind::Final => &self.final_window,
            },
            postprocess: &self.postprocess,
        };
        let opts = EvalOptions {
            surface_metrics: kind == ValidationKind::Final,
            ..EvalOptions::default()
        };
        let mut results = Vec::with_capacity(cases.len());
        let mut candidates = (kind == ValidationKind::Final && self.choose_postprocessing)
            .then(|| LccCandidates::new(&self.labels, self.postprocess.connectivity));
        for (n, c) in cases.iter().enumerate() {
            let spacing = c.label.geometry.spacing;
            let pred =
                segmenter.segment(&c.name, &c.image, &c.props, spacing, false, &mut |_, _| {})?;
            let pred = Volume::new(pred.labels, c.label.geometry);
            let mut m = evaluate_pair(&pred, &c.label, &self.labels, &opts)?;
            if let Some(cands) = &mut candidates {
                cands
                    .add_case(pred.data.view(), c.label.data.view())
                    .map_err(|source| TrainError::ValidationCase {
                        case: c.name.clone(),
                        source,
                    })?;
            }
            m.case = c.name.clone();
            results.push(m);
            on_case(n + 1, cases.len());
        }
        let mut v = summarize(&self.labels, results);
        if let Some(choice) = candidates.and_then(|c| c.choose()) {
            v.dice.clone_from(&choice.dice_after);
            v.foreground_mean = choice.foreground_mean_after;
            v.postprocessing = Some(choice);
        }
        Ok(v)
    }
}

/// Mean Dice per label over the cases where it is defined, and their foreground mean.
fn summarize(labels: &[u16], cases: Vec<CaseMetrics>) -> Validation {
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let mut dice = BTreeMap::new();
    for &l in labels {
        let v: Vec<f64> = cases
            .iter()
            .filter_map(|m| m.labels.get(&l).and_then(|x| x.dice))
            .collect();
        if !v.is_empty() {
            dice.insert(l, mean(&v));
        }
    }
    let fg: Vec<f64> = dice
        .iter()
        .filter(|(l, _)| **l != 0)
        .map(|(_, d)| *d)
        .collect();
    let foreground_mean = if fg.is_empty() { 0.0 } else { mean(&fg) };
    Validation {
        dice,
        foreground_mean,
        cases,
        postprocessing: None,
    }
}
