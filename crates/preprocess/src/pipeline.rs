//! One case through the plan ([`preprocess_case`]) and predictions back onto the case's
//! original grid ([`restore_to_original`]).

use crate::PreprocessError;
use crate::crop::{BoundingBox, crop_to_nonzero, uncrop};
use crate::normalize::{normalize, replace_non_finite};
use crate::orientation::Reorientation;
use crate::plan::Plan;
use crate::resample::{
    Boundary, Grid, Interpolation, ResampleOptions, resample, resample_labels, separate_z_axis,
};
use medseg_volume::{Geometry, MultiChannel, Volume};
use ndarray::{Array3, Array4, ArrayView3, ArrayView4, Axis};
use rayon::prelude::*;

/// Everything needed to map a prediction on the preprocessed grid back onto the file's grid.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CaseProperties {
    /// Geometry and extents `[k, j, i]` of the input as read.
    pub original_geometry: Geometry,
    pub original_shape_kji: [usize; 3],
    /// Applied first (identity when the plan does not reorient).
    pub reorientation: Reorientation,
    /// Grid after reorientation.
    pub reoriented: Grid,
    /// Crop box in the reoriented array (the whole array when the plan does not crop).
    pub crop_bbox: BoundingBox,
    /// Grid of the cropped array.
    pub cropped: Grid,
    /// Grid of the network input.
    pub preprocessed: Grid,
    /// `(i, j, k)` axis resampled with nearest (nnU-Net's separate z), if any.
    pub nearest_axis: Option<usize>,
}

/// A case ready for the network.
#[derive(Debug, Clone)]
pub struct PreprocessedCase {
    /// `[c, k, j, i]`, normalized, at the target spacing.
    pub image: Array4<f32>,
    /// Label map on the same grid.
    pub label: Option<Array3<u16>>,
    pub props: CaseProperties,
    /// Non-finite input voxels per channel, replaced before normalization (see
    /// [`replace_non_finite`]); callers warn, naming the case.
    pub non_finite: Vec<usize>,
}

fn same_grid(a: &Grid, b: &Grid) -> bool {
    a.shape_kji == b.shape_kji && a.geometry.difference(&b.geometry, 1e-9).is_none()
}

/// An error unless `label` (when given) has the image's `[k, j, i]` shape; `what` names it.
pub(crate) fn check_label_shape(
    label: Option<&Volume<u16>>,
    shape: [usize; 3],
    what: impl FnOnce() -> String,
) -> Result<(), PreprocessError> {
    match label {
        Some(l) if l.data.shape() != &shape[..] => Err(PreprocessError::Shape {
            what: what(),
            expected: shape.to_vec(),
            got: l.data.shape().to_vec(),
        }),
        _ => Ok(()),
    }
}

/// The reorientation a case gets: to RAS when `reorient` is set, none otherwise.
pub(crate) fn case_reorientation(
    reorient: bool,
    images: &MultiChannel,
    shape: [usize; 3],
) -> Reorientation {
    if reorient {
        Reorientation::to_ras(&images.geometry, shape)
    } else {
        Reorientation::identity()
    }
}

/// Reorients (plan.reorient), crops to nonzero (plan.crop), normalizes each channel
/// (plan.normalization; `zscore_nonzero` uses the crop's nonzero mask) and resamples to the
/// plan's target spacing (plan.interpolation for images, plan.label_interpolation for the
/// label, nearest across slices when anisotropic). Memory: a few copies of this one case.
pub fn preprocess_case(
    images: &MultiChannel,
    label: Option<&Volume<u16>>,
    plan: &Plan,
) -> Result<PreprocessedCase, PreprocessError> {
    let s = images.data.shape();
    let shape = [s[1], s[2], s[3]];
    if s[0] != plan.normalization.len() {
        return Err(PreprocessError::Shape {
            what: "channels (plan.normalization has one entry per channel)".into(),
            expected: vec![plan.normalization.len()],
            got: vec![s[0]],
        });
    }
    check_label_shape(label, shape, || "label map vs image".into())?;
    let reorientation = case_reorientation(plan.reorient, images, shape);
    let reoriented = Grid::new(
        reorientation.apply_geometry(&images.geometry, shape),
        reorientation.apply_shape(shape),
    );
    // Each step replaces the previous array (shadowed bindings would keep it alive), so at
    // most two copies of the case exist at a time.
    let mut non_finite = Vec::with_capacity(s[0]);
    let (crop_bbox, mask, mut data) = {
        let mut data = reorientation.apply_channels(images.data.view());
        // Before the crop: a NaN is "nonzero" and would widen the crop box.
        for ch in data.outer_iter_mut() {
            non_finite.push(replace_non_finite(ch));
        }
        if plan.crop {
            let (b, m) = crop_to_nonzero(data.view());
            let cropped = b.crop_channels(data.view());
            (b, Some(b.crop(m.view())), cropped)
        } else {
            (BoundingBox::full(reoriented.shape_kji), None, data)
        }
    };
    let lab = label.map(|l| {
        let r = reorientation.apply(l.data.view());
        if plan.crop {
            crop_bbox.crop(r.view())
        } else {
            r
        }
    });
    let cropped = Grid::new(
        crop_bbox.cropped_geometry(&reoriented.geometry),
        crop_bbox.shape_kji(),
    );

    for (c, scheme) in plan.normalization.iter().enumerate() {
        normalize(
            data.index_axis_mut(Axis(0), c),
            scheme,
            mask.as_ref().map(|m| m.view()),
        )?;
    }

    let target = plan.target_spacing_for(cropped.geometry.spacing, cropped.shape_kji[0]);
    let preprocessed = cropped.with_spacing(target);
    let nearest_axis = separate_z_axis(cropped.geometry.spacing, target, plan.anisotropy_threshold);
    let (image, label) = if same_grid(&cropped, &preprocessed) {
        (data, lab)
    } else {
        let opts = ResampleOptions {
            interpolation: plan.interpolation,
            boundary: Boundary::Zero,
            nearest_axis,
        };
        let image = resample_channels(data.view(), &cropped.geometry, &preprocessed, &opts)?;
        drop(data);
        let label = match lab {
            Some(l) => Some(resample_labels(
                l.view(),
                &cropped.geometry,
                &preprocessed,
                plan.label_interpolation,
                nearest_axis,
            )?),
            None => None,
        };
        (image, label)
    };
    Ok(PreprocessedCase {
        image,
        label,
        props: CaseProperties {
            original_geometry: images.geometry,
            original_shape_kji: shape,
            reorientation,
            reoriented,
            crop_bbox,
            cropped,
            preprocessed,
            nearest_axis,
        },
        non_finite,
    })
}

fn resample_channels(
    data: ArrayView4<f32>,
    src: &Geometry,
    dst: &Grid,
    opts: &ResampleOptions,
) -> Result<Array4<f32>, PreprocessError> {
    let [k, j, i] = dst.shape_kji;
    let mut out = Array4::<f32>::zeros((data.shape()[0], k, j, i));
    for (c, ch) in data.outer_iter().enumerate() {
        let r = resample(ch, src, dst, opts)?;
        out.index_axis_mut(Axis(0), c).assign(&r);
    }
    Ok(out)
}

/// Maps per-class scores (`[c, k, j, i]` on `props.preprocessed`, probabilities or logits)
/// back onto the file's grid: linear resampling onto the cropped grid (edge values extended,
/// nearest across slices where preprocessing did so), uncropping (outside the crop, channel 0
/// = 1 and the others 0: background), then undoing the reorientation. The result has
/// `props.original_shape_kji` and `props.original_geometry`.
pub fn restore_to_original(
    scores: ArrayView4<f32>,
    props: &CaseProperties,
) -> Result<Array4<f32>, PreprocessError> {
    let s = scores.shape();
    if s[1..] != props.preprocessed.shape_kji[..] {
        return Err(PreprocessError::Shape {
            what: "scores vs preprocessed grid".into(),
            expected: props.preprocessed.shape_kji.to_vec(),
            got: s[1..].to_vec(),
        });
    }
    let opts = ResampleOptions {
        interpolation: Interpolation::Linear,
        boundary: Boundary::Clamp,
        nearest_axis: props.nearest_axis,
    };
    let [k, j, i] = props.original_shape_kji;
    let mut out = Array4::<f32>::zeros((s[0], k, j, i));
    out.axis_iter_mut(Axis(0))
        .into_par_iter()
        .zip(scores.axis_iter(Axis(0)).into_par_iter())
        .enumerate()
        .try_for_each(|(c, (mut dst, ch))| {
            let r = if same_grid(&props.cropped, &props.preprocessed) {
                ch.to_owned()
            } else {
                resample(ch, &props.preprocessed.geometry, &props.cropped, &opts)?
            };
            let fill = if c == 0 { 1.0 } else { 0.0 };
            let full = uncrop(r.view(), &props.crop_bbox, props.reoriented.shape_kji, fill)?;
            dst.assign(&props.reorientation.invert(full.view()));
            Ok::<(), PreprocessError>(())
        })?;
    Ok(out)
}

/// [`restore_to_original`] for one channel: `fill` is the value outside the crop (1 for the
/// background channel, 0 otherwise). Lets inference restore classes one at a time and keep a
/// running argmax instead of every class on the file's grid at once (memory).
pub fn restore_channel_to_original(
    channel: ArrayView3<f32>,
    fill: f32,
    props: &CaseProperties,
) -> Result<Array3<f32>, PreprocessError> {
    if channel.shape() != props.preprocessed.shape_kji {
        return Err(PreprocessError::Shape {
            what: "scores vs preprocessed grid".into(),
            expected: props.preprocessed.shape_kji.to_vec(),
            got: channel.shape().to_vec(),
        });
    }
    let opts = ResampleOptions {
        interpolation: Interpolation::Linear,
        boundary: Boundary::Clamp,
        nearest_axis: props.nearest_axis,
    };
    let r = if same_grid(&props.cropped, &props.preprocessed) {
        channel.to_owned()
    } else {
        resample(channel, &props.preprocessed.geometry, &props.cropped, &opts)?
    };
    let full = uncrop(r.view(), &props.crop_bbox, props.reoriented.shape_kji, fill)?;
    if props.reorientation.is_identity() {
        Ok(full)
    } else {
        Ok(props.reorientation.invert(full.view()))
    }
}

/// Maps a label map on the preprocessed grid back onto the file's grid (nearest neighbour,
/// 0 outside the crop, reorientation undone).
pub fn restore_labels_to_original(
    labels: ArrayView3<u16>,
    props: &CaseProperties,
) -> Result<Array3<u16>, PreprocessError> {
    let r = if same_grid(&props.cropped, &props.preprocessed) {
        labels.to_owned()
    } else {
        let f = labels.mapv(|v| v as f32);
        let opts = ResampleOptions {
            interpolation: Interpolation::Nearest,
            boundary: Boundary::Clamp,
            nearest_axis: None,
        };
        resample(
            f.view(),
            &props.preprocessed.geometry,
            &props.cropped,
            &opts,
        )?
        .mapv(|v| v as u16)
    };
    let full = uncrop(r.view(), &props.crop_bbox, props.reoriented.shape_kji, 0)?;
    Ok(props.reorientation.invert(full.view()))
}
