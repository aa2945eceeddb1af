//! `medseg plan`: dataset integrity check, fingerprint and plan (`plan.json`).

use super::args::{ConfigArgs, ThreadArgs};
use anyhow::{Context, Result, bail};
use medseg_preprocess::{FingerprintOptions, Plan, PlanOptions, fingerprint_dataset};
use medseg_volume::dataset::Dataset;
use std::path::Path;

/// Check a dataset, compute its fingerprint and plan, write plan.json.
///
/// Checks the dataset named in the config, computes its fingerprint (shapes, spacings, nonzero
/// boxes, foreground intensity statistics, label volumes) and the plan (target spacing,
/// normalization per channel, patch and batch size, and the network: stages, kernel sizes,
/// strides and features per stage) by nnU-Net's rules, and writes it as `plan.json` into the
/// config's output folder (`[train] output`).
///
/// Every choice can be overridden in the config (`[preprocess] spacing`, `normalization`,
/// `[train] patch_size`, `batch_size`, ...) or with `--set`.
#[derive(clap::Args, Debug, Clone)]
pub struct PlanArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Largest accepted difference of spacing/origin (mm) and direction cosines between a
    /// case's channels and its label map.
    #[arg(long, default_value_t = 1e-3, value_name = "TOL")]
    pub geometry_tolerance: f64,
    /// Print one JSON object (the summary and the plan's path) instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub threads: ThreadArgs,
}

pub fn run(args: &PlanArgs) -> Result<()> {
    args.threads.apply()?;
    let cfg = args.config.load()?;
    let dir = cfg.dataset_dir();
    let dataset =
        Dataset::open(&dir).with_context(|| format!("opening the dataset {}", dir.display()))?;
    let n = dataset.cases.len() as u64;
    if n == 0 {
        bail!("dataset {} has no training cases", dir.display());
    }

    let bar = crate::progress::bar(n, "check");
    let problems = dataset.check(args.geometry_tolerance, &|name| {
        bar.inc(1);
        bar.set_message(name.to_string());
    });
    bar.finish_and_clear();
    if !problems.is_empty() {
        for p in &problems {
            eprintln!("  {p}");
        }
        bail!(
            "the integrity check found {} problem(s) in {}; fix them before planning",
            problems.len(),
            dir.display()
        );
    }
    if !crate::progress::interactive() && !args.json {
        eprintln!("checked {n} cases: no problems");
    }

    let opts = PlanOptions::from_config(&cfg)?;
    let fp_opts = FingerprintOptions {
        reorient: opts.reorient,
        crop: opts.crop,
        samples_per_case: cfg.preprocess.intensity_samples_per_case.unwrap_or(10_000),
        seed: cfg.train.seed,
    };
    let bar = crate::progress::bar(n, "fingerprint");
    let log = !crate::progress::interactive() && !args.json;
    let fp = fingerprint_dataset(&dataset, &fp_opts, &|name| {
        bar.inc(1);
        bar.set_message(name.to_string());
        if log {
            eprintln!("fingerprint: {name}");
        }
    })?;
    bar.finish_and_clear();
    for (c, case) in fp.cases.iter().zip(&dataset.cases) {
        if let Some(w) = medseg_preprocess::non_finite_warning(&c.name, &case.images, &c.non_finite)
        {
            eprintln!("{w}");
        }
    }
    let plan = Plan::create(&fp, &opts)?;

    let out_dir = cfg.output_dir();
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let path = out_dir.join("plan.json");
    plan.save(&path)?;

    if args.json {
        print_json(&plan, &path);
    } else {
        print_text(&plan, &path);
    }
    Ok(())
}

/// The plan's summary and path as one JSON object on stdout (`--json`).
fn print_json(plan: &Plan, path: &Path) {
    let summary = serde_json::json!({
        "plan": path,
        "dataset": plan.dataset,
        "cases": plan.num_cases,
        "dims": plan.dims,
        "median_shape": plan.median_shape,
        "median_spacing": plan.median_spacing,
        "target_spacing": plan.target_spacing,
        "median_resampled_shape": plan.median_resampled_shape,
        "normalization": plan.normalization,
        "patch_size": plan.patch_size,
        "batch_size": plan.batch_size,
        "num_stages": plan.num_stages,
        "network": plan.network,
        "overridden": plan.overridden,
    });
    println!("{summary}");
}

/// The plan's summary as aligned text on stdout.
fn print_text(plan: &Plan, path: &Path) {
    let norm: Vec<String> = plan
        .channel_names
        .iter()
        .zip(&plan.normalization)
        .map(|(c, n)| format!("{c}: {}", n.name()))
        .collect();
    let f3 = |v: [f64; 3], p: usize| format!("{:.p$} x {:.p$} x {:.p$}", v[0], v[1], v[2]);
    let u3 = |v: [usize; 3]| format!("{} x {} x {}", v[0], v[1], v[2]);
    println!(
        "dataset        {} ({} cases, {}D plan)",
        plan.dataset, plan.num_cases, plan.dims
    );
    println!(
        "median shape   {} voxels (after cropping)",
        f3(plan.median_shape, 0)
    );
    println!("median spacing {} mm", f3(plan.median_spacing, 3));
    println!("target spacing {} mm", f3(plan.target_spacing, 3));
    println!(
        "resampled      {} voxels (median)",
        f3(plan.median_resampled_shape, 0)
    );
    println!("normalization  {}", norm.join(", "));
    println!(
        "patch size     {} voxels, batch size {}, {} stages",
        u3(plan.patch_size),
        plan.batch_size,
        plan.num_stages
    );
    print_network(plan);
    if !plan.overridden.is_empty() {
        println!("from config    {}", plan.overridden.join(", "));
    }
    println!("wrote {}", path.display());
}

/// The planned network: features, kernel sizes and strides per stage.
fn print_network(plan: &Plan) {
    if let Some(net) = &plan.network {
        let [stages, kernels, strides] = net.describe(plan.dims == 2);
        println!("network        {stages}");
        let axes = if plan.dims == 2 {
            "(x, y)"
        } else {
            "(x, y, z)"
        };
        println!("               {kernels} {axes}");
        println!("               {strides}");
    }
}
