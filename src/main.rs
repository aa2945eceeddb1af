//! medseg: medical image segmentation from NIfTI to NIfTI.
//!
//! This binary is thin: it parses arguments (clap), calls the library crates and maps errors to
//! exit codes (0 success, 1 failure, 2 usage error).

mod cmd;
mod progress;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
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
  medseg synth --out data/demo
  medseg plan --config configs/demo-3d.toml
  medseg train --config configs/demo-3d.toml
  medseg predict --model runs/demo-3d --input data/demo/imagesTs --output preds
  medseg evaluate --pred preds --gt data/demo/labelsTs --out report
Every config key: configs/README.md";

#[derive(Subcommand, Debug)]
enum Command {
    /// Write a synthetic dataset (MSD / nnU-Net v2 layout) to train and test on.
    Synth(cmd::synth::SynthArgs),
    /// Show a NIfTI file's header, geometry and statistics, or (with --config) the network a
    /// config describes.
    Inspect(InspectArgs),
    /// Check a dataset, compute its fingerprint and plan, write plan.json.
    Plan(cmd::plan::PlanArgs),
    /// Train a UNet from an experiment config into a run directory.
    Train(cmd::train::TrainArgs),
    /// Segment NIfTI volumes with trained run directories.
    Predict(cmd::predict::PredictArgs),
    /// Evaluate predicted label maps against ground truth (Dice, HD95, NSD, AUC, ...).
    Evaluate(cmd::evaluate::EvaluateArgs),
    /// The whole pipeline on synthetic data: synth -> train -> predict -> evaluate.
    Demo(cmd::demo::DemoArgs),
    /// Measure speed (e.g. `medseg bench train-step`).
    Bench(cmd::model::BenchArgs),
}

#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["file", "config"])))]
struct InspectArgs {
    /// A NIfTI file (.nii, .nii.gz, .hdr).
    file: Option<PathBuf>,
    /// An experiment config: show the network's layer shapes, parameters and memory.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Override a config key (with --config), e.g. --set train.patch_size=[96,96,96].
    #[arg(long = "set", value_name = "SECTION.KEY=VALUE", requires = "config")]
    set: Vec<String>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
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

fn main() -> ExitCode {
    // Process-wide settings belong here, before any thread starts.
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
        Command::Inspect(a) => match (&a.file, &a.config) {
            (Some(f), _) => cmd::inspect::run_file(f, a.json),
            (None, Some(c)) => cmd::model::run_inspect_config(&cmd::model::InspectConfigArgs {
                config: c.clone(),
                set: a.set.clone(),
                json: a.json,
            }),
            (None, None) => unreachable!("clap requires FILE or --config"),
        },
        Command::Plan(a) => cmd::plan::run(a),
        Command::Train(a) => cmd::train::run(a),
        Command::Predict(a) => cmd::predict::run(a),
        Command::Evaluate(a) => cmd::evaluate::run(a),
        Command::Demo(a) => cmd::demo::run(a),
        Command::Bench(a) => cmd::model::run_bench(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the chain of causes joined, naming the file and the fix.
            let msg: Vec<String> = e.chain().map(|c| c.to_string()).collect();
            let mut line = msg.join(": ");
            if line.is_empty() {
                line = "unknown error".into();
            }
            eprintln!("error: {line}");
            ExitCode::from(1)
        }
    }
}
