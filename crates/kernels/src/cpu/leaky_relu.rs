//! LeakyReLU as one parallel, branch-free pass forward and backward. Same values and
//! gradients as burn's `leaky_relu` (slope where `x < 0`, 1 elsewhere, also at 0).

use rayon::prelude::*;

use crate::trace::{self, KernelPath};

/// Elements per parallel chunk (below this, one thread does the whole tensor).
const CHUNK: usize = 1 << 15;

/// `x` where `x >= 0`, `slope * x` elsewhere.
pub fn forward(x: &[f32], slope: f32) -> Vec<f32> {
    trace::hit(KernelPath::LeakyRelu);
    let mut out = vec![0.0f32; x.len()];
    out.par_chunks_mut(CHUNK)
        .zip(x.par_chunks(CHUNK))
        .for_each(|(o, i)| {
            for (o, &v) in o.iter_mut().zip(i) {
                *o = if v < 0.0 { v * slope } else { v };
            }
        });
    out
}

/// `grad` where `x >= 0`, `slope * grad` elsewhere.
pub fn backward(x: &[f32], grad: &[f32], slope: f32) -> Vec<f32> {
    assert_eq!(x.len(), grad.len(), "leaky relu gradient size");
    trace::hit(KernelPath::LeakyRelu);
    let mut out = vec![0.0f32; x.len()];
    out.par_chunks_mut(CHUNK)
        .zip(x.par_chunks(CHUNK).zip(grad.par_chunks(CHUNK)))
        .for_each(|(o, (xi, gi))| {
            for ((o, &v), &g) in o.iter_mut().zip(xi).zip(gi) {
                *o = if v < 0.0 { g * slope } else { g };
            }
        });
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn slope_below_zero_identity_from_zero_on() {
        let x = [-2.0, -0.5, 0.0, 0.5, 3.0];
        assert_eq!(super::forward(&x, 0.1), [-0.2, -0.05, 0.0, 0.5, 3.0]);
        assert_eq!(
            super::backward(&x, &[1.0; 5], 0.1),
            [0.1, 0.1, 1.0, 1.0, 1.0]
        );
    }
}
