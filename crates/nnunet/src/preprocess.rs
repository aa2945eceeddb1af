//! nnU-Net's `DefaultPreprocessor.run_case` for inference: transpose, crop to the nonzero
//! box (holes filled), normalize per channel (before resampling), resample to the
//! configuration's spacing.

use crate::error::NnUnetError;
use crate::plans::{Configuration, Plans};
use crate::resample::resample_channel;
use medseg_preprocess::{BoundingBox, crop_to_nonzero};
use ndarray::{Array3, Array4, ArrayView4, Axis, Zip};

/// A case ready for the predictor, and what export needs to undo it. Shapes and the box are
/// in network (transposed) axis order.
#[derive(Debug, Clone)]
pub struct PreprocessedCase {
    /// `(C, a0, a1, a2)`, normalized and resampled.
    pub data: Array4<f32>,
    pub shape_before_cropping: [usize; 3],
    pub bbox: BoundingBox,
    pub shape_after_cropping: [usize; 3],
    /// The input's spacing, transposed.
    pub original_spacing: [f64; 3],
    /// The spacing `data` is on (2D configurations keep the slice axis' spacing).
    pub target_spacing: [f64; 3],
}

/// `data` is `(C, k, j, i)` as read from the files (array order), `spacing_kji` the first
/// channel's spacing in array order.
pub fn preprocess_case(
    case: &str,
    data: ArrayView4<f32>,
    spacing_kji: [f64; 3],
    plans: &Plans,
    cfg: &Configuration,
) -> Result<PreprocessedCase, NnUnetError> {
    let tf = plans.transpose_forward;
    let transposed = data
        .permuted_axes([0, tf[0] + 1, tf[1] + 1, tf[2] + 1])
        .as_standard_layout()
        .into_owned();
    let original_spacing = tf.map(|t| spacing_kji[t]);
    let shape_before_cropping = spatial(&transposed);
    let (bbox, mask) = crop_to_nonzero(transposed.view());
    let mut cropped = bbox.crop_channels(transposed.view());
    let mask = bbox.crop(mask.view());
    let shape_after_cropping = bbox.shape_kji();
    let target_spacing = match cfg.spacing.as_slice() {
        [a, b, c] => [*a, *b, *c],
        [b, c] => [original_spacing[0], *b, *c],
        other => {
            return Err(NnUnetError::file(
                &plans.path,
                format!(
                    "configuration {}: spacing {other:?} needs 2 or 3 entries",
                    cfg.name
                ),
            ));
        }
    };
    let new_shape: [usize; 3] = std::array::from_fn(|a| {
        // Python's round (half to even) of `old_spacing / new_spacing * old_shape`
        (original_spacing[a] / target_spacing[a] * shape_after_cropping[a] as f64).round_ties_even()
            as usize
    });
    if new_shape.contains(&0) {
        return Err(NnUnetError::Case {
            case: case.to_string(),
            reason: format!(
                "resampling {shape_after_cropping:?} to the model's spacing gives an empty image"
            ),
        });
    }
    let n_channels = cropped.len_of(Axis(0));
    if cfg.normalization_schemes.len() != n_channels {
        return Err(NnUnetError::Case {
            case: case.to_string(),
            reason: format!(
                "has {n_channels} channels, the model's normalization_schemes list {}",
                cfg.normalization_schemes.len()
            ),
        });
    }
    let kwargs = cfg.resampling_fn_data_kwargs;
    let (order, order_z, force) =
        kwargs.map_or((3, 0, None), |k| (k.order, k.order_z, k.force_separate_z));
    let mut out = Array4::<f32>::zeros((n_channels, new_shape[0], new_shape[1], new_shape[2]));
    for c in 0..n_channels {
        let mut x = cropped.index_axis_mut(Axis(0), c);
        normalize_channel(case, plans, cfg, c, x.view_mut(), &mask)?;
        let x64 = x.mapv(f64::from);
        let r = resample_channel(
            x64.view(),
            new_shape,
            original_spacing,
            target_spacing,
            order,
            order_z,
            force,
        );
        Zip::from(out.index_axis_mut(Axis(0), c))
            .and(&r)
            .for_each(|o, &v| *o = v as f32);
    }
    Ok(PreprocessedCase {
        data: out,
        shape_before_cropping,
        bbox,
        shape_after_cropping,
        original_spacing,
        target_spacing,
    })
}

fn spatial(a: &Array4<f32>) -> [usize; 3] {
    let s = a.shape();
    [s[1], s[2], s[3]]
}

/// The configuration's scheme for channel `c`, in float32 as numpy computes it.
fn normalize_channel(
    case: &str,
    plans: &Plans,
    cfg: &Configuration,
    c: usize,
    mut x: ndarray::ArrayViewMut3<f32>,
    mask: &Array3<bool>,
) -> Result<(), NnUnetError> {
    let scheme = cfg.normalization_schemes[c].as_str();
    let use_mask = cfg.use_mask_for_norm.get(c).copied().unwrap_or(false);
    match scheme {
        "ZScoreNormalization" if use_mask => {
            let (mean, std) = mean_std(
                x.iter()
                    .zip(mask.iter())
                    .filter(|(_, m)| **m)
                    .map(|(v, _)| *v),
            );
            let (mean, std) = (mean as f32, (std as f32).max(1e-8));
            Zip::from(&mut x).and(mask).for_each(|v, &m| {
                if m {
                    *v = (*v - mean) / std;
                }
            });
        }
        "ZScoreNormalization" => {
            let (mean, std) = mean_std(x.iter().copied());
            let (mean, std) = (mean as f32, (std as f32).max(1e-8));
            x.mapv_inplace(|v| (v - mean) / std);
        }
        "CTNormalization" => {
            let p = plans.intensity_properties.get(&c.to_string()).ok_or_else(|| {
                NnUnetError::file(
                    &plans.path,
                    format!("CTNormalization of channel {c} needs foreground_intensity_properties_per_channel[\"{c}\"]"),
                )
            })?;
            let (lo, hi) = (p.percentile_00_5 as f32, p.percentile_99_5 as f32);
            let (mean, std) = (p.mean as f32, p.std.max(1e-8) as f32);
            x.mapv_inplace(|v| (v.clamp(lo, hi) - mean) / std);
        }
        "RescaleTo01Normalization" => {
            let min = x.iter().copied().fold(f32::MAX, f32::min);
            x.mapv_inplace(|v| v - min);
            let max = x.iter().copied().fold(f32::MIN, f32::max).max(1e-8);
            x.mapv_inplace(|v| v / max);
        }
        "RGBTo01Normalization" => {
            let (min, max) = x
                .iter()
                .fold((f32::MAX, f32::MIN), |(l, h), &v| (l.min(v), h.max(v)));
            if min < 0.0 || max > 255.0 {
                return Err(NnUnetError::Case {
                    case: case.to_string(),
                    reason: format!(
                        "channel {c} holds values {min}..{max}; RGBTo01Normalization expects 8-bit RGB (0..255)"
                    ),
                });
            }
            x.mapv_inplace(|v| v / 255.0);
        }
        "NoNormalization" => {}
        other => {
            return Err(NnUnetError::unsupported(
                &plans.path,
                format!(
                    "normalization scheme {other} (channel {c}) is not supported (supported: ZScoreNormalization, \
                     CTNormalization, RescaleTo01Normalization, RGBTo01Normalization, NoNormalization)"
                ),
            ));
        }
    }
    Ok(())
}

/// Mean and population standard deviation, accumulated in f64.
fn mean_std(values: impl Iterator<Item = f32>) -> (f64, f64) {
    let v: Vec<f64> = values.map(f64::from).collect();
    if v.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n;
    (mean, var.sqrt())
}
