//! Dimension-agnostic layers. The network always carries `[B, C, D, H, W]` tensors; a 2D
//! network has D = 1 and holds 2D modules (`Conv2d`, `max_pool2d`: burn's 3D ops of depth 1
//! would be far slower). On flex its convs run the fast conv kernels with a kernel depth of 1,
//! which cost what a 2D kernel costs. Dropping / restoring the unit depth axis is a reshape of
//! a contiguous tensor (metadata only, no copy).

use burn::module::Module;
use burn::nn::conv::{
    Conv2d, Conv2dConfig, Conv3d, Conv3dConfig, ConvTranspose2d, ConvTranspose2dConfig,
    ConvTranspose3d, ConvTranspose3dConfig,
};
use burn::nn::{
    BatchNorm, BatchNormConfig, GroupNorm, GroupNormConfig, InstanceNorm, InstanceNormConfig,
    PaddingConfig2d, PaddingConfig3d,
};
use burn::tensor::module::max_pool2d;
use burn::tensor::ops::MaxPoolOptions;
use burn::tensor::{Device, Tensor};
use medseg_config::NormKind;

use crate::depth_to_space::depth_to_space;
use crate::fast_act::leaky_relu;
use crate::fast_conv::{same_conv3d, use_fast_conv3d};
use crate::fast_norm::{instance_norm, instance_norm_leaky_relu};

/// Runs a 4D op on a `[B, C, 1, H, W]` tensor.
#[inline]
fn as_2d(x: Tensor<5>, f: impl FnOnce(Tensor<4>) -> Tensor<4>) -> Tensor<5> {
    let [b, c, d, h, w] = x.dims();
    assert_eq!(
        d, 1,
        "a 2D network takes depth-1 inputs [B, C, 1, H, W], got depth {d}"
    );
    let y = f(x.reshape([b, c, h, w]));
    let [b, c, h, w] = y.dims();
    y.reshape([b, c, 1, h, w])
}

/// A convolution with "same" padding `d (k - 1) / 2` per axis (odd kernels).
#[derive(Module, Debug)]
pub enum ConvNd {
    D2(Conv2d),
    D3(Conv3d),
}

impl ConvNd {
    /// `kernel`/`stride` are `[d, h, w]`; a 2D conv uses the last two entries.
    pub fn new(
        dims: usize,
        channels: [usize; 2],
        kernel: [usize; 3],
        stride: [usize; 3],
        dilation: usize,
        device: &Device,
    ) -> Self {
        let p = |a: usize| dilation * (kernel[a] - 1) / 2;
        if dims == 2 {
            ConvNd::D2(
                Conv2dConfig::new(channels, [kernel[1], kernel[2]])
                    .with_stride([stride[1], stride[2]])
                    .with_dilation([dilation, dilation])
                    .with_padding(PaddingConfig2d::Explicit(p(1), p(2), p(1), p(2)))
                    .init(device),
            )
        } else {
            ConvNd::D3(
                Conv3dConfig::new(channels, kernel)
                    .with_stride(stride)
                    .with_dilation([dilation; 3])
                    .with_padding(PaddingConfig3d::Explicit(p(0), p(1), p(2)))
                    .init(device),
            )
        }
    }

    /// A 1x1(x1) convolution.
    pub fn pointwise(dims: usize, channels: [usize; 2], device: &Device) -> Self {
        Self::new(dims, channels, [1; 3], [1; 3], 1, device)
    }

    /// Convs on flex run the faster [`crate::fast_conv`] path (same result within float
    /// rounding); a 2D conv goes there as a 3D conv of kernel depth 1 on the `[B, C, 1, H, W]`
    /// tensor. `MEDSEG_CONV=burn` and other devices use burn's own conv.
    pub fn forward(&self, x: Tensor<5>) -> Tensor<5> {
        match self {
            ConvNd::D3(c) => {
                let d = c.dilation[0];
                let same_padding = c.padding
                    == PaddingConfig3d::Explicit(
                        d * (c.kernel_size[0] - 1) / 2,
                        d * (c.kernel_size[1] - 1) / 2,
                        d * (c.kernel_size[2] - 1) / 2,
                    );
                if c.groups == 1
                    && c.dilation == [d; 3]
                    && same_padding
                    && use_fast_conv3d(&x.device(), c.kernel_size)
                {
                    // weight before bias: parameters initialize lazily on first access, so
                    // this keeps the RNG draws (hence the initial weights) of burn's Conv3d
                    let weight = c.weight.val();
                    let bias = conv_bias(c.bias.as_ref().map(|b| b.val()), weight.dims()[0], &x);
                    same_conv3d(x, weight, bias, c.stride, d)
                } else {
                    c.forward(x)
                }
            }
            ConvNd::D2(c) => {
                let d = c.dilation[0];
                let [k1, k2] = c.kernel_size;
                let (p1, p2) = (d * (k1 - 1) / 2, d * (k2 - 1) / 2);
                if c.groups == 1
                    && c.dilation == [d; 2]
                    && c.padding == PaddingConfig2d::Explicit(p1, p2, p1, p2)
                    && x.dims()[2] == 1
                    && use_fast_conv3d(&x.device(), [1, k1, k2])
                {
                    let weight = c.weight.val();
                    let [co, ci, _, _] = weight.dims();
                    let bias = conv_bias(c.bias.as_ref().map(|b| b.val()), co, &x);
                    let weight: Tensor<5> = weight.reshape([co, ci, 1, k1, k2]);
                    same_conv3d(x, weight, bias, [1, c.stride[0], c.stride[1]], d)
                } else {
                    as_2d(x, |x| c.forward(x))
                }
            }
        }
    }
}

/// The conv's bias, or zeros of `[co]` for a conv without one.
fn conv_bias(bias: Option<Tensor<1>>, co: usize, x: &Tensor<5>) -> Tensor<1> {
    bias.unwrap_or_else(|| Tensor::zeros([co], &x.device()))
}

/// Transposed convolution with kernel = stride (exact inverse of the stage's downsampling).
#[derive(Module, Debug)]
pub enum ConvTransposeNd {
    D2(ConvTranspose2d),
    D3(ConvTranspose3d),
}

impl ConvTransposeNd {
    pub fn new(dims: usize, channels: [usize; 2], stride: [usize; 3], device: &Device) -> Self {
        if dims == 2 {
            let s = [stride[1], stride[2]];
            ConvTransposeNd::D2(
                ConvTranspose2dConfig::new(channels, s)
                    .with_stride(s)
                    .init(device),
            )
        } else {
            ConvTransposeNd::D3(
                ConvTranspose3dConfig::new(channels, stride)
                    .with_stride(stride)
                    .init(device),
            )
        }
    }

    /// On flex (fast path on) the kernel = stride case runs as [`upsample_by_pointwise`];
    /// otherwise burn's transposed conv.
    pub fn forward(&self, x: Tensor<5>) -> Tensor<5> {
        match self {
            ConvTransposeNd::D3(c) => {
                let plain = c.kernel_size == c.stride
                    && c.padding == [0; 3]
                    && c.padding_out == [0; 3]
                    && c.dilation == [1; 3]
                    && c.groups == 1;
                if plain && use_fast_conv3d(&x.device(), [1; 3]) {
                    let weight = c.weight.val();
                    let bias = c.bias.as_ref().map(|b| b.val());
                    upsample_by_pointwise(x, weight, bias)
                } else {
                    c.forward(x)
                }
            }
            ConvTransposeNd::D2(c) => {
                let plain = c.kernel_size == c.stride
                    && c.padding == [0; 2]
                    && c.padding_out == [0; 2]
                    && c.dilation == [1; 2]
                    && c.groups == 1;
                if plain && x.dims()[2] == 1 && use_fast_conv3d(&x.device(), [1; 3]) {
                    let weight = c.weight.val();
                    let [ci, co, k1, k2] = weight.dims();
                    let bias = c.bias.as_ref().map(|b| b.val());
                    upsample_by_pointwise(x, weight.reshape([ci, co, 1, k1, k2]), bias)
                } else {
                    as_2d(x, |x| c.forward(x))
                }
            }
        }
    }
}

/// A transposed conv whose kernel equals its stride `s` (weight `[ci, co, s0, s1, s2]`, no
/// padding) on the fast conv path: each input voxel alone makes one `s0 x s1 x s2` block of the
/// output, so it is a 1x1x1 conv to `co * s0 * s1 * s2` channels followed by a depth-to-space
/// rearrangement. Same values as burn's `conv_transpose3d`; autodiff differentiates through the
/// rearrangement and the conv's own backward. Why: burn's version computes its input gradient
/// with a conv whose im2col runs on one thread.
fn upsample_by_pointwise(x: Tensor<5>, weight: Tensor<5>, bias: Option<Tensor<1>>) -> Tensor<5> {
    let [ci, co, s0, s1, s2] = weight.dims();
    let block = s0 * s1 * s2;
    let m = co * block;
    let pointwise: Tensor<5> = weight.permute([1, 2, 3, 4, 0]).reshape([m, ci, 1, 1, 1]);
    let bias = match bias {
        Some(b) => b.reshape([co, 1]).expand([co, block]).reshape([m]),
        None => Tensor::zeros([m], &x.device()),
    };
    depth_to_space(same_conv3d(x, pointwise, bias, [1; 3], 1), [s0, s1, s2])
}

/// Instance, group or batch normalization (affine, eps 1e-5). Batch norm uses batch statistics
/// on an autodiff device and its running statistics elsewhere.
#[derive(Module, Debug)]
pub enum Norm {
    Instance(InstanceNorm),
    Group(GroupNorm),
    Batch(BatchNorm),
}

impl Norm {
    /// Group norm uses the largest group count <= 8 that divides `channels`.
    pub fn new(kind: NormKind, channels: usize, device: &Device) -> Self {
        match kind {
            NormKind::Instance => Norm::Instance(InstanceNormConfig::new(channels).init(device)),
            NormKind::Group => {
                let groups = (1..=8.min(channels))
                    .rev()
                    .find(|g| channels % g == 0)
                    .unwrap_or(1);
                Norm::Group(GroupNormConfig::new(groups, channels).init(device))
            }
            NormKind::Batch => Norm::Batch(BatchNormConfig::new(channels).init(device)),
        }
    }

    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        match self {
            Norm::Instance(n) => instance_norm(n, x),
            Norm::Group(n) => n.forward(x),
            Norm::Batch(n) => n.forward(x),
        }
    }

    /// The norm followed by LeakyReLU(`slope`); instance norm runs both as one fused op on
    /// flex ([`instance_norm_leaky_relu`]).
    pub fn forward_leaky_relu<const D: usize>(&self, x: Tensor<D>, slope: f64) -> Tensor<D> {
        match self {
            Norm::Instance(n) => instance_norm_leaky_relu(n, x, slope),
            other => leaky_relu(other.forward(x), slope),
        }
    }
}

/// Max pooling with kernel = stride = `s` (`[d, h, w]`), exact forward and backward.
/// burn 0.22 has no public 3D pooling: H and W are pooled by `max_pool2d` on `[B, C*D, H, W]`,
/// D by a max over a reshaped axis (rank 6 at most). Sizes must be divisible by `s`
/// (guaranteed by [`crate::shapes::validate_patch`]).
pub fn max_pool(x: Tensor<5>, s: [usize; 3]) -> Tensor<5> {
    let [b, c, d, h, w] = x.dims();
    let mut y = x;
    if s[1] > 1 || s[2] > 1 {
        let k = [s[1], s[2]];
        let p = max_pool2d(
            y.reshape([b, c * d, h, w]),
            MaxPoolOptions::new(k).with_stride(k),
        );
        y = p.reshape([b, c, d, h / s[1], w / s[2]]);
    }
    if s[0] > 1 {
        let [_, _, _, h2, w2] = y.dims();
        let y6: Tensor<6> = y.reshape([b, c, d / s[0], s[0], h2, w2]);
        y = y6.max_dim(3).reshape([b, c, d / s[0], h2, w2]);
    }
    y
}
