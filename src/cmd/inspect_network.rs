//! `inspect --config`: the network a config describes — the plan's (stages, kernel sizes,
//! strides and features per stage from `RUN/plan.json`, as `medseg train` builds it), per-stage
//! feature-map shapes for the patch size, parameter count, receptive field and an estimate of
//! training memory per batch.

use super::args::ConfigArgs;
use anyhow::{Context, Result, bail};
use medseg_config::{ExperimentConfig, ModelConfig};
use medseg_model::{NetworkReport, UNetConfig};
use medseg_preprocess::{Plan, PlanOptions, topology};

/// Patch size `(x, y, z)` when neither `[train] patch_size` nor a plan gives one.
const DEFAULT_PATCH_3D: [usize; 3] = [128, 128, 128];
const DEFAULT_PATCH_2D: [usize; 3] = [512, 512, 1];

/// `inspect --config`: the network a config describes. An invalid patch size is an error whose
/// message names the nearest valid sizes (the binary exits 1).
pub(super) fn run_config(config: &ConfigArgs, as_json: bool) -> Result<()> {
    let cfg = config.load()?;
    let mut notes = Vec::new();
    let (mut in_channels, mut classes) = (cfg.model.in_channels, cfg.model.num_classes);
    if in_channels.is_none() || classes.is_none() {
        let dir = cfg.dataset_dir();
        if dir.join("dataset.json").is_file() {
            let ds = medseg_volume::dataset::Dataset::open(&dir).with_context(|| {
                format!("reading {} for the channel and class counts", dir.display())
            })?;
            in_channels = in_channels.or(Some(ds.channel_names.len().max(1)));
            classes = classes.or(Some(ds.labels.len()));
        } else {
            notes.push(format!(
                "no dataset.json in {}: assuming {} input channel(s) and {} classes (set model.in_channels / model.num_classes)",
                dir.display(),
                in_channels.unwrap_or(1),
                classes.unwrap_or(2)
            ));
        }
    }
    let in_channels = in_channels.unwrap_or(1);
    let classes = classes.unwrap_or(2);
    let (model, patch, planned_batch) = network_to_inspect(&cfg, &mut notes)?;
    let batch = cfg.train.batch_size.or(planned_batch).unwrap_or(2);
    let net = UNetConfig::from_model_config(&model, in_channels, classes, &patch)?;
    let report = NetworkReport::new(&net, batch)?;
    if as_json {
        println!("{}", serde_json::to_string(&report)?);
        for n in &notes {
            eprintln!("note: {n}");
        }
    } else {
        print!("{}", report.to_text());
        for n in &notes {
            println!("note: {n}");
        }
    }
    Ok(())
}

/// `[model]` with its topology, the patch (tensor order) and the plan's batch size that
/// `inspect --config` shows:
/// * with `RUN/plan.json`: the plan of this config (its `--set`s included) from the saved
///   fingerprint, i.e. the network `medseg train` builds;
/// * without one, when `[model] features` is set: the config's network as written;
/// * otherwise nnU-Net's topology for the configured (or default) patch at isotropic spacing.
fn network_to_inspect(
    cfg: &ExperimentConfig,
    notes: &mut Vec<String>,
) -> Result<(ModelConfig, Vec<usize>, Option<usize>)> {
    let dims = cfg.model.dims;
    let tensor_order = |p: [usize; 3]| -> Vec<usize> {
        if dims == 2 {
            vec![p[1], p[0]]
        } else {
            vec![p[2], p[1], p[0]]
        }
    };
    let plan_path = cfg.output_dir().join("plan.json");
    if let Ok(saved) = Plan::load(&plan_path) {
        let opts = PlanOptions::from_config(cfg)?;
        let plan = Plan::create(&saved.fingerprint, &opts)
            .with_context(|| format!("planning from the fingerprint in {}", plan_path.display()))?;
        notes.push(format!(
            "network and patch from the plan ({})",
            plan_path.display()
        ));
        if plan.network != saved.network || plan.patch_size != saved.patch_size {
            notes.push(format!(
                "this config plans a different network than {}: run `medseg plan` again to train with it",
                plan_path.display()
            ));
        }
        let model = plan.model_config(&cfg.model)?;
        return Ok((model, tensor_order(plan.patch_size), Some(plan.batch_size)));
    }
    // The config writes the patch in (x, y, z) order like every other size.
    let patch_ijk: [usize; 3] = match &cfg.train.patch_size {
        Some(p) if p.len() == dims && !p.contains(&0) => {
            [p[0], p[1], if dims == 2 { 1 } else { p[2] }]
        }
        Some(p) => bail!("train.patch_size = {p:?} needs {dims} positive values (x, y[, z])"),
        None => {
            let p = if dims == 2 {
                DEFAULT_PATCH_2D
            } else {
                DEFAULT_PATCH_3D
            };
            notes.push(format!("train.patch_size not set: using {p:?}"));
            p
        }
    };
    if cfg.model.features.is_some() {
        notes.push(format!(
            "no plan in {}: the network as [model] writes it",
            plan_path.display()
        ));
        return Ok((cfg.model.clone(), tensor_order(patch_ijk), None));
    }
    let planar = dims == 2;
    let opts = PlanOptions::from_config(cfg)?;
    let widths = topology::FeatureWidths::Doubling {
        base: opts.base_features.unwrap_or(topology::BASE_FEATURES),
        max: opts.max_features.unwrap_or(if planar {
            topology::MAX_FEATURES_2D
        } else {
            topology::MAX_FEATURES_3D
        }),
    };
    let request = topology::PatchRequest::Given(patch_ijk.map(|p| p as f64));
    let (net, padded, _) = topology::plan_topology([1.0; 3], request, planar, &widths);
    notes.push(format!(
        "no plan in {}: nnU-Net's network for patch {:?} at isotropic spacing (run `medseg plan` for the dataset's)",
        plan_path.display(),
        &padded[..dims]
    ));
    let model = medseg_preprocess::plan::model_config_for(&cfg.model, &net)?;
    Ok((model, tensor_order(padded), None))
}
