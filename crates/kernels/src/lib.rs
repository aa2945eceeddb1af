//! medseg-kernels: medseg's hand-written CPU kernels and their place in burn.
//!
//! ```text
//! cpu/    raw-slice kernels (no burn): 3D conv (direct AVX-512, Winograd F(2,3), row-shift
//!         and plain im2col + gemm, col2im), fused instance norm + LeakyReLU, LeakyReLU,
//!         depth-to-space
//! flex/   each kernel registered as a burn backend extension op: a Flex body that calls
//!         cpu/, an Autodiff body with a hand-written backward            (feature `burn`)
//! ops     what model code calls: conv3d / conv2d / conv_transpose* / instance_norm(_leaky_relu)
//!         / leaky_relu on burn modules; the one place that picks medseg's kernels or burn's
//!         ops ([`ops::set_kernels`])                                      (feature `burn`)
//! alloc   the allocator setting the binary applies in `main`
//! trace   per-path call counters (tests prove which kernels ran)
//! ```
//!
//! Modelled on burn itself: a module calls `conv3d(...)`, the kernels live in the backend.
//! Every `unsafe` block of medseg is in this crate. Without the default `burn` feature the
//! crate is `cpu`, `alloc` and `trace` alone, built and tested without linking burn.

pub mod alloc;
pub mod cpu;
#[cfg(feature = "burn")]
mod flex;
#[cfg(feature = "burn")]
pub mod ops;
pub mod trace;
