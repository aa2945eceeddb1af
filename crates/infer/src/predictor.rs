//! One case from file grid to label map: the plan's preprocessing, then the prediction chain
//! of [`crate::Segmenter`] (sliding window, an ensemble averaging the probabilities of several
//! runs, back onto the input's grid, argmax, postprocessing).

use crate::{CasePrediction, InferError, RunDir, Segmenter, SlidingWindow};
use burn::tensor::Device;
use medseg_config::{InferenceConfig, PostprocessConfig};
use medseg_model::UNet;
use medseg_postprocess::Postprocessor;
use medseg_preprocess::pipeline::preprocess_case;
use medseg_preprocess::plan::Plan;
use medseg_volume::{Header, MultiChannel, Volume, WriteOptions, write_volume};
use ndarray::Array3;
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

impl Predictor {
    /// Loads every run (all must have the same classes, channels and preprocessing plan; the
    /// first run's `[inference]` and `[postprocess]` sections apply unless overridden, then
    /// the postprocessing its final validation chose, `postprocessing.json`, when it has one).
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
        let post = Postprocessor::new(postprocess.unwrap_or(&first.config.postprocess))?
            .with_choice(first.postprocessing.clone());
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
        let segmenter = self.segmenter();
        let probs = segmenter.probabilities(&pre.image, on_window)?;
        drop(pre.image);
        segmenter.labels(case, probs, &pre.props, spacing, keep_probabilities)
    }

    /// The prediction chain over this predictor's models and settings.
    pub fn segmenter(&self) -> Segmenter<'_> {
        Segmenter {
            models: &self.models,
            device: &self.device,
            window: &self.window,
            postprocess: &self.postprocess,
        }
    }
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
