//! The raw-slice kernels: contiguous f32 slices in, `Vec<f32>` out, no burn. Every `unsafe`
//! block of medseg lives here, each with its SAFETY argument.

pub mod conv3d;
pub mod depth_to_space;
mod direct_conv;
pub mod instance_norm;
pub mod leaky_relu;
mod winograd;

pub use conv3d::ConvShape;

/// Whether this CPU runs the direct AVX-512 conv kernel (otherwise every conv takes an
/// im2col + gemm path).
pub fn has_avx512() -> bool {
    direct_conv::available()
}
