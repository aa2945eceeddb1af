//! Which kernel paths ran: one relaxed counter per path, bumped once per kernel call (not per
//! element), so tests can prove that a comparison with burn really ran medseg's kernels and
//! report which conv variants this CPU exercised (the direct AVX-512 path only exists on
//! AVX-512 CPUs).

use std::sync::atomic::{AtomicU64, Ordering};

/// A kernel path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelPath {
    /// Forward conv, direct AVX-512 kernel (no im2col).
    ConvDirect,
    /// Forward conv, Winograd F(2, 3) (3x3x3 / 1x3x3, stride 1, >= 16 channels).
    ConvWinograd,
    /// Forward conv, row-shift im2col (few output channels).
    ConvRowShift,
    /// Forward conv, plain im2col tile + gemm.
    ConvIm2col,
    /// Strided input gradient, row-blocked col2im.
    ConvCol2im,
    /// Weight gradient, row-shift tile with stacked shifted gradient rows.
    WeightGradRowShift,
    /// Weight gradient, plain im2col tile read in place.
    WeightGradIm2col,
    /// Fused instance norm (+ LeakyReLU), forward or backward.
    InstanceNorm,
    /// LeakyReLU, forward or backward.
    LeakyRelu,
    /// Depth-to-space or its inverse.
    DepthToSpace,
}

const PATHS: [KernelPath; 10] = [
    KernelPath::ConvDirect,
    KernelPath::ConvWinograd,
    KernelPath::ConvRowShift,
    KernelPath::ConvIm2col,
    KernelPath::ConvCol2im,
    KernelPath::WeightGradRowShift,
    KernelPath::WeightGradIm2col,
    KernelPath::InstanceNorm,
    KernelPath::LeakyRelu,
    KernelPath::DepthToSpace,
];

static COUNTS: [AtomicU64; 10] = [const { AtomicU64::new(0) }; 10];

impl KernelPath {
    fn index(self) -> usize {
        PATHS.iter().position(|&p| p == self).unwrap_or(0)
    }
}

/// Records one call of `path`.
pub(crate) fn hit(path: KernelPath) {
    COUNTS[path.index()].fetch_add(1, Ordering::Relaxed);
}

/// Calls of `path` in this process so far.
pub fn count(path: KernelPath) -> u64 {
    COUNTS[path.index()].load(Ordering::Relaxed)
}

/// Every path with its call count, for a test's report.
pub fn counts() -> Vec<(KernelPath, u64)> {
    PATHS.iter().map(|&p| (p, count(p))).collect()
}
