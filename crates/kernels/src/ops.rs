//! The API model code calls, in the shape of burn's functional ops (`burn::tensor::module::
//! conv3d(x, weight, bias, options)` and friends): each function runs medseg's kernels where
//! they apply and burn's op everywhere else. This module is the one place that decides.
//!
//! medseg's kernels apply when [`kernels`] is [`Kernels::Medseg`] (the default), the tensor is
//! on the flex device (with or without autodiff), f32, and the op has a shape they cover:
//! convs with "same" padding `d (k - 1) / 2`, odd kernels, one group, equal dilation on every
//! axis (2D convs run as 3D convs of kernel depth 1); transposed convs whose kernel equals their
//! stride (a pointwise conv plus depth-to-space); affine instance norm of rank >= 3. On other
//! devices (wgpu) every op is burn's, so the network is the same module tree on every device.
//!
//! The switch is process-wide and set by the program, never read from the environment here:
//! the `medseg` binary maps `MEDSEG_CONV=burn` to [`set_kernels`]`(Kernels::Burn)` at start-up.

use burn::backend::DispatchDevice;
use burn::nn::InstanceNorm;
use burn::tensor::ops::{ConvOptions, ConvTransposeOptions};
use burn::tensor::{DType, Device, Tensor, activation, module};
use std::sync::atomic::{AtomicU8, Ordering};

use crate::flex::conv::same_conv3d;
use crate::flex::depth_to_space::flex_depth_to_space;
use crate::flex::instance_norm::fused_instance_norm;
use crate::flex::leaky_relu::fused_leaky_relu;

/// Which implementation runs the ops of this module on the flex device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernels {
    /// medseg's kernels where they apply (the default).
    Medseg,
    /// burn's built-in ops everywhere: for comparison and as an escape hatch.
    Burn,
}

impl Kernels {
    /// `"burn"` or `"medseg"` (case-insensitive, surrounding blanks ignored).
    pub fn parse(name: &str) -> Option<Self> {
        match name.trim().to_ascii_lowercase().as_str() {
            "burn" => Some(Kernels::Burn),
            "medseg" => Some(Kernels::Medseg),
            _ => None,
        }
    }

    /// The name [`Kernels::parse`] reads.
    pub fn name(self) -> &'static str {
        match self {
            Kernels::Medseg => "medseg",
            Kernels::Burn => "burn",
        }
    }
}

/// 0: medseg (default), 1: burn.
static CHOICE: AtomicU8 = AtomicU8::new(0);

/// Chooses the implementation for this process. A global switch: threads running in parallel
/// see each other's choice (tests that flip it run in their own test binary).
pub fn set_kernels(choice: Kernels) {
    CHOICE.store(u8::from(choice == Kernels::Burn), Ordering::SeqCst);
}

/// The implementation in use.
pub fn kernels() -> Kernels {
    match CHOICE.load(Ordering::SeqCst) {
        0 => Kernels::Medseg,
        _ => Kernels::Burn,
    }
}

/// Whether medseg's kernels run on `device`: the choice is [`Kernels::Medseg`] and the device
/// is flex (with or without autodiff).
pub fn medseg_kernels_on(device: &Device) -> bool {
    kernels() == Kernels::Medseg
        && matches!(
            device.clone().without_autodiff().as_dispatch(),
            DispatchDevice::Flex(_)
        )
}

/// Whether medseg's conv kernels cover a conv with this weight shape and these options:
/// "same" padding `d (k - 1) / 2` on both sides, odd kernels, one group, one dilation.
fn same_conv_covered<const N: usize>(kernel: &[usize], options: &ConvOptions<N>) -> bool {
    let d = options.dilation[0];
    options.groups == 1
        && options.dilation.iter().all(|&v| v == d)
        && kernel.iter().all(|k| k % 2 == 1)
        && kernel
            .iter()
            .zip(&options.padding)
            .all(|(&k, &(lo, hi))| lo == d * (k - 1) / 2 && hi == lo)
}

/// Whether medseg's kernels take this conv: covered shape, f32, a device they run on.
fn medseg_conv<const R: usize, const N: usize>(
    x: &Tensor<R>,
    kernel: &[usize],
    options: &ConvOptions<N>,
) -> bool {
    same_conv_covered(kernel, options) && x.dtype() == DType::F32 && medseg_kernels_on(&x.device())
}

/// The bias, or zeros of `[co]` for a conv without one.
fn bias_or_zeros(bias: Option<Tensor<1>>, co: usize, device: &Device) -> Tensor<1> {
    bias.unwrap_or_else(|| Tensor::zeros([co], device))
}

/// burn's `module::conv3d` (`x` `[n, ci, d, h, w]`, `weight` `[co, ci, k0, k1, k2]`), on
/// medseg's kernels where they apply.
pub fn conv3d(
    x: Tensor<5>,
    weight: Tensor<5>,
    bias: Option<Tensor<1>>,
    options: ConvOptions<3>,
) -> Tensor<5> {
    let [co, _, k0, k1, k2] = weight.dims();
    if !medseg_conv(&x, &[k0, k1, k2], &options) {
        return module::conv3d(x, weight, bias, options);
    }
    let bias = bias_or_zeros(bias, co, &x.device());
    same_conv3d(x, weight, bias, options.stride, options.dilation[0])
}

/// burn's `module::conv2d`, on medseg's kernels where they apply (as a 3D conv of kernel
/// depth 1, which costs what a 2D kernel costs).
pub fn conv2d(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Option<Tensor<1>>,
    options: ConvOptions<2>,
) -> Tensor<4> {
    let [co, ci, k1, k2] = weight.dims();
    if !medseg_conv(&x, &[k1, k2], &options) {
        return module::conv2d(x, weight, bias, options);
    }
    let [b, c, h, w] = x.dims();
    let bias = bias_or_zeros(bias, co, &x.device());
    let [s1, s2] = options.stride;
    let y = same_conv3d(
        x.reshape([b, c, 1, h, w]),
        weight.reshape([co, ci, 1, k1, k2]),
        bias,
        [1, s1, s2],
        options.dilation[0],
    );
    let [b, co, _, ho, wo] = y.dims();
    y.reshape([b, co, ho, wo])
}

/// Whether a transposed conv is the kernel = stride, unpadded kind medseg's kernels run.
fn plain_transposed<const N: usize>(kernel: &[usize], o: &ConvTransposeOptions<N>) -> bool {
    kernel == o.stride.as_slice()
        && o.padding == [0; N]
        && o.padding_out == [0; N]
        && o.dilation == [1; N]
        && o.groups == 1
}

/// burn's `module::conv_transpose3d` (`weight` `[ci, co, k0, k1, k2]`); kernel = stride runs
/// on medseg's kernels as a pointwise conv to `co * s0 s1 s2` channels plus depth-to-space.
pub fn conv_transpose3d(
    x: Tensor<5>,
    weight: Tensor<5>,
    bias: Option<Tensor<1>>,
    options: ConvTransposeOptions<3>,
) -> Tensor<5> {
    let [_, _, k0, k1, k2] = weight.dims();
    let on = x.dtype() == DType::F32 && medseg_kernels_on(&x.device());
    if !(on && plain_transposed(&[k0, k1, k2], &options)) {
        return module::conv_transpose3d(x, weight, bias, options);
    }
    upsample_by_pointwise(x, weight, bias)
}

/// burn's `module::conv_transpose2d`; kernel = stride runs on medseg's kernels (see
/// [`conv_transpose3d`]).
pub fn conv_transpose2d(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Option<Tensor<1>>,
    options: ConvTransposeOptions<2>,
) -> Tensor<4> {
    let [ci, co, k1, k2] = weight.dims();
    let on = x.dtype() == DType::F32 && medseg_kernels_on(&x.device());
    if !(on && plain_transposed(&[k1, k2], &options)) {
        return module::conv_transpose2d(x, weight, bias, options);
    }
    let [b, c, h, w] = x.dims();
    let y = upsample_by_pointwise(
        x.reshape([b, c, 1, h, w]),
        weight.reshape([ci, co, 1, k1, k2]),
        bias,
    );
    let [b, co, _, ho, wo] = y.dims();
    y.reshape([b, co, ho, wo])
}

/// A transposed conv whose kernel equals its stride `s` (weight `[ci, co, s0, s1, s2]`, no
/// padding): each input voxel alone makes one `s0 x s1 x s2` block of the output, so it is a
/// 1x1x1 conv to `co * s0 * s1 * s2` channels followed by a depth-to-space rearrangement. Same
/// values as burn's `conv_transpose3d`; autodiff differentiates through the rearrangement and
/// the conv's own backward. Why: burn's version computes its input gradient with a conv whose
/// im2col runs on one thread, and its rank-7 permute copies element by element.
fn upsample_by_pointwise(x: Tensor<5>, weight: Tensor<5>, bias: Option<Tensor<1>>) -> Tensor<5> {
    let [ci, co, s0, s1, s2] = weight.dims();
    let block = s0 * s1 * s2;
    let m = co * block;
    let pointwise: Tensor<5> = weight.permute([1, 2, 3, 4, 0]).reshape([m, ci, 1, 1, 1]);
    let bias = match bias {
        Some(b) => b.reshape([co, 1]).expand([co, block]).reshape([m]),
        None => Tensor::zeros([m], &x.device()),
    };
    let y = same_conv3d(x, pointwise, bias, [1; 3], 1);
    flex_depth_to_space(y, [s0, s1, s2])
}

/// burn's `InstanceNorm::forward`; affine f32 norms of rank >= 3 run medseg's fused kernel.
pub fn instance_norm<const D: usize>(norm: &InstanceNorm, x: Tensor<D>) -> Tensor<D> {
    match fused_norm_params(norm, &x) {
        Some((gamma, beta)) => fused_instance_norm(x, gamma, beta, norm.epsilon, None),
        None => burn_instance_norm(norm, x),
    }
}

/// burn's `InstanceNorm::forward` on `x` seen as `[b, c, n]` (the same numbers: the norm runs
/// over all spatial axes at once). Why: on wgpu (burn 0.22.1), the gradient of gamma (and so of
/// everything before the norm) comes out wrong for a conv output with a size-1 axis after the
/// channels, `[b, c, 1, h, w]` as every tensor of a 2D network is here; rank 3 computes it
/// right (tests/wgpu.rs `norm_after_a_depth_one_conv_agrees_with_flex`).
fn burn_instance_norm<const D: usize>(norm: &InstanceNorm, x: Tensor<D>) -> Tensor<D> {
    let shape = x.shape();
    let dims = x.dims();
    let (b, c) = (dims[0], dims.get(1).copied().unwrap_or(1));
    if D <= 3 {
        return norm.forward(x);
    }
    let n: usize = dims[2..].iter().product();
    norm.forward(x.reshape([b, c, n])).reshape(shape)
}

/// The norm followed by LeakyReLU(`slope`), as one fused kernel where medseg's apply (one
/// write of the activation instead of two; the backward reads `x` and the gradient twice).
pub fn instance_norm_leaky_relu<const D: usize>(
    norm: &InstanceNorm,
    x: Tensor<D>,
    slope: f64,
) -> Tensor<D> {
    match fused_norm_params(norm, &x) {
        Some((gamma, beta)) => fused_instance_norm(x, gamma, beta, norm.epsilon, Some(slope)),
        None => leaky_relu(burn_instance_norm(norm, x), slope),
    }
}

/// `(gamma, beta)` when medseg's fused norm applies to `norm` on `x`, else `None`.
fn fused_norm_params<const D: usize>(
    norm: &InstanceNorm,
    x: &Tensor<D>,
) -> Option<(Tensor<1>, Tensor<1>)> {
    let on = medseg_kernels_on(&x.device()) && norm.affine && D >= 3 && x.dtype() == DType::F32;
    let (gamma, beta) = (norm.gamma.as_ref()?, norm.beta.as_ref()?);
    if !on {
        return None;
    }
    let (gamma, beta) = (gamma.val(), beta.val());
    (gamma.dtype() == DType::F32 && beta.dtype() == DType::F32).then_some((gamma, beta))
}

/// LeakyReLU (`x` where `x >= 0`, `slope * x` elsewhere): medseg's kernel on flex, burn's
/// elsewhere.
pub fn leaky_relu<const D: usize>(x: Tensor<D>, slope: f64) -> Tensor<D> {
    if medseg_kernels_on(&x.device()) {
        fused_leaky_relu(x, slope)
    } else {
        activation::leaky_relu(x, slope)
    }
}
