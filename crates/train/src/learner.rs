//! The network being trained with its optimizer and loss: one optimizer step at a time
//! ([`Learner::train_step`]), and the checkpoints that let a run stop and resume
//! (`checkpoint_last/`, saved as one unit by [`crate::checkpoint`], and `checkpoint_best.bpk`).

use crate::checkpoint::{SaveHook, no_hook, save_checkpoint};
use crate::loader::Batch;
use crate::state::TrainState;
use crate::{TrainError, TrainObserver};
use burn::grad_clipping::GradientClippingConfig;
use burn::module::Module;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamWConfig, GradientsParams, ModuleOptimizer, SgdConfig};
use burn::tensor::{Device, Int, Tensor};
use medseg_config::{ExperimentConfig, OptimizerKind};
use medseg_infer::RunLayout;
use medseg_model::convert::{array_into_tensor, labels_to_tensor};
use medseg_model::{DeepSupervisionLoss, SegLoss, UNet, UNetConfig};

/// Model, optimizer and loss on the autodiff device.
pub struct Learner {
    model: UNet,
    optim: ModuleOptimizer,
    loss: DeepSupervisionLoss,
    device: Device,
}

impl Learner {
    /// A freshly initialized network on `base_device`'s autodiff form, seeded by
    /// `train.seed`.
    pub fn new(
        cfg: &ExperimentConfig,
        network: &UNetConfig,
        num_classes: usize,
        base_device: &Device,
    ) -> Result<Self, TrainError> {
        let device = base_device.clone().autodiff();
        device.seed(cfg.train.seed);
        let model: UNet = network.init(&device);
        let optim = build_optimizer(cfg);
        let loss = DeepSupervisionLoss::new(
            SegLoss::from_config(&cfg.loss, num_classes)?,
            network.num_outputs(),
        );
        Ok(Self {
            model,
            optim,
            loss,
            device,
        })
    }

    /// Replaces the weights and optimizer state with the run's last checkpoint and returns
    /// the saved training state.
    pub fn resume(
        &mut self,
        run: &RunLayout,
        network: &UNetConfig,
        obs: &mut dyn TrainObserver,
    ) -> Result<TrainState, TrainError> {
        let Some(checkpoint) = run.last_checkpoint() else {
            return Err(TrainError::File {
                path: run.root().to_path_buf(),
                reason: format!(
                    "has no checkpoint to resume from ({}/); start without --resume",
                    RunLayout::CHECKPOINT_LAST
                ),
            });
        };
        let state = TrainState::load(&checkpoint.state)?;
        self.model = medseg_model::load(network, &checkpoint.weights, &self.device)?;
        if let Some(opt_path) = &checkpoint.optimizer {
            self.optim = self
                .optim
                .clone()
                .load(opt_path)
                .map_err(|e| TrainError::File {
                    path: opt_path.clone(),
                    reason: e.to_string(),
                })?;
        }
        obs.message(&format!(
            "resume: continuing after epoch {} ({} iterations)",
            state.epochs_done, state.iterations_done
        ));
        Ok(state)
    }

    /// One optimizer step on `batch` at learning rate `lr`; returns the loss. A non-finite
    /// loss stops before the step, so the weights stay those of the last good step.
    pub fn train_step(&mut self, batch: Batch, lr: f64, epoch: usize) -> Result<f32, TrainError> {
        let x: Tensor<5> = array_into_tensor(batch.image.into_dyn(), &self.device)?;
        let y: Tensor<4, Int> = labels_to_tensor(&batch.label.into_dyn(), &self.device)?;
        let outputs = self.model.forward_train(x);
        let l = self.loss.forward(outputs, y)?;
        let value: f32 = l.clone().into_scalar::<f32>();
        if !value.is_finite() {
            return Err(TrainError::NonFiniteLoss {
                epoch,
                iteration: batch.index + 1,
                value,
            });
        }
        let grads = GradientsParams::from_grads(l.backward(), &self.model);
        self.model = self.optim.step(lr, self.model.clone(), grads);
        Ok(value)
    }

    /// The current weights without autodiff, for validation.
    pub fn inference_model(&self) -> UNet {
        self.model.valid()
    }

    /// Saves `checkpoint_last/` (weights, optimizer state and `state`) as one unit.
    pub fn save_last(&self, run: &RunLayout, state: &TrainState) -> Result<(), TrainError> {
        self.save_last_with_hook(run, state, &mut no_hook)
    }

    /// [`Self::save_last`] reporting each step to `hook` (tests stop it there, as a kill
    /// would).
    pub fn save_last_with_hook(
        &self,
        run: &RunLayout,
        state: &TrainState,
        hook: SaveHook,
    ) -> Result<(), TrainError> {
        let weights = |p: &std::path::Path| Ok(medseg_model::save(&self.model, p)?);
        let optimizer = |p: &std::path::Path| {
            self.optim.save(p).map_err(|e| TrainError::File {
                path: p.to_path_buf(),
                reason: e.to_string(),
            })
        };
        save_checkpoint(run, &weights, &optimizer, state, hook)
    }

    /// Saves `checkpoint_best.bpk`.
    pub fn save_best(&self, run: &RunLayout) -> Result<(), TrainError> {
        Ok(medseg_model::save(&self.model, &run.weights_best())?)
    }
}

fn build_optimizer(cfg: &ExperimentConfig) -> ModuleOptimizer {
    let t = &cfg.train;
    let clip = (t.grad_clip > 0.0).then_some(GradientClippingConfig::Norm(t.grad_clip as f32));
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
