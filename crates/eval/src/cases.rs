//! Folder-level evaluation: match predictions to ground truths by case name, check grids,
//! evaluate every case in parallel and aggregate.
//!
//! A case name is the file name without `.nii.gz` / `.nii`. Every ground truth is a case. A
//! ground truth without a prediction is an error ([`MissingPolicy::Error`], the default) or is
//! scored as an empty prediction ([`MissingPolicy::Worst`]); either way it is never skipped,
//! and [`Evaluation::n_missing`] counts such cases. Predictions without a ground truth are
//! listed in [`Evaluation::unmatched_predictions`].

use crate::classification::{CaseLevelMetrics, CaseScore, case_level};
use crate::error::EvalError;
use crate::metrics::{CaseMetrics, EvalOptions, Probabilities, evaluate_case};
use crate::summary::{Summary, summarize};
use medseg_volume::{Geometry, NiftiImage, Volume, read_nifti};
use ndarray::{Array3, Array4, Ix3};
use rayon::prelude::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One case's files.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseInput {
    pub name: String,
    pub gt: PathBuf,
    pub pred: Option<PathBuf>,
    pub prob: Option<PathBuf>,
}

/// The matched cases of a prediction and a ground-truth location.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseList {
    /// Sorted by name.
    pub cases: Vec<CaseInput>,
    /// Prediction case names without a ground truth (not evaluated).
    pub unmatched_predictions: Vec<String>,
    /// Whether a probability location was given (then every present prediction needs one).
    pub with_probabilities: bool,
}

/// What to do with a ground truth that has no prediction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MissingPolicy {
    /// Stop with an error listing the cases (default).
    #[default]
    Error,
    /// Score the case as an empty prediction (worst case) and count it.
    Worst,
}

/// The result of [`evaluate_cases`].
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    pub labels: Vec<u16>,
    /// Label names from dataset.json (may be empty).
    pub label_names: BTreeMap<u16, String>,
    /// Sorted by case name.
    pub cases: Vec<CaseMetrics>,
    pub summary: Summary,
    pub case_level: BTreeMap<u16, CaseLevelMetrics>,
    pub n_missing: usize,
    pub unmatched_predictions: Vec<String>,
    pub options: EvalOptions,
    pub with_probabilities: bool,
}

/// The case name of an image file (`.nii.gz`, `.nii`, `.mha`, `.mhd`, `.nrrd`, `.nhdr`
/// stripped), or `None` for other files.
pub fn case_name(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    if name.starts_with('.') {
        return None;
    }
    [
        ".nii.gz", ".nii", ".mha", ".mhd", ".nrrd", ".nhdr", ".png", ".tif", ".tiff", ".bmp",
    ]
    .iter()
    .find_map(|ext| name.strip_suffix(ext))
    .filter(|s| !s.is_empty())
    .map(str::to_string)
}

/// NIfTI files of a folder by case name.
fn list_dir(dir: &Path) -> Result<BTreeMap<String, PathBuf>, EvalError> {
    let io = |source| EvalError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        if !path.is_file() {
            continue;
        }
        if let Some(name) = case_name(&path)
            && let Some(prev) = out.insert(name.clone(), path.clone())
        {
            return Err(EvalError::Input {
                path: dir.to_path_buf(),
                reason: format!(
                    "case {name} appears twice ({} and {})",
                    prev.display(),
                    path.display()
                ),
            });
        }
    }
    Ok(out)
}

/// Matches predictions, ground truths and (optionally) probability maps.
///
/// `pred` and `gt` are both files (one case, named after the ground truth) or both folders.
/// `prob` is a folder of `CASE.nii[.gz]` maps, or a file in single-file mode.
pub fn find_cases(pred: &Path, gt: &Path, prob: Option<&Path>) -> Result<CaseList, EvalError> {
    let input = |path: &Path, reason: &str| EvalError::Input {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    };
    if !gt.exists() {
        return Err(input(gt, "ground truth not found"));
    }
    if !pred.exists() {
        return Err(input(pred, "prediction not found"));
    }
    if gt.is_file() {
        if !pred.is_file() {
            return Err(input(
                pred,
                "is a folder but --gt is a file; pass two files or two folders",
            ));
        }
        let name = case_name(gt).ok_or_else(|| {
            input(
                gt,
                "is not an image file (.nii, .nii.gz, .mha, .mhd, .nrrd, .nhdr)",
            )
        })?;
        let prob_file = match prob {
            Some(p) if p.is_file() => Some(p.to_path_buf()),
            Some(p) => list_dir(p)?.remove(&name),
            None => None,
        };
        return Ok(CaseList {
            cases: vec![CaseInput {
                name,
                gt: gt.to_path_buf(),
                pred: Some(pred.to_path_buf()),
                prob: prob_file,
            }],
            unmatched_predictions: Vec::new(),
            with_probabilities: prob.is_some(),
        });
    }
    if pred.is_file() {
        return Err(input(
            pred,
            "is a file but --gt is a folder; pass two files or two folders",
        ));
    }
    let gts = list_dir(gt)?;
    if gts.is_empty() {
        return Err(input(
            gt,
            "holds no image files (.nii, .nii.gz, .mha, .mhd, .nrrd, .nhdr)",
        ));
    }
    let mut preds = list_dir(pred)?;
    let mut probs = match prob {
        Some(p) => list_dir(p)?,
        None => BTreeMap::new(),
    };
    let cases = gts
        .into_iter()
        .map(|(name, gt)| CaseInput {
            pred: preds.remove(&name),
            prob: probs.remove(&name),
            name,
            gt,
        })
        .collect();
    Ok(CaseList {
        cases,
        unmatched_predictions: preds.into_keys().collect(),
        with_probabilities: prob.is_some(),
    })
}

/// Spacing from `pixdim` (nibabel's `get_zooms()`), never from the affine's column norms, which
/// differ in the last bits for oblique float32 affines. Axes beyond the image's dimensionality
/// (or non-positive pixdim) keep the affine's value.
fn header_geometry(img: &NiftiImage) -> Geometry {
    let mut g = img.geometry();
    let ndim = img.header.dim[0].clamp(0, 3) as usize;
    for c in 0..ndim {
        let p = img.header.pixdim[c + 1];
        if p.is_finite() && p > 0.0 {
            g.spacing[c] = p;
        }
    }
    g
}

/// Voxel data that do not fit the grid their header announces.
fn layout_err(path: &Path, what: &'static str, source: ndarray::ShapeError) -> EvalError {
    EvalError::Volume(medseg_volume::VolumeError::Decode {
        path: path.to_path_buf(),
        what,
        source: source.into(),
    })
}

/// Reads a label map with its header spacing.
pub fn read_label_map(path: &Path) -> Result<Volume<u16>, EvalError> {
    use medseg_volume::ImageFormat;
    if matches!(
        ImageFormat::of(path),
        Some(ImageFormat::MetaImage | ImageFormat::Nrrd | ImageFormat::Natural)
    ) {
        return Ok(medseg_volume::read_labels(path)?);
    }
    let img = read_nifti(path)?;
    let geometry = header_geometry(&img);
    let [ni, nj, nk] = img.header.spatial_shape();
    let format = |reason: String| {
        EvalError::Volume(medseg_volume::VolumeError::Format {
            path: path.to_path_buf(),
            reason,
        })
    };
    if img.data.len() != ni * nj * nk {
        return Err(format(format!(
            "holds {} values for a {ni}x{nj}x{nk} grid; a label map has one volume",
            img.data.len()
        )));
    }
    if let Some(bad) = img
        .data
        .iter()
        .find(|&&x| !(0.0..=65535.0).contains(&x) || x.fract() != 0.0)
    {
        return Err(format(format!(
            "is not a label map: it holds the value {bad} (labels are whole numbers 0..65535)"
        )));
    }
    let data = Array3::from_shape_vec((nk, nj, ni), img.data.iter().map(|&x| x as u16).collect())
        .map_err(|e| layout_err(path, "unexpected label map layout", e))?;
    Ok(Volume::new(data, geometry))
}

/// A probability map read from disk: one channel per class (`[c, k, j, i]`) or a 3D
/// foreground map.
#[derive(Debug, Clone)]
pub enum ProbMap {
    PerClass(Array4<f32>),
    Foreground(Array3<f32>),
}

impl ProbMap {
    pub fn view(&self) -> Probabilities<'_> {
        match self {
            ProbMap::PerClass(a) => Probabilities::PerClass(a.view()),
            ProbMap::Foreground(a) => Probabilities::Foreground(a.view()),
        }
    }
}

/// Reads a probability map: a 3D float image (foreground of a binary task) or a 4D one whose
/// 4th axis holds the classes, background first. Returns its geometry for the grid check.
pub fn read_prob_map(path: &Path) -> Result<(ProbMap, Geometry), EvalError> {
    let img = read_nifti(path)?;
    // A NaN would drop out of every ROC threshold comparison and skew the AUC silently.
    let bad = img.data.iter().filter(|x| !x.is_finite()).count();
    if bad > 0 {
        return Err(EvalError::Volume(medseg_volume::VolumeError::Format {
            path: path.to_path_buf(),
            reason: format!(
                "is not a probability map: {bad} value(s) are NaN or Inf; re-run the prediction"
            ),
        }));
    }
    let geometry = header_geometry(&img);
    let [ni, nj, nk] = img.header.spatial_shape();
    let channels = img.data.len() / (ni * nj * nk).max(1);
    let map = if channels <= 1 && img.data.len() == ni * nj * nk {
        let a = img
            .data
            .into_shape_with_order((nk, nj, ni))
            .map_err(|e| layout_err(path, "unexpected probability map layout", e))?;
        ProbMap::Foreground(
            a.into_dimensionality::<Ix3>()
                .map_err(|e| layout_err(path, "unexpected probability map layout", e))?,
        )
    } else {
        let a = img
            .data
            .into_shape_with_order((channels, nk, nj, ni))
            .map_err(|e| layout_err(path, "unexpected probability map layout", e))?;
        ProbMap::PerClass(a)
    };
    Ok((map, geometry))
}

/// Label ids (background 0 excluded) from an MSD / nnU-Net `dataset.json`
/// (`"labels": {"background": 0, "liver": 1}`, or the MSD v1 form `{"0": "background"}`).
pub fn read_label_names(dataset_json: &Path) -> Result<BTreeMap<u16, String>, EvalError> {
    let bad = |reason: String| EvalError::Input {
        path: dataset_json.to_path_buf(),
        reason,
    };
    let text = std::fs::read_to_string(dataset_json).map_err(|source| EvalError::Io {
        path: dataset_json.to_path_buf(),
        source,
    })?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|source| EvalError::Json {
            path: dataset_json.to_path_buf(),
            what: "not valid JSON",
            source,
        })?;
    let labels = json
        .get("labels")
        .and_then(|l| l.as_object())
        .ok_or_else(|| bad("has no \"labels\" object".into()))?;
    let mut out = BTreeMap::new();
    for (k, v) in labels {
        let (name, id) = if let Some(id) = v.as_u64() {
            (k.clone(), id)
        } else if let (Ok(id), Some(name)) = (k.parse::<u64>(), v.as_str()) {
            (name.to_string(), id)
        } else {
            return Err(bad(format!(
                "label {k:?}: expected \"name\": id (or \"id\": \"name\"), found {v}"
            )));
        };
        let id = u16::try_from(id).map_err(|_| bad(format!("label id {id} exceeds 65535")))?;
        if id != 0 {
            out.insert(id, name);
        }
    }
    if out.is_empty() {
        return Err(bad("declares no foreground label".into()));
    }
    Ok(out)
}

/// The non-zero labels found in any ground truth or prediction (reads every file once).
pub fn discover_labels(list: &CaseList) -> Result<Vec<u16>, EvalError> {
    let paths: Vec<&Path> = list
        .cases
        .iter()
        .flat_map(|c| std::iter::once(c.gt.as_path()).chain(c.pred.as_deref()))
        .collect();
    let sets = paths
        .par_iter()
        .map(|p| {
            let v = read_label_map(p)?;
            let mut seen = vec![false; 1 << 16];
            v.data.iter().for_each(|&x| seen[x as usize] = true);
            Ok(seen)
        })
        .collect::<Result<Vec<_>, EvalError>>()?;
    Ok((1..=u16::MAX)
        .filter(|&l| sets.iter().any(|s| s[l as usize]))
        .collect())
}

/// Evaluates every case of `list` over `labels` in parallel; `on_case_done` is called once per
/// finished case (drive a progress bar with it). Fails on the first unreadable file, grid
/// mismatch or (with [`MissingPolicy::Error`]) missing prediction, naming the case.
pub fn evaluate_cases(
    list: &CaseList,
    labels: &[u16],
    label_names: &BTreeMap<u16, String>,
    opts: &EvalOptions,
    missing: MissingPolicy,
    on_case_done: &(dyn Fn() + Sync),
) -> Result<Evaluation, EvalError> {
    let missing_cases: Vec<String> = list
        .cases
        .iter()
        .filter(|c| c.pred.is_none())
        .map(|c| c.name.clone())
        .collect();
    if missing == MissingPolicy::Error && !missing_cases.is_empty() {
        return Err(EvalError::MissingPredictions {
            cases: missing_cases,
        });
    }
    if list.with_probabilities
        && let Some(c) = list
            .cases
            .iter()
            .find(|c| c.pred.is_some() && c.prob.is_none())
    {
        return Err(EvalError::Probabilities {
            case: c.name.clone(),
            reason: "no probability map CASE.nii[.gz] with this name".into(),
        });
    }
    let mut cases = list
        .cases
        .par_iter()
        .map(|c| {
            let r = evaluate_one(c, labels, opts);
            on_case_done();
            r
        })
        .collect::<Result<Vec<_>, EvalError>>()?;
    cases.sort_by(|a, b| a.case.cmp(&b.case));
    let score = if list.with_probabilities {
        CaseScore::MaxProbability
    } else {
        CaseScore::PredictedVolume
    };
    let case_level = labels
        .iter()
        .map(|&l| (l, case_level(&cases, l, score)))
        .collect();
    Ok(Evaluation {
        labels: labels.to_vec(),
        label_names: label_names.clone(),
        summary: summarize(&cases, labels),
        cases,
        case_level,
        n_missing: missing_cases.len(),
        unmatched_predictions: list.unmatched_predictions.clone(),
        options: opts.clone(),
        with_probabilities: list.with_probabilities,
    })
}

/// Voxels per label value that is neither background nor in `labels`, in the prediction and
/// the ground truth.
fn undeclared_labels(
    pred: &Volume<u16>,
    gt: &Volume<u16>,
    labels: &[u16],
) -> BTreeMap<(String, u16), usize> {
    let mut out = BTreeMap::new();
    for (what, v) in [("prediction", pred), ("ground truth", gt)] {
        for &x in v.data.iter() {
            if x != 0 && !labels.contains(&x) {
                *out.entry((what.to_string(), x)).or_insert(0) += 1;
            }
        }
    }
    out
}

impl Evaluation {
    /// One line per case and undeclared label: `case CASE: label 7 (12 voxels in the
    /// prediction) is not among the evaluated labels ...`.
    pub fn undeclared_label_warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        for c in &self.cases {
            for ((what, label), n) in &c.undeclared {
                out.push(format!(
                    "case {}: label {label} ({n} voxels in the {what}) is not among the evaluated labels {:?} (dataset.json); it is not scored",
                    c.case, self.labels
                ));
            }
        }
        out
    }
}

fn evaluate_one(
    c: &CaseInput,
    labels: &[u16],
    opts: &EvalOptions,
) -> Result<CaseMetrics, EvalError> {
    let gt = read_label_map(&c.gt)?;
    let Some(pred_path) = &c.pred else {
        // Worst case: an empty prediction on the ground truth's grid.
        let pred = Volume::new(Array3::zeros(gt.data.dim()), gt.geometry);
        let mut m = evaluate_case(&c.name, &pred, &gt, None, labels, opts)?;
        m.missing_prediction = true;
        for l in m.labels.values_mut() {
            l.auc_reason = Some("prediction missing".into());
        }
        return Ok(m);
    };
    let pred = read_label_map(pred_path)?;
    let undeclared = undeclared_labels(&pred, &gt, labels);
    let prob = match &c.prob {
        Some(p) => {
            let (map, geometry) = read_prob_map(p)?;
            if let Some(d) = gt.geometry.difference(&geometry, opts.geometry_tolerance) {
                return Err(EvalError::GridMismatch {
                    case: c.name.clone(),
                    what: format!("the probability map {}", p.display()),
                    difference: d,
                });
            }
            Some(map)
        }
        None => None,
    };
    evaluate_case(
        &c.name,
        &pred,
        &gt,
        prob.as_ref().map(ProbMap::view),
        labels,
        opts,
    )
    .map_err(|e| match e {
        EvalError::Probabilities { case, reason } => EvalError::Probabilities {
            case,
            reason: format!(
                "{}: {reason}",
                c.prob.as_deref().unwrap_or(Path::new("?")).display()
            ),
        },
        other => other,
    })
    .map(|mut m| {
        m.undeclared = undeclared;
        m
    })
}
