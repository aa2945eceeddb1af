//! Picking the compute device by name (`--device flex|wgpu|wgpu:N`) and listing the wgpu
//! adapters this machine has.
//!
//! `wgpu` takes the best adapter there is: a discrete GPU, else an integrated one, else a
//! virtual one, else a CPU adapter (a software rasterizer such as Mesa's lavapipe), which is
//! also the order [`wgpu_adapters`] lists them in; `wgpu:N` takes entry N of that list.

use crate::ModelError;
use burn::tensor::Device;

/// Names accepted by [`select_device`].
pub const DEVICE_NAMES: &str = "flex (CPU, default), wgpu (the best GPU adapter; needs the `wgpu` cargo feature) or wgpu:N (adapter N of `medseg devices`)";

/// What to do when there is no adapter at all.
pub const NO_ADAPTER_FIX: &str = "install a Vulkan driver for your GPU (on Linux without a GPU: `apt-get install mesa-vulkan-drivers` gives the lavapipe CPU adapter), or use --device flex";

/// The device for `name`: `flex` (burn's pure-Rust CPU backend with medseg's kernels, threads
/// from rayon: `RAYON_NUM_THREADS`), `wgpu` (the best adapter, see the module doc) or `wgpu:N`.
/// The LibTorch backend (`tch`) is not compiled into medseg: burn 0.22's `tch` pulls a second
/// ndarray version (see README).
pub fn select_device(name: &str) -> Result<Device, ModelError> {
    let name = name.trim().to_ascii_lowercase();
    match name.as_str() {
        "flex" | "cpu" => Ok(Device::flex()),
        "wgpu" | "gpu" => Ok(select_wgpu(None)?.device),
        "tch" | "libtorch" => Err(ModelError::Device(
            "the LibTorch backend is not built into medseg (burn 0.22's tch backend needs a second ndarray version); use --device flex or wgpu".into(),
        )),
        other => match other
            .strip_prefix("wgpu:")
            .or_else(|| other.strip_prefix("gpu:"))
        {
            Some(n) => {
                let index = n.parse::<usize>().map_err(|_| {
                    ModelError::Device(format!(
                        "'{other}': the adapter number must be a whole number such as wgpu:0 (see `medseg devices`)"
                    ))
                })?;
                Ok(select_wgpu(Some(index))?.device)
            }
            None => Err(ModelError::Device(format!(
                "unknown device '{other}'; use {DEVICE_NAMES}"
            ))),
        },
    }
}

/// One wgpu adapter: its place in [`wgpu_adapters`]'s list, what kind it is, what it calls
/// itself, and the burn device that runs on it.
#[derive(Debug, Clone)]
pub struct WgpuAdapter {
    /// `N` of `--device wgpu:N`.
    pub index: usize,
    /// "discrete GPU", "integrated GPU", "virtual GPU", "CPU adapter" or "other adapter".
    pub kind: &'static str,
    /// The adapter's name as the driver reports it (e.g. `llvmpipe (LLVM 15.0.6, 256 bits)`).
    pub name: String,
    /// The burn device on this adapter (without autodiff).
    pub device: Device,
}

impl std::fmt::Display for WgpuAdapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "wgpu:{} {} ({})", self.index, self.name, self.kind)
    }
}

/// The adapter `--device wgpu` (`index: None`) or `--device wgpu:N` runs on; an error naming
/// the fix when there is none, or when N is past the end of the list.
pub fn select_wgpu(index: Option<usize>) -> Result<WgpuAdapter, ModelError> {
    let adapters = wgpu_adapters()?;
    if adapters.is_empty() {
        return Err(ModelError::Device(format!(
            "no wgpu adapter found on this machine: {NO_ADAPTER_FIX}"
        )));
    }
    let n = adapters.len();
    let i = index.unwrap_or(0);
    adapters.into_iter().nth(i).ok_or_else(|| {
        ModelError::Device(format!(
            "there is no wgpu adapter {i}: this machine has {n} (wgpu:0 to wgpu:{}); `medseg devices` lists them",
            n - 1
        ))
    })
}

/// Every wgpu adapter of this machine on the graphics API burn settles on (Vulkan where it
/// exists), best first: discrete, integrated, virtual, CPU, other. Opens each to ask its name.
#[cfg(feature = "wgpu")]
pub fn wgpu_adapters() -> Result<Vec<WgpuAdapter>, ModelError> {
    use burn::backend::WgpuDeviceKind;
    let kinds = [
        ("discrete GPU", WgpuDeviceKind::DiscreteGpu(0)),
        ("integrated GPU", WgpuDeviceKind::IntegratedGpu(0)),
        ("virtual GPU", WgpuDeviceKind::VirtualGpu(0)),
        ("CPU adapter", WgpuDeviceKind::Cpu),
        ("other adapter", WgpuDeviceKind::Other(0)),
    ];
    let mut adapters = Vec::new();
    for (kind, seed) in kinds {
        for device in wgpu_devices_like(seed) {
            let name = device
                .identity()
                .map(|id| id.name)
                .unwrap_or_else(|| "unnamed adapter".into());
            adapters.push(WgpuAdapter {
                index: adapters.len(),
                kind,
                name,
                device,
            });
        }
    }
    Ok(adapters)
}

/// The devices of `kind`'s kind (every index of it) that this machine has.
#[cfg(feature = "wgpu")]
fn wgpu_devices_like(kind: burn::backend::WgpuDeviceKind) -> Vec<Device> {
    use burn::backend::{CubeDevice, WgpuDevice};
    let seed = CubeDevice::Wgpu(WgpuDevice::new(kind));
    CubeDevice::enumerate(seed.to_id())
        .into_iter()
        .map(|id| Device::from(CubeDevice::from_id(id)))
        .collect()
}

#[cfg(not(feature = "wgpu"))]
pub fn wgpu_adapters() -> Result<Vec<WgpuAdapter>, ModelError> {
    Err(ModelError::Device(
        "this medseg was built without GPU support; rebuild with `cargo build --release --features wgpu`".into(),
    ))
}
