//! Argument groups shared by several commands (`#[command(flatten)]`), so that an option means
//! the same thing, with the same name and help, in every command that takes it.

use anyhow::{Context, Result};
use medseg_config::ExperimentConfig;
use std::path::PathBuf;

/// `--config CONFIG.toml` and its `--set` overrides. Flat (no nested group), so that a
/// command where the config is optional can flatten an `Option<ConfigArgs>`.
#[derive(clap::Args, Debug, Clone)]
pub struct ConfigArgs {
    /// Experiment config (TOML; every key and its default: configs/README.md).
    #[arg(long, value_name = "CONFIG.toml")]
    pub config: PathBuf,
    #[arg(long = "set", value_name = SET_VALUE_NAME, help = SET_HELP)]
    pub set: Vec<String>,
}

impl ConfigArgs {
    /// The config with the `--set` overrides applied. Errors name the file, or the `--set`
    /// at fault (no context naming the file on top: that would blame it for a bad `--set`).
    pub fn load(&self) -> Result<ExperimentConfig> {
        Ok(ExperimentConfig::load(&self.config, &self.set)?)
    }
}

/// The help of `--set`, also used by `demo`, which takes `--set` without `--config` (it then
/// overrides the built-in demo config).
pub const SET_HELP: &str = "Override a config key, e.g. --set train.epochs=50 (repeatable)";
/// The value name of `--set`.
pub const SET_VALUE_NAME: &str = "SECTION.KEY=VALUE";

/// `--device`: where the network runs.
#[derive(clap::Args, Debug, Clone)]
pub struct DeviceArgs {
    /// Compute device.
    #[arg(long, value_enum, default_value_t = Device::Flex, value_name = "DEVICE")]
    pub device: Device,
}

/// The compute devices medseg knows, by the names `medseg_model::select_device` and
/// `medseg_infer::select_device` take.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    /// CPU: burn's pure-Rust backend with medseg's kernels (threads: --threads).
    #[value(alias = "cpu")]
    Flex,
    /// GPU through Vulkan/Metal/WebGPU (needs a build with `--features wgpu`).
    #[value(alias = "gpu")]
    Wgpu,
    /// Not built into medseg; kept so that `--device tch` explains why instead of only
    /// listing the other values.
    #[value(hide = true, alias = "libtorch")]
    Tch,
}

impl Device {
    /// The name the library crates' `select_device` takes.
    pub fn name(self) -> &'static str {
        match self {
            Device::Flex => "flex",
            Device::Wgpu => "wgpu",
            Device::Tch => "tch",
        }
    }
}

/// `--threads N`: the size of the compute thread pool.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ThreadArgs {
    /// CPU threads for the computation (default: RAYON_NUM_THREADS, else one per core).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub threads: Option<u16>,
}

impl ThreadArgs {
    /// Sizes rayon's global pool (which burn's flex backend and every parallel loop of medseg
    /// use) when `--threads` is given; call before any parallel work.
    pub fn apply(&self) -> Result<()> {
        if let Some(n) = self.threads {
            rayon::ThreadPoolBuilder::new()
                .num_threads(usize::from(n))
                .build_global()
                .context("--threads: the thread pool was already started")?;
        }
        Ok(())
    }
}
