//! nnU-Net's `convert_predicted_logits_to_segmentation_with_correct_shape`: the float16 logits
//! resampled back to the cropped input grid (order 1, separate-z rules of the configuration),
//! softmax in float32, argmax, pasted into the uncropped shape, transposed back.

use crate::plans::{Configuration, Plans};
use crate::preprocess::PreprocessedCase;
use crate::resample::resample_channel;
use half::f16;
use ndarray::{Array3, Array4, ArrayView4, Axis, Zip, s};

/// A case's outputs in the input's array order `(k, j, i)`.
#[derive(Debug, Clone)]
pub struct ExportedCase {
    /// Argmax channel index (0 outside the nonzero box).
    pub segmentation: Array3<u16>,
    /// Softmax probabilities `(classes, k, j, i)`; `[1, 0, ...]` outside the box.
    pub probabilities: Array4<f32>,
}

pub fn export_case(
    logits: ArrayView4<f32>,
    pre: &PreprocessedCase,
    plans: &Plans,
    cfg: &Configuration,
) -> ExportedCase {
    let target = pre.shape_after_cropping;
    let classes = logits.shape()[0];
    let kwargs = cfg.resampling_fn_probabilities_kwargs;
    let (order, order_z, force) =
        kwargs.map_or((1, 0, None), |k| (k.order, k.order_z, k.force_separate_z));
    let resampled: Array4<f32> = if logits.shape()[1..] == target {
        logits.to_owned()
    } else {
        let mut out = Array4::<f32>::zeros((classes, target[0], target[1], target[2]));
        for c in 0..classes {
            let l = logits.index_axis(Axis(0), c).mapv(f64::from);
            let r = resample_channel(
                l.view(),
                target,
                pre.target_spacing,
                pre.original_spacing,
                order,
                order_z,
                force,
            );
            Zip::from(out.index_axis_mut(Axis(0), c))
                .and(&r)
                .for_each(|o, &v| *o = f16::from_f64(v).to_f32());
        }
        out
    };
    let (probs, seg) = softmax_argmax(resampled.view());
    let full = pre.shape_before_cropping;
    let (b0, b1) = (pre.bbox.start_kji, pre.bbox.end_kji);
    let region = s![b0[0]..b1[0], b0[1]..b1[1], b0[2]..b1[2]];
    let mut seg_full = Array3::<u16>::zeros((full[0], full[1], full[2]));
    seg_full.slice_mut(region).assign(&seg);
    let mut p_full = Array4::<f32>::zeros((classes, full[0], full[1], full[2]));
    p_full.index_axis_mut(Axis(0), 0).fill(1.0);
    p_full
        .slice_mut(s![.., b0[0]..b1[0], b0[1]..b1[1], b0[2]..b1[2]])
        .assign(&probs);
    let tb = plans.transpose_backward;
    ExportedCase {
        segmentation: seg_full.permuted_axes(tb).as_standard_layout().into_owned(),
        probabilities: p_full
            .permuted_axes([0, tb[0] + 1, tb[1] + 1, tb[2] + 1])
            .as_standard_layout()
            .into_owned(),
    }
}

/// Softmax over channels (float32, max subtracted) and the first maximum's index.
fn softmax_argmax(logits: ArrayView4<f32>) -> (Array4<f32>, Array3<u16>) {
    let mut probs = logits.to_owned();
    let shape = &logits.shape()[1..];
    let mut seg = Array3::<u16>::zeros((shape[0], shape[1], shape[2]));
    Zip::from(probs.lanes_mut(Axis(0)))
        .and(&mut seg)
        .par_for_each(|mut lane, label| {
            let max = lane.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0.0;
            lane.mapv_inplace(|v| {
                let e = (v - max).exp();
                sum += e;
                e
            });
            lane.mapv_inplace(|v| v / sum);
            let mut best = 0;
            for (c, &v) in lane.iter().enumerate() {
                if v > lane[best] {
                    best = c;
                }
            }
            *label = best as u16;
        });
    (probs, seg)
}
