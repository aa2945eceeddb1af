//! medseg-model: the UNet family (2D and 3D, from one config) and the segmentation losses,
//! in burn 0.22.
//!
//! ```text
//! ModelConfig + patch --UNetConfig::from_model_config--> UNetConfig --init(&device)--> UNet
//! LossConfig --SegLoss::from_config--> SegLoss (--DeepSupervisionLoss::new--> wrapper)
//! ```
//! Tensors are `[B, C, D, H, W]` throughout (2D networks: D = 1, 2D modules inside).
//! Train on `Device::flex().autodiff()`, infer on `Device::flex()`. The layers call
//! [`medseg_kernels::ops`] (medseg's CPU kernels on flex, burn's ops elsewhere); this crate
//! holds no kernel and no `unsafe`.

#![forbid(unsafe_code)]

pub mod bench;
pub mod blocks;
mod config;
pub mod convert;
mod deep_supervision;
mod device;
mod error;
pub mod io;
pub mod layers;
mod loss;
mod report;
pub mod shapes;
mod unet;

pub use config::{Bottleneck, Downsample, UNetConfig};
pub use deep_supervision::{DeepSupervisionLoss, deep_supervision_weights, downsample_labels};
pub use device::{
    DEVICE_NAMES, NO_ADAPTER_FIX, WgpuAdapter, select_device, select_wgpu, wgpu_adapters,
};
pub use error::ModelError;
pub use io::{load, load_safetensors, save, save_safetensors};
pub use layers::max_pool;
pub use loss::{FocalMode, SegLoss};
pub use report::{NetworkReport, StageReport};
pub use unet::UNet;

/// Re-exported so downstream crates name burn types through one path.
pub use burn;
