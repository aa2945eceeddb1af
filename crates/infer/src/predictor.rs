//! One case from file grid to label map: the plan's preprocessing, the sliding window (an
//! ensemble averages the probabilities of several runs), back onto the input's grid, argmax,
//! postprocessing.

use crate::{InferError, NetworkForward, RunDir, SlidingWindow};
use burn::tensor::Device;
use medseg_config::{InferenceConfig, PostprocessConfig};
use medseg_model::UNet;
use medseg_postprocess::{Postprocessor, argmax};
use medseg_preprocess::pipeline::{
    preprocess_case, restore_channel_to_original, restore_to_original,
};
use medseg_preprocess::plan::Plan;
use medseg_volume::{Header, MultiChannel, Volume, WriteOptions, write_volume};
use ndarray::{Array3, Array4};
use std::path::Path;

/// A segmenter built from one or more run directories (folds) sharing one plan.
pub struct Predictor {
    pub plan: Plan,
    pub models: Vec<UNet>,
    pub device: Device,
    pub window: SlidingWindow,
    pub postprocess: Postprocessor,
    pub num_classes: usize,
}

/// A prediction on the input's grid.
pub struct CasePrediction {
    /// Label map `[k, j, i]` after postprocessing.
    pub labels: Array3<u16>,
    /// Per-class probabilities `[classes, k, j, i]` (background first), when asked for.
    pub probabilities: Option<Array4<f32>>,
}

impl Predictor {
    /// Loads every run (all must have the same classes, channels and preprocessing plan; the
    /// first run's `[inference]` and `[postprocess]` sections apply unless overridden).
    pub fn from_runs(
        runs: &[RunDir],
        device: &Device,
        inference: Option<&InferenceConfig>,
        postprocess: Option<&PostprocessConfig>,
    ) -> Result<Self, InferError> {
        let first = runs
            .first()
            .ok_or_else(|| InferError::Config("no model given".into()))?;
        for r in &runs[1..] {
            let same = r.plan.target_spacing == first.plan.target_spacing
                && r.plan.normalization == first.plan.normalization
                && r.plan.reorient == first.plan.reorient
                && r.plan.crop == first.plan.crop
                && r.network.num_classes == first.network.num_classes
                && r.network.in_channels == first.network.in_channels;
            if !same {
                return Err(InferError::RunDir {
                    path: r.path.clone(),
                    reason: format!(
                        "cannot be ensembled with {}: its plan or classes differ (ensembles need folds of one experiment)",
                        first.path.display()
                    ),
                });
            }
        }
        let models = runs
            .iter()
            .map(|r| r.load_model(device))
            .collect::<Result<Vec<_>, _>>()?;
        let inf = inference.unwrap_or(&first.config.inference);
        let window = window_for(&first.plan, inf)?;
        let post = Postprocessor::new(postprocess.unwrap_or(&first.config.postprocess))
            .map_err(|e| InferError::Config(e.to_string()))?;
        Ok(Self {
            plan: first.plan.clone(),
            models,
            device: device.clone(),
            window,
            postprocess: post,
            num_classes: first.network.num_classes,
        })
    }

    /// Segments one case given its channels on the file grid. The channels are consumed and
    /// freed right after preprocessing; without `keep_probabilities` classes are restored to
    /// the file's grid one at a time into a running argmax, so memory peaks near (classes +
    /// 2) x the float32 size of the volume. `on_window(done, total)` reports sliding-window
    /// progress (over all models).
    pub fn predict(
        &self,
        case: &str,
        images: MultiChannel,
        keep_probabilities: bool,
        on_window: &mut dyn FnMut(usize, usize),
    ) -> Result<CasePrediction, InferError> {
        let case_err = |reason: String| InferError::Case {
            case: case.to_string(),
            reason,
        };
        if images.num_channels() != self.plan.channel_names.len() {
            return Err(case_err(format!(
                "has {} channel(s), the model expects {} ({})",
                images.num_channels(),
                self.plan.channel_names.len(),
                self.plan.channel_names.join(", ")
            )));
        }
        let spacing = images.geometry.spacing;
        let pre =
            preprocess_case(&images, None, &self.plan).map_err(|e| case_err(e.to_string()))?;
        drop(images);
        let probs = ensemble_probabilities(
            &self.models,
            &self.device,
            &self.window,
            &pre.image,
            on_window,
        )?;
        drop(pre.image);
        let (mut labels, probabilities) = if keep_probabilities {
            let p = restore_to_original(probs.view(), &pre.props)
                .map_err(|e| case_err(e.to_string()))?;
            drop(probs);
            (argmax(p.view()), Some(p))
        } else {
            (
                running_argmax(&probs, &pre.props).map_err(|e| case_err(e.to_string()))?,
                None,
            )
        };
        self.postprocess.apply(&mut labels, spacing);
        Ok(CasePrediction {
            labels,
            probabilities,
        })
    }
}

/// Argmax over classes on the file's grid, restoring one class at a time (ties go to the lower
/// class, as [`argmax`] does).
fn running_argmax(
    probs: &Array4<f32>,
    props: &medseg_preprocess::CaseProperties,
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
                best = Some(r);
            }
        }
    }
    Ok(labels.unwrap_or_else(|| Array3::zeros(props.original_shape_kji)))
}

/// Sliding-window settings from a plan and the `[inference]` section.
pub fn window_for(plan: &Plan, inf: &InferenceConfig) -> Result<SlidingWindow, InferError> {
    let mut w = SlidingWindow::new(plan.patch_size_kji());
    if !(0.0..1.0).contains(&inf.overlap) {
        return Err(InferError::Config(format!(
            "inference.overlap = {} must be in [0, 1)",
            inf.overlap
        )));
    }
    w.overlap = inf.overlap;
    w.gaussian = inf.gaussian;
    w.tta = inf.tta;
    w.batch_size = inf.batch_size.max(1);
    Ok(w)
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

/// Writes a label map with `reference`'s exact header geometry (uint8 when every label fits,
/// else uint16), through a temporary file renamed into place.
pub fn write_prediction(
    path: &Path,
    labels: &Array3<u16>,
    reference: &Header,
    num_classes: usize,
) -> Result<(), InferError> {
    let opts = WriteOptions::with_reference(reference.clone());
    let geometry = reference.geometry();
    if num_classes <= 256 {
        let v = Volume::new(labels.mapv(|l| l as u8), geometry);
        write_volume(path, &v, &opts)?;
    } else {
        let v = Volume::new(labels.clone(), geometry);
        write_volume(path, &v, &opts)?;
    }
    Ok(())
}
