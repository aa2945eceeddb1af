use serde::{Deserialize, Serialize};

/// `[preprocess]`: every choice defaults to `"auto"` (taken from the plan, nnU-Net's rules).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct PreprocessConfig {
    /// Target spacing in mm, `(x, y, z)` order. Default: the plan's (median, anisotropy rule).
    #[serde(default)]
    pub spacing: Option<Vec<f64>>,
    /// Per-channel normalization: `"ct"`, `"zscore"`, `"zscore_nonzero"`, `"none"`.
    /// Default: from `dataset.json`'s `channel_names` (CT -> "ct", else "zscore").
    #[serde(default)]
    pub normalization: Option<Vec<String>>,
    /// Reorient every case to RAS before anything else (lossless). Default true.
    #[serde(default)]
    pub reorient: Option<bool>,
    /// Crop every case to its nonzero bounding box. Default true.
    #[serde(default)]
    pub crop: Option<bool>,
    /// Image interpolation when resampling: `"linear"` or `"cubic"`. Default "linear".
    #[serde(default)]
    pub interpolation: Option<String>,
}
