//! The plan: every preprocessing and patch choice, from the fingerprint by nnU-Net's rules,
//! each overridable from the config. Saved as `plan.json`.

use crate::PreprocessError;
use crate::fingerprint::DatasetFingerprint;
use crate::normalize::Normalization;
use crate::resample::{Interpolation, LabelInterpolation};
use crate::stats::percentile;
use crate::topology::{
    BASE_FEATURES, FeatureWidths, MAX_FEATURES_2D, MAX_FEATURES_3D, NetworkTopology, PatchRequest,
    plan_topology,
};
use medseg_config::{ExperimentConfig, ModelConfig};
use std::collections::BTreeMap;
use std::path::Path;

/// Inputs of [`Plan::create`] besides the fingerprint: the config's choices (each `None`
/// means "automatic").
#[derive(Debug, Clone, PartialEq)]
pub struct PlanOptions {
    /// 2 (2D network, slices) or 3.
    pub dims: usize,
    /// `[model] features`: fixed widths whose length caps the stages; `None` = doubling.
    pub features: Option<Vec<usize>>,
    /// First-stage features when doubling (`None` = nnU-Net's 32).
    pub base_features: Option<usize>,
    /// Cap of the doubling (`None` = nnU-Net's 320 in 3D, 512 in 2D).
    pub max_features: Option<usize>,
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
            features: cfg.model.features.clone(),
            base_features: cfg.model.base_features,
            max_features: cfg.model.max_features,
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
    /// The network's topology (nnU-Net's `arch_kwargs`); the network is built from it.
    /// `None` in plans written before version 2 (the network then came from `[model]`).
    #[serde(default)]
    pub network: Option<NetworkTopology>,
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
    /// What `--time-budget` measured and chose; the network, patch and batch above are then
    /// its choice (nnU-Net's are kept in `time_budget.without_budget`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_budget: Option<crate::budget::BudgetChoice>,
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
    /// * patch and network: nnU-Net's patch search and `get_pool_and_conv_props`
    ///   ([`crate::topology`]): a patch shaped like `1 / spacing`, clipped to the median shape
    ///   after resampling, padded to its pooling and shrunk one pooling step at a time until
    ///   it fits the voxel budget (nnU-Net's GPU memory target); the stages, kernels, strides
    ///   and widths follow from the final patch and spacing (`[model] features` caps the
    ///   stages);
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
        let all_2d = fp.cases.iter().all(|c| c.shape_kji[0] == 1);
        let planar = opts.dims == 2 || all_2d;
        let median_resampled_shape = median_resampled_shape(fp, target_spacing, planar);
        let widths = feature_widths(opts, planar)?;
        let request = match &opts.patch_size {
            Some(p) => {
                overridden.push("patch_size".to_string());
                PatchRequest::Given(parse_patch(p, planar)?.map(|v| v as f64))
            }
            None => PatchRequest::FitMedian {
                median: median_resampled_shape,
                budget_voxels: opts.patch_budget_voxels,
            },
        };
        let (network, patch_size, pools) = plan_topology(target_spacing, request, planar, &widths);
        check_stage_count(&widths, &network, patch_size, target_spacing)?;
        if opts.features.is_some() {
            overridden.push("features".to_string());
        }
        let num_stages = network.num_stages();
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
            version: 2,
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
            network: Some(network),
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
            time_budget: None,
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

impl Plan {
    /// The plan as a cache of preprocessed cases sees it: without the network, patch, batch
    /// and budget, which change no preprocessed voxel, so choosing another network (a time
    /// budget does) keeps the cache.
    pub fn preprocessing_view(&self) -> Plan {
        let mut p = self.clone();
        p.patch_size = [0; 3];
        p.batch_size = 0;
        p.num_stages = 0;
        p.pools_per_axis = [0; 3];
        p.network = None;
        p.time_budget = None;
        p.overridden
            .retain(|o| !matches!(o.as_str(), "patch_size" | "batch_size" | "features"));
        p
    }

    /// `[model]` with the plan's topology filled in: `features`, `kernel_sizes` and `strides`
    /// in the config's layout (tensor order `[d, h, w]` in 3D, `[h, w]` in 2D). Topology keys
    /// the config sets must agree with the plan (`features`, `base_features`,
    /// `max_features`; `kernel_sizes` / `strides` override it with one entry per stage);
    /// each conflict is an error naming it and the fix. A plan from before version 2 has no
    /// topology: `model.features` must then be set (the old behaviour).
    pub fn model_config(&self, model: &ModelConfig) -> Result<ModelConfig, PreprocessError> {
        let Some(net) = &self.network else {
            if model.features.is_some() {
                return Ok(model.clone());
            }
            return Err(PreprocessError::setting(
                "plan.json",
                format!("version {}", self.version),
                "predates the network topology: delete it so that `medseg plan` / `medseg train` plan again, or set model.features",
            ));
        };
        model_config_for(model, net)
    }
}

/// `[model]` with `net` filled in, checked as [`Plan::model_config`] describes.
pub fn model_config_for(
    model: &ModelConfig,
    net: &NetworkTopology,
) -> Result<ModelConfig, PreprocessError> {
    check_features(model, net)?;
    if net
        .n_conv_per_stage
        .iter()
        .chain(&net.n_conv_per_stage_decoder)
        .any(|&n| n != crate::topology::CONVS_PER_STAGE)
    {
        return Err(PreprocessError::setting(
            "plan.json network.n_conv_per_stage",
            format!("{:?}", net.n_conv_per_stage),
            "medseg's UNet has 2 convolutions per stage: plan again",
        ));
    }
    let mut out = model.clone();
    out.features = Some(net.features_per_stage.clone());
    out.kernel_sizes = Some(stage_list(
        "model.kernel_sizes",
        model.kernel_sizes.as_ref(),
        &net.kernel_sizes,
        model.dims,
    )?);
    out.strides = Some(stage_list(
        "model.strides",
        model.strides.as_ref(),
        &net.strides,
        model.dims,
    )?);
    Ok(out)
}

/// The widths `[model]` sets (a list, or a base / cap) must be the planned ones.
fn check_features(model: &ModelConfig, net: &NetworkTopology) -> Result<(), PreprocessError> {
    let planned = &net.features_per_stage;
    let (key, want) = match (&model.features, model.base_features, model.max_features) {
        (None, None, None) => return Ok(()),
        (Some(f), _, _) => ("model.features", f.clone()),
        (None, base, max) => {
            let key = if base.is_some() {
                "model.base_features"
            } else {
                "model.max_features"
            };
            let base = base.unwrap_or(planned.first().copied().unwrap_or(BASE_FEATURES));
            let max = max.unwrap_or_else(|| planned.iter().copied().max().unwrap_or(base));
            let want = crate::topology::features_per_stage(planned.len(), base, max);
            (key, want)
        }
    };
    if &want == planned {
        return Ok(());
    }
    Err(PreprocessError::setting(
        key,
        format!("{want:?}"),
        &format!(
            "disagrees with the plan's features per stage {planned:?} ({} stages); the plan was made with other [model] settings: delete RUN/plan.json and plan again (`medseg plan`), or use the plan's value",
            planned.len()
        ),
    ))
}

/// A per-stage list in the config's layout: the config's own (which must have one entry per
/// stage) or the plan's `(i, j, k)` values reversed to tensor order (`[h, w]` in 2D).
fn stage_list(
    key: &str,
    given: Option<&Vec<Vec<usize>>>,
    planned: &[[usize; 3]],
    dims: usize,
) -> Result<Vec<Vec<usize>>, PreprocessError> {
    let layout = |v: &[usize; 3]| -> Vec<usize> {
        if dims == 2 {
            vec![v[1], v[0]]
        } else {
            vec![v[2], v[1], v[0]]
        }
    };
    let planned: Vec<Vec<usize>> = planned.iter().map(layout).collect();
    match given {
        None => Ok(planned),
        Some(g) if g.len() == planned.len() => Ok(g.clone()),
        Some(g) => Err(PreprocessError::setting(
            key,
            format!("{g:?}"),
            &format!(
                "has {} entries but the plan's network has {} stages ({planned:?}): give one entry per stage or leave {key} out",
                g.len(),
                planned.len()
            ),
        )),
    }
}

/// nnU-Net's `determine_fullres_target_spacing`: the median spacing, except on an axis that is
/// both much coarser than the others (median spacing > `threshold` x the coarsest other) and
/// much shorter (median cropped extent x `threshold` < the shortest other): that axis gets
/// the 10th percentile of its spacings, but never finer than the coarsest other axis (which
/// then takes its place, plus 1e-5, as nnU-Net writes it).
fn auto_spacing(fp: &DatasetFingerprint, threshold: f64) -> [f64; 3] {
    let mut t = fp.median_spacing;
    let worst = (0..3).fold(0, |w, a| if t[a] > t[w] { a } else { w });
    let others = (0..3).filter(|&a| a != worst);
    let extents: Vec<f64> = (0..3)
        .map(|a| {
            let along: Vec<f64> = fp
                .cases
                .iter()
                .map(|c| c.cropped_shape_kji[2 - a] as f64)
                .collect();
            percentile(&along, 50.0).unwrap_or(0.0)
        })
        .collect();
    let other_spacing = others.clone().map(|a| t[a]).fold(0.0, f64::max);
    let other_extent = others.map(|a| extents[a]).fold(f64::INFINITY, f64::min);
    let anisotropic_spacing = t[worst] > threshold * other_spacing;
    let anisotropic_voxels = extents[worst] * threshold < other_extent;
    if anisotropic_spacing && anisotropic_voxels {
        let along: Vec<f64> = fp.cases.iter().map(|c| c.spacing[worst]).collect();
        if let Some(p10) = percentile(&along, 10.0) {
            t[worst] = if p10 < other_spacing {
                other_spacing.max(p10) + 1e-5
            } else {
                p10
            };
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

/// nnU-Net's median shape after resampling: the median over cases of each cropped shape
/// resampled to `target` (`compute_new_shape`, rounded), `(i, j, k)`; 1 on `k` when planar.
fn median_resampled_shape(fp: &DatasetFingerprint, target: [f64; 3], planar: bool) -> [f64; 3] {
    let mut median = [1.0; 3];
    for a in 0..3 {
        let along: Vec<f64> = fp
            .cases
            .iter()
            .map(|c| {
                (c.cropped_shape_kji[2 - a] as f64 * c.spacing[a] / target[a]).round_ties_even()
            })
            .collect();
        median[a] = percentile(&along, 50.0).unwrap_or(1.0).max(1.0);
    }
    if planar {
        median[2] = 1.0;
    }
    median
}

/// The widths `[model]` asks for: an explicit `features` list, or nnU-Net's doubling with
/// `base_features` / `max_features` (defaults 32 and 320 in 3D, 512 in 2D).
fn feature_widths(opts: &PlanOptions, planar: bool) -> Result<FeatureWidths, PreprocessError> {
    if let Some(f) = &opts.features {
        if opts.base_features.is_some() || opts.max_features.is_some() {
            return Err(PreprocessError::setting(
                "model.features",
                format!("{f:?}"),
                "fixes every width: leave out model.base_features / model.max_features, or leave out model.features to double base_features up to max_features",
            ));
        }
        if f.len() < 2 || f.contains(&0) {
            return Err(PreprocessError::setting(
                "model.features",
                format!("{f:?}"),
                "needs at least 2 positive values (one per stage)",
            ));
        }
        return Ok(FeatureWidths::Explicit(f.clone()));
    }
    let cap = if planar {
        MAX_FEATURES_2D
    } else {
        MAX_FEATURES_3D
    };
    let base = opts.base_features.unwrap_or(BASE_FEATURES);
    let max = opts.max_features.unwrap_or(cap.max(base));
    if base == 0 || max < base {
        return Err(PreprocessError::setting(
            "model.base_features",
            base,
            &format!("must be at least 1 and at most model.max_features ({max})"),
        ));
    }
    Ok(FeatureWidths::Doubling { base, max })
}

/// The network needs two stages, and an explicit `features` list no more stages than the
/// patch can pool.
fn check_stage_count(
    widths: &FeatureWidths,
    network: &NetworkTopology,
    patch: [usize; 3],
    spacing: [f64; 3],
) -> Result<(), PreprocessError> {
    let stages = network.num_stages();
    let why = format!(
        "patch {patch:?} at spacing {:.3} x {:.3} x {:.3} mm pools to {} stages (nnU-Net pools an axis while its feature map stays >= {} voxels)",
        spacing[0],
        spacing[1],
        spacing[2],
        stages,
        crate::topology::MIN_FEATURE_MAP
    );
    if let FeatureWidths::Explicit(f) = widths
        && f.len() > stages
    {
        return Err(PreprocessError::setting(
            "model.features",
            format!("{f:?}"),
            &format!(
                "has {} stages but the {why}: give {stages} values, e.g. {:?}, or leave model.features out to let the plan choose",
                f.len(),
                &f[..stages]
            ),
        ));
    }
    if stages < 2 {
        return Err(PreprocessError::setting(
            "train.patch_size",
            format!("{patch:?}"),
            &format!(
                "is too small for a UNet: the {why}; a network needs 2, so at least 8 voxels on an axis"
            ),
        ));
    }
    Ok(())
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
        opts_for(3)
    }

    fn opts_for(dims: usize) -> PlanOptions {
        let cfg = ExperimentConfig::from_toml_str(
            &format!("[data]\ndataset = \"x\"\n[model]\ndims = {dims}\n"),
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
    fn a_coarse_axis_with_many_voxels_keeps_the_median_spacing() {
        // nnU-Net needs both: a much coarser axis and much fewer voxels along it.
        let cases: Vec<_> = [4.0, 5.0, 5.0, 6.0, 3.5]
            .iter()
            .map(|&z| case([0.7, 0.7, z], [200, 400, 400], [200, 400, 400]))
            .collect();
        let plan = Plan::create(&fingerprint(cases, &["CT"]), &opts()).unwrap();
        assert_eq!(plan.target_spacing[2], 5.0);
    }

    #[test]
    fn the_10th_percentile_never_goes_finer_than_the_coarsest_other_axis() {
        let cases: Vec<_> = [4.0, 4.0, 4.0, 4.0, 0.3, 0.3]
            .iter()
            .map(|&z| case([1.2, 1.2, z], [40, 300, 300], [40, 300, 300]))
            .collect();
        let plan = Plan::create(&fingerprint(cases, &["MRI"]), &opts()).unwrap();
        // p10 = 0.3 < 1.2: nnU-Net takes max(1.2, 0.3) + 1e-5
        assert_eq!(plan.target_spacing[2], 1.2 + 1e-5);
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

    /// A plan for `n` cases of one spacing `(i, j, k)` and cropped shape `[k, j, i]`.
    fn plan_of(spacing: [f64; 3], shape_kji: [usize; 3], dims: usize) -> Plan {
        let cases = vec![case(spacing, shape_kji, shape_kji); 20];
        Plan::create(&fingerprint(cases, &["MRI"]), &opts_for(dims)).unwrap()
    }

    fn net(plan: &Plan) -> &NetworkTopology {
        plan.network
            .as_ref()
            .expect("a version-2 plan has its network")
    }

    // Expected values: nnU-Net v2.8.1's get_pool_and_conv_props and patch search (see
    // tests/fixtures/topology), written here in the plan's (i, j, k) order.
    #[test]
    fn hippocampus_like_crops_get_nnunets_four_stage_network() {
        let plan = plan_of([1.0; 3], [36, 50, 35], 3);
        assert_eq!(plan.patch_size, [40, 56, 40]);
        assert_eq!(plan.num_stages, 4);
        assert_eq!(plan.pools_per_axis, [3, 3, 3]);
        let n = net(&plan);
        assert_eq!(n.features_per_stage, vec![32, 64, 128, 256]);
        assert_eq!(n.strides[0], [1, 1, 1]);
        assert!(n.strides[1..].iter().all(|s| *s == [2, 2, 2]));
        assert!(n.kernel_sizes.iter().all(|k| *k == [3, 3, 3]));
        assert_eq!(n.n_conv_per_stage, vec![2; 4]);
        assert_eq!(n.n_conv_per_stage_decoder, vec![2; 3]);
        let plan2d = plan_of([1.0; 3], [36, 50, 35], 2);
        assert_eq!(plan2d.patch_size, [40, 56, 1]);
        assert_eq!(net(&plan2d).features_per_stage, vec![32, 64, 128, 256]);
        assert!(net(&plan2d).kernel_sizes.iter().all(|k| *k == [3, 3, 1]));
    }

    #[test]
    fn anisotropic_mr_starts_with_in_plane_kernels_and_strides() {
        let plan = plan_of([0.6, 0.6, 3.6], [20, 320, 320], 3);
        assert_eq!(plan.target_spacing, [0.6, 0.6, 3.6]);
        assert_eq!(plan.patch_size, [320, 320, 20]);
        assert_eq!(plan.pools_per_axis, [6, 6, 2]);
        let n = net(&plan);
        assert_eq!(n.num_stages(), 7);
        assert_eq!(n.kernel_sizes[0], [3, 3, 1]);
        assert_eq!(n.strides[1], [2, 2, 1]);
        assert_eq!(n.features_per_stage, vec![32, 64, 128, 256, 320, 320, 320]);
        // the coarse axis joins the pooling once the in-plane spacing catches up
        assert_eq!(n.strides.iter().filter(|s| s[2] == 2).count(), 2);
        assert_eq!(n.kernel_sizes[6], [3, 3, 3]);
    }

    #[test]
    fn ct_volumes_are_shrunk_to_the_budget_by_nnunets_search() {
        let plan = plan_of([0.8, 0.8, 2.5], [120, 512, 512], 3);
        assert_eq!(plan.patch_size, [192, 224, 48]);
        assert!(plan.patch_size.iter().product::<usize>() <= 128 * 128 * 128);
        let n = net(&plan);
        assert_eq!(n.num_stages(), 6);
        assert_eq!(n.kernel_sizes[0], [3, 3, 1]);
        assert_eq!(n.strides[1], [2, 2, 1]);
        assert_eq!(n.strides[2], [2, 2, 2]);
        assert_eq!(n.shape_must_be_divisible_by, [32, 32, 8]);
        let plan2d = plan_of([0.8, 0.8, 2.5], [120, 512, 512], 2);
        assert_eq!(plan2d.patch_size, [256, 256, 1]);
        assert_eq!(
            net(&plan2d).features_per_stage,
            vec![32, 64, 128, 256, 512, 512, 512]
        );
    }

    #[test]
    fn explicit_features_cap_the_stages_or_name_the_conflict() {
        let cases = vec![case([1.0; 3], [36, 50, 35], [36, 50, 35]); 20];
        let fp = fingerprint(cases, &["MRI"]);
        let mut o = opts();
        o.features = Some(vec![8, 16, 32]);
        let plan = Plan::create(&fp, &o).unwrap();
        assert_eq!(plan.num_stages, 3);
        assert_eq!(plan.patch_size, [36, 52, 36]);
        assert!(plan.overridden.contains(&"features".to_string()));
        o.features = Some(vec![32, 64, 128, 256, 320]);
        let err = Plan::create(&fp, &o).unwrap_err().to_string();
        assert!(err.contains("model.features"), "{err}");
        assert!(
            err.contains("has 5 stages") && err.contains("give 4 values"),
            "{err}"
        );
        o.base_features = Some(8);
        assert!(
            Plan::create(&fp, &o)
                .unwrap_err()
                .to_string()
                .contains("leave out")
        );
        o.features = None;
        let plan = Plan::create(&fp, &o).unwrap();
        assert_eq!(net(&plan).features_per_stage, vec![8, 16, 32, 64]);
    }

    #[test]
    fn the_model_config_takes_the_plans_topology_and_checks_overrides() {
        let plan = plan_of([0.6, 0.6, 3.6], [20, 320, 320], 3);
        let model = ModelConfig::default();
        let m = plan.model_config(&model).unwrap();
        assert_eq!(m.features.as_ref().unwrap().len(), 7);
        // tensor order: depth (k) first
        assert_eq!(m.kernel_sizes.as_ref().unwrap()[0], vec![1, 3, 3]);
        assert_eq!(m.strides.as_ref().unwrap()[1], vec![1, 2, 2]);
        let mut conflict = model.clone();
        conflict.features = Some(vec![8, 16, 32, 64, 128, 256, 320]);
        let err = plan.model_config(&conflict).unwrap_err().to_string();
        assert!(
            err.contains("model.features") && err.contains("plan again"),
            "{err}"
        );
        let mut base = model.clone();
        base.base_features = Some(16);
        assert!(
            plan.model_config(&base)
                .unwrap_err()
                .to_string()
                .contains("model.base_features")
        );
        let mut strides = model.clone();
        strides.strides = Some(vec![vec![1, 1, 1]; 3]);
        let err = plan.model_config(&strides).unwrap_err().to_string();
        assert!(err.contains("7 stages"), "{err}");
        // a version-1 plan.json (no network) still loads
        let mut json = serde_json::to_value(&plan).unwrap();
        json.as_object_mut().unwrap().remove("network");
        json["version"] = 1.into();
        let old: Plan = serde_json::from_value(json).unwrap();
        assert_eq!(old.network, None);
        assert!(
            old.model_config(&model)
                .unwrap_err()
                .to_string()
                .contains("predates")
        );
        let mut fixed = model.clone();
        fixed.features = Some(vec![4, 8]);
        assert_eq!(old.model_config(&fixed).unwrap(), fixed);
        let plan2d = plan_of([0.8, 0.8, 2.5], [120, 512, 512], 2);
        let m2 = ModelConfig {
            dims: 2,
            ..ModelConfig::default()
        };
        let m2 = plan2d.model_config(&m2).unwrap();
        assert_eq!(m2.kernel_sizes.unwrap()[0], vec![3, 3]);
    }

    #[test]
    fn a_budget_variant_keeps_nnunets_topology_and_sets_widths_and_batch() {
        let plan = plan_of([1.0; 3], [36, 50, 35], 3);
        let v = plan.budget_variant(8, 0, 2).unwrap();
        assert_eq!(net(&v).features_per_stage, vec![8, 16, 32, 64]);
        assert_eq!(v.patch_size, plan.patch_size);
        assert_eq!(net(&v).strides, net(&plan).strides);
        assert_eq!(net(&v).kernel_sizes, net(&plan).kernel_sizes);
        assert_eq!(v.batch_size, 2);
        // Widths double up to the plan's widest stage, never past it.
        let wide = plan.budget_variant(128, 0, 2).unwrap();
        assert_eq!(net(&wide).features_per_stage, vec![128, 256, 256, 256]);
        // Anisotropic data keeps its in-plane first stages.
        let mr = plan_of([0.6, 0.6, 3.6], [20, 320, 320], 3);
        let mr16 = mr.budget_variant(16, 0, 2).unwrap();
        assert_eq!(net(&mr16).kernel_sizes, net(&mr).kernel_sizes);
        assert_eq!(net(&mr16).features_per_stage[0], 16);
    }

    #[test]
    fn a_halved_budget_variant_has_at_most_half_the_voxels_and_a_valid_patch() {
        let voxels = |p: &Plan| p.patch_size.iter().product::<usize>();
        let ct = plan_of([0.8, 0.8, 2.5], [120, 512, 512], 3);
        for halvings in 1..=2 {
            let v = ct.budget_variant(8, halvings, 2).unwrap();
            assert!(voxels(&v) <= voxels(&ct) >> halvings, "{:?}", v.patch_size);
            for a in 0..3 {
                assert_eq!(v.patch_size[a] % (1 << v.pools_per_axis[a]), 0);
            }
            assert_eq!(net(&v).num_stages(), v.num_stages);
        }
    }

    #[test]
    fn without_budget_restores_nnunets_choice() {
        use crate::budget::{BudgetChoice, PlannedShape, ReservedTime};
        let plan = plan_of([1.0; 3], [36, 50, 35], 3);
        let mut chosen = plan.budget_variant(8, 1, 2).unwrap();
        chosen.time_budget = Some(BudgetChoice {
            budget_seconds: 60.0,
            budget: "1m".into(),
            device: "flex".into(),
            threads: 2,
            min_iterations: 1,
            candidates: Vec::new(),
            chosen: 0,
            reserved: ReservedTime {
                setup_seconds: 0.0,
                measuring_seconds: 0.0,
                validation_seconds_per_case: 0.0,
                periodic_validations: 0,
                periodic_validation_seconds: 0.0,
                final_validation_seconds: 0.0,
                margin_seconds: 0.0,
            },
            training_seconds: 0.0,
            iterations: 1,
            epochs: 1,
            iterations_per_epoch: 1,
            validation_interval: 0,
            final_tta: true,
            without_budget: PlannedShape::of(&plan),
        });
        assert_ne!(chosen.patch_size, plan.patch_size);
        assert_eq!(chosen.without_budget(), plan);
        // The cache key ignores the network, patch, batch and budget.
        assert_eq!(chosen.preprocessing_view(), plan.preprocessing_view());
        // A budget round-trips through plan.json.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plan.json");
        chosen.save(&path).unwrap();
        assert_eq!(Plan::load(&path).unwrap(), chosen);
    }
}
