//! nnU-Net's `convert_predicted_logits_to_segmentation_with_correct_shape`: the float16 logits
//! resampled back to the cropped input grid (order 1, separate-z rules of the configuration),
//! softmax in float32, argmax, pasted into the uncropped shape, transposed back. Region-based
//! models: sigmoid instead of softmax and `regions_class_order` instead of argmax
//! (`LabelManager.convert_probabilities_to_segmentation`).

use crate::dataset_json::Regions;
use crate::plans::{Configuration, Plans};
use crate::preprocess::PreprocessedCase;
use crate::resample::resample_channel;
use half::f16;
use ndarray::{Array3, Array4, ArrayView4, Axis, Zip, s};

/// A case's outputs in the input's array order `(k, j, i)`.
#[derive(Debug, Clone)]
pub struct ExportedCase {
    /// Argmax channel index, or the region-based label (0 outside the nonzero box).
    pub segmentation: Array3<u16>,
    /// Softmax probabilities `(classes, k, j, i)`, `[1, 0, ...]` outside the box; or sigmoid
    /// probabilities `(regions, k, j, i)`, 0 outside the box.
    pub probabilities: Array4<f32>,
}

pub fn export_case(
    logits: ArrayView4<f32>,
    pre: &PreprocessedCase,
    plans: &Plans,
    cfg: &Configuration,
    regions: Option<&Regions>,
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
    let (probs, seg) = match regions {
        Some(r) => sigmoid_regions(resampled.view(), &r.class_order),
        None => softmax_argmax(resampled.view()),
    };
    let full = pre.shape_before_cropping;
    let (b0, b1) = (pre.bbox.start_kji, pre.bbox.end_kji);
    let region = s![b0[0]..b1[0], b0[1]..b1[1], b0[2]..b1[2]];
    let mut seg_full = Array3::<u16>::zeros((full[0], full[1], full[2]));
    seg_full.slice_mut(region).assign(&seg);
    let mut p_full = Array4::<f32>::zeros((classes, full[0], full[1], full[2]));
    if regions.is_none() {
        p_full.index_axis_mut(Axis(0), 0).fill(1.0);
    }
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
            *label = first_max(lane.iter().copied());
        });
    (probs, seg)
}

/// Sigmoid per region (float32) and the label of `class_order`: region `i`'s label where its
/// probability is > 0.5, in order, so later regions overwrite earlier ones.
fn sigmoid_regions(logits: ArrayView4<f32>, class_order: &[u16]) -> (Array4<f32>, Array3<u16>) {
    let mut probs = logits.to_owned();
    probs.par_mapv_inplace(|v| 1.0 / (1.0 + (-v).exp()));
    let shape = &logits.shape()[1..];
    let mut seg = Array3::<u16>::zeros((shape[0], shape[1], shape[2]));
    Zip::from(probs.lanes(Axis(0)))
        .and(&mut seg)
        .par_for_each(|lane, label| *label = region_label(lane.iter().copied(), class_order));
    (probs, seg)
}

/// `nnUNetv2_ensemble` (nnunetv2/ensembling/ensemble.py `merge_files`): the exported
/// probabilities of several models averaged (float32 sum, then divided by the count), and the
/// segmentation taken from the average (argmax, or `regions_class_order` thresholds).
/// `None` when `cases` is empty or the probabilities' shapes differ.
pub fn ensemble_cases(cases: Vec<ExportedCase>, regions: Option<&Regions>) -> Option<ExportedCase> {
    let n = cases.len();
    let mut cases = cases.into_iter();
    let mut sum = cases.next()?.probabilities;
    for c in cases {
        if c.probabilities.shape() != sum.shape() {
            return None;
        }
        sum += &c.probabilities;
    }
    sum.par_mapv_inplace(|v| v / n as f32);
    let segmentation = labels_from_probabilities(sum.view(), regions);
    Some(ExportedCase {
        segmentation,
        probabilities: sum,
    })
}

/// `LabelManager.convert_probabilities_to_segmentation`: the first maximum's index, or for a
/// region-based model the label of the last region (in `class_order`) above 0.5.
fn labels_from_probabilities(probs: ArrayView4<f32>, regions: Option<&Regions>) -> Array3<u16> {
    let shape = &probs.shape()[1..];
    let mut seg = Array3::<u16>::zeros((shape[0], shape[1], shape[2]));
    Zip::from(probs.lanes(Axis(0)))
        .and(&mut seg)
        .par_for_each(|lane, label| {
            *label = match regions {
                Some(r) => region_label(lane.iter().copied(), &r.class_order),
                None => first_max(lane.iter().copied()),
            }
        });
    seg
}

/// The index of the first maximum (numpy's `argmax`, NaN aside).
fn first_max(mut values: impl Iterator<Item = f32>) -> u16 {
    let Some(mut top) = values.next() else {
        return 0;
    };
    let mut best = 0;
    for (c, v) in values.enumerate() {
        if v > top {
            (best, top) = (c + 1, v);
        }
    }
    best as u16
}

fn region_label(probs: impl Iterator<Item = f32>, class_order: &[u16]) -> u16 {
    probs
        .zip(class_order)
        .fold(0, |label, (p, &c)| if p > 0.5 { c } else { label })
}
