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
