//! Intensity normalization schemes (nnU-Net's).

use crate::PreprocessError;
use crate::stats::mean_std;
use ndarray::{ArrayView3, ArrayViewMut3, Zip};

/// How one channel is normalized. Stored per channel in `plan.json`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "scheme", rename_all = "snake_case")]
pub enum Normalization {
    /// nnU-Net's CTNormalization: clip to the dataset's foreground `[lower, upper]`
    /// (0.5 / 99.5 percentiles), then `(x - mean) / max(std, 1e-8)` with the dataset's
    /// foreground mean/std (of the unclipped foreground), on every voxel.
    Ct {
        lower: f64,
        upper: f64,
        mean: f64,
        std: f64,
    },
    /// Per image: `(x - mean) / max(std, 1e-8)` over all voxels (population std).
    #[serde(rename = "zscore")]
    ZScore,
    /// Per image, statistics inside the mask only (the crop's nonzero mask, or `x != 0`);
    /// voxels outside the mask become 0 (nnU-Net's `use_mask_for_norm`).
    #[serde(rename = "zscore_nonzero")]
    ZScoreNonzero,
    /// Leave intensities as they are.
    None,
}

impl Normalization {
    /// Short name: `ct`, `zscore`, `zscore_nonzero`, `none`.
    pub fn name(&self) -> &'static str {
        match self {
            Normalization::Ct { .. } => "ct",
            Normalization::ZScore => "zscore",
            Normalization::ZScoreNonzero => "zscore_nonzero",
            Normalization::None => "none",
        }
    }
}

const EPS: f64 = 1e-8;

/// Non-finite voxels (NaN, ±Inf) of one channel, counted.
pub fn count_non_finite(data: ArrayView3<f32>) -> usize {
    data.iter().filter(|x| !x.is_finite()).count()
}

/// Replaces the non-finite voxels of one channel before anything else sees them, and returns
/// how many there were: NaN and -Inf become the channel's finite minimum, +Inf its finite
/// maximum (0 when no voxel is finite).
///
/// Why: one NaN poisons every statistic (a z-score of all NaN, a background prediction, a
/// NaN loss). nnU-Net refuses such datasets in its integrity check and leaves the fix to the
/// user; medseg repairs them with a warning naming the case and the count instead, because
/// NaN usually marks voxels outside the field of view (scanner or registration padding), for
/// which the darkest value of the image is the closest stand-in; a value of 0 would be tissue
/// in CT (water) and would enter the nonzero mask.
pub fn replace_non_finite(mut data: ArrayViewMut3<f32>) -> usize {
    let bad = count_non_finite(data.view());
    if bad == 0 {
        return 0;
    }
    let (lo, hi) = data
        .iter()
        .filter(|x| x.is_finite())
        .fold(None, |acc: Option<(f32, f32)>, &x| match acc {
            None => Some((x, x)),
            Some((lo, hi)) => Some((lo.min(x), hi.max(x))),
        })
        .unwrap_or((0.0, 0.0));
    data.mapv_inplace(|x| {
        if x.is_finite() {
            x
        } else if x == f32::INFINITY {
            hi
        } else {
            lo
        }
    });
    bad
}

/// The warning for a case with non-finite voxels (`counts` per channel, `files` its channel
/// files), or `None` when every voxel is finite. One wording for plan, train and predict.
pub fn non_finite_warning(
    case: &str,
    files: &[std::path::PathBuf],
    counts: &[usize],
) -> Option<String> {
    let parts: Vec<String> = counts
        .iter()
        .enumerate()
        .filter(|(_, n)| **n > 0)
        .map(|(c, n)| match files.get(c).or(files.first()) {
            Some(f) if files.len() == counts.len() => format!("{n} in {}", f.display()),
            Some(f) => format!("{n} in channel {c} of {}", f.display()),
            None => format!("{n} in channel {c}"),
        })
        .collect();
    if parts.is_empty() {
        return None;
    }
    Some(format!(
        "warning: case {case}: non-finite voxels (NaN or Inf): {}; replaced by the image's finite minimum (+Inf: maximum) before normalization",
        parts.join(", ")
    ))
}

/// Normalizes one channel in place (statistics in f64). `mask` (same shape) is used by
/// [`Normalization::ZScoreNonzero`]; without one, the mask is `x != 0`.
pub fn normalize(
    mut data: ArrayViewMut3<f32>,
    scheme: &Normalization,
    mask: Option<ArrayView3<bool>>,
) -> Result<(), PreprocessError> {
    if let Some(m) = &mask
        && m.dim() != data.dim()
    {
        return Err(PreprocessError::Shape {
            what: "normalization mask".into(),
            expected: data.shape().to_vec(),
            got: m.shape().to_vec(),
        });
    }
    match scheme {
        Normalization::None => {}
        Normalization::Ct {
            lower,
            upper,
            mean,
            std,
        } => {
            if !(lower <= upper) || !mean.is_finite() || !std.is_finite() {
                return Err(PreprocessError::setting(
                    "normalization.ct",
                    format!("[{lower}, {upper}], mean {mean}, std {std}"),
                    "needs lower <= upper and finite mean/std",
                ));
            }
            let (lo, hi, m, s) = (*lower, *upper, *mean, std.max(EPS));
            data.par_mapv_inplace(|x| (((x as f64).clamp(lo, hi) - m) / s) as f32);
        }
        Normalization::ZScore => {
            let (m, s, _) = mean_std(data.iter().map(|&x| x as f64));
            let s = s.max(EPS);
            data.par_mapv_inplace(|x| ((x as f64 - m) / s) as f32);
        }
        Normalization::ZScoreNonzero => {
            let owned;
            let mask = match mask {
                Some(m) => m,
                None => {
                    owned = data.mapv(|x| x != 0.0);
                    owned.view()
                }
            };
            let (m, s, _) = mean_std(
                data.iter()
                    .zip(mask.iter())
                    .filter(|(_, k)| **k)
                    .map(|(&x, _)| x as f64),
            );
            let s = s.max(EPS);
            Zip::from(&mut data).and(&mask).par_for_each(|x, &k| {
                *x = if k { ((*x as f64 - m) / s) as f32 } else { 0.0 };
            });
        }
    }
    Ok(())
}
