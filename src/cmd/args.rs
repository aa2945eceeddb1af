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
    /// Compute device (`medseg devices` lists this machine's).
    #[arg(long, value_parser = DeviceParser, default_value = "flex", value_name = "DEVICE")]
    pub device: Device,
}

/// The compute devices medseg knows, by the names `medseg_model::select_device` and
/// `medseg_infer::select_device` take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    /// CPU: burn's pure-Rust backend with medseg's kernels.
    Flex,
    /// GPU through Vulkan/Metal/DX12 (a build with `--features wgpu`): the best adapter, or
    /// adapter N of `medseg devices`.
    Wgpu(Option<usize>),
    /// Not built into medseg; kept so that `--device tch` explains why.
    Tch,
}

impl Device {
    /// The name the library crates' `select_device` takes.
    pub fn name(self) -> String {
        match self {
            Device::Flex => "flex".into(),
            Device::Wgpu(None) => "wgpu".into(),
            Device::Wgpu(Some(n)) => format!("wgpu:{n}"),
            Device::Tch => "tch".into(),
        }
    }

    /// Says on stderr which adapter `wgpu` runs on (nothing for flex); an error naming the fix
    /// when there is none.
    pub fn announce(self) -> anyhow::Result<()> {
        if let Device::Wgpu(index) = self {
            eprintln!("device: {}", medseg_model::select_wgpu(index)?);
        }
        Ok(())
    }

    /// `flex`, `cpu`, `wgpu`, `gpu`, `wgpu:N`, `gpu:N`, `tch`, `libtorch` (any case).
    pub fn parse(text: &str) -> Option<Self> {
        let t = text.trim().to_ascii_lowercase();
        match t.as_str() {
            "flex" | "cpu" => Some(Device::Flex),
            "wgpu" | "gpu" => Some(Device::Wgpu(None)),
            "tch" | "libtorch" => Some(Device::Tch),
            _ => {
                let n = t.strip_prefix("wgpu:").or_else(|| t.strip_prefix("gpu:"))?;
                n.parse().ok().map(|n| Device::Wgpu(Some(n)))
            }
        }
    }
}

/// clap's parser for [`Device`]: lists the values in `--help` (as a `ValueEnum` would) and
/// accepts `wgpu:N`, which a `ValueEnum` cannot.
#[derive(Clone)]
struct DeviceParser;

impl clap::builder::TypedValueParser for DeviceParser {
    type Value = Device;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<Device, clap::Error> {
        let text = value.to_string_lossy();
        Device::parse(&text).ok_or_else(|| {
            let name = arg.map(|a| a.to_string()).unwrap_or_else(|| "--device".into());
            clap::Error::raw(
                clap::error::ErrorKind::InvalidValue,
                format!(
                    "invalid value '{text}' for '{name}': use flex, wgpu or wgpu:N (N from `medseg devices`)\n"
                ),
            )
            .with_cmd(cmd)
        })
    }

    fn possible_values(
        &self,
    ) -> Option<Box<dyn Iterator<Item = clap::builder::PossibleValue> + '_>> {
        use clap::builder::PossibleValue;
        Some(Box::new(
            [
                PossibleValue::new("flex")
                    .alias("cpu")
                    .help("CPU: burn's pure-Rust backend with medseg's kernels (threads: --threads)"),
                PossibleValue::new("wgpu").alias("gpu").help(
                    "GPU through Vulkan/Metal/DX12, the best adapter: discrete, else integrated, else a CPU adapter such as lavapipe (needs a build with `--features wgpu`)",
                ),
                PossibleValue::new("wgpu:N")
                    .help("wgpu adapter N of `medseg devices`"),
            ]
            .into_iter(),
        ))
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
