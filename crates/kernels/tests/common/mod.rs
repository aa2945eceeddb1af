//! Helpers shared by the kernel tests (each test file includes this module).
#![allow(dead_code)]

use burn::tensor::Tensor;
use medseg_kernels::ops::{self, Kernels};
use medseg_kernels::trace::{self, KernelPath};

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

/// Runs `f` and fails unless it called at least one of medseg's kernel `paths`: a comparison
/// with burn's ops must never silently compare burn with burn (for instance if the process
/// switched to burn's ops, or a shape fell off the kernels' coverage).
pub fn assert_ran<T>(paths: &[KernelPath], f: impl FnOnce() -> T) -> T {
    assert_eq!(
        ops::kernels(),
        Kernels::Medseg,
        "the kernel switch is set to burn's ops"
    );
    let before: u64 = paths.iter().map(|&p| trace::count(p)).sum();
    let out = f();
    let after: u64 = paths.iter().map(|&p| trace::count(p)).sum();
    assert!(
        after > before,
        "none of medseg's kernels {paths:?} ran: compared burn with burn"
    );
    out
}

/// Prints which kernel paths this test binary exercised, and whether the CPU has AVX-512
/// (without it the direct conv path cannot run, and the im2col paths carry every conv).
/// Shown with `cargo test -- --nocapture` (CI runs the kernel tests that way).
pub fn report_paths(what: &str) {
    let avx = if medseg_kernels::cpu::has_avx512() {
        "yes"
    } else {
        "no"
    };
    let ran: Vec<String> = trace::counts()
        .into_iter()
        .map(|(p, n)| format!("{p:?} {n}"))
        .collect();
    eprintln!("{what}: AVX-512 {avx}; kernel calls: {}", ran.join(", "));
}
