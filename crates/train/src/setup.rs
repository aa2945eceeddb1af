//! The setup stages before the first step: check the settings, record the resolved config,
//! plan the dataset, describe the network and the data loading.

use crate::budget::{BudgetInputs, plan_budget};
use crate::loader::LoaderSettings;
use crate::state::TrainState;
use crate::{TrainError, TrainObserver, TrainOptions};
use medseg_config::{ExperimentConfig, TrainConfig};
use medseg_infer::{DirLock, LockMode, RunLayout};
use medseg_model::UNetConfig;
use medseg_preprocess::plan::Plan;
use medseg_preprocess::{
    AugmentationConfig, Augmenter, FingerprintOptions, PlanOptions, fingerprint_dataset,
};
use medseg_volume::dataset::Dataset;

/// Rejects settings that cannot train (before anything is written).
pub fn check_settings(t: &TrainConfig) -> Result<(), TrainError> {
    if t.epochs == 0 || t.iterations_per_epoch == 0 {
        return Err(TrainError::Config(
            "train.epochs and train.iterations_per_epoch must be at least 1".into(),
        ));
    }
    if !(t.learning_rate.is_finite() && t.learning_rate > 0.0) {
        return Err(TrainError::Config(format!(
            "train.learning_rate = {} must be > 0",
            t.learning_rate
        )));
    }
    Ok(())
}

/// Creates the run directory and takes its lock (held until training ends), so a second
/// `medseg train` into it stops before writing anything; then checks that the directory
/// holds no run unless this one resumes it, or starts it again (`overwrite`).
pub fn claim_run_dir(
    run: &RunLayout,
    opts: &TrainOptions,
    obs: &mut dyn TrainObserver,
) -> Result<DirLock, TrainError> {
    std::fs::create_dir_all(run.root()).map_err(|e| TrainError::io(run.root(), e))?;
    let lock = DirLock::acquire(
        &run.lock(),
        LockMode::Exclusive,
        "medseg train",
        "set another train.output",
    )?;
    if let Some(stale) = lock.stale_holder() {
        obs.message(&format!(
            "warning: {}: taking over the lock left by {stale}, which is no longer running",
            run.lock().display()
        ));
    }
    let Some(checkpoint) = run.last_checkpoint() else {
        return Ok(lock);
    };
    if opts.resume {
        return Ok(lock);
    }
    if opts.overwrite {
        obs.message(&format!(
            "--overwrite: deleting the run in {}",
            run.root().display()
        ));
        remove_training_outputs(run)?;
        return Ok(lock);
    }
    let state = TrainState::load(&checkpoint.state).ok();
    Err(TrainError::RunExists {
        path: run.root().to_path_buf(),
        what: match &state {
            Some(s) if s.finished => "a finished run",
            _ => "an interrupted run",
        },
        epochs_done: state.map_or(0, |s| s.epochs_done),
    })
}

/// Deletes what training wrote (checkpoints, log, curves, summary, exported weights, chosen
/// postprocessing); keeps
/// the plan and the cache, which depend on the dataset and plan only.
fn remove_training_outputs(run: &RunLayout) -> Result<(), TrainError> {
    for dir in [
        run.checkpoint_last_dir(),
        run.checkpoint_staging_dir(),
        run.checkpoint_previous_dir(),
    ] {
        match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(TrainError::io(&dir, e));
            }
            _ => {}
        }
    }
    let files = [
        run.weights_best(),
        run.train_log(),
        run.curves(),
        run.summary(),
        run.safetensors(),
        run.postprocessing(),
    ];
    for file in files.into_iter().chain(run.legacy_checkpoint_files()) {
        match std::fs::remove_file(&file) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(TrainError::io(&file, e));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Writes `config.toml`: the config with absolute dataset and output paths, so the run
/// directory stands alone.
pub fn write_resolved_config(cfg: &ExperimentConfig, run: &RunLayout) -> Result<(), TrainError> {
    let mut resolved = cfg.clone();
    resolved.data.dataset = cfg
        .dataset_dir()
        .canonicalize()
        .unwrap_or_else(|_| cfg.dataset_dir());
    resolved.train.output = run
        .root()
        .canonicalize()
        .unwrap_or_else(|_| run.root().to_path_buf());
    let text = resolved.to_toml()?;
    medseg_volume::write_atomically(&run.config(), |w| {
        std::io::Write::write_all(w, text.as_bytes())
    })?;
    Ok(())
}

/// Reads `RUN/plan.json` when present, otherwise runs the integrity check, the fingerprint and
/// the planner, and writes it.
pub fn plan_for(
    cfg: &ExperimentConfig,
    dataset: &Dataset,
    run: &RunLayout,
    obs: &mut dyn TrainObserver,
) -> Result<Plan, TrainError> {
    let path = run.plan();
    if path.is_file() {
        obs.message(&format!("plan: reusing {}", path.display()));
        return Ok(Plan::load(&path)?);
    }
    obs.message(&format!("plan: checking {} cases", dataset.cases.len()));
    check_dataset(dataset)?;
    let opts = PlanOptions::from_config(cfg)?;
    let fp_opts = FingerprintOptions {
        reorient: opts.reorient,
        crop: opts.crop,
        samples_per_case: cfg.preprocess.intensity_samples_per_case.unwrap_or(10_000),
        seed: cfg.train.seed,
    };
    obs.message("plan: fingerprinting the dataset");
    let fp = fingerprint_dataset(dataset, &fp_opts, &|_| {})?;
    for (c, case) in fp.cases.iter().zip(&dataset.cases) {
        if let Some(w) = medseg_preprocess::non_finite_warning(&c.name, &case.images, &c.non_finite)
        {
            obs.message(&w);
        }
    }
    let plan = Plan::create(&fp, &opts)?;
    plan.save(&path)?;
    obs.message(&format!(
        "plan: target spacing {:.3} x {:.3} x {:.3} mm, patch {:?}, batch {}",
        plan.target_spacing[0],
        plan.target_spacing[1],
        plan.target_spacing[2],
        plan.patch_size,
        plan.batch_size
    ));
    Ok(plan)
}

/// The plan as this run trains it: with a time budget, the one [`plan_budget`] measures and
/// chooses; without, nnU-Net's network, patch and batch (undoing an earlier budget's choice).
/// Saves `plan.json` when that changed it.
pub fn plan_for_budget(
    inputs: Option<&BudgetInputs>,
    plan: Plan,
    run: &RunLayout,
    obs: &mut dyn TrainObserver,
) -> Result<Plan, TrainError> {
    let chosen = match inputs {
        Some(inputs) => plan_budget(inputs, &plan, obs)?,
        None => plan.without_budget(),
    };
    if chosen != plan {
        chosen.save(&run.plan())?;
    }
    Ok(chosen)
}

/// The dataset's integrity check, as one error listing the first problems.
fn check_dataset(dataset: &Dataset) -> Result<(), TrainError> {
    let problems = dataset.check(1e-3, &|_| {});
    if problems.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = problems.iter().take(5).map(|p| p.to_string()).collect();
    Err(TrainError::File {
        path: dataset.root.clone(),
        reason: format!(
            "the integrity check found {} problem(s): {}",
            problems.len(),
            list.join("; ")
        ),
    })
}

/// The network a plan and config describe: the plan's topology (stages, kernels, strides,
/// features) with the config's `[model]` overrides checked against it; patch from the plan.
pub fn network_for(cfg: &ExperimentConfig, plan: &Plan) -> Result<UNetConfig, TrainError> {
    let p = plan.patch_size_kji();
    let patch: Vec<usize> = if cfg.model.dims == 2 {
        vec![p[1], p[2]]
    } else {
        p.to_vec()
    };
    let model = plan.model_config(&cfg.model)?;
    Ok(UNetConfig::from_model_config(
        &model,
        plan.channel_names.len(),
        plan.num_classes,
        &patch,
    )?)
}

/// Writes `network.json`, which inference rebuilds the network from.
pub fn write_network(network: &UNetConfig, run: &RunLayout) -> Result<(), TrainError> {
    crate::error::write_json(&run.network(), network)
}

/// How the loader draws batches: the plan's patch and batch size (unless the config sets
/// one), `train.augmentation`, foreground oversampling, seed and workers.
pub fn loader_settings(cfg: &ExperimentConfig, plan: &Plan) -> Result<LoaderSettings, TrainError> {
    let t = &cfg.train;
    let aug_cfg: AugmentationConfig = match &t.augmentation {
        Some(table) => toml::Value::Table(table.clone())
            .try_into()
            .map_err(|e: toml::de::Error| TrainError::Config(format!("train.augmentation: {e}")))?,
        None => AugmentationConfig::default(),
    };
    Ok(LoaderSettings {
        patch_kji: plan.patch_size_kji(),
        batch_size: t.batch_size.unwrap_or(plan.batch_size).max(1),
        foreground_fraction: t.foreground_oversampling,
        augmenter: Augmenter::new(aug_cfg)?,
        seed: t.seed,
        workers: t.threads.max(1),
    })
}
