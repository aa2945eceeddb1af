//! Helpers shared by the fast-op tests (each test file includes this module).
#![allow(dead_code)]

use medseg_model::burn::tensor::Tensor;

/// A tensor's values as f32.
pub fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap()
}

/// Largest |got - want| at most `tol` times the largest |want| (floor 1e-6).
pub fn assert_close(what: &str, got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
    let worst = got
        .iter()
        .zip(want)
        .map(|(g, w)| (g - w).abs())
        .fold(0f32, f32::max);
    assert!(
        worst <= tol * scale,
        "{what}: max |diff| {worst} > {tol} * {scale}"
    );
}
