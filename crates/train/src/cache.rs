//! Every case preprocessed once (the plan's reorientation, crop, normalization, resampling)
//! into `RUN/cache/`, reused while the plan and the source files are unchanged.
//!
//! `cache/CASE_img.nii` holds the network input (float32, `[c, k, j, i]` as a 4D NIfTI),
//! `cache/CASE_seg.nii` the label map on the same grid, and `cache/manifest.json` the plan's
//! hash, each case's source files (size and modification time) and its
//! [`CaseProperties`] (how to map predictions back onto the file's grid).

use crate::TrainError;
use crate::error::write_json;
use medseg_preprocess::ClassLocations;
use medseg_preprocess::pipeline::{CaseProperties, preprocess_case};
use medseg_preprocess::plan::Plan;
use medseg_volume::dataset::Case;
use medseg_volume::{
    Geometry, MultiChannel, Volume, WriteOptions, read_channels, read_labels, write_channels,
    write_volume,
};
use ndarray::{Array3, Array4};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A preprocessed training or validation case in memory.
pub struct CachedCase {
    pub name: String,
    /// `[c, k, j, i]` at the target spacing, normalized.
    pub image: Array4<f32>,
    /// `[k, j, i]` on the same grid.
    pub label: Array3<u16>,
    /// Sampled voxel positions of each foreground class (for oversampling).
    pub locations: ClassLocations,
    pub props: CaseProperties,
    /// Non-finite voxels per channel of the source images, replaced in preprocessing.
    pub non_finite: Vec<usize>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct SourceStamp {
    path: PathBuf,
    len: u64,
    modified: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct CacheEntry {
    sources: Vec<SourceStamp>,
    props: CaseProperties,
    /// Kept so that a cache hit warns as the first build did.
    #[serde(default)]
    non_finite: Vec<usize>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
struct Manifest {
    plan_hash: String,
    cases: BTreeMap<String, CacheEntry>,
}

/// FNV-1a, 64 bit: a stable fingerprint of the plan text (not for security).
pub fn fnv64(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

fn stamp(p: &Path) -> Result<SourceStamp, TrainError> {
    let m = std::fs::metadata(p).map_err(|e| TrainError::io(p, e))?;
    let modified = m
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs())
        .unwrap_or(0);
    Ok(SourceStamp {
        path: p.to_path_buf(),
        len: m.len(),
        modified,
    })
}

fn sources(case: &Case) -> Result<Vec<SourceStamp>, TrainError> {
    let mut v: Vec<SourceStamp> = case
        .images
        .iter()
        .map(|p| stamp(p))
        .collect::<Result<_, _>>()?;
    if let Some(l) = &case.label {
        v.push(stamp(l)?);
    }
    Ok(v)
}

/// Reads and preprocesses one case and writes it to the cache files.
fn build_case(
    case: &Case,
    plan: &Plan,
    img_path: &Path,
    seg_path: &Path,
) -> Result<Built, TrainError> {
    let images = read_channels(&case.images)?;
    let label_path = case.label.as_ref().ok_or_else(|| TrainError::Case {
        case: case.name.clone(),
        reason: "has no label file".into(),
    })?;
    let label = read_labels(label_path)?;
    let pre = preprocess_case(&images, Some(&label), plan)?;
    let seg = pre.label.ok_or_else(|| TrainError::Case {
        case: case.name.clone(),
        reason: "label lost in preprocessing".into(),
    })?;
    write_cached(img_path, seg_path, &pre.image, &seg)?;
    Ok((pre.image, seg, pre.props, pre.non_finite))
}

/// A preprocessed case: image, label, properties, non-finite voxels per channel.
type Built = (Array4<f32>, Array3<u16>, CaseProperties, Vec<usize>);

/// Loads (or computes and stores) the preprocessed form of `cases`. `on_case(name, cached)`
/// reports progress. Cases are processed one at a time, so memory holds the finished cases
/// plus a few copies of the current one.
pub fn load_or_build(
    cache_dir: &Path,
    plan: &Plan,
    cases: &[Case],
    seed: u64,
    on_case: &mut dyn FnMut(&str, bool),
) -> Result<Vec<CachedCase>, TrainError> {
    std::fs::create_dir_all(cache_dir).map_err(|e| TrainError::io(cache_dir, e))?;
    let manifest_path = cache_dir.join("manifest.json");
    let plan_text =
        serde_json::to_string(&plan.preprocessing_view()).map_err(|source| TrainError::Json {
            path: manifest_path.clone(),
            source,
        })?;
    let plan_hash = fnv64(plan_text.as_bytes());
    let mut manifest: Manifest = std::fs::read_to_string(&manifest_path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .filter(|m: &Manifest| m.plan_hash == plan_hash)
        .unwrap_or_else(|| Manifest {
            plan_hash: plan_hash.clone(),
            cases: BTreeMap::new(),
        });
    let mut out = Vec::with_capacity(cases.len());
    for (idx, case) in cases.iter().enumerate() {
        let wrap = |e: TrainError| match e {
            TrainError::Case { .. } => e,
            e => TrainError::Case {
                case: case.name.clone(),
                reason: e.to_string(),
            },
        };
        let src = sources(case).map_err(wrap)?;
        let img_path = cache_dir.join(format!("{}_img.nii", case.name));
        let seg_path = cache_dir.join(format!("{}_seg.nii", case.name));
        let cached = manifest
            .cases
            .get(&case.name)
            .filter(|e| e.sources == src && img_path.is_file() && seg_path.is_file())
            .cloned();
        let (image, label, props, non_finite, hit) = match cached.and_then(|e| {
            read_cached(&img_path, &seg_path)
                .ok()
                .map(|(i, l)| (i, l, e.props, e.non_finite))
        }) {
            Some((image, label, props, non_finite)) => (image, label, props, non_finite, true),
            None => {
                let (image, label, props, non_finite) =
                    build_case(case, plan, &img_path, &seg_path).map_err(wrap)?;
                manifest.cases.insert(
                    case.name.clone(),
                    CacheEntry {
                        sources: src,
                        props: props.clone(),
                        non_finite: non_finite.clone(),
                    },
                );
                write_json(&manifest_path, &manifest)?;
                (image, label, props, non_finite, false)
            }
        };
        let locations = ClassLocations::from_label(label.view(), 10_000, seed ^ idx as u64);
        on_case(&case.name, hit);
        out.push(CachedCase {
            name: case.name.clone(),
            image,
            label,
            locations,
            props,
            non_finite,
        });
    }
    Ok(out)
}

fn write_cached(
    img: &Path,
    seg: &Path,
    image: &Array4<f32>,
    label: &Array3<u16>,
) -> Result<(), TrainError> {
    let g = Geometry::default();
    write_channels(
        img,
        &MultiChannel {
            data: image.clone(),
            geometry: g,
        },
        &WriteOptions::default(),
    )?;
    write_volume(
        seg,
        &Volume::new(label.clone(), g),
        &WriteOptions::default(),
    )?;
    Ok(())
}

fn read_cached(img: &Path, seg: &Path) -> Result<(Array4<f32>, Array3<u16>), TrainError> {
    let mc = read_channels(&[img.to_path_buf()])?;
    let lab = read_labels(seg)?;
    let mut image = mc.data;
    if image.shape()[1..] != *lab.data.shape() {
        return Err(TrainError::File {
            path: img.to_path_buf(),
            reason: "cached image and label disagree".into(),
        });
    }
    // A cache written before non-finite voxels were replaced is rebuilt, not trained on.
    if image.iter().any(|x| !x.is_finite()) {
        return Err(TrainError::File {
            path: img.to_path_buf(),
            reason: "cached image holds non-finite values".into(),
        });
    }
    image = image.as_standard_layout().into_owned();
    Ok((image, lab.data))
}
