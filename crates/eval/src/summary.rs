//! Aggregation of per-case metrics across cases.
//!
//! For each label and metric: mean, standard deviation (population, `ddof = 0` as numpy's
//! default), median, min and max over the cases where the value is defined, with `n` (defined)
//! and `n_null` (undefined) beside them. `foreground_mean` first averages each case's defined
//! values over the labels, then aggregates those per-case means the same way.

use crate::metrics::{CaseMetrics, EmptyRule};
use std::collections::BTreeMap;

/// The metrics that are aggregated, in report order.
pub const SUMMARY_METRICS: &[&str] = &[
    "dice",
    "iou",
    "precision",
    "recall",
    "sensitivity",
    "specificity",
    "accuracy",
    "f1",
    "vol_pred_ml",
    "vol_gt_ml",
    "volume_similarity",
    "hd",
    "hd95",
    "hd95_pooled",
    "assd",
    "masd",
    "nsd",
    "auc",
];

/// Statistics of one metric over cases; all `None` when no case defines it.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Stats {
    pub mean: Option<f64>,
    pub std: Option<f64>,
    pub median: Option<f64>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub n: usize,
    pub n_null: usize,
}

/// Statistics of `values` (`None` and non-finite values count as null).
pub fn stats(values: &[Option<f64>]) -> Stats {
    let mut v: Vec<f64> = values
        .iter()
        .flatten()
        .copied()
        .filter(|x| x.is_finite())
        .collect();
    let n_null = values.len() - v.len();
    if v.is_empty() {
        return Stats {
            mean: None,
            std: None,
            median: None,
            min: None,
            max: None,
            n: 0,
            n_null,
        };
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let mean = v.iter().sum::<f64>() / n as f64;
    let var = v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n as f64;
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    };
    Stats {
        mean: Some(mean),
        std: Some(var.sqrt()),
        median: Some(median),
        min: Some(v[0]),
        max: Some(v[n - 1]),
        n,
        n_null,
    }
}

/// How many cases of a label fell under each empty-mask rule.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct EmptyCounts {
    pub both_empty: usize,
    pub gt_empty: usize,
    pub pred_empty: usize,
}

/// The aggregated metrics of an evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub per_label: BTreeMap<u16, BTreeMap<&'static str, Stats>>,
    pub foreground_mean: BTreeMap<&'static str, Stats>,
    pub empty: BTreeMap<u16, EmptyCounts>,
}

/// Aggregates `cases` over `labels`.
pub fn summarize(cases: &[CaseMetrics], labels: &[u16]) -> Summary {
    let mut per_label = BTreeMap::new();
    let mut empty = BTreeMap::new();
    for &l in labels {
        let ms: Vec<_> = cases.iter().filter_map(|c| c.labels.get(&l)).collect();
        let table = SUMMARY_METRICS
            .iter()
            .map(|&k| (k, stats(&ms.iter().map(|m| m.get(k)).collect::<Vec<_>>())))
            .collect();
        per_label.insert(l, table);
        let mut e = EmptyCounts::default();
        for m in &ms {
            match m.empty {
                EmptyRule::BothEmpty => e.both_empty += 1,
                EmptyRule::GtEmpty => e.gt_empty += 1,
                EmptyRule::PredEmpty => e.pred_empty += 1,
                EmptyRule::None => {}
            }
        }
        empty.insert(l, e);
    }
    let foreground_mean = SUMMARY_METRICS
        .iter()
        .map(|&k| {
            let per_case: Vec<Option<f64>> = cases
                .iter()
                .map(|c| {
                    let v: Vec<f64> = labels
                        .iter()
                        .filter_map(|l| c.labels.get(l).and_then(|m| m.get(k)))
                        .filter(|x| x.is_finite())
                        .collect();
                    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
                })
                .collect();
            (k, stats(&per_case))
        })
        .collect();
    Summary {
        per_label,
        foreground_mean,
        empty,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_by_hand() {
        let s = stats(&[
            Some(1.0),
            None,
            Some(3.0),
            Some(2.0),
            Some(f64::NAN),
            Some(6.0),
        ]);
        assert_eq!((s.n, s.n_null), (4, 2));
        assert_eq!(s.mean, Some(3.0));
        assert_eq!(s.median, Some(2.5));
        assert_eq!((s.min, s.max), (Some(1.0), Some(6.0)));
        assert!((s.std.unwrap() - 3.5f64.sqrt()).abs() < 1e-15);
        let e = stats(&[None]);
        assert_eq!((e.mean, e.n, e.n_null), (None, 0, 1));
    }
}
