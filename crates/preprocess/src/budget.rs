//! The plan under a time budget (`--time-budget`): the candidate networks and patches the
//! trainer times on the user's machine, and the record of what it measured and chose
//! (`plan.json`'s `time_budget`).
//!
//! nnU-Net sizes its network for a GPU's memory and trains 1000 x 250 iterations whatever the
//! machine. On a CPU that schedule takes weeks, so a budgeted plan keeps nnU-Net's topology
//! rules (stages, kernels, strides, patch shape) and lets measurement choose the widths, the
//! batch and, when even the narrowest network is too slow, a smaller patch.

use crate::PreprocessError;
use crate::plan::Plan;
use crate::topology::{FeatureWidths, NetworkTopology, PatchRequest, plan_topology};
use serde::{Deserialize, Serialize};

/// First-stage widths a budgeted plan chooses from, narrowest first (each doubles per stage,
/// capped as the plan caps it).
pub const BASE_WIDTHS: [usize; 3] = [8, 16, 32];

/// Patch shrink steps tried when the narrowest network cannot afford enough iterations at the
/// plan's patch: each halves the voxel budget of nnU-Net's patch search.
pub const MAX_PATCH_HALVINGS: usize = 2;

/// The part of a plan a budget may change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedShape {
    pub patch_size: [usize; 3],
    pub batch_size: usize,
    pub num_stages: usize,
    pub pools_per_axis: [usize; 3],
    pub network: Option<NetworkTopology>,
}

impl PlannedShape {
    /// The network, patch and batch of `plan`.
    pub fn of(plan: &Plan) -> Self {
        Self {
            patch_size: plan.patch_size,
            batch_size: plan.batch_size,
            num_stages: plan.num_stages,
            pools_per_axis: plan.pools_per_axis,
            network: plan.network.clone(),
        }
    }

    /// Writes this shape into `plan`.
    pub fn apply(&self, plan: &mut Plan) {
        plan.patch_size = self.patch_size;
        plan.batch_size = self.batch_size;
        plan.num_stages = self.num_stages;
        plan.pools_per_axis = self.pools_per_axis;
        plan.network = self.network.clone();
    }

    /// Features per stage (empty without a topology).
    pub fn features(&self) -> Vec<usize> {
        self.network
            .as_ref()
            .map(|n| n.features_per_stage.clone())
            .unwrap_or_default()
    }
}

/// One configuration the budget considered, with what timing it showed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BudgetCandidate {
    pub features_per_stage: Vec<usize>,
    pub patch_size: [usize; 3],
    pub batch_size: usize,
    /// Median seconds of a training step (forward, loss, backward, optimizer, data loading)
    /// measured on this machine; `None` when it was skipped because a narrower network
    /// already showed that this one could not afford enough iterations.
    pub step_seconds: Option<f64>,
    /// Iterations the training time affords at `step_seconds` (or at the estimate).
    pub affordable_iterations: usize,
}

/// Time the budget keeps for what is not training steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReservedTime {
    /// Spent before the budget was planned (integrity check, fingerprint, cache, data).
    pub setup_seconds: f64,
    /// Spent timing the candidates.
    pub measuring_seconds: f64,
    /// Measured seconds of one validation case without mirroring (the periodic validation).
    pub validation_seconds_per_case: f64,
    /// Periodic validations the schedule will run, and their estimated total.
    pub periodic_validations: usize,
    pub periodic_validation_seconds: f64,
    /// The final validation of the best weights (mirroring as configured, every metric).
    pub final_validation_seconds: f64,
    /// Checkpoints, export, summary, and a safety margin for a noisy machine.
    pub margin_seconds: f64,
}

/// `plan.json`'s `time_budget`: what `--time-budget` measured and chose.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BudgetChoice {
    /// The budget, in seconds, and as given.
    pub budget_seconds: f64,
    pub budget: String,
    /// The device the steps were timed on, and the compute threads.
    pub device: String,
    pub threads: usize,
    /// The least iterations the rule wants a network to afford before it prefers a wider one.
    pub min_iterations: usize,
    /// Everything considered, in the order it was timed; `chosen` indexes it.
    pub candidates: Vec<BudgetCandidate>,
    pub chosen: usize,
    pub reserved: ReservedTime,
    /// Seconds left for training steps, and the schedule that fills them.
    pub training_seconds: f64,
    pub iterations: usize,
    pub epochs: usize,
    pub iterations_per_epoch: usize,
    /// Validation every this many epochs (0 = after the last only): the config's, unless
    /// its validations would take more than 5% of the budget.
    pub validation_interval: usize,
    /// Whether the final validation mirrors: as `[inference] tta` says, unless mirroring
    /// would take more than 10% of the budget.
    pub final_tta: bool,
    /// nnU-Net's choice without a budget (restored before the next budgeted planning).
    pub without_budget: PlannedShape,
}

impl BudgetChoice {
    /// The chosen candidate (`None` only in a hand-edited `plan.json` whose `chosen` is out
    /// of range).
    pub fn chosen_candidate(&self) -> Option<&BudgetCandidate> {
        self.candidates.get(self.chosen)
    }
}

impl Plan {
    /// The plan with one budget candidate's widths, patch and batch: nnU-Net's topology rules
    /// re-run with first-stage width `base_features` (capped at the plan's widest stage) and,
    /// for `patch_halvings > 0`, a patch search with the voxel budget halved that many times
    /// from the plan's patch.
    pub fn budget_variant(
        &self,
        base_features: usize,
        patch_halvings: usize,
        batch_size: usize,
    ) -> Result<Plan, PreprocessError> {
        let net = self.network.as_ref().ok_or_else(|| {
            PreprocessError::setting(
                "plan.json",
                format!("version {}", self.version),
                "has no network topology, which a time budget needs: delete it so that `medseg train` plans again",
            )
        })?;
        let cap = net
            .features_per_stage
            .iter()
            .copied()
            .max()
            .unwrap_or(base_features);
        let widths = FeatureWidths::Doubling {
            base: base_features,
            max: cap.max(base_features),
        };
        let planar = self.dims == 2;
        let request = if patch_halvings == 0 {
            PatchRequest::Given(self.patch_size.map(|v| v as f64))
        } else {
            let voxels: usize = self.patch_size.iter().product();
            PatchRequest::FitMedian {
                median: self.patch_size.map(|v| v as f64),
                budget_voxels: (voxels >> patch_halvings).max(1),
            }
        };
        let (network, patch, pools) = plan_topology(self.target_spacing, request, planar, &widths);
        if network.num_stages() < 2 {
            return Err(PreprocessError::setting(
                "train.time_budget",
                format!("patch {patch:?}"),
                "leaves a network of one stage: give a longer budget",
            ));
        }
        let mut out = self.clone();
        PlannedShape {
            patch_size: patch,
            batch_size,
            num_stages: network.num_stages(),
            pools_per_axis: pools,
            network: Some(network),
        }
        .apply(&mut out);
        Ok(out)
    }

    /// The plan without any budget's choice (nnU-Net's network, patch and batch).
    pub fn without_budget(&self) -> Plan {
        let mut out = self.clone();
        if let Some(b) = out.time_budget.take() {
            b.without_budget.apply(&mut out);
        }
        out
    }
}
