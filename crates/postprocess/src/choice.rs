//! Postprocessing chosen by validation Dice, after nnU-Net v2's `determine_postprocessing`
//! (`nnunetv2/postprocessing/remove_connected_components.py`): first keep the largest
//! component of the whole foreground (all classes as one region) if that raises the mean
//! foreground Dice; then, on top of that decision, keep the largest component of each class
//! if that raises the Dice of that class.
//!
//! Validation sets can be large (CT), so predictions are not kept: [`LccCandidates`] scores
//! each case as it comes, per class, in the four variants the decision needs. Keeping the
//! largest component of class `c` only changes voxels of class `c`, so the per-class Dice of
//! every combination is exact without building the combined label map.

use crate::{
    Connectivity, PostprocessError, keep_largest_component, keep_largest_foreground,
    keep_largest_of_classes,
};
use ndarray::{Array3, ArrayView3, Zip};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The variants scored per class, as indices into [`LccCandidates`]' sums.
const RAW: usize = 0;
/// Largest component of the whole foreground.
const FOREGROUND: usize = 1;
/// Largest component of the class alone.
const CLASS: usize = 2;
/// Largest foreground component, then the largest component of the class in it.
const FOREGROUND_CLASS: usize = 3;

/// Per-class Dice sums of the four variants over the cases added so far.
#[derive(Debug, Clone)]
pub struct LccCandidates {
    connectivity: Connectivity,
    sums: BTreeMap<u16, [f64; 4]>,
    cases: usize,
}

/// Dice of `pred` against `truth == class`, with medseg-eval's convention: 1 when both are
/// empty (so every case counts, as in the reported validation).
fn dice(pred: &Array3<bool>, truth: ArrayView3<u16>, class: u16) -> f64 {
    let (mut tp, mut p, mut t) = (0usize, 0usize, 0usize);
    Zip::from(pred).and(truth).for_each(|&a, &g| {
        let g = g == class;
        tp += (a && g) as usize;
        p += a as usize;
        t += g as usize;
    });
    if p + t == 0 {
        1.0
    } else {
        2.0 * tp as f64 / (p + t) as f64
    }
}

impl LccCandidates {
    /// Scores the foreground labels `labels` (0 is ignored) with `connectivity`.
    pub fn new(labels: &[u16], connectivity: Connectivity) -> Self {
        Self {
            connectivity,
            sums: labels
                .iter()
                .filter(|&&l| l != 0)
                .map(|&l| (l, [0.0; 4]))
                .collect(),
            cases: 0,
        }
    }

    /// Number of cases added.
    pub fn cases(&self) -> usize {
        self.cases
    }

    /// Adds one case: `pred` is the prediction as it would be written (after the configured
    /// postprocessing), `truth` its reference label map.
    pub fn add_case(
        &mut self,
        pred: ArrayView3<u16>,
        truth: ArrayView3<u16>,
    ) -> Result<(), PostprocessError> {
        if pred.shape() != truth.shape() {
            return Err(PostprocessError::Shape {
                what: "prediction and reference label map",
                expected: truth.shape().to_vec(),
                got: pred.shape().to_vec(),
            });
        }
        let conn = self.connectivity;
        let fg_kept = keep_largest_component(pred.mapv(|l| l > 0).view(), conn);
        for (&c, sums) in self.sums.iter_mut() {
            let raw = pred.mapv(|l| l == c);
            let mut in_fg = raw.clone();
            Zip::from(&mut in_fg)
                .and(&fg_kept)
                .for_each(|m, &k| *m &= k);
            let variants = [
                dice(&raw, truth, c),
                dice(&in_fg, truth, c),
                dice(&keep_largest_component(raw.view(), conn), truth, c),
                dice(&keep_largest_component(in_fg.view(), conn), truth, c),
            ];
            for (s, d) in sums.iter_mut().zip(variants) {
                *s += d;
            }
        }
        self.cases += 1;
        Ok(())
    }

    /// Mean Dice per class of `variant`.
    fn means(&self, variant: usize) -> BTreeMap<u16, f64> {
        let n = self.cases as f64;
        self.sums
            .iter()
            .map(|(&l, s)| (l, s[variant] / n))
            .collect()
    }

    /// The decision, or `None` before the first case. A step is kept only when it strictly
    /// raises the Dice (a step that changes nothing is not kept).
    pub fn choose(&self) -> Option<PostprocessChoice> {
        if self.cases == 0 || self.sums.is_empty() {
            return None;
        }
        let raw = self.means(RAW);
        let fg = self.means(FOREGROUND);
        // nnU-Net's rule (determine_postprocessing): the foreground step must raise the mean
        // and lower no class's Dice.
        let largest_foreground = mean(&fg) > mean(&raw) && fg.iter().all(|(c, &d)| d >= raw[c]);
        let (base, with_class) = if largest_foreground {
            (fg, self.means(FOREGROUND_CLASS))
        } else {
            (raw.clone(), self.means(CLASS))
        };
        let mut after = base.clone();
        let mut labels = Vec::new();
        // per class only with more than one foreground class (with one, the foreground step is
        // the same operation), each on a strict gain of its own Dice
        if with_class.len() > 1 {
            for (&c, &d) in &with_class {
                if d > base[&c] {
                    labels.push(c);
                    after.insert(c, d);
                }
            }
        }
        Some(PostprocessChoice {
            largest_foreground,
            largest_component_labels: labels,
            connectivity: self.connectivity,
            cases: self.cases,
            foreground_mean_before: mean(&raw),
            foreground_mean_after: mean(&after),
            dice_before: raw,
            dice_after: after,
        })
    }
}

fn mean(d: &BTreeMap<u16, f64>) -> f64 {
    d.values().sum::<f64>() / d.len().max(1) as f64
}

/// What validation chose (`RUN/postprocessing.json`), and the validation Dice before and
/// after it. Applied after the configured `[postprocess]` steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PostprocessChoice {
    /// Keep the largest component of the whole foreground.
    pub largest_foreground: bool,
    /// Then keep the largest component of each of these classes.
    pub largest_component_labels: Vec<u16>,
    pub connectivity: Connectivity,
    /// Validation cases the choice was made on.
    pub cases: usize,
    /// Mean over classes of `dice_before` / `dice_after`.
    pub foreground_mean_before: f64,
    pub foreground_mean_after: f64,
    /// Class -> mean validation Dice without / with the chosen steps.
    pub dice_before: BTreeMap<u16, f64>,
    pub dice_after: BTreeMap<u16, f64>,
}

impl PostprocessChoice {
    /// True when the choice changes nothing.
    pub fn is_identity(&self) -> bool {
        !self.largest_foreground && self.largest_component_labels.is_empty()
    }

    /// Applies the chosen steps to `labels` in place.
    pub fn apply(&self, labels: &mut Array3<u16>) {
        if self.largest_foreground {
            keep_largest_foreground(labels, self.connectivity);
        }
        keep_largest_of_classes(labels, &self.largest_component_labels, self.connectivity);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 1 x 12 x 12 image: class 1 in a 4x4 block at the top left, class 2 in a 3x3 block at
    /// the bottom right, apart: the foreground has two true regions.
    fn truth() -> Array3<u16> {
        Array3::from_shape_fn((1, 12, 12), |(_, j, i)| match (j, i) {
            (0..4, 0..4) => 1,
            (8..11, 8..11) => 2,
            _ => 0,
        })
    }

    #[test]
    fn stray_blob_of_one_class_is_removed_and_the_other_class_is_left_alone() {
        let gt = truth();
        let mut pred = gt.clone();
        pred[[0, 0, 10]] = 1; // a stray one-voxel blob of class 1, far from its block
        let mut c = LccCandidates::new(&[1, 2], Connectivity::Faces);
        c.add_case(pred.view(), gt.view()).unwrap();
        let choice = c.choose().unwrap();
        // foreground as one region has two real regions (class 1 and class 2): LCC of it
        // would delete class 2, so it is not kept; class 1's LCC removes the blob.
        assert!(!choice.largest_foreground);
        assert_eq!(choice.largest_component_labels, vec![1]);
        assert!(choice.dice_before[&1] < 1.0);
        assert_eq!(choice.dice_after[&1], 1.0);
        assert_eq!(choice.dice_after[&2], 1.0);
        assert!(choice.foreground_mean_after > choice.foreground_mean_before);
        let mut applied = pred.clone();
        choice.apply(&mut applied);
        assert_eq!(applied, gt);
    }

    #[test]
    fn two_true_components_keep_everything() {
        // class 1 truly has two components: LCC of it (or of the foreground) hurts
        let gt = Array3::from_shape_fn((1, 10, 10), |(_, j, i)| match (j, i) {
            (0..3, 0..3) | (6..9, 6..9) => 1,
            _ => 0,
        });
        let mut c = LccCandidates::new(&[1], Connectivity::Corners);
        for _ in 0..3 {
            c.add_case(gt.view(), gt.view()).unwrap();
        }
        let choice = c.choose().unwrap();
        assert!(choice.is_identity(), "{choice:?}");
        assert_eq!(choice.cases, 3);
        assert_eq!(choice.dice_before, choice.dice_after);
        assert_eq!(choice.foreground_mean_after, 1.0);
    }

    #[test]
    fn a_foreground_step_that_lowers_a_class_is_not_kept_even_if_the_mean_rises() {
        // main object: class 2 (16 voxels) touching class 1 (4 voxels); class 1 also has a
        // true one-voxel component far away; the prediction adds a stray 8-voxel class-2 blob.
        let gt = Array3::from_shape_fn((1, 12, 12), |(_, j, i)| match (j, i) {
            (0..4, 0..4) => 2,
            (0..4, 4) | (10, 10) => 1,
            _ => 0,
        });
        let mut pred = gt.clone();
        for j in 8..10 {
            for i in 0..4 {
                pred[[0, j, i]] = 2;
            }
        }
        let mut c = LccCandidates::new(&[1, 2], Connectivity::Faces);
        c.add_case(pred.view(), gt.view()).unwrap();
        let choice = c.choose().unwrap();
        // the foreground step raises the mean (0.90 -> 0.94) but drops class 1 (1.0 -> 0.89)
        assert!(!choice.largest_foreground, "{choice:?}");
        assert_eq!(choice.largest_component_labels, vec![2]);
        assert_eq!(choice.dice_after[&1], 1.0);
        assert_eq!(choice.dice_after[&2], 1.0);
    }

    #[test]
    fn foreground_step_first_then_classes_on_top() {
        // a stray blob holding both classes: the foreground step removes it whole and is
        // chosen; the per-class steps on top of it change nothing, so they are not kept.
        let gt = Array3::from_shape_fn((1, 12, 12), |(_, j, i)| match (j, i) {
            (0..4, 0..2) => 1,
            (0..4, 2..4) => 2,
            _ => 0,
        });
        let mut pred = gt.clone();
        pred[[0, 10, 10]] = 1;
        pred[[0, 10, 11]] = 2;
        pred[[0, 11, 10]] = 2;
        pred[[0, 11, 11]] = 2;
        let mut c = LccCandidates::new(&[1, 2], Connectivity::Faces);
        c.add_case(pred.view(), gt.view()).unwrap();
        let choice = c.choose().unwrap();
        assert!(choice.largest_foreground);
        assert!(choice.largest_component_labels.is_empty());
        assert_eq!(choice.foreground_mean_after, 1.0);
        let mut applied = pred;
        choice.apply(&mut applied);
        assert_eq!(applied, gt);
    }

    #[test]
    fn mismatched_shapes_and_no_cases() {
        let mut c = LccCandidates::new(&[0, 1], Connectivity::Faces);
        assert!(c.choose().is_none());
        let a = Array3::<u16>::zeros((1, 2, 2));
        let b = Array3::<u16>::zeros((1, 2, 3));
        assert!(c.add_case(a.view(), b.view()).is_err());
        assert_eq!(c.cases(), 0);
    }

    #[test]
    fn choice_round_trips_through_json() {
        let gt = truth();
        let mut c = LccCandidates::new(&[1, 2], Connectivity::Corners);
        c.add_case(gt.view(), gt.view()).unwrap();
        let choice = c.choose().unwrap();
        let text = serde_json::to_string(&choice).unwrap();
        let back: PostprocessChoice = serde_json::from_str(&text).unwrap();
        assert_eq!(back, choice);
    }
}
