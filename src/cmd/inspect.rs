//! `medseg inspect`: an image's header, geometry and intensity statistics (`inspect FILE`,
//! `inspect DICOM_DIR`), or the network an experiment config describes (`inspect --config`).

use super::args::ConfigArgs;
use anyhow::Result;
use medseg_volume::{DicomOptions, Header, ImageFormat, read_channels, read_dicom, read_nifti_f64};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Show an image's header, geometry and statistics (NIfTI, MetaImage, NRRD, PNG/TIFF, a
/// DICOM series folder or file), or (with --config) the network a config describes.
///
/// A DICOM folder is read as `medseg predict` reads it: one series (sub-folders included),
/// slices sorted along the slice normal, geometry in RAS; a folder with several series lists
/// them and asks for --series UID.
///
/// For a config: per-stage feature-map shapes for the configured patch size, parameter count,
/// receptive field and an estimate of training memory per batch. medseg reads `[model]`, `[train] patch_size` and `batch_size`, and the
/// dataset's channel and class counts when `[model]` does not set them.
#[derive(clap::Args, Debug, Clone)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["file", "config"])))]
pub struct InspectArgs {
    /// An image file: NIfTI (.nii, .nii.gz, .hdr), MetaImage (.mha, .mhd), NRRD (.nrrd,
    /// .nhdr), PNG/TIFF/BMP, or DICOM (a series folder, or one file).
    #[arg(value_name = "FILE|DIR")]
    pub file: Option<PathBuf>,
    /// DICOM folders holding several series: the SeriesInstanceUID to show.
    #[arg(long, value_name = "UID")]
    pub series: Option<String>,
    #[command(flatten)]
    pub config: Option<ConfigArgs>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Runs `medseg inspect`.
pub fn run(args: &InspectArgs) -> Result<()> {
    match (&args.file, &args.config) {
        (Some(file), _) => run_file(file, args.series.as_deref(), args.json),
        (None, Some(config)) => super::inspect_network::run_config(config, args.json),
        (None, None) => anyhow::bail!("inspect needs a FILE or --config CONFIG.toml"),
    }
}

/// Intensity statistics of finite values (min, max, mean, std, counts) and, for integer
/// images with at most 256 distinct values, the count of each value.
fn intensity_stats(data: &[f64]) -> serde_json::Map<String, serde_json::Value> {
    let (mut min, mut max, mut sum, mut n, mut nan) =
        (f64::INFINITY, f64::NEG_INFINITY, 0.0f64, 0u64, 0u64);
    for &v in data {
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
    let var: f64 = data
        .iter()
        .filter(|v| v.is_finite())
        .map(|&v| (v - mean) * (v - mean))
        .sum();
    let std = if n > 0 {
        (var / n as f64).sqrt()
    } else {
        f64::NAN
    };
    let finite_or_null = |v: f64| if v.is_finite() { json!(v) } else { json!(null) };
    let integer_valued = n > 0 && data.iter().all(|v| !v.is_finite() || v.fract() == 0.0);
    let labels = if integer_valued && (max - min) <= 65535.0 {
        let mut counts: BTreeMap<i64, u64> = BTreeMap::new();
        for &v in data {
            if v.is_finite() {
                *counts.entry(v as i64).or_default() += 1;
            }
        }
        (counts.len() <= 256).then_some(counts)
    } else {
        None
    };
    let mut m = serde_json::Map::new();
    m.insert("min".into(), finite_or_null(min));
    m.insert("max".into(), finite_or_null(max));
    m.insert("mean".into(), finite_or_null(mean));
    m.insert("std".into(), finite_or_null(std));
    m.insert("finite_count".into(), json!(n));
    m.insert("nan_count".into(), json!(nan));
    m.insert(
        "labels".into(),
        json!(labels.map(|c| {
            c.into_iter()
                .map(|(k, v)| (k.to_string(), json!(v)))
                .collect::<serde_json::Map<_, _>>()
        })),
    );
    m
}

/// Geometry and statistics of a MetaImage, NRRD or natural (PNG/TIFF/BMP) image (the
/// `--json` output).
fn describe_other(path: &Path, format: ImageFormat) -> Result<serde_json::Value> {
    let v = read_channels(&[path.to_path_buf()])?;
    let values: Vec<f64> = v.data.iter().map(|&x| f64::from(x)).collect();
    let g = v.geometry;
    let name = format.name();
    let mut d = json!({
        "file": path.display().to_string(),
        "format": name,
        "channels": v.num_channels(),
    });
    add_geometry_and_stats(&mut d, json!(v.shape_ijk()), &g, &values);
    Ok(d)
}

/// Adds what every format reports: the shape, the geometry and the intensity statistics.
fn add_geometry_and_stats(
    d: &mut serde_json::Value,
    shape: serde_json::Value,
    g: &medseg_volume::Geometry,
    values: &[f64],
) {
    if let Some(obj) = d.as_object_mut() {
        obj.extend([
            ("shape".to_string(), shape),
            ("spacing".to_string(), json!(g.spacing)),
            ("units".to_string(), json!("mm")),
            ("orientation".to_string(), json!(g.orientation_code())),
            ("origin".to_string(), json!(g.origin)),
            ("direction".to_string(), json!(g.direction)),
            ("affine".to_string(), json!(g.affine())),
        ]);
        obj.extend(intensity_stats(values));
    }
}

/// Series, geometry and statistics of a DICOM series (the `--json` output).
fn describe_dicom(path: &Path, series: Option<&str>) -> Result<serde_json::Value> {
    let options = DicomOptions {
        series: series.map(str::to_string),
    };
    let s = read_dicom(path, &options)?;
    let v = &s.volume;
    let values: Vec<f64> = v.data.iter().map(|&x| f64::from(x)).collect();
    let g = v.geometry;
    let mut d = json!({
        "file": path.display().to_string(),
        "format": "dicom",
        "series_uid": s.series.uid,
        "series_description": s.series.description,
        "modality": s.series.modality,
        "patient_id": s.patient_id,
        "slices": s.series.slices,
        "files": s.series.files,
        "skipped_files": s.skipped_files,
        "other_series": s.other_series,
        "transfer_syntaxes": s.transfer_syntaxes,
        "datatype": s.stored_type,
        "rescale_slope": s.rescale.map(|r| r.0),
        "rescale_intercept": s.rescale.map(|r| r.1),
    });
    add_geometry_and_stats(&mut d, json!(v.shape_ijk()), &g, &values);
    Ok(d)
}

/// Header, geometry and statistics of one image file as a JSON value (the `--json` output).
fn describe(path: &Path, series: Option<&str>) -> Result<serde_json::Value> {
    if ImageFormat::detect(path) == Some(ImageFormat::Dicom) {
        return describe_dicom(path, series);
    }
    if series.is_some() {
        anyhow::bail!("{}: --series applies to DICOM folders", path.display());
    }
    if let Some(f @ (ImageFormat::MetaImage | ImageFormat::Nrrd | ImageFormat::Natural)) =
        ImageFormat::of(path)
    {
        return describe_other(path, f);
    }
    // The error already names the file.
    let (h, data) = read_nifti_f64(path)?;
    let values: Vec<f64> = data.iter().copied().collect();
    let stats = intensity_stats(&values);
    let g = h.geometry();
    let spatial = h.shape().len().min(3);
    let mut d = json!({
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
        "description": h.description(),
    });
    if let Some(obj) = d.as_object_mut() {
        obj.extend(stats);
    }
    Ok(d)
}

fn run_file(path: &Path, series: Option<&str>, as_json: bool) -> Result<()> {
    let d = describe(path, series)?;
    if as_json {
        println!("{}", serde_json::to_string(&d)?);
        return Ok(());
    }
    print_table(&d, path);
    Ok(())
}

fn print_table(d: &serde_json::Value, path: &Path) {
    let nifti = !matches!(
        ImageFormat::detect(path),
        Some(
            ImageFormat::MetaImage | ImageFormat::Nrrd | ImageFormat::Natural | ImageFormat::Dicom
        )
    );
    let h: Option<Header> = nifti
        .then(|| medseg_volume::read_header(path).ok())
        .flatten();
    println!("file         {}", path.display());
    match d["byte_order"].as_str() {
        Some(order) => println!(
            "format       {} ({order}-endian)",
            d["format"].as_str().unwrap_or("")
        ),
        None => println!("format       {}", d["format"].as_str().unwrap_or("")),
    }
    if let Some(uid) = d["series_uid"].as_str() {
        println!(
            "series       {uid} {:?} ({}, {} slices in {} files; {} other files skipped)",
            d["series_description"].as_str().unwrap_or(""),
            d["modality"].as_str().unwrap_or(""),
            d["slices"],
            d["files"],
            d["skipped_files"]
        );
        if let Some(others) = d["other_series"].as_array().filter(|o| !o.is_empty()) {
            let uids: Vec<&str> = others.iter().filter_map(|o| o["uid"].as_str()).collect();
            println!("other series {} (choose with --series)", uids.join(", "));
        }
        if let Some(ts) = d["transfer_syntaxes"].as_array() {
            let names: Vec<&str> = ts.iter().filter_map(|t| t.as_str()).collect();
            println!("transfer     {}", names.join(", "));
        }
        if !d["rescale_slope"].is_null() {
            println!(
                "rescale      slope {}  intercept {}",
                d["rescale_slope"], d["rescale_intercept"]
            );
        }
    }
    println!("shape        {}", d["shape"]);
    if let Some(t) = d["datatype"].as_str() {
        println!("datatype     {t}");
    }
    println!(
        "spacing      {} {}",
        d["spacing"],
        d["units"].as_str().unwrap_or("")
    );
    println!("orientation  {}", d["orientation"].as_str().unwrap_or(""));
    println!("origin       {}", d["origin"]);
    if h.is_some() {
        println!(
            "codes        qform {} sform {}",
            d["qform_code"], d["sform_code"]
        );
    }
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
