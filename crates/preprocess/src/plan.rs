//! The plan: every preprocessing and patch choice, from the fingerprint by nnU-Net's rules,
//! each overridable from the config. Saved as `plan.json`.

use crate::PreprocessError;
use crate::fingerprint::DatasetFingerprint;
use crate::normalize::Normalization;
use crate::resample::{Interpolation, LabelInterpolation};
use crate::stats::percentile;
use medseg_config::ExperimentConfig;
use std::collections::BTreeMap;
use std::path::Path;

/// Inputs of [`Plan::create`] besides the fingerprint: the config's choices (each `None`
/// means "automatic").
#[derive(Debug, Clone, PartialEq)]
pub struct PlanOptions {
    /// 2 (2D network, slices) or 3.
    pub dims: usize,
    /// Largest number of resolution stages of the network (its `features` length).
    pub max_stages: usize,
    pub reorient: bool,
    pub crop: bool,
    pub interpolation: Interpolation,
    pub label_interpolation: LabelInterpolation,
    pub anisotropy_threshold: f64,
    /// Target spacing `(i, j, k)`; `None` = median with the anisotropy rule.
    pub spacing: Option<[f64; 3]>,
    /// Normalization names per channel (`ct`, `zscore`, `zscore_nonzero`, `none`).
    pub normalization: Option<Vec<String>>,
    /// Patch size `(i, j, k)` (`(i, j)` in 2D); `None` = from the median shape and budget.
    pub patch_size: Option<Vec<usize>>,
    pub batch_size: Option<usize>,
    pub patch_budget_voxels: usize,
    pub batch_budget_voxels: usize,
    /// Smallest feature-map extent at the bottom of the network (nnU-Net: 4).
    pub min_feature_map: usize,
}

impl PlanOptions {
    /// The options an experiment config asks for (`[preprocess]`, `[model]`, `[train]`).
    pub fn from_config(cfg: &ExperimentConfig) -> Result<Self, PreprocessError> {
        let p = &cfg.preprocess;
        let dims = cfg.model.dims;
        if dims != 2 && dims != 3 {
            return Err(PreprocessError::setting(
                "model.dims",
                dims,
                "must be 2 or 3",
            ));
        }
        let spacing = match &p.spacing {
            None => None,
            Some(v) if v.len() == 3 && v.iter().all(|s| *s > 0.0 && s.is_finite()) => {
                Some([v[0], v[1], v[2]])
            }
            Some(v) => {
                return Err(PreprocessError::setting(
                    "preprocess.spacing",
                    format!("{v:?}"),
                    "needs three positive numbers (x, y, z) in mm",
                ));
            }
        };
        let interpolation = match &p.interpolation {
            Some(s) => s.parse()?,
            None => Interpolation::Linear,
        };
        let label_interpolation = match p.label_interpolation.as_deref() {
            None | Some("nearest") => LabelInterpolation::Nearest,
            Some("linear_one_hot") => LabelInterpolation::LinearOneHot,
            Some(other) => {
                return Err(PreprocessError::setting(
                    "preprocess.label_interpolation",
                    other,
                    "expected \"nearest\" or \"linear_one_hot\"",
                ));
            }
        };
        let anisotropy_threshold = p.anisotropy_threshold.unwrap_or(3.0);
        if !(anisotropy_threshold >= 1.0) {
            return Err(PreprocessError::setting(
                "preprocess.anisotropy_threshold",
                anisotropy_threshold,
                "must be >= 1",
            ));
        }
        let (patch_default, batch_default) = if dims == 3 {
            (128 * 128 * 128, 2 * 128 * 128 * 128)
        } else {
            (256 * 256, 16 * 256 * 256)
        };
        Ok(Self {
            dims,
            max_stages: cfg.model.features.len().max(1),
            reorient: p.reorient.unwrap_or(true),
            crop: p.crop.unwrap_or(true),
            interpolation,
            label_interpolation,
            anisotropy_threshold,
            spacing,
            normalization: p.normalization.clone(),
            patch_size: cfg.train.patch_size.clone(),
            batch_size: cfg.train.batch_size,
            patch_budget_voxels: p.patch_budget_voxels.unwrap_or(patch_default).max(1),
            batch_budget_voxels: p.batch_budget_voxels.unwrap_or(batch_default).max(1),
            min_feature_map: 4,
        })
    }
}

/// Everything training and inference need to preprocess a case the same way. Axis order of
/// every `[f64; 3]` / `[usize; 3]` here is `(i, j, k)` (x, y, z) like the config, except
/// fields named `_kji`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Plan {
    /// Format version of this file.
    pub version: u32,
    pub dataset: String,
    /// 2 or 3: the network's dimensionality. A 2D plan on 3D data trains on slices
    /// (patch `k` extent 1) and never resamples across slices.
    pub dims: usize,
    pub channel_names: Vec<String>,
    /// Label name -> id (background 0).
    pub labels: BTreeMap<String, u16>,
    /// Classes including background.
    pub num_classes: usize,
    /// Reorient every case to RAS (lossless) before anything else.
    pub reorient: bool,
    /// Crop every case to its nonzero bounding box.
    pub crop: bool,
    /// Target spacing in mm.
    pub target_spacing: [f64; 3],
    pub interpolation: Interpolation,
    pub label_interpolation: LabelInterpolation,
    /// Axes whose spacing ratio exceeds this are resampled with nearest across slices.
    pub anisotropy_threshold: f64,
    /// One per channel.
    pub normalization: Vec<Normalization>,
    /// Patch size in voxels (`k` = 1 in 2D).
    pub patch_size: [usize; 3],
    pub batch_size: usize,
    /// Resolution stages of the network (downsamplings + 1).
    pub num_stages: usize,
    /// 2x downsamplings per axis; the patch is divisible by `2^pools`.
    pub pools_per_axis: [usize; 3],
    /// Fingerprint summary.
    pub num_cases: usize,
    pub median_spacing: [f64; 3],
    /// Median extents after cropping, at the original spacing.
    pub median_shape: [f64; 3],
    /// Median extents after resampling to the target spacing.
    pub median_resampled_shape: [f64; 3],
    pub median_crop_ratio: f64,
    /// Which choices came from the config rather than the rules.
    pub overridden: Vec<String>,
    /// The full fingerprint (per-case shapes, spacings, bboxes, label volumes, intensities).
    pub fingerprint: DatasetFingerprint,
}

impl Plan {
    /// Patch extents in array order `[k, j, i]`.
    pub fn patch_size_kji(&self) -> [usize; 3] {
        [self.patch_size[2], self.patch_size[1], self.patch_size[0]]
    }

    /// The target spacing for a case of `spacing` (`(i, j, k)`) and `k` extent `nk`: a 2D plan
    /// or a one-slice image keeps its own slice spacing.
    pub fn target_spacing_for(&self, spacing: [f64; 3], nk: usize) -> [f64; 3] {
        let mut t = self.target_spacing;
        if self.dims == 2 || nk == 1 {
            t[2] = spacing[2];
        }
        t
    }

    /// Computes the plan. Rules (nnU-Net v2, simplified where noted):
    /// * target spacing: the median spacing; when the coarsest median axis is over
    ///   `anisotropy_threshold` x the finest, that axis gets the 10th percentile of the
    ///   cases' spacings along it (but no finer than the finest axis);
    /// * normalization: channel named CT -> clip to the foreground [0.5, 99.5] percentiles
    ///   and z-score with the foreground mean/std; others -> per-image z-score, inside the
    ///   nonzero mask when cropping keeps under 3/4 of the voxels (median);
    /// * patch: start from the median resampled shape, shaped like `1 / spacing` and shrunk
    ///   to the voxel budget, then pools per axis while the axis is at least
    ///   `2 * min_feature_map` and its spacing at most twice the finest (nnU-Net's rule), at
    ///   most `max_stages - 1` times; every axis rounded up to a multiple of `2^pools`;
    /// * batch: `batch_budget / patch voxels`, at least 2, at most what covers 5% of the
    ///   dataset's voxels (nnU-Net's cap).
    pub fn create(fp: &DatasetFingerprint, opts: &PlanOptions) -> Result<Plan, PreprocessError> {
        if fp.cases.is_empty() {
            return Err(PreprocessError::setting(
                "dataset",
                &fp.dataset,
                "has no cases to plan from",
            ));
        }
        let mut overridden = Vec::new();
        let target_spacing = match opts.spacing {
            Some(s) => {
                overridden.push("target_spacing".to_string());
                s
            }
            None => auto_spacing(fp, opts.anisotropy_threshold),
        };
        let normalization = plan_normalization(fp, opts, &mut overridden)?;
        let mut median_resampled_shape = [0.0; 3];
        for a in 0..3 {
            median_resampled_shape[a] =
                fp.median_shape_kji[2 - a] * fp.median_spacing[a] / target_spacing[a];
        }
        let all_2d = fp.cases.iter().all(|c| c.shape_kji[0] == 1);
        let planar = opts.dims == 2 || all_2d;
        if planar {
            median_resampled_shape[2] = 1.0;
        }
        // effective spacing for the pooling rule (2D: the slice axis never pools)
        let (patch_size, pools) = match &opts.patch_size {
            Some(p) => {
                overridden.push("patch_size".to_string());
                let want = parse_patch(p, planar)?;
                let pools = pools_for(want, target_spacing, planar, opts);
                (round_to_pools(want, pools), pools)
            }
            None => auto_patch(median_resampled_shape, target_spacing, planar, opts),
        };
        let num_stages = pools.iter().copied().max().unwrap_or(0) + 1;
        let patch_voxels: usize = patch_size.iter().product::<usize>().max(1);
        let batch_size = match opts.batch_size {
            Some(b) if b >= 1 => {
                overridden.push("batch_size".to_string());
                b
            }
            Some(b) => {
                return Err(PreprocessError::setting(
                    "train.batch_size",
                    b,
                    "must be at least 1",
                ));
            }
            None => {
                let total: f64 = fp
                    .cases
                    .iter()
                    .map(|c| {
                        (0..3)
                            .map(|a| {
                                c.cropped_shape_kji[2 - a] as f64 * c.spacing[a] / target_spacing[a]
                            })
                            .product::<f64>()
                    })
                    .sum();
                let by_budget = opts.batch_budget_voxels / patch_voxels;
                let cap = (0.05 * total / patch_voxels as f64).floor() as usize;
                by_budget.min(cap).max(2)
            }
        };
        Ok(Plan {
            version: 1,
            dataset: fp.dataset.clone(),
            dims: if planar { 2 } else { 3 },
            channel_names: fp.channel_names.clone(),
            labels: fp.labels.clone(),
            num_classes: fp.labels.values().copied().max().unwrap_or(0) as usize + 1,
            reorient: opts.reorient,
            crop: opts.crop,
            target_spacing,
            interpolation: opts.interpolation,
            label_interpolation: opts.label_interpolation,
            anisotropy_threshold: opts.anisotropy_threshold,
            normalization,
            patch_size,
            batch_size,
            num_stages,
            pools_per_axis: pools,
            num_cases: fp.cases.len(),
            median_spacing: fp.median_spacing,
            median_shape: [
                fp.median_shape_kji[2],
                fp.median_shape_kji[1],
                fp.median_shape_kji[0],
            ],
            median_resampled_shape,
            median_crop_ratio: fp.median_crop_ratio,
            overridden,
            fingerprint: fp.clone(),
        })
    }

    /// Writes `plan.json` (pretty JSON) atomically.
    pub fn save(&self, path: &Path) -> Result<(), PreprocessError> {
        let text = serde_json::to_string_pretty(self).map_err(|source| PreprocessError::Json {
            path: path.to_path_buf(),
            what: "cannot serialize the plan",
            source,
        })?;
        medseg_volume::write_atomically(path, |w| {
            use std::io::Write;
            w.write_all(text.as_bytes())?;
            w.write_all(b"\n")
        })?;
        Ok(())
    }

    /// Reads a `plan.json`.
    pub fn load(path: &Path) -> Result<Plan, PreprocessError> {
        let text = std::fs::read_to_string(path).map_err(|source| PreprocessError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|source| PreprocessError::Json {
            path: path.to_path_buf(),
            what: "not a medseg plan",
            source,
        })
    }
}

fn auto_spacing(fp: &DatasetFingerprint, threshold: f64) -> [f64; 3] {
    let mut t = fp.median_spacing;
    let (lo, hi) = crate::resample::finest_and_coarsest_axis(t);
    if t[hi] > threshold * t[lo] {
        let along: Vec<f64> = fp.cases.iter().map(|c| c.spacing[hi]).collect();
        if let Some(p10) = percentile(&along, 10.0) {
            // nnU-Net: never finer than the finest other axis
            let other_max = (0..3)
                .filter(|&a| a != hi)
                .map(|a| t[a])
                .fold(0.0, f64::max);
            t[hi] = p10.max(other_max);
        }
    }
    t
}

fn plan_normalization(
    fp: &DatasetFingerprint,
    opts: &PlanOptions,
    overridden: &mut Vec<String>,
) -> Result<Vec<Normalization>, PreprocessError> {
    let n = fp.channel_names.len().max(fp.channels.len());
    let names: Vec<String> = match &opts.normalization {
        Some(v) => {
            if v.len() != n {
                return Err(PreprocessError::setting(
                    "preprocess.normalization",
                    format!("{v:?}"),
                    &format!("needs one entry per channel ({n})"),
                ));
            }
            overridden.push("normalization".to_string());
            v.clone()
        }
        None => (0..n)
            .map(|c| {
                let name = fp.channel_names.get(c).map(String::as_str).unwrap_or("");
                if name.eq_ignore_ascii_case("ct") {
                    "ct".to_string()
                } else if opts.crop && fp.median_crop_ratio < 0.75 {
                    "zscore_nonzero".to_string()
                } else {
                    "zscore".to_string()
                }
            })
            .collect(),
    };
    names
        .iter()
        .enumerate()
        .map(|(c, name)| match name.as_str() {
            "ct" => {
                let st = fp.channels.get(c).and_then(|s| s.as_ref()).ok_or_else(|| {
                    PreprocessError::setting(
                        "preprocess.normalization",
                        "ct",
                        "needs foreground voxels (labels > 0) to compute the CT statistics",
                    )
                })?;
                Ok(Normalization::Ct {
                    lower: st.percentile_00_5,
                    upper: st.percentile_99_5,
                    mean: st.mean,
                    std: st.std,
                })
            }
            "zscore" => Ok(Normalization::ZScore),
            "zscore_nonzero" => Ok(Normalization::ZScoreNonzero),
            "none" => Ok(Normalization::None),
            other => Err(PreprocessError::setting(
                "preprocess.normalization",
                other,
                "expected \"ct\", \"zscore\", \"zscore_nonzero\" or \"none\"",
            )),
        })
        .collect()
}

fn parse_patch(p: &[usize], planar: bool) -> Result<[usize; 3], PreprocessError> {
    let bad = || {
        PreprocessError::setting(
            "train.patch_size",
            format!("{p:?}"),
            "needs (x, y, z) in 3D or (x, y) in 2D, all >= 1",
        )
    };
    let out = match (p.len(), planar) {
        (2, true) => [p[0], p[1], 1],
        (3, true) if p[2] == 1 => [p[0], p[1], 1],
        (3, false) => [p[0], p[1], p[2]],
        _ => return Err(bad()),
    };
    if out.contains(&0) {
        return Err(bad());
    }
    Ok(out)
}

/// nnU-Net's pooling rule on a patch: pool an axis while it is at least `2 * min_fm` and its
/// current spacing is at most twice the finest current spacing among the poolable axes.
fn pools_for(patch: [usize; 3], spacing: [f64; 3], planar: bool, opts: &PlanOptions) -> [usize; 3] {
    let mut pools = [0usize; 3];
    let mut size = patch.map(|p| p as f64);
    let mut sp = spacing;
    let axes: &[usize] = if planar { &[0, 1] } else { &[0, 1, 2] };
    for _ in 0..opts.max_stages.saturating_sub(1) {
        let by_size: Vec<usize> = axes
            .iter()
            .copied()
            .filter(|&a| size[a] >= 2.0 * opts.min_feature_map as f64)
            .collect();
        if by_size.is_empty() {
            break;
        }
        let finest = by_size.iter().map(|&a| sp[a]).fold(f64::INFINITY, f64::min);
        let pool: Vec<usize> = by_size
            .into_iter()
            .filter(|&a| sp[a] <= 2.0 * finest)
            .collect();
        if pool.is_empty() {
            break;
        }
        for a in pool {
            pools[a] += 1;
            size[a] /= 2.0;
            sp[a] *= 2.0;
        }
    }
    pools
}

fn round_to_pools(patch: [usize; 3], pools: [usize; 3]) -> [usize; 3] {
    [0, 1, 2].map(|a| {
        let d = 1usize << pools[a];
        patch[a].div_ceil(d).max(1) * d
    })
}

fn auto_patch(
    median: [f64; 3],
    spacing: [f64; 3],
    planar: bool,
    opts: &PlanOptions,
) -> ([usize; 3], [usize; 3]) {
    let axes: Vec<usize> = if planar { vec![0, 1] } else { vec![0, 1, 2] };
    // shape like 1/spacing (isotropic in mm), volume = budget, clipped to the median shape
    let budget = opts.patch_budget_voxels as f64;
    let inv: Vec<f64> = axes.iter().map(|&a| 1.0 / spacing[a]).collect();
    let prod: f64 = inv.iter().product();
    let f = (budget / prod).powf(1.0 / axes.len() as f64);
    let mut p = [1.0f64; 3];
    for (n, &a) in axes.iter().enumerate() {
        p[a] = (inv[n] * f).min(median[a].max(1.0));
    }
    // grow clipped room back into the other axes is not done (nnU-Net neither): the patch is
    // at most the median shape
    let mut patch = p.map(|v| v.round().max(1.0) as usize);
    let mut pools = pools_for(patch, spacing, planar, opts);
    patch = round_to_pools(patch, pools);
    // rounding up may exceed the budget: shrink the axis largest relative to the median
    while patch.iter().product::<usize>() > opts.patch_budget_voxels {
        let &a = axes
            .iter()
            .max_by(|&&x, &&y| {
                (patch[x] as f64 / median[x].max(1.0))
                    .total_cmp(&(patch[y] as f64 / median[y].max(1.0)))
            })
            .unwrap_or(&0);
        let d = 1usize << pools[a];
        if patch[a] <= d {
            break;
        }
        patch[a] -= d;
        pools = pools_for(patch, spacing, planar, opts);
        patch = round_to_pools(patch, pools);
    }
    (patch, pools)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BoundingBox;
    use crate::fingerprint::{CaseFingerprint, ChannelIntensity};

    fn case(spacing: [f64; 3], shape: [usize; 3], cropped: [usize; 3]) -> CaseFingerprint {
        CaseFingerprint {
            name: "c".into(),
            orientation: "RAS".into(),
            shape_kji: shape,
            spacing,
            nonzero_bbox: BoundingBox::full(cropped),
            cropped_shape_kji: cropped,
            label_voxels: Default::default(),
            voxel_volume_mm3: spacing.iter().product(),
            intensity: vec![],
            foreground_samples: vec![],
            non_finite: vec![],
        }
    }

    fn fingerprint(cases: Vec<CaseFingerprint>, channels: &[&str]) -> DatasetFingerprint {
        let mut fp = DatasetFingerprint::from_cases(
            "t".into(),
            channels.iter().map(|s| s.to_string()).collect(),
            [("background".to_string(), 0u16), ("a".to_string(), 1)]
                .into_iter()
                .collect(),
            cases,
        );
        fp.channels = channels
            .iter()
            .map(|_| ChannelIntensity::of(&[-100.0, 0.0, 50.0, 100.0, 900.0]))
            .collect();
        fp
    }

    fn opts() -> PlanOptions {
        let cfg = ExperimentConfig::from_toml_str(
            "[data]\ndataset = \"x\"\n",
            &[],
            Path::new("t.toml"),
            Default::default(),
        )
        .unwrap();
        PlanOptions::from_config(&cfg).unwrap()
    }

    #[test]
    fn anisotropic_spacing_uses_the_10th_percentile() {
        let cases: Vec<_> = [4.0, 5.0, 5.0, 6.0, 3.5]
            .iter()
            .map(|&z| case([0.7, 0.7, z], [40, 512, 512], [40, 400, 400]))
            .collect();
        let fp = fingerprint(cases, &["CT"]);
        let plan = Plan::create(&fp, &opts()).unwrap();
        let along = [4.0, 5.0, 5.0, 6.0, 3.5];
        assert_eq!(plan.target_spacing[2], percentile(&along, 10.0).unwrap());
        assert_eq!(plan.target_spacing[0], 0.7);
        assert!(matches!(plan.normalization[0], Normalization::Ct { .. }));
        // the coarse axis is pooled less than the fine ones, patch divisible by 2^pools
        assert!(plan.pools_per_axis[2] < plan.pools_per_axis[0]);
        for a in 0..3 {
            assert_eq!(plan.patch_size[a] % (1 << plan.pools_per_axis[a]), 0);
        }
        assert!(plan.patch_size.iter().product::<usize>() <= 128 * 128 * 128);
    }

    #[test]
    fn isotropic_median_mr_with_strong_cropping_uses_the_nonzero_mask() {
        let cases = vec![case([1.0, 1.0, 1.2], [100, 100, 100], [60, 60, 60]); 3];
        let fp = fingerprint(cases, &["T2"]);
        let plan = Plan::create(&fp, &opts()).unwrap();
        assert_eq!(plan.target_spacing, [1.0, 1.0, 1.2]);
        assert_eq!(plan.normalization, vec![Normalization::ZScoreNonzero]);
        assert!(plan.overridden.is_empty());
        let mut o = opts();
        o.normalization = Some(vec!["none".into()]);
        o.spacing = Some([2.0, 2.0, 2.0]);
        o.patch_size = Some(vec![40, 40, 40]);
        o.batch_size = Some(3);
        let plan = Plan::create(&fp, &o).unwrap();
        assert_eq!(plan.normalization, vec![Normalization::None]);
        assert_eq!(plan.target_spacing, [2.0; 3]);
        assert_eq!(plan.batch_size, 3);
        assert_eq!(plan.patch_size[0] % (1 << plan.pools_per_axis[0]), 0);
        assert!(plan.patch_size[0] >= 40);
        assert_eq!(plan.overridden.len(), 4);
        o.normalization = Some(vec!["bogus".into()]);
        assert!(Plan::create(&fp, &o).is_err());
    }
}
