//! Case-level classification per label: "does this case contain the label?"
//!
//! A case is positive for label `l` when its ground truth holds `l`. Its score is the maximum
//! probability of `l` in the case ([`CaseScore::MaxProbability`]), or the predicted volume in
//! ml when no probabilities are given ([`CaseScore::PredictedVolume`]). A case is predicted
//! positive when its maximum probability is `>= 0.5`, or its predicted volume is `> 0`.
//! A missing prediction scored as worst case has score 0 (predicted negative).

use crate::metrics::CaseMetrics;
use crate::roc::roc;

/// Which per-case number ranks the cases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CaseScore {
    MaxProbability,
    PredictedVolume,
}

/// Case-level metrics of one label. Ratios with a zero denominator are `None`.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseLevelMetrics {
    pub n_cases: u64,
    pub n_positive: u64,
    pub auc: Option<f64>,
    pub auc_reason: Option<String>,
    pub accuracy: Option<f64>,
    pub precision: Option<f64>,
    pub recall: Option<f64>,
    pub sensitivity: Option<f64>,
    pub specificity: Option<f64>,
    pub f1: Option<f64>,
    pub tp: u64,
    pub fp: u64,
    pub fn_: u64,
    pub tn: u64,
    pub score: CaseScore,
    /// The ROC curve over cases, `(fpr, tpr)` vertices.
    pub roc_curve: Vec<[f64; 2]>,
}

/// Case-level metrics of `label` over `cases` (each must hold the label).
pub fn case_level(cases: &[CaseMetrics], label: u16, score: CaseScore) -> CaseLevelMetrics {
    let samples: Vec<(f64, bool, bool)> = cases
        .iter()
        .filter_map(|c| c.labels.get(&label))
        .map(|m| {
            let positive = m.tp + m.fn_ > 0;
            let (s, predicted) = match score {
                CaseScore::MaxProbability => {
                    let s = m.max_probability.unwrap_or(0.0);
                    (s, s >= 0.5)
                }
                CaseScore::PredictedVolume => (m.vol_pred_ml, m.tp + m.fp > 0),
            };
            (s, positive, predicted)
        })
        .collect();
    let count = |p: bool, q: bool| samples.iter().filter(|s| s.1 == p && s.2 == q).count() as u64;
    let (tp, fp, fn_, tn) = (
        count(true, true),
        count(false, true),
        count(true, false),
        count(false, false),
    );
    let div = |a: u64, b: u64| (b > 0).then(|| a as f64 / b as f64);
    let (auc, auc_reason, roc_curve) = match roc(samples.iter().map(|s| (s.0, s.1)), 1000) {
        Ok(r) => (Some(r.auc), None, r.curve),
        Err(e) => (None, Some(e.reason().to_string()), Vec::new()),
    };
    let recall = div(tp, tp + fn_);
    CaseLevelMetrics {
        n_cases: samples.len() as u64,
        n_positive: tp + fn_,
        auc,
        auc_reason,
        accuracy: div(tp + tn, samples.len() as u64),
        precision: div(tp, tp + fp),
        recall,
        sensitivity: recall,
        specificity: div(tn, tn + fp),
        f1: div(2 * tp, 2 * tp + fp + fn_),
        tp,
        fp,
        fn_,
        tn,
        score,
        roc_curve,
    }
}
