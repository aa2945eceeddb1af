//! From probabilities (or logits) to labels.

use crate::PostprocessError;
use ndarray::{Array3, ArrayView3, ArrayView4, Axis, Zip};

/// Per voxel, the index of the largest channel of `scores` (`[c, k, j, i]`, probabilities or
/// logits). Ties go to the lower index (numpy's `argmax`); NaN never wins. Zero channels give
/// an all-zero map. Parallel over voxels.
pub fn argmax(scores: ArrayView4<f32>) -> Array3<u16> {
    let (c, nk, nj, ni) = scores.dim();
    let mut out = Array3::<u16>::zeros((nk, nj, ni));
    if c == 0 {
        return out;
    }
    let first = scores.index_axis(Axis(0), 0);
    let mut best = first.mapv(|v| if v.is_nan() { f32::NEG_INFINITY } else { v });
    for ch in 1..c {
        Zip::from(&mut out)
            .and(&mut best)
            .and(scores.index_axis(Axis(0), ch))
            .par_for_each(|o, b, &v| {
                if v > *b {
                    *b = v;
                    *o = ch as u16;
                }
            });
    }
    out
}

/// `prob >= level` per voxel (MONAI's `AsDiscrete(threshold=...)` rule). `level` must not be
/// NaN.
pub fn threshold(prob: ArrayView3<f32>, level: f32) -> Result<Array3<bool>, PostprocessError> {
    if level.is_nan() {
        return Err(PostprocessError::Setting {
            key: "threshold",
            value: "NaN".into(),
            reason: "must be a number",
        });
    }
    let mut out = Array3::from_elem(prob.dim(), false);
    Zip::from(&mut out)
        .and(&prob)
        .par_for_each(|o, &p| *o = p >= level);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array4;

    #[test]
    fn argmax_ties_and_threshold() {
        let mut s = Array4::<f32>::zeros((3, 1, 1, 3));
        s[[1, 0, 0, 0]] = 0.5; // channel 1 wins
        s[[0, 0, 0, 1]] = 0.3;
        s[[2, 0, 0, 1]] = 0.3; // tie -> channel 0
        s[[2, 0, 0, 2]] = f32::NAN;
        let a = argmax(s.view());
        assert_eq!(a.as_slice().unwrap(), &[1, 0, 0]);
        let t = threshold(s.index_axis(Axis(0), 1), 0.5).unwrap();
        assert_eq!(t.as_slice().unwrap(), &[true, false, false]);
        assert!(threshold(s.index_axis(Axis(0), 1), f32::NAN).is_err());
    }
}
