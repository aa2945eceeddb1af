//! Shape arithmetic: one function ([`conv_out`]) gives every layer's output size, and
//! [`plan_layers`] walks the whole network with it. [`validate_patch`] uses the walk to reject
//! patch sizes the network cannot take before anything runs; `medseg inspect --config` prints it.

use crate::config::{Bottleneck, Downsample, UNetConfig};
use crate::error::ModelError;
use serde::Serialize;

/// Output size of a convolution or pooling window along one axis:
/// `out = floor((in - k - (k-1)(d-1) + 2p) / s) + 1`, i.e. with the dilated kernel extent
/// `d(k-1)+1`. `None` when the (padded) input is smaller than the kernel extent or `s == 0`.
pub fn conv_out(
    input: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
    dilation: usize,
) -> Option<usize> {
    if stride == 0 || kernel == 0 || dilation == 0 {
        return None;
    }
    let extent = dilation * (kernel - 1) + 1;
    let padded = input + 2 * padding;
    if padded < extent {
        None
    } else {
        Some((padded - extent) / stride + 1)
    }
}

/// Output size of a transposed convolution along one axis (no output padding):
/// `out = (in - 1) s - 2p + d(k-1) + 1`.
pub fn conv_transpose_out(
    input: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
    dilation: usize,
) -> Option<usize> {
    if input == 0 {
        return None;
    }
    ((input - 1) * stride + dilation * (kernel - 1) + 1).checked_sub(2 * padding)
}

/// What a layer does (for the receptive field and the memory estimate).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LayerKind {
    Conv,
    MaxPool,
    ConvTranspose,
    Concat,
    AttentionGate,
    Transformer,
    Head,
}

/// One layer of the walk: its window per axis and its output.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LayerShape {
    /// e.g. `encoder.2.conv1`, `decoder.0.up`.
    pub name: String,
    pub kind: LayerKind,
    pub kernel: [usize; 3],
    pub stride: [usize; 3],
    pub dilation: usize,
    /// Output `[channels, d, h, w]` (2D: d = 1).
    pub out: [usize; 4],
}

/// Every layer on the path input -> bottleneck -> full-resolution output, in execution order,
/// for a `[d, h, w]` input. Errors when a window does not fit or a decoder stage cannot restore
/// its skip connection's size.
pub fn plan_layers(cfg: &UNetConfig, input: &[usize; 3]) -> Result<Vec<LayerShape>, ModelError> {
    let n = cfg.num_stages();
    let mut layers = Vec::new();
    let mut size = *input;
    let mut stage_sizes = Vec::with_capacity(n);
    let too_small = |name: &str, size: &[usize; 3]| {
        ModelError::Patch(format!(
            "patch {:?} is too small: layer {name} gets {:?}",
            strip(cfg, input),
            strip(cfg, size)
        ))
    };
    for s in 0..n {
        let k = cfg.kernel_sizes[s];
        let st = cfg.strides[s];
        let c = cfg.features[s];
        let mut first_stride = st;
        if s > 0 && cfg.downsample == Downsample::MaxPool && st != [1, 1, 1] {
            let name = format!("encoder.{s}.pool");
            size = apply(&size, |a, i| conv_out(i, st[a], st[a], 0, 1))
                .ok_or_else(|| too_small(&name, &size))?;
            layers.push(LayerShape {
                name,
                kind: LayerKind::MaxPool,
                kernel: st,
                stride: st,
                dilation: 1,
                out: with_c(cfg.features[s - 1], &size),
            });
            first_stride = [1, 1, 1];
        }
        let dilations: Vec<usize> = match (&cfg.bottleneck, s + 1 == n) {
            (Bottleneck::Dilated { rates }, true) => rates.clone(),
            _ => vec![1, 1],
        };
        for (j, &d) in dilations.iter().enumerate() {
            let stride = if j == 0 { first_stride } else { [1, 1, 1] };
            let name = format!("encoder.{s}.conv{j}");
            size = apply(&size, |a, i| {
                conv_out(i, k[a], stride[a], d * (k[a] - 1) / 2, d)
            })
            .ok_or_else(|| too_small(&name, &size))?;
            layers.push(LayerShape {
                name,
                kind: LayerKind::Conv,
                kernel: k,
                stride,
                dilation: d,
                out: with_c(c, &size),
            });
        }
        if let (Bottleneck::Transformer { layers: t, .. }, true) = (&cfg.bottleneck, s + 1 == n) {
            for j in 0..*t {
                layers.push(LayerShape {
                    name: format!("bottleneck.transformer.{j}"),
                    kind: LayerKind::Transformer,
                    kernel: [1; 3],
                    stride: [1; 3],
                    dilation: 1,
                    out: with_c(c, &size),
                });
            }
        }
        stage_sizes.push(size);
    }
    for s in (0..n - 1).rev() {
        let st = cfg.strides[s + 1];
        let name = format!("decoder.{s}.up");
        let up = apply(&size, |a, i| conv_transpose_out(i, st[a], st[a], 0, 1))
            .ok_or_else(|| too_small(&name, &size))?;
        if up != stage_sizes[s] {
            return Err(not_divisible(cfg, input).unwrap_or_else(|| {
                ModelError::Patch(format!(
                    "patch {:?}: decoder stage {s} upsamples to {:?} but its skip connection is {:?}",
                    strip(cfg, input),
                    strip(cfg, &up),
                    strip(cfg, &stage_sizes[s])
                ))
            }));
        }
        size = up;
        let c = cfg.features[s];
        layers.push(LayerShape {
            name,
            kind: LayerKind::ConvTranspose,
            kernel: st,
            stride: st,
            dilation: 1,
            out: with_c(c, &size),
        });
        if cfg.attention_gates {
            layers.push(LayerShape {
                name: format!("decoder.{s}.gate"),
                kind: LayerKind::AttentionGate,
                kernel: [1; 3],
                stride: [1; 3],
                dilation: 1,
                out: with_c(c, &size),
            });
        }
        layers.push(LayerShape {
            name: format!("decoder.{s}.concat"),
            kind: LayerKind::Concat,
            kernel: [1; 3],
            stride: [1; 3],
            dilation: 1,
            out: with_c(2 * c, &size),
        });
        let k = cfg.kernel_sizes[s];
        for j in 0..2 {
            layers.push(LayerShape {
                name: format!("decoder.{s}.conv{j}"),
                kind: LayerKind::Conv,
                kernel: k,
                stride: [1; 3],
                dilation: 1,
                out: with_c(c, &size),
            });
        }
        if cfg.deep_supervision || s == 0 {
            layers.push(LayerShape {
                name: format!("decoder.{s}.head"),
                kind: LayerKind::Head,
                kernel: [1; 3],
                stride: [1; 3],
                dilation: 1,
                out: with_c(cfg.num_classes, &size),
            });
        }
    }
    Ok(layers)
}

/// Checks a `[d, h, w]` patch (2D: d = 1): every axis must be divisible by the product of that
/// axis' strides, so that each decoder stage restores its skip connection's size. The error
/// names the factor, the deepest stage that needs it and the nearest valid sizes, e.g.
/// `patch 100 is not divisible by 16 at stage 4; nearest valid sizes: 96 or 112`.
pub fn validate_patch(cfg: &UNetConfig, patch: &[usize; 3]) -> Result<(), ModelError> {
    if patch.contains(&0) {
        return Err(ModelError::Patch(format!(
            "patch {:?} has an empty axis",
            strip(cfg, patch)
        )));
    }
    if cfg.dims == 2 && patch[0] != 1 {
        return Err(ModelError::Patch(format!(
            "a 2D network needs depth 1, got patch {patch:?}"
        )));
    }
    if let Some(e) = not_divisible(cfg, patch) {
        return Err(e);
    }
    plan_layers(cfg, patch).map(|_| ())
}

/// The divisibility rule of [`validate_patch`], axis by axis; `None` if every axis passes.
fn not_divisible(cfg: &UNetConfig, patch: &[usize; 3]) -> Option<ModelError> {
    let first_axis = if cfg.dims == 2 { 1 } else { 0 };
    for a in first_axis..3 {
        let factor: usize = cfg.strides.iter().map(|s| s[a]).product();
        let p = patch[a];
        if p.is_multiple_of(factor) {
            continue;
        }
        let stage = cfg.strides.iter().rposition(|s| s[a] > 1).unwrap_or(0);
        let lo = p / factor * factor;
        let hi = lo + factor;
        let nearest = if lo == 0 {
            format!("nearest valid size: {hi}")
        } else {
            format!("nearest valid sizes: {lo} or {hi}")
        };
        let axis = if cfg.dims == 2 { a - 1 } else { a };
        return Some(ModelError::Patch(format!(
            "patch {p} is not divisible by {factor} at stage {stage}; {nearest} (axis {axis} of patch {:?})",
            strip(cfg, patch)
        )));
    }
    None
}

/// Receptive field of one output voxel per axis (in input voxels) along the deepest path:
/// each window of extent `e` at cumulative stride `j` adds `(e - 1) j`. `None` with a
/// transformer bottleneck (global attention: the whole patch).
pub fn receptive_field(cfg: &UNetConfig, layers: &[LayerShape]) -> Option<[usize; 3]> {
    let mut rf = [1usize; 3];
    let mut jump = [1usize; 3];
    for l in layers {
        match l.kind {
            LayerKind::Transformer => return None,
            LayerKind::Conv | LayerKind::MaxPool => {
                for a in 0..3 {
                    let extent = l.dilation * (l.kernel[a] - 1) + 1;
                    rf[a] += (extent - 1) * jump[a];
                    jump[a] *= l.stride[a];
                }
            }
            // kernel = stride: every output voxel sees exactly one input voxel
            LayerKind::ConvTranspose => {
                for (j, s) in jump.iter_mut().zip(l.stride) {
                    *j /= s.max(1);
                }
            }
            LayerKind::Concat | LayerKind::AttentionGate | LayerKind::Head => {}
        }
    }
    if cfg.dims == 2 {
        rf[0] = 1;
    }
    Some(rf)
}

/// Rough training memory for one batch in bytes: autodiff keeps about four tensors of each
/// convolution's output size alive (conv output, the norm's normalized and affine outputs, the
/// activation), one per pooling / upsampling / concatenation / gate output, six per
/// transformer token map plus the MLP's hidden map (4 C per token, twice) and three
/// `heads x N x N` attention maps per transformer layer (`attention_heads`, 0 without a
/// transformer); plus parameters, gradients and Adam's two moments (4 x parameters).
/// f32 throughout. Calibrated against `medseg bench train-step` peak RSS to within a factor ~1.5.
pub fn train_memory_bytes(
    layers: &[LayerShape],
    batch: usize,
    parameters: usize,
    input: &[usize; 3],
    in_channels: usize,
    attention_heads: usize,
) -> u64 {
    let mut floats: u64 = (in_channels * input.iter().product::<usize>()) as u64;
    for l in layers {
        let elems = l.out.iter().product::<usize>() as u64;
        floats += elems
            * match l.kind {
                LayerKind::Conv => 4,
                LayerKind::Transformer => {
                    let tokens = (l.out[1] * l.out[2] * l.out[3]) as u64;
                    6 + 8 + 3 * attention_heads as u64 * tokens / l.out[0].max(1) as u64
                }
                LayerKind::Head => 3,
                _ => 1,
            };
    }
    4 * (floats * batch as u64 + 4 * parameters as u64)
}

fn apply(size: &[usize; 3], f: impl Fn(usize, usize) -> Option<usize>) -> Option<[usize; 3]> {
    Some([f(0, size[0])?, f(1, size[1])?, f(2, size[2])?])
}

fn with_c(c: usize, s: &[usize; 3]) -> [usize; 4] {
    [c, s[0], s[1], s[2]]
}

/// A `[d, h, w]` size in the caller's axes (2D drops d).
pub(crate) fn strip(cfg: &UNetConfig, s: &[usize; 3]) -> Vec<usize> {
    if cfg.dims == 2 {
        s[1..].to_vec()
    } else {
        s.to_vec()
    }
}
