//! Dimension-agnostic layers. The network always carries `[B, C, D, H, W]` tensors; a 2D
//! network has D = 1 and holds 2D modules (`Conv2d`, `max_pool2d`: burn's 3D ops of depth 1
//! would be far slower). Dropping / restoring the unit depth axis is a reshape of a contiguous
//! tensor (metadata only, no copy). Convs, norms and activations run through
//! [`medseg_kernels::ops`], which picks medseg's CPU kernels or burn's ops.

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
use burn::tensor::ops::{ConvOptions, ConvTransposeOptions, MaxPoolOptions};
use burn::tensor::{Device, Tensor};
use medseg_config::NormKind;

use medseg_kernels::ops;

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

    pub fn forward(&self, x: Tensor<5>) -> Tensor<5> {
        match self {
            ConvNd::D3(c) => match c.padding {
                PaddingConfig3d::Explicit(p0, p1, p2) => {
                    let options = ConvOptions::new(c.stride, [p0, p1, p2], c.dilation, c.groups);
                    // weight before bias, as burn's Conv3d::forward: parameters initialize
                    // lazily on first access, so this keeps the RNG draws (the initial weights)
                    let weight = c.weight.val();
                    ops::conv3d(x, weight, c.bias.as_ref().map(|b| b.val()), options)
                }
                _ => c.forward(x),
            },
            ConvNd::D2(c) => match c.padding {
                PaddingConfig2d::Explicit(top, left, bottom, right) => {
                    let padding = [(top, bottom), (left, right)];
                    let options =
                        ConvOptions::new_with_padding(c.stride, padding, c.dilation, c.groups);
                    let weight = c.weight.val();
                    let bias = c.bias.as_ref().map(|b| b.val());
                    as_2d(x, |x| ops::conv2d(x, weight, bias, options))
                }
                _ => as_2d(x, |x| c.forward(x)),
            },
        }
    }
}

/// `(weight, bias, options)` of a burn transposed-conv module (2D or 3D: the same fields),
/// weight first as in burn's own `forward` (parameters initialize lazily on first access, so
/// the order keeps the RNG draws, hence the initial weights).
macro_rules! transposed_parts {
    ($c:expr) => {{
        let c = $c;
        let weight = c.weight.val();
        let bias = c.bias.as_ref().map(|b| b.val());
        let options =
            ConvTransposeOptions::new(c.stride, c.padding, c.padding_out, c.dilation, c.groups);
        (weight, bias, options)
    }};
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

    pub fn forward(&self, x: Tensor<5>) -> Tensor<5> {
        match self {
            ConvTransposeNd::D3(c) => {
                let (weight, bias, options) = transposed_parts!(c);
                ops::conv_transpose3d(x, weight, bias, options)
            }
            ConvTransposeNd::D2(c) => {
                let (weight, bias, options) = transposed_parts!(c);
                as_2d(x, |x| ops::conv_transpose2d(x, weight, bias, options))
            }
        }
    }
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
                    .find(|g| channels.is_multiple_of(*g))
                    .unwrap_or(1);
                Norm::Group(GroupNormConfig::new(groups, channels).init(device))
            }
            NormKind::Batch => Norm::Batch(BatchNormConfig::new(channels).init(device)),
        }
    }

    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        match self {
            Norm::Instance(n) => ops::instance_norm(n, x),
            // As `[b, c, n]`: see `medseg_kernels::ops::instance_norm` (burn's group norm is the
            // same code, with the same wrong gradient on wgpu for `[b, c, 1, h, w]`).
            Norm::Group(n) => {
                let shape = x.shape();
                let [b, c] = [x.dims()[0], x.dims()[1]];
                let n_spatial = shape.num_elements() / (b * c).max(1);
                n.forward(x.reshape([b, c, n_spatial])).reshape(shape)
            }
            Norm::Batch(n) => n.forward(x),
        }
    }

    /// The norm followed by LeakyReLU(`slope`); instance norm runs both as one fused op on
    /// flex ([`ops::instance_norm_leaky_relu`]).
    pub fn forward_leaky_relu<const D: usize>(&self, x: Tensor<D>, slope: f64) -> Tensor<D> {
        match self {
            Norm::Instance(n) => ops::instance_norm_leaky_relu(n, x, slope),
            other => ops::leaky_relu(other.forward(x), slope),
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
