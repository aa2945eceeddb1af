//! Picking the compute device by name (`--device flex|wgpu`).

use crate::ModelError;
use burn::tensor::Device;

/// Names accepted by [`select_device`].
pub const DEVICE_NAMES: &str =
    "flex (CPU, default) or wgpu (GPU via Vulkan/Metal/WebGPU; needs the `wgpu` cargo feature)";

/// The device for `name`: `flex` (burn's pure-Rust CPU backend, threads from rayon:
/// `RAYON_NUM_THREADS`) or `wgpu` (the default GPU adapter). The LibTorch backend (`tch`) is
/// not compiled into medseg: burn 0.22's `tch` pulls a second ndarray version (see README).
pub fn select_device(name: &str) -> Result<Device, ModelError> {
    match name {
        "flex" | "cpu" => Ok(Device::flex()),
        "wgpu" | "gpu" => wgpu_device(),
        "tch" | "libtorch" => Err(ModelError::Device(
            "the LibTorch backend is not built into medseg (burn 0.22's tch backend needs a second ndarray version); use --device flex or wgpu".into(),
        )),
        other => Err(ModelError::Device(format!(
            "unknown device '{other}'; use {DEVICE_NAMES}"
        ))),
    }
}

#[cfg(feature = "wgpu")]
fn wgpu_device() -> Result<Device, ModelError> {
    Ok(Device::wgpu(burn::tensor::DeviceKind::DefaultDevice))
}

#[cfg(not(feature = "wgpu"))]
fn wgpu_device() -> Result<Device, ModelError> {
    Err(ModelError::Device(
        "this medseg was built without GPU support; rebuild with `cargo build --release --features wgpu`".into(),
    ))
}
