//! The network's topology from the patch size and the spacing, by nnU-Net v2's rules.
//!
//! [`pool_and_conv_props`] is a line-by-line port of `get_pool_and_conv_props` and
//! [`pad_shape`] of `pad_shape` (nnunetv2 2.8.1,
//! `nnunetv2/experiment_planning/experiment_planners/network_topology.py`); [`plan_topology`]
//! assembles what `ExperimentPlanner.get_plans_for_configuration`
//! (`default_experiment_planner.py`) stores as `arch_kwargs`: stages, per-stage kernel sizes
//! and strides, features per stage (32 doubling per stage, capped at 320 in 3D and 512 in 2D)
//! and two convolutions per stage. The rules, per pooling step:
//! * an axis may pool while its feature map is at least `2 * min_feature_map` voxels and its
//!   spacing is under twice the finest spacing among those axes; a lone poolable axis needs
//!   `3 * min_feature_map` voxels;
//! * an axis's kernel becomes 3 (and stays 3) once its spacing is under twice the finest
//!   spacing, so a coarse axis of anisotropic data starts with 1-wide kernels and stride 1;
//! * the bottleneck always has 3 on every axis, and the patch is padded up to a multiple of
//!   `2^pools` per axis.
//!
//! Axis order of the port follows its inputs; [`plan_topology`] takes and returns `(i, j, k)`
//! like the plan, and runs the port in nnU-Net's order (the coarsest axis first, then the
//! others in array order `k, j, i`) so that ties break as they do in nnU-Net.

use serde::{Deserialize, Serialize};

/// Smallest edge of a bottleneck feature map (`UNet_featuremap_min_edge_length`).
pub const MIN_FEATURE_MAP: usize = 4;
/// Features of the first stage (`UNet_base_num_features`).
pub const BASE_FEATURES: usize = 32;
/// Cap of the features per stage in 3D (`UNet_max_features_3d`).
pub const MAX_FEATURES_3D: usize = 320;
/// Cap of the features per stage in 2D (`UNet_max_features_2d`).
pub const MAX_FEATURES_2D: usize = 512;
/// Convolutions per encoder and decoder stage (`UNet_blocks_per_stage_encoder`).
pub const CONVS_PER_STAGE: usize = 2;
/// nnU-Net's `max_numpool` argument from its planner: no limit on pools per axis.
pub const UNLIMITED: usize = 999_999;

/// What [`pool_and_conv_props`] returns, per axis in the order of its inputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolAndConvProps {
    pub num_pool_per_axis: Vec<usize>,
    /// Stride of every stage; the first stage's is all 1.
    pub pool_op_kernel_sizes: Vec<Vec<usize>>,
    /// Convolution kernel of every stage; the last (bottleneck) is all 3.
    pub conv_kernel_sizes: Vec<Vec<usize>>,
    /// The input patch padded up to `shape_must_be_divisible_by`.
    pub patch_size: Vec<usize>,
    /// `2^num_pool_per_axis`.
    pub shape_must_be_divisible_by: Vec<usize>,
}

impl PoolAndConvProps {
    pub fn num_stages(&self) -> usize {
        self.pool_op_kernel_sizes.len()
    }
}

/// nnU-Net's `get_pool_and_conv_props(spacing, patch_size, min_feature_map_size, max_numpool)`.
/// `patch_size` may be fractional (nnU-Net clips its initial patch to the median shape, a
/// float). `max_stages` is medseg's addition: stop after that many stages (a `[model]
/// features` list of that length); [`UNLIMITED`] keeps nnU-Net's behaviour.
pub fn pool_and_conv_props(
    spacing: &[f64],
    patch_size: &[f64],
    min_feature_map_size: usize,
    max_numpool: usize,
    max_stages: usize,
) -> PoolAndConvProps {
    let dim = spacing.len();
    let min_fm = min_feature_map_size as f64;
    let mut current_spacing = spacing.to_vec();
    let mut current_size = patch_size.to_vec();
    let mut pool_op_kernel_sizes = vec![vec![1; dim]];
    let mut conv_kernel_sizes = Vec::new();
    let mut num_pool_per_axis = vec![0usize; dim];
    let mut kernel_size = vec![1usize; dim];
    while pool_op_kernel_sizes.len() < max_stages {
        let valid: Vec<usize> = (0..dim)
            .filter(|&i| current_size[i] >= 2.0 * min_fm)
            .collect();
        if valid.is_empty() {
            break;
        }
        let min_spacing_of_valid = valid
            .iter()
            .map(|&i| current_spacing[i])
            .fold(f64::INFINITY, f64::min);
        let valid: Vec<usize> = valid
            .into_iter()
            .filter(|&i| current_spacing[i] / min_spacing_of_valid < 2.0)
            .filter(|&i| num_pool_per_axis[i] < max_numpool)
            .collect();
        if valid.len() == 1 && current_size[valid[0]] < 3.0 * min_fm {
            break;
        }
        if valid.is_empty() {
            break;
        }
        let min_spacing = current_spacing
            .iter()
            .copied()
            .fold(f64::INFINITY, f64::min);
        for d in 0..dim {
            if kernel_size[d] != 3 && current_spacing[d] / min_spacing < 2.0 {
                kernel_size[d] = 3;
            }
        }
        let mut stride = vec![1usize; dim];
        for &v in &valid {
            stride[v] = 2;
            num_pool_per_axis[v] += 1;
            current_spacing[v] *= 2.0;
            current_size[v] = (current_size[v] / 2.0).ceil();
        }
        pool_op_kernel_sizes.push(stride);
        conv_kernel_sizes.push(kernel_size.clone());
    }
    let shape_must_be_divisible_by: Vec<usize> =
        num_pool_per_axis.iter().map(|&p| 1usize << p).collect();
    let patch_size = pad_shape(patch_size, &shape_must_be_divisible_by);
    conv_kernel_sizes.push(vec![3; dim]);
    PoolAndConvProps {
        num_pool_per_axis,
        pool_op_kernel_sizes,
        conv_kernel_sizes,
        patch_size,
        shape_must_be_divisible_by,
    }
}

/// nnU-Net's initial patch (`get_plans_for_configuration`): shaped like `1 / spacing`, the
/// volume of 256³ (3D) or 2048² (2D) voxels, each axis rounded (half to even, like Python's
/// `round`) and clipped to the median shape.
pub fn initial_patch_size(spacing: &[f64], median_shape: &[f64]) -> Vec<f64> {
    let inv: Vec<f64> = spacing.iter().map(|s| 1.0 / s).collect();
    let volume: f64 = if spacing.len() == 3 {
        256f64.powi(3)
    } else {
        2048f64.powi(2)
    };
    let scale = (volume / inv.iter().product::<f64>()).powf(1.0 / spacing.len() as f64);
    inv.iter()
        .zip(median_shape)
        .map(|(&i, &m)| (i * scale).round_ties_even().min(m))
        .collect()
}

/// The planner's patch search: from [`initial_patch_size`], shrink the axis that is largest
/// relative to the median shape by one pooling step at a time until the patch fits, exactly
/// as `get_plans_for_configuration` does, with the patch's voxel count against
/// `budget_voxels` standing in for its GPU memory estimate (medseg plans for a CPU).
pub fn fit_patch_to_budget(
    spacing: &[f64],
    median_shape: &[f64],
    budget_voxels: usize,
    max_stages: usize,
) -> PoolAndConvProps {
    let props_of =
        |patch: &[f64]| pool_and_conv_props(spacing, patch, MIN_FEATURE_MAP, UNLIMITED, max_stages);
    let mut props = props_of(&initial_patch_size(spacing, median_shape));
    while props.patch_size.iter().map(|&p| p as f64).product::<f64>() > budget_voxels as f64 {
        let axis = axis_largest_relative_to(&props.patch_size, median_shape);
        let mut patch: Vec<f64> = props.patch_size.iter().map(|&p| p as f64).collect();
        let mut trial = patch.clone();
        // nnU-Net subtracts the divisor of the patch one step smaller, so that a shrinking
        // divisor does not skip valid sizes (256 -> 224, not 192)
        trial[axis] -= props.shape_must_be_divisible_by[axis] as f64;
        let step = props_of(&trial).shape_must_be_divisible_by[axis] as f64;
        if patch[axis] - step < 1.0 {
            break;
        }
        patch[axis] -= step;
        props = props_of(&patch);
    }
    props
}

/// `np.argsort(patch / median)[-1]`: the last axis among those with the largest ratio.
fn axis_largest_relative_to(patch: &[usize], median_shape: &[f64]) -> usize {
    let ratio = |a: usize| patch[a] as f64 / median_shape[a];
    (0..patch.len()).fold(0, |best, a| if ratio(a) >= ratio(best) { a } else { best })
}

/// nnU-Net's `pad_shape`: every axis up to the next multiple of its divisor (unchanged when
/// already a multiple), then truncated to an integer like its `astype(int)`.
pub fn pad_shape(shape: &[f64], must_be_divisible_by: &[usize]) -> Vec<usize> {
    shape
        .iter()
        .zip(must_be_divisible_by)
        .map(|(&s, &d)| {
            let d = d as f64;
            let rem = s % d;
            let padded = if rem == 0.0 { s } else { s + d - rem };
            padded as usize
        })
        .collect()
}

/// `_features_per_stage`: `base * 2^stage`, at most `max`.
pub fn features_per_stage(num_stages: usize, base: usize, max: usize) -> Vec<usize> {
    (0..num_stages)
        .map(|s| base.saturating_mul(1usize << s.min(60)).min(max))
        .collect()
}

/// The network part of `plan.json` (nnU-Net's `arch_kwargs`). Per-axis values are `(i, j, k)`
/// like the rest of the plan (the model and `[model] kernel_sizes` / `strides` use tensor
/// order, depth first); a 2D plan has kernel 1 and stride 1 on `k`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkTopology {
    /// Feature maps per stage, shallowest first.
    pub features_per_stage: Vec<usize>,
    /// Convolution kernel of every stage.
    pub kernel_sizes: Vec<[usize; 3]>,
    /// Downsampling of every stage (the first is `[1, 1, 1]`).
    pub strides: Vec<[usize; 3]>,
    /// Convolutions per encoder stage.
    pub n_conv_per_stage: Vec<usize>,
    /// Convolutions per decoder stage (one fewer stage).
    pub n_conv_per_stage_decoder: Vec<usize>,
    /// The patch must be a multiple of this per axis (`2^pools`).
    pub shape_must_be_divisible_by: [usize; 3],
}

impl NetworkTopology {
    pub fn num_stages(&self) -> usize {
        self.kernel_sizes.len()
    }

    /// One line per item for summaries: features, then kernels and strides per stage as
    /// `x x y x z` (`x x y` when `planar`).
    pub fn describe(&self, planar: bool) -> [String; 3] {
        let axes = |v: &[usize; 3]| {
            let n = if planar { 2 } else { 3 };
            v[..n]
                .iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
                .join("x")
        };
        let stages = |list: &[[usize; 3]]| list.iter().map(axes).collect::<Vec<_>>().join(" ");
        let features: Vec<String> = self
            .features_per_stage
            .iter()
            .map(|f| f.to_string())
            .collect();
        [
            format!(
                "{} stages, features {}",
                self.num_stages(),
                features.join("-")
            ),
            format!("kernels {}", stages(&self.kernel_sizes)),
            format!("strides {}", stages(&self.strides)),
        ]
    }
}

/// Feature widths of [`plan_topology`]: an explicit list (its length caps the stages) or
/// `base` doubling per stage up to `max`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeatureWidths {
    Explicit(Vec<usize>),
    Doubling { base: usize, max: usize },
}

impl FeatureWidths {
    fn max_stages(&self) -> usize {
        match self {
            FeatureWidths::Explicit(f) => f.len(),
            FeatureWidths::Doubling { .. } => usize::MAX,
        }
    }
}

/// Where [`plan_topology`] gets the patch from, `(i, j, k)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PatchRequest {
    /// This patch (the config's `train.patch_size`), padded to the pooling.
    Given([f64; 3]),
    /// nnU-Net's search ([`fit_patch_to_budget`]) from the median shape after resampling.
    FitMedian {
        median: [f64; 3],
        budget_voxels: usize,
    },
}

/// The topology nnU-Net's rules give: runs the port on the axes the network convolves
/// (`i, j` when `planar`, else all three) and returns the topology, the padded patch and the
/// pools per axis, all `(i, j, k)` (`k` extent 1 when planar).
pub fn plan_topology(
    spacing: [f64; 3],
    request: PatchRequest,
    planar: bool,
    widths: &FeatureWidths,
) -> (NetworkTopology, [usize; 3], [usize; 3]) {
    let order = nnunet_axis_order(spacing, planar);
    let pick = |v: [f64; 3]| -> Vec<f64> { order.iter().map(|&a| v[a]).collect() };
    let sp = pick(spacing);
    let max_stages = widths.max_stages();
    let props = match request {
        PatchRequest::Given(p) => {
            pool_and_conv_props(&sp, &pick(p), MIN_FEATURE_MAP, UNLIMITED, max_stages)
        }
        PatchRequest::FitMedian {
            median,
            budget_voxels,
        } => fit_patch_to_budget(&sp, &pick(median), budget_voxels, max_stages),
    };
    let to_ijk = |v: &[usize], fill: usize| {
        let mut out = [fill; 3];
        for (n, &a) in order.iter().enumerate() {
            out[a] = v[n];
        }
        out
    };
    let stages = props.num_stages();
    let features = match widths {
        FeatureWidths::Explicit(f) => f[..stages.min(f.len())].to_vec(),
        FeatureWidths::Doubling { base, max } => features_per_stage(stages, *base, *max),
    };
    let topology = NetworkTopology {
        features_per_stage: features,
        kernel_sizes: props
            .conv_kernel_sizes
            .iter()
            .map(|k| to_ijk(k, 1))
            .collect(),
        strides: props
            .pool_op_kernel_sizes
            .iter()
            .map(|s| to_ijk(s, 1))
            .collect(),
        n_conv_per_stage: vec![CONVS_PER_STAGE; stages],
        n_conv_per_stage_decoder: vec![CONVS_PER_STAGE; stages.saturating_sub(1)],
        shape_must_be_divisible_by: to_ijk(&props.shape_must_be_divisible_by, 1),
    };
    let patch = to_ijk(&props.patch_size, 1);
    let pools = to_ijk(&props.num_pool_per_axis, 0);
    (topology, patch, pools)
}

/// The `(i, j, k)` axes in the order nnU-Net's planner sees them: array order `k, j, i` with
/// the coarsest-spacing axis moved first (`determine_transpose`); 2D keeps `j, i`.
pub fn nnunet_axis_order(spacing: [f64; 3], planar: bool) -> Vec<usize> {
    if planar {
        return vec![1, 0];
    }
    let array_order = [2usize, 1, 0];
    let mut coarsest = array_order[0];
    for &a in &array_order[1..] {
        if spacing[a] > spacing[coarsest] {
            coarsest = a;
        }
    }
    let mut order = vec![coarsest];
    order.extend(array_order.iter().copied().filter(|&a| a != coarsest));
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pad_shape_rounds_up_and_keeps_multiples() {
        assert_eq!(pad_shape(&[36.0, 50.0, 35.0], &[8, 8, 8]), vec![40, 56, 40]);
        assert_eq!(pad_shape(&[32.0, 40.5], &[8, 8]), vec![32, 48]);
    }

    #[test]
    fn features_double_up_to_the_cap() {
        assert_eq!(
            features_per_stage(7, 32, 320),
            vec![32, 64, 128, 256, 320, 320, 320]
        );
        assert_eq!(features_per_stage(2, 8, 512), vec![8, 16]);
    }

    #[test]
    fn a_lone_poolable_axis_needs_three_times_the_minimum() {
        // z stops at 5; x keeps pooling alone only while it is >= 12
        let p = pool_and_conv_props(&[1.0, 1.0], &[10.0, 40.0], 4, UNLIMITED, usize::MAX);
        assert_eq!(p.num_pool_per_axis, vec![1, 2]);
        assert_eq!(p.patch_size, vec![10, 40]);
    }

    #[test]
    fn explicit_features_cap_the_stages() {
        let widths = FeatureWidths::Explicit(vec![8, 16, 32]);
        let (t, patch, pools) =
            plan_topology([1.0; 3], PatchRequest::Given([64.0; 3]), false, &widths);
        assert_eq!(t.features_per_stage, vec![8, 16, 32]);
        assert_eq!(pools, [2, 2, 2]);
        assert_eq!(patch, [64, 64, 64]);
        assert_eq!(t.n_conv_per_stage_decoder, vec![2, 2]);
    }

    #[test]
    fn coarsest_axis_goes_first() {
        assert_eq!(nnunet_axis_order([0.6, 0.6, 3.6], false), vec![2, 1, 0]);
        assert_eq!(nnunet_axis_order([3.0, 1.0, 1.0], false), vec![0, 2, 1]);
        assert_eq!(nnunet_axis_order([1.0; 3], false), vec![2, 1, 0]);
    }
}
