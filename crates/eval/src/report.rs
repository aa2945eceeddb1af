//! Report writing: the JSON object (`--json` and `summary.json`), `metrics.csv`, `report.md` and
//! the PNG plots. Undefined values are JSON `null` (empty cells in the CSV), never NaN.

use crate::cases::Evaluation;
use crate::classification::CaseLevelMetrics;
use crate::error::EvalError;
use crate::metrics::{CaseMetrics, LabelMetrics};
use crate::summary::{SUMMARY_METRICS, Stats};
use serde_json::{Map, Value, json};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Per-label columns of `metrics.csv` and keys of each case's label object, in order.
pub const LABEL_KEYS: &[&str] = &[
    "tp",
    "fp",
    "fn",
    "tn",
    "dice",
    "iou",
    "precision",
    "recall",
    "sensitivity",
    "specificity",
    "accuracy",
    "f1",
    "prevalence",
    "vol_pred_ml",
    "vol_gt_ml",
    "volume_similarity",
    "hd",
    "hd95",
    "hd95_pooled",
    "assd",
    "masd",
    "nsd",
    "nsd_tolerance_mm",
    "auc",
    "max_probability",
];

fn num(v: Option<f64>) -> Value {
    v.filter(|x| x.is_finite())
        .map_or(Value::Null, |x| json!(x))
}

/// The JSON object of one label in one case.
pub fn label_json(m: &LabelMetrics) -> Value {
    let mut o = Map::new();
    for &k in LABEL_KEYS {
        let v = match k {
            "tp" => json!(m.tp),
            "fp" => json!(m.fp),
            "fn" => json!(m.fn_),
            "tn" => json!(m.tn),
            _ => num(m.get(k)),
        };
        o.insert(k.into(), v);
    }
    o.insert("n_surface_pred".into(), json!(m.n_surface_pred));
    o.insert("n_surface_gt".into(), json!(m.n_surface_gt));
    o.insert("auc_reason".into(), json!(m.auc_reason));
    o.insert("empty".into(), json!(m.empty));
    Value::Object(o)
}

fn case_json(c: &CaseMetrics) -> Value {
    let labels: Map<String, Value> = c
        .labels
        .iter()
        .map(|(l, m)| (l.to_string(), label_json(m)))
        .collect();
    json!({
        "case": c.case,
        "labels": labels,
        "two_d": c.two_d,
        "spacing_mm": c.spacing,
        "image_diagonal_mm": c.image_diagonal_mm,
        "missing_prediction": c.missing_prediction,
    })
}

fn stats_json(s: &Stats) -> Value {
    json!({"mean": num(s.mean), "std": num(s.std), "median": num(s.median), "min": num(s.min),
           "max": num(s.max), "n": s.n, "n_null": s.n_null})
}

fn case_level_json(c: &CaseLevelMetrics) -> Value {
    json!({
        "n_cases": c.n_cases, "n_positive": c.n_positive,
        "auc": num(c.auc), "auc_reason": c.auc_reason,
        "accuracy": num(c.accuracy), "precision": num(c.precision), "recall": num(c.recall),
        "sensitivity": num(c.sensitivity), "specificity": num(c.specificity), "f1": num(c.f1),
        "tp": c.tp, "fp": c.fp, "fn": c.fn_, "tn": c.tn,
        "confusion_matrix": {"rows": "ground truth [negative, positive]", "cols": "prediction [negative, positive]",
                             "values": [[c.tn, c.fp], [c.fn_, c.tp]]},
        "score": c.score,
        "threshold": match c.score {
            crate::classification::CaseScore::MaxProbability => "max probability >= 0.5",
            crate::classification::CaseScore::PredictedVolume => "predicted volume > 0",
        },
        "roc_curve": c.roc_curve,
    })
}

impl Evaluation {
    /// The report as one JSON object: `cases`, `summary` (per label and `foreground_mean`),
    /// `case_level`, plus labels, counts of missing and empty cases and the options used.
    pub fn to_json(&self) -> Value {
        let mut summary: Map<String, Value> = self
            .summary
            .per_label
            .iter()
            .map(|(l, t)| {
                let o: Map<String, Value> = t
                    .iter()
                    .map(|(k, s)| (k.to_string(), stats_json(s)))
                    .collect();
                (l.to_string(), Value::Object(o))
            })
            .collect();
        summary.insert(
            "foreground_mean".into(),
            Value::Object(
                self.summary
                    .foreground_mean
                    .iter()
                    .map(|(k, s)| (k.to_string(), stats_json(s)))
                    .collect(),
            ),
        );
        let case_level: Map<String, Value> = self
            .case_level
            .iter()
            .map(|(l, c)| (l.to_string(), case_level_json(c)))
            .collect();
        let names: Map<String, Value> = self
            .labels
            .iter()
            .map(|l| (l.to_string(), json!(self.label_names.get(l))))
            .collect();
        let empty: Map<String, Value> = self
            .summary
            .empty
            .iter()
            .map(|(l, e)| (l.to_string(), json!(e)))
            .collect();
        let nsd: Map<String, Value> = self
            .labels
            .iter()
            .map(|&l| (l.to_string(), json!(self.options.nsd_tolerance(l))))
            .collect();
        json!({
            "cases": self.cases.iter().map(case_json).collect::<Vec<_>>(),
            "summary": summary,
            "case_level": case_level,
            "labels": names,
            "n_cases": self.cases.len(),
            "n_missing": self.n_missing,
            "missing_cases": self.cases.iter().filter(|c| c.missing_prediction).map(|c| &c.case).collect::<Vec<_>>(),
            "unmatched_predictions": self.unmatched_predictions,
            "empty_mask_cases": empty,
            "nsd_tolerance_mm": nsd,
            "surface_metrics": self.options.surface_metrics,
            "probabilities": self.with_probabilities,
            "conventions": {
                "surface": "mask XOR erosion with the face-connected cross (6-conn. 3D, 4-conn. 2D), border value 0",
                "distances": "exact Euclidean, mm, voxel centres, spacing from the ground truth's pixdim",
                "hd95": "max of the two directed 95th percentiles, linear interpolation (MONAI)",
                "hd95_pooled": "95th percentile of both directions pooled (MedPy hd95)",
                "assd": "mean of both directions pooled; masd: mean of the two directed means",
                "nsd": "fraction of surface voxels within the tolerance (inclusive)",
                "empty": "both empty: dice=iou=1, distances 0, nsd 1; one empty: dice=iou=nsd=0, distances = image diagonal",
                "auc": "rank-based (Mann-Whitney), ties count 1/2; null with auc_reason when only one class is present",
                "std": "population standard deviation (ddof=0)",
            },
        })
    }

    /// `metrics.csv`: one row per case and label; empty cells for undefined values.
    pub fn to_csv(&self) -> String {
        let mut s = String::from("case,label,label_name,missing_prediction,empty");
        for k in LABEL_KEYS {
            s.push(',');
            s.push_str(k);
        }
        s.push('\n');
        for c in &self.cases {
            for (l, m) in &c.labels {
                let name = self.label_names.get(l).map(String::as_str).unwrap_or("");
                let empty = serde_json::to_value(m.empty)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default();
                s.push_str(&format!(
                    "{},{l},{},{},{empty}",
                    csv_field(&c.case),
                    csv_field(name),
                    c.missing_prediction
                ));
                for k in LABEL_KEYS {
                    s.push(',');
                    if let Some(v) = m.get(k) {
                        s.push_str(&v.to_string());
                    }
                }
                s.push('\n');
            }
        }
        s
    }

    /// `report.md`: readable tables of the summary, case-level metrics and per-case Dice/HD95.
    pub fn to_markdown(&self) -> String {
        let f = |v: Option<f64>| v.map_or("–".to_string(), |x| format!("{x:.4}"));
        let name = |l: &u16| match self.label_names.get(l) {
            Some(n) => format!("{l} ({n})"),
            None => l.to_string(),
        };
        let mut s = String::from("# Evaluation report\n\n");
        s.push_str(&format!(
            "{} cases, {} labels. Missing predictions: {} (scored as empty). Predictions without ground truth: {}.\n\n",
            self.cases.len(),
            self.labels.len(),
            self.n_missing,
            self.unmatched_predictions.len()
        ));
        s.push_str("Distances in mm. HD95 = max of the directed 95th percentiles (MONAI); hd95_pooled = MedPy. Both masks empty: Dice 1, distances 0; one empty: Dice 0, distances = image diagonal.\n\n");
        for l in &self.labels {
            s.push_str(&format!("## Label {}\n\n", name(l)));
            if let Some(e) = self.summary.empty.get(l) {
                s.push_str(&format!(
                    "Empty-mask cases: both empty {}, ground truth empty {}, prediction empty {}.\n\n",
                    e.both_empty, e.gt_empty, e.pred_empty
                ));
            }
            s.push_str("| metric | mean | std | median | min | max | n | null |\n|---|---|---|---|---|---|---|---|\n");
            if let Some(t) = self.summary.per_label.get(l) {
                for k in SUMMARY_METRICS {
                    if let Some(st) = t.get(k) {
                        s.push_str(&format!(
                            "| {k} | {} | {} | {} | {} | {} | {} | {} |\n",
                            f(st.mean),
                            f(st.std),
                            f(st.median),
                            f(st.min),
                            f(st.max),
                            st.n,
                            st.n_null
                        ));
                    }
                }
            }
            s.push('\n');
            if let Some(c) = self.case_level.get(l) {
                s.push_str(&format!(
                    "Case level ({} cases, {} positive, score: {}): AUC {}{}, accuracy {}, precision {}, recall {}, specificity {}, F1 {}; confusion [[tn {}, fp {}], [fn {}, tp {}]].\n\n",
                    c.n_cases, c.n_positive,
                    match c.score { crate::classification::CaseScore::MaxProbability => "max probability, positive at >= 0.5", crate::classification::CaseScore::PredictedVolume => "predicted volume, positive when > 0" },
                    f(c.auc), c.auc_reason.as_ref().map(|r| format!(" ({r})")).unwrap_or_default(),
                    f(c.accuracy), f(c.precision), f(c.recall), f(c.specificity), f(c.f1),
                    c.tn, c.fp, c.fn_, c.tp
                ));
            }
        }
        s.push_str("## Foreground mean (per-case mean over labels)\n\n| metric | mean | std | median | min | max | n |\n|---|---|---|---|---|---|---|\n");
        for k in SUMMARY_METRICS {
            if let Some(st) = self.summary.foreground_mean.get(k) {
                s.push_str(&format!(
                    "| {k} | {} | {} | {} | {} | {} | {} |\n",
                    f(st.mean),
                    f(st.std),
                    f(st.median),
                    f(st.min),
                    f(st.max),
                    st.n
                ));
            }
        }
        s.push_str("\n## Per case\n\n| case |");
        for l in &self.labels {
            s.push_str(&format!(" Dice {l} | HD95 {l} |"));
        }
        s.push_str("\n|---|");
        for _ in &self.labels {
            s.push_str("---|---|");
        }
        s.push('\n');
        for c in &self.cases {
            let mark = if c.missing_prediction {
                " (missing)"
            } else {
                ""
            };
            s.push_str(&format!("| {}{mark} |", c.case));
            for l in &self.labels {
                let m = c.labels.get(l);
                s.push_str(&format!(
                    " {} | {} |",
                    f(m.and_then(|m| m.dice)),
                    f(m.and_then(|m| m.hd95))
                ));
            }
            s.push('\n');
        }
        s
    }

    /// Writes `metrics.csv`, `summary.json`, `report.md`, `boxplots.png` and (with probabilities)
    /// `roc.png` into `dir` (created if needed), each atomically. Returns the written paths.
    pub fn write_report(&self, dir: &Path) -> Result<Vec<PathBuf>, EvalError> {
        std::fs::create_dir_all(dir).map_err(|source| EvalError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let mut written = Vec::new();
        let mut text = |name: &str, body: String| -> Result<(), EvalError> {
            let path = dir.join(name);
            medseg_volume::write_atomically(&path, |w| w.write_all(body.as_bytes()))?;
            written.push(path);
            Ok(())
        };
        text("metrics.csv", self.to_csv())?;
        let json =
            serde_json::to_string_pretty(&self.to_json()).map_err(|source| EvalError::Json {
                path: dir.join("summary.json"),
                what: "cannot serialize JSON",
                source,
            })?;
        text("summary.json", json + "\n")?;
        text("report.md", self.to_markdown())?;
        let boxes = dir.join("boxplots.png");
        crate::plots::box_plots(self, &boxes)?;
        written.push(boxes);
        if self.with_probabilities {
            let roc = dir.join("roc.png");
            crate::plots::roc_curves(self, &roc)?;
            written.push(roc);
        }
        Ok(written)
    }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}
