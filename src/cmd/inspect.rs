//! `medseg inspect`: a NIfTI file's header, geometry and intensity statistics
//! (`inspect FILE`), or the network an experiment config describes (`inspect --config`).

use super::args::ConfigArgs;
use anyhow::Result;
use medseg_volume::{Header, read_nifti_f64};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Show a NIfTI file's header, geometry and statistics, or (with --config) the network a
/// config describes.
///
/// For a config: per-stage feature-map shapes for the configured patch size, parameter count,
/// receptive field and an estimate of training memory per batch. medseg reads `[model]`, `[train] patch_size` and `batch_size`, and the
/// dataset's channel and class counts when `[model]` does not set them.
#[derive(clap::Args, Debug, Clone)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["file", "config"])))]
pub struct InspectArgs {
    /// A NIfTI file (.nii, .nii.gz, .hdr).
    #[arg(value_name = "FILE")]
    pub file: Option<PathBuf>,
    #[command(flatten)]
    pub config: Option<ConfigArgs>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Runs `medseg inspect`.
pub fn run(args: &InspectArgs) -> Result<()> {
    match (&args.file, &args.config) {
        (Some(file), _) => run_file(file, args.json),
        (None, Some(config)) => super::inspect_network::run_config(config, args.json),
        (None, None) => anyhow::bail!("inspect needs a FILE or --config CONFIG.toml"),
    }
}

/// Header, geometry and statistics of one NIfTI file as a JSON value (the `--json` output).
fn describe(path: &Path) -> Result<serde_json::Value> {
    // The error already names the file.
    let (h, data) = read_nifti_f64(path)?;
    let (mut min, mut max, mut sum, mut n, mut nan) =
        (f64::INFINITY, f64::NEG_INFINITY, 0.0f64, 0u64, 0u64);
    for &v in data.iter() {
        if v.is_finite() {
            min = min.min(v);
            max = max.max(v);
            sum += v;
            n += 1;
        } else if v.is_nan() {
            nan += 1;
        }
    }
    let mean = if n > 0 { sum / n as f64 } else { f64::NAN };
    let mut var = 0.0;
    for &v in data.iter() {
        if v.is_finite() {
            var += (v - mean) * (v - mean);
        }
    }
    let std = if n > 0 {
        (var / n as f64).sqrt()
    } else {
        f64::NAN
    };
    let finite_or_null = |v: f64| if v.is_finite() { json!(v) } else { json!(null) };
    let integer_valued = n > 0 && data.iter().all(|v| !v.is_finite() || v.fract() == 0.0);
    let labels = if integer_valued && (max - min) <= 65535.0 {
        let mut counts: BTreeMap<i64, u64> = BTreeMap::new();
        for &v in data.iter() {
            if v.is_finite() {
                *counts.entry(v as i64).or_default() += 1;
            }
        }
        if counts.len() <= 256 {
            Some(counts)
        } else {
            None
        }
    } else {
        None
    };
    let g = h.geometry();
    let spatial = h.shape().len().min(3);
    Ok(json!({
        "file": path.display().to_string(),
        "format": match h.format { medseg_volume::NiftiFormat::Nifti1 => "nifti1", medseg_volume::NiftiFormat::Nifti2 => "nifti2" },
        "byte_order": if h.big_endian { "big" } else { "little" },
        "shape": h.shape(),
        "datatype": h.datatype.name(),
        "spacing": h.pixdim[1..=spatial].to_vec(),
        "units": h.spatial_unit(),
        "affine": h.affine(),
        "qform_code": h.qform_code,
        "sform_code": h.sform_code,
        "orientation": g.orientation_code(),
        "origin": g.origin,
        "scl_slope": h.scl_slope,
        "scl_inter": h.scl_inter,
        "min": finite_or_null(min),
        "max": finite_or_null(max),
        "mean": finite_or_null(mean),
        "std": finite_or_null(std),
        "finite_count": n,
        "nan_count": nan,
        "labels": labels.map(|c| c.into_iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>()),
        "description": h.description(),
    }))
}

fn run_file(path: &Path, as_json: bool) -> Result<()> {
    let d = describe(path)?;
    if as_json {
        println!("{}", serde_json::to_string(&d)?);
        return Ok(());
    }
    print_table(&d, path);
    Ok(())
}

fn print_table(d: &serde_json::Value, path: &Path) {
    let h: Option<Header> = medseg_volume::read_header(path).ok();
    println!("file         {}", path.display());
    println!(
        "format       {} ({}-endian)",
        d["format"].as_str().unwrap_or(""),
        d["byte_order"].as_str().unwrap_or("")
    );
    println!("shape        {}", d["shape"]);
    println!("datatype     {}", d["datatype"].as_str().unwrap_or(""));
    println!(
        "spacing      {} {}",
        d["spacing"],
        d["units"].as_str().unwrap_or("")
    );
    println!("orientation  {}", d["orientation"].as_str().unwrap_or(""));
    println!(
        "codes        qform {} sform {}",
        d["qform_code"], d["sform_code"]
    );
    if let Some(h) = h {
        println!("affine");
        for row in h.affine() {
            println!(
                "  [{:>11.5} {:>11.5} {:>11.5} {:>11.5}]",
                row[0], row[1], row[2], row[3]
            );
        }
    }
    println!(
        "intensity    min {}  max {}  mean {}  std {}  (finite {}, NaN {})",
        d["min"], d["max"], d["mean"], d["std"], d["finite_count"], d["nan_count"]
    );
    if let Some(labels) = d["labels"].as_object() {
        let list: Vec<String> = labels.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        println!("values       {}", list.join(", "));
    }
}
