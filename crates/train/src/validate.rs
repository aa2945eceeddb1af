//! Validation on whole volumes, exactly as `medseg predict` + `medseg evaluate` would score
//! them: sliding window over the preprocessed case, probabilities back onto the file's grid,
//! argmax, the run's postprocessing, then per-class Dice from medseg-eval against the original
//! label map. (nnU-Net's patch-level "pseudo Dice" does not match the final evaluation; this
//! does.)

use crate::TrainError;
use medseg_eval::{CaseMetrics, EvalOptions, evaluate_pair};
use medseg_infer::{NetworkForward, SlidingWindow};
use medseg_model::UNet;
use medseg_postprocess::{Postprocessor, argmax};
use medseg_preprocess::pipeline::{CaseProperties, restore_to_original};
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
    pub cases: Vec<CaseMetrics>,
}

/// Scores `model` (on an inference device) on every case.
#[allow(clippy::too_many_arguments)]
pub fn validate(
    model: &UNet,
    device: &burn::tensor::Device,
    cases: &[ValCase],
    window: &SlidingWindow,
    post: &Postprocessor,
    labels: &[u16],
    surface_metrics: bool,
    on_case: &mut dyn FnMut(usize, usize),
) -> Result<Validation, TrainError> {
    let net = NetworkForward {
        model,
        device: device.clone(),
    };
    let opts = EvalOptions {
        surface_metrics,
        ..EvalOptions::default()
    };
    let mut results = Vec::with_capacity(cases.len());
    for (n, c) in cases.iter().enumerate() {
        let mut f = |x| net.forward(x);
        let probs = window.predict(c.image.view(), &mut f, &mut |_, _| {})?;
        let restored = restore_to_original(probs.view(), &c.props)?;
        drop(probs);
        let mut pred = argmax(restored.view());
        drop(restored);
        post.apply(&mut pred, c.label.geometry.spacing);
        let pred = Volume::new(pred, c.label.geometry);
        let mut m = evaluate_pair(&pred, &c.label, labels, &opts)?;
        m.case = c.name.clone();
        results.push(m);
        on_case(n + 1, cases.len());
    }
    let mut dice = BTreeMap::new();
    for &l in labels {
        let v: Vec<f64> = results
            .iter()
            .filter_map(|m| m.labels.get(&l).and_then(|x| x.dice))
            .collect();
        if !v.is_empty() {
            dice.insert(l, v.iter().sum::<f64>() / v.len() as f64);
        }
    }
    let fg: Vec<f64> = dice
        .iter()
        .filter(|(l, _)| **l != 0)
        .map(|(_, d)| *d)
        .collect();
    let foreground_mean = if fg.is_empty() {
        0.0
    } else {
        fg.iter().sum::<f64>() / fg.len() as f64
    };
    Ok(Validation {
        dice,
        foreground_mean,
        cases: results,
    })
}
