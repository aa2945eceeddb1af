//! medseg-model: the UNet family (2D and 3D, from one config) and the segmentation losses,
//! in burn 0.22.
//!
//! ```text
//! ModelConfig + patch --UNetConfig::from_model_config--> UNetConfig --init(&device)--> UNet
//! LossConfig --SegLoss::from_config--> SegLoss (--DeepSupervisionLoss::new--> wrapper)
//! ```
//! Tensors are `[B, C, D, H, W]` throughout (2D networks: D = 1, 2D modules inside).
//! Train on `Device::flex().autodiff()`, infer on `Device::flex()`.

pub mod alloc;
pub mod bench;
pub mod blocks;
mod config;
/// Raw-slice conv kernels; public for `examples/bench_conv_kernel.rs`, not a stable API.
#[doc(hidden)]
pub mod conv3d_kernel;
pub mod convert;
mod deep_supervision;
pub mod depth_to_space;
mod device;
mod direct_conv;
mod error;
pub mod fast_act;
pub mod fast_conv;
pub mod fast_norm;
pub mod io;
pub mod layers;
mod loss;
mod report;
pub mod shapes;
mod unet;

pub use config::{Bottleneck, Downsample, UNetConfig};
pub use deep_supervision::{DeepSupervisionLoss, deep_supervision_weights, downsample_labels};
pub use device::{DEVICE_NAMES, select_device};
pub use error::ModelError;
pub use io::{load, load_safetensors, save, save_safetensors};
pub use layers::max_pool;
pub use loss::{FocalMode, SegLoss};
pub use report::{NetworkReport, StageReport};
pub use unet::UNet;

/// Re-exported so downstream crates name burn types through one path.
pub use burn;
