//! The Medical Segmentation Decathlon / nnU-Net v2 dataset folder.
//!
//! ```text
//! DATASET/dataset.json         channel_names (v2) or modality (MSD v1), labels, numTraining, file_ending
//! DATASET/imagesTr/CASE_0000.nii.gz, CASE_0001.nii.gz, ...   one file per channel (nnU-Net v2)
//! DATASET/labelsTr/CASE.nii.gz
//! DATASET/imagesTs/, labelsTs/ (optional held-out cases)
//! ```
//! MSD v1 (`training: [{"image": "./imagesTr/x.nii.gz", "label": "./labelsTr/x.nii.gz"}]`, one
//! 4D image per case) is read too. [`Dataset::check`] is the integrity check: it names the case
//! and the problem for every missing file, grid mismatch and undeclared label value.

use crate::{VolumeError, read_header, read_labels};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// One case: its channel files (one 4D file for MSD v1) and its label map if any.
#[derive(Debug, Clone, PartialEq)]
pub struct Case {
    pub name: String,
    pub images: Vec<PathBuf>,
    pub label: Option<PathBuf>,
}

/// A dataset folder as described by its `dataset.json`.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub root: PathBuf,
    pub name: String,
    /// Label name -> id; background is 0.
    pub labels: BTreeMap<String, u16>,
    /// Channel names in channel order ("CT", "T2", ...).
    pub channel_names: Vec<String>,
    pub file_ending: String,
    /// Training cases (`imagesTr`/`labelsTr`), sorted by name.
    pub cases: Vec<Case>,
    /// Held-out cases (`imagesTs`, labels from `labelsTs` when present), sorted by name.
    pub test_cases: Vec<Case>,
}

/// One problem found by [`Dataset::check`].
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub case: String,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "case {}: {}", self.case, self.message)
    }
}

fn ds_err(path: &Path, reason: impl Into<String>) -> VolumeError {
    VolumeError::Dataset {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

impl Dataset {
    /// Opens `dir/dataset.json` and lists the cases. Missing files are not an error here (the
    /// integrity check reports them); a missing or malformed `dataset.json` is.
    pub fn open(dir: &Path) -> Result<Dataset, VolumeError> {
        let json_path = dir.join("dataset.json");
        let text =
            std::fs::read_to_string(&json_path).map_err(|source| VolumeError::NoDatasetJson {
                path: json_path.clone(),
                source,
            })?;
        let v: Value = serde_json::from_str(&text).map_err(|source| VolumeError::Json {
            path: json_path.clone(),
            what: "invalid JSON",
            source,
        })?;
        let name = v
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_else(|| {
                dir.file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or("dataset")
            })
            .to_string();
        let channels = v
            .get("channel_names")
            .or_else(|| v.get("modality"))
            .and_then(Value::as_object)
            .ok_or_else(|| {
                ds_err(
                    &json_path,
                    "missing \"channel_names\" (or MSD \"modality\")",
                )
            })?;
        let mut chans: Vec<(usize, String)> = Vec::new();
        for (k, n) in channels {
            let idx: usize = k
                .parse()
                .map_err(|_| ds_err(&json_path, format!("channel key \"{k}\" is not a number")))?;
            chans.push((idx, n.as_str().unwrap_or("").to_string()));
        }
        chans.sort();
        if chans.iter().enumerate().any(|(i, (c, _))| *c != i) {
            return Err(ds_err(
                &json_path,
                "channel ids must be 0, 1, 2, ... without gaps",
            ));
        }
        let labels = parse_labels(&json_path, &v)?;
        let file_ending = v
            .get("file_ending")
            .and_then(Value::as_str)
            .unwrap_or(".nii.gz")
            .to_string();
        let n_channels = chans.len();
        let cases = if let Some(list) = v.get("training").and_then(Value::as_array) {
            msd_cases(dir, &json_path, list)?
        } else {
            scan_cases(dir, "imagesTr", "labelsTr", &file_ending, n_channels)
        };
        // `numTraining` is not checked against the files found: nnU-Net only warns on a
        // mismatch, and the cases are what the folders hold.
        let test_cases = scan_cases(dir, "imagesTs", "labelsTs", &file_ending, n_channels);
        Ok(Dataset {
            root: dir.to_path_buf(),
            name,
            labels,
            channel_names: chans.into_iter().map(|(_, n)| n).collect(),
            file_ending,
            cases,
            test_cases,
        })
    }

    /// Number of classes including background (max label id + 1).
    pub fn num_classes(&self) -> usize {
        self.labels.values().copied().max().unwrap_or(0) as usize + 1
    }

    /// Foreground label ids, ascending.
    pub fn foreground_labels(&self) -> Vec<u16> {
        let mut l: Vec<u16> = self.labels.values().copied().filter(|&l| l != 0).collect();
        l.sort_unstable();
        l.dedup();
        l
    }

    /// Name of a label id ("1" when undeclared).
    pub fn label_name(&self, id: u16) -> String {
        self.labels
            .iter()
            .find(|(_, v)| **v == id)
            .map(|(k, _)| k.clone())
            .unwrap_or_else(|| id.to_string())
    }

    /// The integrity check: every case has all channel files and a label, channels and label
    /// share one grid (shape exactly, spacing/origin/direction within `tol` mm), and label
    /// values are declared in `dataset.json`. Reads every label map (headers only for images).
    /// `on_case` is called after each case (progress).
    pub fn check(&self, tol: f64, on_case: &(dyn Fn(&str) + Sync)) -> Vec<Problem> {
        use rayon::prelude::*;
        let declared: BTreeSet<u16> = self.labels.values().copied().collect();
        let mut problems: Vec<Problem> = self
            .cases
            .par_iter()
            .flat_map_iter(|case| {
                let p = self.check_case(case, &declared, tol);
                on_case(&case.name);
                p
            })
            .collect();
        if self.cases.is_empty() {
            problems.push(Problem {
                case: "-".into(),
                message: format!(
                    "no training cases found in {} (expected imagesTr/CASE_0000{})",
                    self.root.join("imagesTr").display(),
                    self.file_ending
                ),
            });
        }
        problems
    }

    fn check_case(&self, case: &Case, declared: &BTreeSet<u16>, tol: f64) -> Vec<Problem> {
        let mut out = Vec::new();
        let mut p = |m: String| {
            out.push(Problem {
                case: case.name.clone(),
                message: m,
            })
        };
        let mut grid: Option<([usize; 3], crate::Geometry, PathBuf)> = None;
        for (c, img) in case.images.iter().enumerate() {
            if !img.exists() {
                p(format!("missing channel {c} file {}", img.display()));
                continue;
            }
            match read_header(img) {
                Ok(h) => {
                    let g = (h.spatial_shape(), h.geometry(), img.clone());
                    if let Some((s0, g0, p0)) = &grid {
                        if *s0 != g.0 {
                            p(format!(
                                "channel {} shape {:?} differs from {:?} of {}",
                                c,
                                g.0,
                                s0,
                                p0.display()
                            ));
                        } else if let Some(d) = g0.difference(&g.1, tol) {
                            p(format!("channel {c} grid differs from channel 0: {d}"));
                        }
                    } else {
                        grid = Some(g);
                    }
                }
                Err(e) => p(e.to_string()),
            }
        }
        match &case.label {
            None => p("missing label file".to_string()),
            Some(l) if !l.exists() => p(format!("missing label file {}", l.display())),
            Some(l) => match read_labels(l) {
                Err(e) => p(e.to_string()),
                Ok(lab) => {
                    if let Some((s0, g0, _)) = &grid {
                        if lab.shape_ijk() != *s0 {
                            p(format!(
                                "label shape {:?} differs from image shape {:?}",
                                lab.shape_ijk(),
                                s0
                            ));
                        } else if let Some(d) = g0.difference(&lab.geometry, tol) {
                            p(format!("label grid differs from the image: {d}"));
                        }
                    }
                    let present: BTreeSet<u16> = lab.data.iter().copied().collect();
                    let undeclared: Vec<u16> = present.difference(declared).copied().collect();
                    if !undeclared.is_empty() {
                        p(format!(
                            "label values {undeclared:?} are not declared in dataset.json \"labels\""
                        ));
                    }
                }
            },
        }
        out
    }
}

fn parse_labels(json_path: &Path, v: &Value) -> Result<BTreeMap<String, u16>, VolumeError> {
    let obj = v
        .get("labels")
        .and_then(Value::as_object)
        .ok_or_else(|| ds_err(json_path, "missing \"labels\""))?;
    let mut labels = BTreeMap::new();
    for (k, val) in obj {
        // nnU-Net v2: {"liver": 1}; MSD v1: {"1": "liver"}. Region lists ([1, 2]) are not supported.
        if let Some(id) = val.as_u64() {
            labels.insert(k.clone(), id as u16);
        } else if let (Ok(id), Some(name)) = (k.parse::<u16>(), val.as_str()) {
            labels.insert(name.to_string(), id);
        } else {
            return Err(ds_err(
                json_path,
                format!(
                    "label \"{k}\": expected an integer id (region-based labels are not supported)"
                ),
            ));
        }
    }
    if !labels.values().any(|&v| v == 0) {
        return Err(ds_err(json_path, "\"labels\" must declare background = 0"));
    }
    Ok(labels)
}

fn msd_cases(dir: &Path, json_path: &Path, list: &[Value]) -> Result<Vec<Case>, VolumeError> {
    let mut cases = Vec::new();
    for item in list {
        let img = item
            .get("image")
            .and_then(Value::as_str)
            .ok_or_else(|| ds_err(json_path, "a \"training\" entry has no \"image\""))?;
        let label = item
            .get("label")
            .and_then(Value::as_str)
            .map(|l| dir.join(l));
        let img = dir.join(img);
        let name = strip_nifti_ext(&img);
        cases.push(Case {
            name,
            images: vec![img],
            label,
        });
    }
    cases.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(cases)
}

/// File name without `.nii.gz` / `.nii` / any extension.
pub fn strip_nifti_ext(p: &Path) -> String {
    let n = p
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    for ext in [
        ".nii.gz", ".nii", ".hdr", ".img", ".png", ".tif", ".tiff", ".bmp", ".mha", ".mhd",
        ".nrrd", ".nhdr",
    ] {
        if let Some(s) = n.strip_suffix(ext) {
            return s.to_string();
        }
    }
    n
}

/// Lists cases of an nnU-Net v2 folder pair: `images/CASE_XXXX<ending>` grouped by case.
fn scan_cases(
    dir: &Path,
    images: &str,
    labels: &str,
    ending: &str,
    n_channels: usize,
) -> Vec<Case> {
    let img_dir = dir.join(images);
    let Ok(entries) = std::fs::read_dir(&img_dir) else {
        return Vec::new();
    };
    let mut names = BTreeSet::new();
    for e in entries.flatten() {
        let f = e.file_name().to_string_lossy().into_owned();
        if let Some(stem) = f.strip_suffix(ending)
            && let Some((case, ch)) = stem.rsplit_once('_')
            && ch.len() == 4
            && ch.bytes().all(|b| b.is_ascii_digit())
        {
            names.insert(case.to_string());
        }
    }
    let lab_dir = dir.join(labels);
    let has_labels = lab_dir.is_dir();
    names
        .into_iter()
        .map(|name| Case {
            images: (0..n_channels.max(1))
                .map(|c| img_dir.join(format!("{name}_{c:04}{ending}")))
                .collect(),
            label: has_labels.then(|| lab_dir.join(format!("{name}{ending}"))),
            name,
        })
        .collect()
}
