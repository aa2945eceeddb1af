//! ROC AUC (Mann–Whitney, ties get half credit) and the ROC curve, in `O(n log n)`.

use rayon::prelude::*;

/// Why an AUC could not be computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AucUndefined {
    /// Every sample is negative (e.g. the label is absent from the ground truth).
    NoPositives,
    /// Every sample is positive.
    NoNegatives,
}

impl AucUndefined {
    /// A short reason for reports (`auc_reason`).
    pub fn reason(self) -> &'static str {
        match self {
            AucUndefined::NoPositives => "undefined: no positive sample (only one class present)",
            AucUndefined::NoNegatives => "undefined: no negative sample (only one class present)",
        }
    }
}

/// ROC analysis of one score list: the AUC and the curve's vertices.
#[derive(Debug, Clone, PartialEq)]
pub struct Roc {
    /// Area under the curve; ties between a positive and a negative count 1/2 (sklearn
    /// `roc_auc_score`, the Mann–Whitney U statistic divided by `P·N`).
    pub auc: f64,
    /// `(false positive rate, true positive rate)` from `(0, 0)` to `(1, 1)`, one vertex per
    /// distinct score (descending), thinned to at most the requested number of points.
    pub curve: Vec<[f64; 2]>,
    pub n_positive: u64,
    pub n_negative: u64,
}

/// Sort keys: scores mapped to `u64` in total order (higher score, higher key) with the class in
/// the lowest bit, so one integer sort groups ties and counts classes.
fn key(score: f64, positive: bool) -> u64 {
    // -0.0 and 0.0 are the same score.
    let b = if score == 0.0 { 0.0f64 } else { score }.to_bits();
    let ordered = if b >> 63 == 1 { !b } else { b | (1 << 63) };
    (ordered & !1) | positive as u64
}

/// ROC of `scores` against `positive` (same length). Scores must not be NaN (the caller checks);
/// they are compared in f64, so f32 inputs keep their exact ties. `max_points` (at least 2)
/// bounds the returned curve. Errors when only one class is present.
pub fn roc(
    scores: impl IntoIterator<Item = (f64, bool)>,
    max_points: usize,
) -> Result<Roc, AucUndefined> {
    // The lowest mantissa bit holds the class: scores that differ only there are treated as
    // ties (a relative difference of 2^-52, far below any probability's resolution; f32
    // probabilities promoted to f64 have that bit 0, so they stay exact).
    let mut keys: Vec<u64> = scores.into_iter().map(|(s, p)| key(s, p)).collect();
    keys.par_sort_unstable();
    let n_pos = keys.iter().filter(|&&k| k & 1 == 1).count() as u64;
    let n_neg = keys.len() as u64 - n_pos;
    if n_pos == 0 {
        return Err(AucUndefined::NoPositives);
    }
    if n_neg == 0 {
        return Err(AucUndefined::NoNegatives);
    }
    // Walk from the highest score down; twice the U statistic stays an exact integer.
    let mut two_u: u128 = 0;
    let (mut tp, mut fp) = (0u64, 0u64);
    let mut vertices = vec![[0.0, 0.0]];
    let mut end = keys.len();
    while end > 0 {
        let group = keys[end - 1] >> 1;
        let mut start = end - 1;
        while start > 0 && keys[start - 1] >> 1 == group {
            start -= 1;
        }
        let pos = keys[start..end].iter().filter(|&&k| k & 1 == 1).count() as u64;
        let neg = (end - start) as u64 - pos;
        // Negatives strictly below this group: n_neg - fp - neg.
        let below = n_neg - fp - neg;
        two_u += 2 * pos as u128 * below as u128 + pos as u128 * neg as u128;
        tp += pos;
        fp += neg;
        vertices.push([fp as f64 / n_neg as f64, tp as f64 / n_pos as f64]);
        end = start;
    }
    let auc = two_u as f64 / (2.0 * n_pos as f64 * n_neg as f64);
    Ok(Roc {
        auc,
        curve: thin(vertices, max_points.max(2)),
        n_positive: n_pos,
        n_negative: n_neg,
    })
}

/// Keeps the first and last vertex and evenly spaced ones between.
fn thin(v: Vec<[f64; 2]>, max_points: usize) -> Vec<[f64; 2]> {
    if v.len() <= max_points {
        return v;
    }
    let last = v.len() - 1;
    (0..max_points)
        .map(|n| v[n * last / (max_points - 1)])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auc(s: &[f64], y: &[bool]) -> Result<f64, AucUndefined> {
        roc(s.iter().copied().zip(y.iter().copied()), 100).map(|r| r.auc)
    }

    #[test]
    fn hand_computed_values_with_ties() {
        // sklearn: roc_auc_score([0,0,1,1], [0.1,0.4,0.35,0.8]) == 0.75
        assert_eq!(
            auc(&[0.1, 0.4, 0.35, 0.8], &[false, false, true, true]),
            Ok(0.75)
        );
        // All scores tied: 0.5.
        assert_eq!(auc(&[0.3; 4], &[false, true, false, true]), Ok(0.5));
        // Pairs (pos, neg): pos {0.5, 0.5, 0.9}, neg {0.5, 0.1}: 0.5vs0.5 tie (x2) = 1,
        // 0.5>0.1 (x2) = 2, 0.9 > both = 2 -> 5 / 6.
        let r = auc(
            &[0.5, 0.5, 0.9, 0.5, 0.1],
            &[true, true, true, false, false],
        )
        .unwrap();
        assert!((r - 5.0 / 6.0).abs() < 1e-15);
        // Perfect and inverted rankings, negative scores included.
        assert_eq!(auc(&[-2.0, -1.0, 3.0], &[false, false, true]), Ok(1.0));
        assert_eq!(auc(&[-2.0, -1.0, 3.0], &[true, true, false]), Ok(0.0));
    }

    #[test]
    fn one_class_is_undefined() {
        assert_eq!(
            auc(&[0.1, 0.2], &[false, false]),
            Err(AucUndefined::NoPositives)
        );
        assert_eq!(
            auc(&[0.1, 0.2], &[true, true]),
            Err(AucUndefined::NoNegatives)
        );
    }

    #[test]
    fn curve_runs_from_origin_to_one() {
        let r = roc([(0.9, true), (0.8, false), (0.7, true), (0.1, false)], 100).unwrap();
        assert_eq!(
            r.curve,
            vec![[0.0, 0.0], [0.0, 0.5], [0.5, 0.5], [0.5, 1.0], [1.0, 1.0]]
        );
        assert_eq!(r.auc, 0.75);
        let many = roc((0..1000).map(|n| (n as f64, n % 3 == 0)), 11).unwrap();
        assert_eq!(many.curve.len(), 11);
        assert_eq!(many.curve[10], [1.0, 1.0]);
    }
}
