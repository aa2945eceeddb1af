//! Per-case, per-label metrics of one (prediction, ground truth) pair of label maps.
//!
//! Conventions (the reference values behind them: `tests/fixtures/metrics/README.md` at the
//! repository root), per label `l` with `P = pred == l`, `G = gt == l`:
//! * counts over all voxels; `dice = f1 = 2tp/(2tp+fp+fn)`, `iou = tp/(tp+fp+fn)`,
//!   `precision = tp/(tp+fp)`, `recall = sensitivity = tp/(tp+fn)`, `specificity = tn/(tn+fp)`,
//!   `accuracy = (tp+tn)/N` (with `prevalence = (tp+fn)/N` beside it); a zero denominator gives
//!   `None` (JSON `null`), never NaN.
//! * volumes in ml from the header spacing (2D: `sx·sy`), `volume_similarity =
//!   1 − |vp−vg|/(vp+vg)` (`None` when both are 0).
//! * surface metrics in mm: see [`crate::distances`].
//! * both `P` and `G` empty: dice = iou = 1, distances 0, nsd 1, f1/precision/recall `None`;
//!   exactly one empty: dice = iou = nsd = 0 and every distance = the image diagonal in mm (over 2
//!   axes for a 2D image). [`LabelMetrics::empty`] records which rule applied.

use crate::distances::{EMPTY_BBOX, include_voxel, surface_distances};
use crate::error::EvalError;
use crate::roc::{AucUndefined, roc};
use medseg_volume::Volume;
use ndarray::{ArrayView3, ArrayView4, Axis, Zip};
use rayon::prelude::*;
use std::collections::BTreeMap;

/// Options of [`evaluate_pair`] / [`evaluate_case`].
#[derive(Debug, Clone, PartialEq)]
pub struct EvalOptions {
    /// Compute HD, HD95, ASSD, MASD and NSD (default `true`). Without them a pair costs one pass
    /// over the voxels (cheap Dice for training validation).
    pub surface_metrics: bool,
    /// NSD tolerance in mm (default 1.0), inclusive (`d <= tolerance`).
    pub nsd_tolerance_mm: f64,
    /// Per-label NSD tolerances in mm that override `nsd_tolerance_mm` (default: none).
    pub nsd_tolerance_per_label: BTreeMap<u16, f64>,
    /// Largest accepted difference between the grids of prediction and ground truth, in mm for
    /// spacing and origin and in cosine units for the direction (default 1e-3). Shapes must
    /// agree exactly.
    pub geometry_tolerance: f64,
    /// Most vertices kept of each ROC curve (default 201).
    pub roc_points: usize,
}

impl Default for EvalOptions {
    fn default() -> Self {
        Self {
            surface_metrics: true,
            nsd_tolerance_mm: 1.0,
            nsd_tolerance_per_label: BTreeMap::new(),
            geometry_tolerance: 1e-3,
            roc_points: 201,
        }
    }
}

impl EvalOptions {
    /// The NSD tolerance of `label` in mm.
    pub fn nsd_tolerance(&self, label: u16) -> f64 {
        self.nsd_tolerance_per_label
            .get(&label)
            .copied()
            .unwrap_or(self.nsd_tolerance_mm)
    }
}

/// Probability maps of one case, on the ground truth's grid.
#[derive(Debug, Clone, Copy)]
pub enum Probabilities<'a> {
    /// One channel per class, background included: `[c, k, j, i]`, channel `l` = P(label `l`).
    PerClass(ArrayView4<'a, f32>),
    /// The foreground probability of a binary task (exactly one foreground label).
    Foreground(ArrayView3<'a, f32>),
}

/// Which empty-mask rule a label's values come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EmptyRule {
    /// Both masks hold voxels: every value is computed.
    None,
    /// Both empty: dice = iou = 1, distances 0, nsd 1.
    BothEmpty,
    /// Ground truth empty, prediction not: dice 0, distances = image diagonal.
    GtEmpty,
    /// Prediction empty, ground truth not: dice 0, distances = image diagonal.
    PredEmpty,
}

/// Every metric of one label in one case. `None` = undefined (JSON `null`).
#[derive(Debug, Clone, PartialEq)]
pub struct LabelMetrics {
    pub tp: u64,
    pub fp: u64,
    pub fn_: u64,
    pub tn: u64,
    pub dice: Option<f64>,
    pub iou: Option<f64>,
    pub precision: Option<f64>,
    pub recall: Option<f64>,
    pub sensitivity: Option<f64>,
    pub specificity: Option<f64>,
    pub accuracy: Option<f64>,
    pub f1: Option<f64>,
    /// Fraction of voxels in the ground truth label (context for accuracy and specificity).
    pub prevalence: Option<f64>,
    pub vol_pred_ml: f64,
    pub vol_gt_ml: f64,
    pub volume_similarity: Option<f64>,
    /// Surface metrics (mm); `None` only when surface metrics were not requested.
    pub hd: Option<f64>,
    pub hd95: Option<f64>,
    pub hd95_pooled: Option<f64>,
    pub assd: Option<f64>,
    pub masd: Option<f64>,
    pub nsd: Option<f64>,
    pub nsd_tolerance_mm: f64,
    pub n_surface_pred: Option<usize>,
    pub n_surface_gt: Option<usize>,
    /// Voxel-level ROC AUC of the label's probability channel against `G`.
    pub auc: Option<f64>,
    /// Why `auc` is `None` (no probabilities, only one class present, ...).
    pub auc_reason: Option<String>,
    /// Case-level score: the maximum probability of the label, `None` without probabilities.
    pub max_probability: Option<f64>,
    pub empty: EmptyRule,
}

/// The metrics of one case.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseMetrics {
    pub case: String,
    pub labels: BTreeMap<u16, LabelMetrics>,
    /// Evaluated in 2D (single slice): 4-connected surfaces, 2-axis diagonal, `sx·sy` areas.
    pub two_d: bool,
    /// Spacing in `(i, j, k)` order, mm (from the ground truth header).
    pub spacing: [f64; 3],
    pub image_diagonal_mm: f64,
    /// No prediction existed; the case was scored as an empty prediction (worst case).
    pub missing_prediction: bool,
    /// Voxel-level ROC curve per label (when probabilities were given and both classes occur).
    pub roc_curves: BTreeMap<u16, Vec<[f64; 2]>>,
    /// Label values present but not among the evaluated labels (e.g. not declared in
    /// dataset.json): `(where, label) -> voxels`, where = "prediction" or "ground truth".
    /// They are not scored; `medseg evaluate` warns and `--strict` fails.
    pub undeclared: BTreeMap<(String, u16), usize>,
}

/// Metrics of every label in `labels` for one pair of label maps, without probabilities.
/// The case name of the result is empty. See [`evaluate_case`].
pub fn evaluate_pair(
    pred: &Volume<u16>,
    gt: &Volume<u16>,
    labels: &[u16],
    opts: &EvalOptions,
) -> Result<CaseMetrics, EvalError> {
    evaluate_case("", pred, gt, None, labels, opts)
}

/// One label's metrics and, with probabilities, its ROC curve (false, true positive rate).
type LabelOutcome = (u16, LabelMetrics, Option<Vec<[f64; 2]>>);

/// Metrics of every label in `labels` (present or not) for one case.
///
/// Fails when the shapes differ or the geometries differ by more than
/// `opts.geometry_tolerance`, or when the probabilities do not fit (shape, channel count, NaN).
/// Spacing comes from `gt`.
pub fn evaluate_case(
    case: &str,
    pred: &Volume<u16>,
    gt: &Volume<u16>,
    prob: Option<Probabilities>,
    labels: &[u16],
    opts: &EvalOptions,
) -> Result<CaseMetrics, EvalError> {
    let mismatch = |what: &str, difference: String| EvalError::GridMismatch {
        case: case.to_string(),
        what: what.to_string(),
        difference,
    };
    if pred.data.dim() != gt.data.dim() {
        return Err(mismatch(
            "the prediction",
            format!(
                "shape (i, j, k) {:?} vs {:?}",
                pred.shape_ijk(),
                gt.shape_ijk()
            ),
        ));
    }
    if let Some(d) = gt
        .geometry
        .difference(&pred.geometry, opts.geometry_tolerance)
    {
        return Err(mismatch("the prediction", d));
    }
    check_probabilities(case, prob, gt, labels)?;

    let two_d = gt.is_2d();
    let sp = gt.geometry.spacing;
    let spacing_kji = [sp[2], sp[1], sp[0]];
    let [ni, nj, nk] = gt.shape_ijk();
    let axes = if two_d { 2 } else { 3 };
    let extents = [ni as f64 * sp[0], nj as f64 * sp[1], nk as f64 * sp[2]];
    let diagonal = extents[..axes].iter().map(|e| e * e).sum::<f64>().sqrt();
    let voxel_ml = sp[..axes].iter().product::<f64>() / 1000.0;

    let tally = Tally::count(pred.data.view(), gt.data.view(), labels);
    let per_label: Vec<LabelOutcome> = labels
        .par_iter()
        .enumerate()
        .map(|(n, &label)| {
            let c = tally.counts(n + 1);
            let mut m = overlap_metrics(c, voxel_ml);
            m.nsd_tolerance_mm = opts.nsd_tolerance(label);
            if opts.surface_metrics {
                surface_metrics(
                    &mut m,
                    pred,
                    gt,
                    label,
                    tally.bbox(n + 1),
                    spacing_kji,
                    two_d,
                    diagonal,
                );
            }
            let curve = prob.and_then(|p| label_probability(&mut m, p, gt, label, opts.roc_points));
            if prob.is_none() {
                m.auc_reason = Some("no probabilities given".into());
            }
            (label, m, curve)
        })
        .collect();
    let mut out = CaseMetrics {
        case: case.to_string(),
        labels: BTreeMap::new(),
        two_d,
        spacing: sp,
        image_diagonal_mm: diagonal,
        missing_prediction: false,
        roc_curves: BTreeMap::new(),
        undeclared: BTreeMap::new(),
    };
    for (label, m, curve) in per_label {
        out.labels.insert(label, m);
        if let Some(c) = curve {
            out.roc_curves.insert(label, c);
        }
    }
    Ok(out)
}

fn check_probabilities(
    case: &str,
    prob: Option<Probabilities>,
    gt: &Volume<u16>,
    labels: &[u16],
) -> Result<(), EvalError> {
    let err = |reason: String| EvalError::Probabilities {
        case: case.to_string(),
        reason,
    };
    let shape = |d: &[usize]| format!("(i, j, k) = ({}, {}, {})", d[2], d[1], d[0]);
    let gt_dim = gt.data.shape();
    match prob {
        None => Ok(()),
        Some(Probabilities::PerClass(p)) => {
            if &p.shape()[1..] != gt_dim {
                return Err(err(format!(
                    "spatial shape {} differs from the ground truth's {}",
                    shape(&p.shape()[1..]),
                    shape(gt_dim)
                )));
            }
            let need = labels.iter().copied().max().map_or(1, |l| l as usize + 1);
            if p.shape()[0] < need {
                return Err(err(format!(
                    "{} channels, but label {} needs {need} (one channel per class, background first)",
                    p.shape()[0],
                    need - 1
                )));
            }
            if p.iter().any(|v| v.is_nan()) {
                return Err(err("contains NaN".into()));
            }
            Ok(())
        }
        Some(Probabilities::Foreground(p)) => {
            if p.shape() != gt_dim {
                return Err(err(format!(
                    "shape {} differs from the ground truth's {}",
                    shape(p.shape()),
                    shape(gt_dim)
                )));
            }
            if labels.len() != 1 {
                return Err(err(format!(
                    "a 3D map holds the foreground probability of a binary task, but {} labels are evaluated; write one channel per class (4D)",
                    labels.len()
                )));
            }
            if p.iter().any(|v| v.is_nan()) {
                return Err(err("contains NaN".into()));
            }
            Ok(())
        }
    }
}

fn div(a: u64, b: u64) -> Option<f64> {
    (b > 0).then(|| a as f64 / b as f64)
}

/// Counts, ratios and volumes from the confusion counts `[tp, fp, fn, tn]`.
pub(crate) fn overlap_metrics([tp, fp, fn_, tn]: [u64; 4], voxel_ml: f64) -> LabelMetrics {
    let (vp, vg) = (tp + fp, tp + fn_);
    let empty = match (vp == 0, vg == 0) {
        (true, true) => EmptyRule::BothEmpty,
        (false, true) => EmptyRule::GtEmpty,
        (true, false) => EmptyRule::PredEmpty,
        (false, false) => EmptyRule::None,
    };
    let n = tp + fp + fn_ + tn;
    let both_empty = empty == EmptyRule::BothEmpty;
    let f1 = div(2 * tp, 2 * tp + fp + fn_);
    let recall = div(tp, tp + fn_);
    LabelMetrics {
        tp,
        fp,
        fn_,
        tn,
        dice: if both_empty { Some(1.0) } else { f1 },
        iou: if both_empty {
            Some(1.0)
        } else {
            div(tp, tp + fp + fn_)
        },
        precision: div(tp, tp + fp),
        recall,
        sensitivity: recall,
        specificity: div(tn, tn + fp),
        accuracy: div(tp + tn, n),
        f1,
        prevalence: div(vg, n),
        vol_pred_ml: vp as f64 * voxel_ml,
        vol_gt_ml: vg as f64 * voxel_ml,
        volume_similarity: (vp + vg > 0)
            .then(|| 1.0 - (vp as f64 - vg as f64).abs() / (vp + vg) as f64),
        hd: None,
        hd95: None,
        hd95_pooled: None,
        assd: None,
        masd: None,
        nsd: None,
        nsd_tolerance_mm: 1.0,
        n_surface_pred: None,
        n_surface_gt: None,
        auc: None,
        auc_reason: None,
        max_probability: None,
        empty,
    }
}

#[allow(clippy::too_many_arguments)]
fn surface_metrics(
    m: &mut LabelMetrics,
    pred: &Volume<u16>,
    gt: &Volume<u16>,
    label: u16,
    bbox: Option<[usize; 6]>,
    spacing_kji: [f64; 3],
    two_d: bool,
    diagonal: f64,
) {
    let set = |m: &mut LabelMetrics, d: f64, nsd: f64| {
        m.hd = Some(d);
        m.hd95 = Some(d);
        m.hd95_pooled = Some(d);
        m.assd = Some(d);
        m.masd = Some(d);
        m.nsd = Some(nsd);
    };
    match (m.empty, bbox) {
        (EmptyRule::BothEmpty, _) | (_, None) => set(m, 0.0, 1.0),
        (EmptyRule::GtEmpty | EmptyRule::PredEmpty, _) => set(m, diagonal, 0.0),
        (EmptyRule::None, Some(b)) => {
            let region = ndarray::s![b[0]..b[1], b[2]..b[3], b[4]..b[5]];
            let p = Zip::from(pred.data.slice(region)).par_map_collect(|&v| v == label);
            let g = Zip::from(gt.data.slice(region)).par_map_collect(|&v| v == label);
            // Both masks are non-empty here, so the distances exist.
            if let Some(d) = surface_distances(p.view(), g.view(), spacing_kji, two_d) {
                let s = d.stats(m.nsd_tolerance_mm);
                m.hd = Some(s.hd);
                m.hd95 = Some(s.hd95);
                m.hd95_pooled = Some(s.hd95_pooled);
                m.assd = Some(s.assd);
                m.masd = Some(s.masd);
                m.nsd = Some(s.nsd);
                m.n_surface_pred = Some(s.n_surface_pred);
                m.n_surface_gt = Some(s.n_surface_gt);
            }
        }
    }
}

/// Voxel AUC and the case-level score of one label; returns the ROC curve.
fn label_probability(
    m: &mut LabelMetrics,
    prob: Probabilities,
    gt: &Volume<u16>,
    label: u16,
    roc_points: usize,
) -> Option<Vec<[f64; 2]>> {
    let channel = match prob {
        Probabilities::PerClass(p) => p.index_axis_move(Axis(0), label as usize),
        Probabilities::Foreground(p) => p,
    };
    m.max_probability = Some(
        channel
            .iter()
            .fold(f64::NEG_INFINITY, |a, &v| a.max(v as f64)),
    );
    let pairs = channel
        .iter()
        .zip(gt.data.iter())
        .map(|(&s, &g)| (s as f64, g == label));
    match roc(pairs, roc_points) {
        Ok(r) => {
            m.auc = Some(r.auc);
            Some(r.curve)
        }
        Err(e) => {
            m.auc_reason = Some(match e {
                AucUndefined::NoPositives => {
                    "undefined: the label is absent from the ground truth (only one class present)"
                        .into()
                }
                AucUndefined::NoNegatives => e.reason().into(),
            });
            None
        }
    }
}

/// One pass over both label maps: the confusion matrix between the evaluated labels (index 0 =
/// any other value) and each label's bounding box over pred ∪ gt.
struct Tally {
    n: usize,
    /// `matrix[p * n + g]`: voxels with pred index p and gt index g.
    matrix: Vec<u64>,
    /// Per index: `[k0, k1, j0, j1, i0, i1]` half-open, `k0 == usize::MAX` when empty.
    bboxes: Vec<[usize; 6]>,
}

impl Tally {
    fn empty(n: usize) -> Self {
        Self {
            n,
            matrix: vec![0; n * n],
            bboxes: vec![EMPTY_BBOX; n],
        }
    }

    fn merge(mut self, other: Self) -> Self {
        for (a, b) in self.matrix.iter_mut().zip(other.matrix) {
            *a += b;
        }
        for (a, b) in self.bboxes.iter_mut().zip(other.bboxes) {
            for c in 0..3 {
                a[2 * c] = a[2 * c].min(b[2 * c]);
                a[2 * c + 1] = a[2 * c + 1].max(b[2 * c + 1]);
            }
        }
        self
    }

    fn count(pred: ArrayView3<u16>, gt: ArrayView3<u16>, labels: &[u16]) -> Self {
        let mut lut = vec![0u16; 1 << 16];
        for (n, &l) in labels.iter().enumerate() {
            lut[l as usize] = n as u16 + 1;
        }
        let n = labels.len() + 1;
        pred.axis_iter(Axis(0))
            .into_par_iter()
            .zip(gt.axis_iter(Axis(0)))
            .enumerate()
            .fold(
                || Tally::empty(n),
                |mut t, (k, (p, g))| {
                    Zip::indexed(p).and(g).for_each(|(j, i), &pv, &gv| {
                        let (a, b) = (lut[pv as usize] as usize, lut[gv as usize] as usize);
                        t.matrix[a * n + b] += 1;
                        for x in [a, b] {
                            if x > 0 {
                                include_voxel(&mut t.bboxes[x], k, j, i);
                            }
                        }
                    });
                    t
                },
            )
            .reduce(|| Tally::empty(n), Tally::merge)
    }

    /// `[tp, fp, fn, tn]` of label index `x` (1-based).
    fn counts(&self, x: usize) -> [u64; 4] {
        let n = self.n;
        let tp = self.matrix[x * n + x];
        let pred_pos: u64 = (0..n).map(|g| self.matrix[x * n + g]).sum();
        let gt_pos: u64 = (0..n).map(|p| self.matrix[p * n + x]).sum();
        let total: u64 = self.matrix.iter().sum();
        [
            tp,
            pred_pos - tp,
            gt_pos - tp,
            total - pred_pos - gt_pos + tp,
        ]
    }

    fn bbox(&self, x: usize) -> Option<[usize; 6]> {
        let b = self.bboxes[x];
        (b[0] != usize::MAX).then_some(b)
    }
}

impl LabelMetrics {
    /// A numeric metric by its report name (`"dice"`, `"hd95"`, `"tp"`, ...); `None` when
    /// undefined or unknown. Counts are returned as `f64`.
    pub fn get(&self, key: &str) -> Option<f64> {
        match key {
            "tp" => Some(self.tp as f64),
            "fp" => Some(self.fp as f64),
            "fn" => Some(self.fn_ as f64),
            "tn" => Some(self.tn as f64),
            "dice" => self.dice,
            "iou" => self.iou,
            "precision" => self.precision,
            "recall" => self.recall,
            "sensitivity" => self.sensitivity,
            "specificity" => self.specificity,
            "accuracy" => self.accuracy,
            "f1" => self.f1,
            "prevalence" => self.prevalence,
            "vol_pred_ml" => Some(self.vol_pred_ml),
            "vol_gt_ml" => Some(self.vol_gt_ml),
            "volume_similarity" => self.volume_similarity,
            "hd" => self.hd,
            "hd95" => self.hd95,
            "hd95_pooled" => self.hd95_pooled,
            "assd" => self.assd,
            "masd" => self.masd,
            "nsd" => self.nsd,
            "nsd_tolerance_mm" => Some(self.nsd_tolerance_mm),
            "auc" => self.auc,
            "max_probability" => self.max_probability,
            _ => None,
        }
        .filter(|v| v.is_finite())
    }
}
