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
    /// Label interpolation when resampling: `"nearest"` or `"linear_one_hot"`. Default
    /// "nearest".
    #[serde(default)]
    pub label_interpolation: Option<String>,
    /// Anisotropy threshold: when the coarsest spacing is over this many times the finest,
    /// the target spacing of that axis is the 10th percentile of the cases' spacings, and it
    /// is resampled with nearest neighbour (nnU-Net's separate z). Default 3.
    #[serde(default)]
    pub anisotropy_threshold: Option<f64>,
    /// Largest patch, in voxels, the plan may choose (the memory budget). Default 128³
    /// (= 2097152) in 3D, 256² (= 65536) in 2D.
    #[serde(default)]
    pub patch_budget_voxels: Option<usize>,
    /// Voxels in one batch (batch size x patch voxels) the plan aims for. Default 2 x 128³ in
    /// 3D, 16 x 256² in 2D. The batch size is at least 2 and at most what covers 5% of the
    /// dataset's voxels.
    #[serde(default)]
    pub batch_budget_voxels: Option<usize>,
    /// Foreground voxels sampled per case for the intensity statistics. Default 10000.
    #[serde(default)]
    pub intensity_samples_per_case: Option<usize>,
}
