//! The prediction chain once an image is on the network's grid: sliding window (an ensemble
//! averages the probabilities of its models), back onto the file's grid, argmax,
//! postprocessing. [`crate::Predictor`] (`medseg predict`) and training's whole-volume
//! validation both run it, so validation scores exactly what prediction writes.

use crate::{InferError, NetworkForward, SlidingWindow};
use burn::tensor::Device;
use medseg_model::UNet;
use medseg_postprocess::{Postprocessor, argmax};
use medseg_preprocess::CaseProperties;
use medseg_preprocess::pipeline::{restore_channel_to_original, restore_to_original};
use ndarray::{Array3, Array4};

/// A prediction on the input's grid.
pub struct CasePrediction {
    /// Label map `[k, j, i]` after postprocessing.
    pub labels: Array3<u16>,
    /// Per-class probabilities `[classes, k, j, i]` (background first), when asked for.
    pub probabilities: Option<Array4<f32>>,
}

/// The models and settings of the chain, borrowed from whoever owns them (a
/// [`crate::Predictor`], or a training run validating its current weights).
pub struct Segmenter<'a> {
    /// One model, or the folds of an ensemble (inference device, no autodiff).
    pub models: &'a [UNet],
    pub device: &'a Device,
    pub window: &'a SlidingWindow,
    pub postprocess: &'a Postprocessor,
}

impl Segmenter<'_> {
    /// The whole chain for a preprocessed image `[c, k, j, i]` with its properties;
    /// `spacing` (file grid, mm) is what postprocessing measures sizes in.
    pub fn segment(
        &self,
        case: &str,
        image: &Array4<f32>,
        props: &CaseProperties,
        spacing: [f64; 3],
        keep_probabilities: bool,
        on_window: &mut dyn FnMut(usize, usize),
    ) -> Result<CasePrediction, InferError> {
        let probs = self.probabilities(image, on_window)?;
        self.labels(case, probs, props, spacing, keep_probabilities)
    }

    /// Step 1: the models' mean sliding-window probabilities on the preprocessed grid.
    pub fn probabilities(
        &self,
        image: &Array4<f32>,
        on_window: &mut dyn FnMut(usize, usize),
    ) -> Result<Array4<f32>, InferError> {
        ensemble_probabilities(self.models, self.device, self.window, image, on_window)
    }

    /// Step 2: probabilities on the preprocessed grid -> postprocessed labels on the file's
    /// grid. Without `keep_probabilities` classes are restored one at a time into a running
    /// argmax (memory near classes + 2 volumes instead of 2 x classes); the labels are the
    /// same either way.
    pub fn labels(
        &self,
        case: &str,
        probs: Array4<f32>,
        props: &CaseProperties,
        spacing: [f64; 3],
        keep_probabilities: bool,
    ) -> Result<CasePrediction, InferError> {
        let case_err = |e: medseg_preprocess::PreprocessError| InferError::Case {
            case: case.to_string(),
            reason: e.to_string(),
        };
        let (mut labels, probabilities) = if keep_probabilities {
            let p = restore_to_original(probs.view(), props).map_err(case_err)?;
            drop(probs);
            (argmax(p.view()), Some(p))
        } else {
            (running_argmax(&probs, props).map_err(case_err)?, None)
        };
        self.postprocess.apply(&mut labels, spacing);
        Ok(CasePrediction {
            labels,
            probabilities,
        })
    }
}

/// Argmax over classes on the file's grid, restoring one class at a time. Ties go to the
/// lower class and NaN never wins, as in [`argmax`], so both give the same labels.
fn running_argmax(
    probs: &Array4<f32>,
    props: &CaseProperties,
) -> Result<Array3<u16>, medseg_preprocess::PreprocessError> {
    let mut best: Option<Array3<f32>> = None;
    let mut labels: Option<Array3<u16>> = None;
    for (k, ch) in probs.outer_iter().enumerate() {
        let fill = if k == 0 { 1.0 } else { 0.0 };
        let r = restore_channel_to_original(ch, fill, props)?;
        match (&mut best, &mut labels) {
            (Some(b), Some(l)) => {
                ndarray::Zip::from(b)
                    .and(l)
                    .and(&r)
                    .par_for_each(|b, l, &v| {
                        if v > *b {
                            *b = v;
                            *l = k as u16;
                        }
                    });
            }
            _ => {
                labels = Some(Array3::zeros(r.raw_dim()));
                best = Some(r.mapv_into(|v| if v.is_nan() { f32::NEG_INFINITY } else { v }));
            }
        }
    }
    Ok(labels.unwrap_or_else(|| Array3::zeros(props.original_shape_kji)))
}

/// Mean of the models' sliding-window probabilities on a preprocessed image `[c, k, j, i]`.
pub fn ensemble_probabilities(
    models: &[UNet],
    device: &Device,
    window: &SlidingWindow,
    image: &Array4<f32>,
    on_window: &mut dyn FnMut(usize, usize),
) -> Result<Array4<f32>, InferError> {
    let mut sum: Option<Array4<f32>> = None;
    let n = models.len();
    for (m, model) in models.iter().enumerate() {
        let net = NetworkForward {
            model,
            device: device.clone(),
        };
        let mut f = |x| net.forward(x);
        let mut progress = |done: usize, total: usize| on_window(m * total + done, n * total);
        let p = window.predict(image.view(), &mut f, &mut progress)?;
        match &mut sum {
            None => sum = Some(p),
            Some(s) => *s += &p,
        }
    }
    let mut s = sum.ok_or_else(|| InferError::Config("no model given".into()))?;
    if n > 1 {
        s.mapv_inplace(|v| v / n as f32);
    }
    Ok(s)
}
