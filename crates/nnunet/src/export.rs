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
    let mut resampled = Array4::<f32>::zeros((classes, target[0], target[1], target[2]));
    for c in 0..classes {
        let r = resampled_channel(logits, c, pre, cfg);
        resampled.index_axis_mut(Axis(0), c).assign(&r);
    }
    let (probs, seg) = match regions {
        Some(r) => sigmoid_regions(resampled.view(), &r.class_order),
        None => softmax_argmax(resampled.view()),
    };
    drop(resampled);
    let full = pre.shape_before_cropping;
    let (b0, b1) = (pre.bbox.start_kji, pre.bbox.end_kji);
    let mut p_full = Array4::<f32>::zeros((classes, full[0], full[1], full[2]));
    if regions.is_none() {
        p_full.index_axis_mut(Axis(0), 0).fill(1.0);
    }
    p_full
        .slice_mut(s![.., b0[0]..b1[0], b0[1]..b1[1], b0[2]..b1[2]])
        .assign(&probs);
    let tb = plans.transpose_backward;
    ExportedCase {
        segmentation: uncrop_and_transpose(&seg, pre, plans),
        probabilities: p_full
            .permuted_axes([0, tb[0] + 1, tb[1] + 1, tb[2] + 1])
            .as_standard_layout()
            .into_owned(),
    }
}

/// The segmentation alone, as nnU-Net exports it without `--save_probabilities`
/// (`convert_logits_to_segmentation`): the first maximum of the resampled float16 logits (no
/// softmax), or the region thresholds. One channel is resampled at a time, so memory holds a
/// few volumes instead of one per class (a model with 100+ labels, as TotalSegmentator's, would
/// otherwise need 100+ float32 copies of the image).
pub fn export_segmentation(
    logits: ArrayView4<f32>,
    pre: &PreprocessedCase,
    plans: &Plans,
    cfg: &Configuration,
    regions: Option<&Regions>,
) -> Array3<u16> {
    let t = pre.shape_after_cropping;
    let mut seg = Array3::<u16>::zeros((t[0], t[1], t[2]));
    let mut top = Array3::<f32>::zeros((t[0], t[1], t[2]));
    for c in 0..logits.shape()[0] {
        let r = resampled_channel(logits, c, pre, cfg);
        match regions {
            Some(reg) => {
                let label = reg.class_order[c];
                Zip::from(&mut seg).and(&r).par_for_each(|s, &v| {
                    if sigmoid(v) > 0.5 {
                        *s = label;
                    }
                });
            }
            None => Zip::from(&mut seg)
                .and(&mut top)
                .and(&r)
                .par_for_each(|s, m, &v| {
                    if c == 0 || v > *m {
                        (*s, *m) = (c as u16, v);
                    }
                }),
        }
    }
    uncrop_and_transpose(&seg, pre, plans)
}

/// Channel `c` of the float16 logits resampled to the cropped input grid (order 1 and the
/// separate-z rules of `resampling_fn_probabilities_kwargs`), rounded to float16 as nnU-Net's
/// resampling keeps the logits' dtype.
fn resampled_channel(
    logits: ArrayView4<f32>,
    c: usize,
    pre: &PreprocessedCase,
    cfg: &Configuration,
) -> Array3<f32> {
    let target = pre.shape_after_cropping;
    let channel = logits.index_axis(Axis(0), c);
    if channel.shape() == target {
        return channel.to_owned();
    }
    let kwargs = cfg.resampling_fn_probabilities_kwargs;
    let (order, order_z, force) =
        kwargs.map_or((1, 0, None), |k| (k.order, k.order_z, k.force_separate_z));
    let r = resample_channel(
        channel.mapv(f64::from).view(),
        target,
        pre.target_spacing,
        pre.original_spacing,
        order,
        order_z,
        force,
    );
    r.mapv(|v| f16::from_f64(v).to_f32())
}

/// A cropped-grid segmentation pasted into the uncropped shape (0 outside the box) and
/// transposed back to the input's axis order.
fn uncrop_and_transpose(seg: &Array3<u16>, pre: &PreprocessedCase, plans: &Plans) -> Array3<u16> {
    let full = pre.shape_before_cropping;
    let (b0, b1) = (pre.bbox.start_kji, pre.bbox.end_kji);
    let mut seg_full = Array3::<u16>::zeros((full[0], full[1], full[2]));
    seg_full
        .slice_mut(s![b0[0]..b1[0], b0[1]..b1[1], b0[2]..b1[2]])
        .assign(seg);
    seg_full
        .permuted_axes(plans.transpose_backward)
        .as_standard_layout()
        .into_owned()
}

fn sigmoid(v: f32) -> f32 {
    1.0 / (1.0 + (-v).exp())
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
    probs.par_mapv_inplace(sigmoid);
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
