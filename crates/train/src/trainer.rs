//! The training loop: config -> plan -> cache -> batches -> burn steps -> validation ->
//! checkpoints, logs and a self-contained run directory.

use crate::cache::{self, CachedCase};
use crate::loader::{LoaderSettings, for_each_batch};
use crate::log::{EpochRecord, write_csv, write_curves};
use crate::schedule::learning_rate;
use crate::splits;
use crate::state::TrainState;
use crate::validate::{ValCase, Validation, validate};
use crate::{TrainError, TrainObserver};
use burn::grad_clipping::GradientClippingConfig;
use burn::module::Module;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamWConfig, GradientsParams, ModuleOptimizer, SgdConfig};
use burn::tensor::{Int, Tensor};
use medseg_config::{ExperimentConfig, FoldSelection, OptimizerKind};
use medseg_infer::{NETWORK_JSON, SlidingWindow, WEIGHTS_BEST, WEIGHTS_LAST, select_device};
use medseg_model::convert::{array_into_tensor, labels_to_tensor};
use medseg_model::{DeepSupervisionLoss, SegLoss, UNet, UNetConfig};
use medseg_postprocess::Postprocessor;
use medseg_preprocess::plan::Plan;
use medseg_preprocess::{
    AugmentationConfig, Augmenter, FingerprintOptions, PlanOptions, fingerprint_dataset,
};
use medseg_volume::dataset::{Case, Dataset};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// File name of the optimizer state saved with `checkpoint_last.bpk`.
pub const OPTIMIZER_LAST: &str = "optimizer_last.bpk";
/// File name of the resumable state.
pub const STATE_JSON: &str = "training_state.json";

/// Run-time choices that are not part of the experiment.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// Continue from `checkpoint_last.bpk` + `optimizer_last.bpk` + `training_state.json`.
    pub resume: bool,
    /// `flex` or `wgpu`.
    pub device: String,
    /// Set (e.g. by Ctrl-C) to stop after the current iteration, saving `last`.
    pub interrupt: Arc<AtomicBool>,
}

impl Default for TrainOptions {
    fn default() -> Self {
        Self {
            resume: false,
            device: "flex".into(),
            interrupt: Arc::new(AtomicBool::new(false)),
        }
    }
}

/// What a finished (or interrupted) run reports.
#[derive(Debug, Clone)]
pub struct TrainSummary {
    pub run_dir: PathBuf,
    pub epochs_done: usize,
    pub interrupted: bool,
    pub early_stopped: bool,
    pub best_dice: Option<f64>,
    pub best_epoch: Option<usize>,
    /// Final validation of the best weights with every metric (surface metrics included).
    pub final_validation: Option<Validation>,
    pub seconds: f64,
}

/// Reads `RUN/plan.json` when present, otherwise runs the integrity check, the fingerprint and
/// the planner, and writes it.
pub fn plan_for(
    cfg: &ExperimentConfig,
    dataset: &Dataset,
    run_dir: &Path,
    obs: &mut dyn TrainObserver,
) -> Result<Plan, TrainError> {
    let path = run_dir.join("plan.json");
    if path.is_file() {
        obs.message(&format!("plan: reusing {}", path.display()));
        return Ok(Plan::load(&path)?);
    }
    obs.message(&format!("plan: checking {} cases", dataset.cases.len()));
    let problems = dataset.check(1e-3, &|_| {});
    if !problems.is_empty() {
        let list: Vec<String> = problems.iter().take(5).map(|p| p.to_string()).collect();
        return Err(TrainError::File {
            path: dataset.root.clone(),
            reason: format!(
                "the integrity check found {} problem(s): {}",
                problems.len(),
                list.join("; ")
            ),
        });
    }
    let opts = PlanOptions::from_config(cfg)?;
    let fp_opts = FingerprintOptions {
        reorient: opts.reorient,
        crop: opts.crop,
        samples_per_case: cfg.preprocess.intensity_samples_per_case.unwrap_or(10_000),
        seed: cfg.train.seed,
    };
    obs.message("plan: fingerprinting the dataset");
    let fp = fingerprint_dataset(dataset, &fp_opts, &|_| {})?;
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

/// The network a plan and config describe: topology and patch from the plan, the rest of
/// `[model]` (norm, variants, deep supervision) from the config.
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

fn build_optimizer(cfg: &ExperimentConfig) -> ModuleOptimizer {
    let t = &cfg.train;
    let clip = (t.grad_clip > 0.0).then(|| GradientClippingConfig::Norm(t.grad_clip as f32));
    match t.optimizer {
        OptimizerKind::Adamw => AdamWConfig::new()
            .with_weight_decay(t.weight_decay as f32)
            .with_grad_clipping(clip)
            .init(),
        OptimizerKind::Sgd => SgdConfig::new()
            .with_momentum(Some(
                MomentumConfig::new()
                    .with_momentum(t.momentum)
                    .with_dampening(0.0)
                    .with_nesterov(true),
            ))
            .with_weight_decay(Some(burn::optim::decay::WeightDecayConfig::new(
                t.weight_decay as f32,
            )))
            .with_gradient_clipping(clip)
            .init(),
    }
}

fn label_names(plan: &Plan) -> Vec<(u16, String)> {
    let mut v: Vec<(u16, String)> = plan
        .labels
        .iter()
        .filter(|(_, id)| **id != 0)
        .map(|(n, id)| (*id, n.clone()))
        .collect();
    v.sort();
    v
}

/// Trains the experiment `cfg` into its run directory (`[train] output`).
pub fn train(
    cfg: &ExperimentConfig,
    opts: &TrainOptions,
    obs: &mut dyn TrainObserver,
) -> Result<TrainSummary, TrainError> {
    let started = Instant::now();
    let t = &cfg.train;
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
    let run_dir = cfg.output_dir();
    std::fs::create_dir_all(&run_dir).map_err(|e| TrainError::io(&run_dir, e))?;
    let dataset = Dataset::open(&cfg.dataset_dir())?;

    // The resolved config, with absolute paths so the run directory stands alone.
    let mut resolved = cfg.clone();
    resolved.data.dataset = cfg
        .dataset_dir()
        .canonicalize()
        .unwrap_or_else(|_| cfg.dataset_dir());
    resolved.train.output = run_dir.canonicalize().unwrap_or_else(|_| run_dir.clone());
    let cfg_text = resolved.to_toml_string();
    medseg_volume::write_atomically(&run_dir.join("config.toml"), |w| {
        std::io::Write::write_all(w, cfg_text.as_bytes())
    })?;

    let plan = plan_for(cfg, &dataset, &run_dir, obs)?;
    let network = network_for(cfg, &plan)?;
    let net_text = serde_json::to_string_pretty(&network).unwrap_or_default();
    medseg_volume::write_atomically(&run_dir.join(NETWORK_JSON), |w| {
        std::io::Write::write_all(w, net_text.as_bytes())
    })?;

    // Splits and this fold's cases.
    let names: Vec<String> = dataset.cases.iter().map(|c| c.name.clone()).collect();
    let splits_path = cfg
        .data
        .splits
        .as_ref()
        .map(|p| cfg.resolve_path(p))
        .unwrap_or_else(|| run_dir.join("splits.json"));
    let splits = splits::load_or_create(&splits_path, &names, cfg.data.folds, cfg.data.split_seed)?;
    if splits_path != run_dir.join("splits.json") {
        let text = serde_json::to_string_pretty(&splits).unwrap_or_default();
        medseg_volume::write_atomically(&run_dir.join("splits.json"), |w| {
            std::io::Write::write_all(w, text.as_bytes())
        })?;
    }
    let (train_names, val_names): (Vec<String>, Vec<String>) = match cfg.data.fold {
        FoldSelection::All(_) => (names.clone(), Vec::new()),
        FoldSelection::Index(f) => {
            let s = splits.get(f).ok_or_else(|| {
                TrainError::Config(format!(
                    "data.fold = {f} but the splits have {} folds",
                    splits.len()
                ))
            })?;
            (s.train.clone(), s.val.clone())
        }
    };
    let pick = |list: &[String]| -> Vec<Case> {
        dataset
            .cases
            .iter()
            .filter(|c| list.contains(&c.name))
            .cloned()
            .collect()
    };
    let (train_cases, val_cases) = (pick(&train_names), pick(&val_names));
    obs.message(&format!(
        "data: {} training and {} validation cases",
        train_cases.len(),
        val_cases.len()
    ));

    // Preprocess once into the cache.
    let all: Vec<Case> = train_cases.iter().chain(&val_cases).cloned().collect();
    let total = all.len();
    let mut done = 0;
    let mut cached = cache::load_or_build(
        &run_dir.join("cache"),
        &plan,
        &all,
        t.seed,
        &mut |name, hit| {
            done += 1;
            obs.progress(
                "preprocess",
                done,
                total,
                &format!("{name}{}", if hit { " (cached)" } else { "" }),
            );
        },
    )?;
    let val_cached: Vec<CachedCase> = cached.split_off(train_cases.len());
    let train_data = cached;
    let mut val_data = Vec::with_capacity(val_cached.len());
    for (c, case) in val_cached.into_iter().zip(&val_cases) {
        let label_path = case.label.as_ref().ok_or_else(|| TrainError::Case {
            case: case.name.clone(),
            reason: "has no label".into(),
        })?;
        let label = medseg_volume::read_labels(label_path)?;
        val_data.push(ValCase {
            name: c.name,
            image: c.image,
            props: c.props,
            label,
        });
    }

    // Model, optimizer, state.
    let base_device = select_device(&opts.device)?;
    let device = base_device.clone().autodiff();
    device.seed(t.seed);
    let mut model: UNet = network.init(&device);
    let mut optim = build_optimizer(cfg);
    let state_path = run_dir.join(STATE_JSON);
    let mut state = TrainState::new(t.seed);
    if opts.resume {
        let last = run_dir.join(WEIGHTS_LAST);
        if !(last.is_file() && state_path.is_file()) {
            return Err(TrainError::File { path: run_dir.clone(), reason: "has no checkpoint to resume from (checkpoint_last.bpk, training_state.json); start without --resume".into() });
        }
        state = TrainState::load(&state_path)?;
        model = medseg_model::load(&network, &last, &device)?;
        let opt_path = run_dir.join(OPTIMIZER_LAST);
        if opt_path.is_file() {
            optim = optim.load(&opt_path).map_err(|e| TrainError::File {
                path: opt_path.clone(),
                reason: e.to_string(),
            })?;
        }
        obs.message(&format!(
            "resume: continuing after epoch {} ({} iterations)",
            state.epochs_done, state.iterations_done
        ));
    }

    let loss = DeepSupervisionLoss::new(
        SegLoss::from_config(&cfg.loss, plan.num_classes)?,
        network.num_outputs(),
    );
    let aug_cfg: AugmentationConfig = match &t.augmentation {
        Some(table) => toml::Value::Table(table.clone())
            .try_into()
            .map_err(|e: toml::de::Error| TrainError::Config(format!("train.augmentation: {e}")))?,
        None => AugmentationConfig::default(),
    };
    let batch_size = t.batch_size.unwrap_or(plan.batch_size).max(1);
    let settings = LoaderSettings {
        patch_kji: plan.patch_size_kji(),
        batch_size,
        foreground_fraction: t.foreground_oversampling,
        augmenter: Augmenter::new(aug_cfg)?,
        seed: t.seed,
        workers: t.threads.max(1),
    };
    let post =
        Postprocessor::new(&cfg.postprocess).map_err(|e| TrainError::Config(e.to_string()))?;
    let mut window: SlidingWindow = medseg_infer::window_for(&plan, &cfg.inference)?;
    let final_window = window.clone();
    window.tta = false; // periodic validation without mirroring: cheaper, same ranking
    let labels: Vec<u16> = {
        let mut l: Vec<u16> = plan.labels.values().copied().filter(|&l| l != 0).collect();
        l.sort_unstable();
        l
    };
    let names = label_names(&plan);
    let total_iters = t.epochs * t.iterations_per_epoch;
    let mut interrupted = false;
    let mut early_stopped = false;

    for epoch in (state.epochs_done + 1)..=t.epochs {
        let epoch_start = Instant::now();
        obs.epoch_start(epoch, t.epochs);
        let mut losses = Vec::with_capacity(t.iterations_per_epoch);
        let mut lr = learning_rate(
            t.schedule,
            t.learning_rate,
            state.iterations_done,
            total_iters,
            t.warmup_iterations,
        );
        let it0 = state.iterations_done;
        let interrupt = &opts.interrupt;
        let step_result = for_each_batch(
            &train_data,
            &settings,
            epoch,
            t.iterations_per_epoch,
            &mut |batch| {
                if interrupt.load(Ordering::Relaxed) {
                    return Err(TrainError::Config("interrupted".into()));
                }
                let it = it0 + batch.index;
                lr = learning_rate(
                    t.schedule,
                    t.learning_rate,
                    it,
                    total_iters,
                    t.warmup_iterations,
                );
                let x: Tensor<5> = array_into_tensor(batch.image.into_dyn(), &device)?;
                let y: Tensor<4, Int> = labels_to_tensor(&batch.label.into_dyn(), &device)?;
                let outputs = model.forward_train(x);
                let l = loss.forward(outputs, y)?;
                let value: f32 = l.clone().into_scalar::<f32>();
                if !value.is_finite() {
                    return Err(TrainError::NonFinite {
                        epoch,
                        iteration: batch.index + 1,
                        value,
                    });
                }
                let grads = GradientsParams::from_grads(l.backward(), &model);
                model = optim.step(lr, model.clone(), grads);
                losses.push(value as f64);
                obs.iteration(batch.index + 1, t.iterations_per_epoch, value as f64, lr);
                Ok(())
            },
        );
        match step_result {
            Ok(()) => {}
            Err(TrainError::Config(m)) if m == "interrupted" => {
                interrupted = true;
            }
            Err(e) => return Err(e),
        }
        if interrupted {
            // Save the weights as they are; the interrupted epoch restarts on --resume.
            state.iterations_done = it0;
            save_last(&model, &optim, &state, &run_dir)?;
            obs.message(&format!(
                "interrupted in epoch {epoch}: saved {} (resume with --resume)",
                WEIGHTS_LAST
            ));
            break;
        }
        state.iterations_done = it0 + t.iterations_per_epoch;
        state.epochs_done = epoch;
        let train_loss = losses.iter().sum::<f64>() / losses.len().max(1) as f64;

        // Validation.
        let due = !val_data.is_empty()
            && (epoch == t.epochs
                || (t.validation_interval > 0 && epoch % t.validation_interval == 0));
        let mut record = EpochRecord {
            epoch,
            train_loss,
            learning_rate: lr,
            seconds: 0.0,
            val_dice: None,
            val_dice_mean: None,
        };
        if due {
            let infer_model = model.valid();
            let v = validate(
                &infer_model,
                &base_device,
                &val_data,
                &window,
                &post,
                &labels,
                false,
                &mut |d, n| {
                    obs.progress("validate", d, n, "");
                },
            )?;
            record.val_dice = Some(v.dice.iter().map(|(l, d)| (l.to_string(), *d)).collect());
            record.val_dice_mean = Some(v.foreground_mean);
            if state.best_dice.is_none_or(|b| v.foreground_mean > b) {
                state.best_dice = Some(v.foreground_mean);
                state.best_epoch = Some(epoch);
                state.validations_since_best = 0;
                medseg_model::save(&model, &run_dir.join(WEIGHTS_BEST))?;
            } else {
                state.validations_since_best += 1;
            }
        }
        record.seconds = epoch_start.elapsed().as_secs_f64();
        obs.epoch_end(&record);
        state.log.push(record);
        write_csv(&run_dir.join("train_log.csv"), &state.log, &names)?;
        write_curves(&run_dir.join("curves.png"), &state.log, &names)?;
        let stop_early = t.early_stopping_patience > 0
            && state.validations_since_best >= t.early_stopping_patience;
        if stop_early || epoch == t.epochs || epoch % t.checkpoint_interval.max(1) == 0 {
            state.finished = stop_early || epoch == t.epochs;
            save_last(&model, &optim, &state, &run_dir)?;
        }
        if stop_early {
            early_stopped = true;
            obs.message(&format!(
                "early stopping: no improvement in {} validations (best {:.4} at epoch {})",
                state.validations_since_best,
                state.best_dice.unwrap_or(0.0),
                state.best_epoch.unwrap_or(0)
            ));
            break;
        }
    }

    // Without validation (fold "all"), the last weights are the final ones.
    let final_weights = if run_dir.join(WEIGHTS_BEST).is_file() {
        run_dir.join(WEIGHTS_BEST)
    } else {
        run_dir.join(WEIGHTS_LAST)
    };
    let mut final_validation = None;
    if !interrupted && final_weights.is_file() {
        let infer_model = medseg_model::load(&network, &final_weights, &base_device)?;
        medseg_model::save_safetensors(&infer_model, &run_dir.join("model.safetensors"))?;
        if !val_data.is_empty() {
            obs.message("final validation of the best weights (all metrics)");
            let v = validate(
                &infer_model,
                &base_device,
                &val_data,
                &final_window,
                &post,
                &labels,
                true,
                &mut |d, n| {
                    obs.progress("final validation", d, n, "");
                },
            )?;
            final_validation = Some(v);
        }
    }
    let summary = TrainSummary {
        run_dir: run_dir.clone(),
        epochs_done: state.epochs_done,
        interrupted,
        early_stopped,
        best_dice: state.best_dice,
        best_epoch: state.best_epoch,
        final_validation,
        seconds: started.elapsed().as_secs_f64(),
    };
    write_summary(&run_dir.join("summary.json"), &summary, &names)?;
    Ok(summary)
}

fn save_last(
    model: &UNet,
    optim: &ModuleOptimizer,
    state: &TrainState,
    run_dir: &Path,
) -> Result<(), TrainError> {
    medseg_model::save(model, &run_dir.join(WEIGHTS_LAST))?;
    let opt_path = run_dir.join(OPTIMIZER_LAST);
    let tmp = run_dir.join(format!(".{OPTIMIZER_LAST}.tmp-{}", std::process::id()));
    optim.save(&tmp).map_err(|e| TrainError::File {
        path: opt_path.clone(),
        reason: e.to_string(),
    })?;
    std::fs::rename(&tmp, &opt_path).map_err(|e| TrainError::io(&opt_path, e))?;
    state.save(&run_dir.join(STATE_JSON))
}

fn write_summary(path: &Path, s: &TrainSummary, names: &[(u16, String)]) -> Result<(), TrainError> {
    let validation = s.final_validation.as_ref().map(|v| {
        let per_class: serde_json::Map<String, serde_json::Value> = v
            .dice
            .iter()
            .map(|(l, d)| {
                let name = names
                    .iter()
                    .find(|(id, _)| id == l)
                    .map(|(_, n)| n.clone())
                    .unwrap_or_else(|| l.to_string());
                let hd95: Vec<f64> = v
                    .cases
                    .iter()
                    .filter_map(|c| c.labels.get(l).and_then(|m| m.hd95))
                    .collect();
                let mean_hd95 = if hd95.is_empty() {
                    None
                } else {
                    Some(hd95.iter().sum::<f64>() / hd95.len() as f64)
                };
                (
                    l.to_string(),
                    serde_json::json!({"name": name, "dice": d, "hd95": mean_hd95}),
                )
            })
            .collect();
        serde_json::json!({
            "foreground_mean_dice": v.foreground_mean,
            "per_class": per_class,
            "cases": v.cases.iter().map(|c| c.case.clone()).collect::<Vec<_>>(),
        })
    });
    let json = serde_json::json!({
        "run_dir": s.run_dir,
        "epochs_done": s.epochs_done,
        "interrupted": s.interrupted,
        "early_stopped": s.early_stopped,
        "best_validation_dice": s.best_dice,
        "best_epoch": s.best_epoch,
        "final_validation": validation,
        "seconds": s.seconds,
    });
    let text = serde_json::to_string_pretty(&json).unwrap_or_default();
    medseg_volume::write_atomically(path, |w| std::io::Write::write_all(w, text.as_bytes()))?;
    Ok(())
}
