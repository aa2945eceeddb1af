//! medseg: medical image segmentation from NIfTI to NIfTI.
//!
//! This binary is thin: it parses arguments (clap), calls the library crates and maps errors to
//! exit codes (0 success, 1 failure, 2 usage error).

// deny, not forbid: ndarray's `s!` macro expands to an `#[allow(unsafe_code)]` block.
#![deny(unsafe_code)]

mod cmd;
mod progress;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Medical image segmentation: NIfTI volumes in, a UNet trained with burn, predictions out as
/// NIfTI with the exact input geometry, and metrics that agree with the reference libraries.
#[derive(Parser, Debug)]
#[command(
    name = "medseg",
    version,
    about,
    long_about,
    arg_required_else_help = true,
    after_help = GETTING_STARTED
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

const GETTING_STARTED: &str = "\
Getting started:
  medseg demo                                  synthetic data -> train -> predict -> evaluate
Step by step:
  medseg synth --output data/demo
  medseg plan --config configs/demo-3d.toml
  medseg train --config configs/demo-3d.toml
  medseg predict --model runs/demo-3d --input data/demo/imagesTs --output preds
  medseg evaluate --pred preds --gt data/demo/labelsTs --output report
An nnU-Net v2 model, natively:
  medseg predict --model RESULTS/DatasetX/nnUNetTrainer__nnUNetPlans__3d_fullres --input imagesTs -o preds
Every command takes --help. Every config key: configs/README.md";

/// The commands, in pipeline order. Each one's help (the one-line summary in `medseg --help`,
/// the rest in `medseg COMMAND --help`) is the doc comment of its `Args` struct in `cmd/`.
#[derive(Subcommand, Debug)]
enum Command {
    Synth(cmd::synth::SynthArgs),
    Inspect(cmd::inspect::InspectArgs),
    Plan(cmd::plan::PlanArgs),
    Train(cmd::train::TrainArgs),
    Predict(cmd::predict::PredictArgs),
    Evaluate(cmd::evaluate::EvaluateArgs),
    Demo(cmd::demo::DemoArgs),
    Bench(cmd::bench::BenchArgs),
    Devices(cmd::devices::DevicesArgs),
}

/// `MEDSEG_CONV=burn` runs burn's own ops instead of medseg's CPU kernels (for comparison and
/// as an escape hatch); unset, empty or `medseg` keeps medseg's kernels.
fn select_kernels_from_env() {
    if let Ok(value) = std::env::var("MEDSEG_CONV") {
        match medseg_kernels::ops::Kernels::parse(&value) {
            Some(choice) => medseg_kernels::ops::set_kernels(choice),
            None if value.trim().is_empty() => {}
            None => eprintln!(
                "warning: MEDSEG_CONV={value:?} is not `burn` or `medseg`; using medseg's kernels"
            ),
        }
    }
}

/// One line: the chain of causes joined, naming the file and the fix. A cause whose text the
/// line already holds is skipped: library errors print their source inline (`FILE: Is a
/// directory (os error 21)`), and the chain would repeat it.
fn error_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if text.is_empty() || line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    if line.is_empty() {
        line = "unknown error".into();
    }
    line
}

/// wgpu probes OpenGL (after Vulkan, on a machine whose only Vulkan adapter is a CPU one) and
/// that probe asks libwayland for a display; on a headless machine without `XDG_RUNTIME_DIR`
/// libwayland prints an "error: XDG_RUNTIME_DIR is invalid" line per probe. Without that
/// variable no Wayland display is reachable anyway, so an absolute display path that does not
/// exist makes the probe fail quietly instead; any setting the user made is left alone.
#[cfg(feature = "wgpu")]
#[allow(unsafe_code)]
fn quiet_headless_wayland_probe() {
    if std::env::var_os("XDG_RUNTIME_DIR").is_none()
        && std::env::var_os("WAYLAND_DISPLAY").is_none()
    {
        // SAFETY: called first thing in `main`, before any other thread exists.
        unsafe { std::env::set_var("WAYLAND_DISPLAY", "/nonexistent/medseg-headless") };
    }
}

fn main() -> ExitCode {
    // Process-wide settings belong here, before any thread starts.
    #[cfg(feature = "wgpu")]
    quiet_headless_wayland_probe();
    medseg_kernels::alloc::keep_freed_memory();
    select_kernels_from_env();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let result = match &cli.command {
        Command::Synth(a) => cmd::synth::run(a),
        Command::Inspect(a) => cmd::inspect::run(a),
        Command::Plan(a) => cmd::plan::run(a),
        Command::Train(a) => cmd::train::run(a),
        Command::Predict(a) => cmd::predict::run(a),
        Command::Evaluate(a) => cmd::evaluate::run(a),
        Command::Demo(a) => cmd::demo::run(a),
        Command::Bench(a) => cmd::bench::run_bench(a),
        Command::Devices(a) => cmd::devices::run(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", error_line(&e));
            ExitCode::from(1)
        }
    }
}
