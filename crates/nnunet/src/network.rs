//! nnU-Net's two network classes from `dynamic_network_architectures` 0.4.4 —
//! `PlainConvUNet` and `ResidualEncoderUNet` (BasicBlockD), 2D and 3D — built from the plans'
//! `arch_kwargs` with the checkpoint's weights, on medseg's layers (hence its CPU kernels on
//! flex). Inference only: no deep supervision, eval mode (instance norm has no running
//! statistics, dropout is the identity).
//!
//! Tensors are `[B, C, D, H, W]`; a 2D network takes D = 1 and holds 2D convs, as medseg's own
//! UNet.

use crate::error::NnUnetError;
use crate::plans::ArchKwargs;
use crate::weights::WeightMap;
use burn::module::Param;
use burn::nn::conv::{Conv2dConfig, Conv3dConfig, ConvTranspose2dConfig, ConvTranspose3dConfig};
use burn::nn::{InstanceNorm, InstanceNormConfig, PaddingConfig2d, PaddingConfig3d};
use burn::tensor::{Device, Tensor};
use medseg_kernels::ops;
use medseg_model::layers::{ConvNd, ConvTransposeNd};
use serde_json::Value;
use std::path::Path;

/// Which of the two network classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkClass {
    PlainConvUNet,
    ResidualEncoderUNet,
}

/// Everything needed to build the network, checked against what medseg supports.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkSpec {
    pub class: NetworkClass,
    pub dims: usize,
    pub in_channels: usize,
    pub num_classes: usize,
    pub features: Vec<usize>,
    /// `[d, h, w]` per stage (2D: d = 1).
    pub kernels: Vec<[usize; 3]>,
    pub strides: Vec<[usize; 3]>,
    /// Plain: convs per encoder stage; residual: basic blocks per stage.
    pub encoder_depth: Vec<usize>,
    pub decoder_convs: Vec<usize>,
    pub conv_bias: bool,
    pub norm_eps: f64,
    pub norm_affine: bool,
    /// LeakyReLU's negative slope (0 for ReLU).
    pub negative_slope: f64,
    /// ResidualEncoderUNet's stem width.
    pub stem_channels: usize,
}

impl NetworkSpec {
    /// From `plans.json`'s `architecture` (`plans` names the file in errors).
    pub fn from_plans(
        plans: &Path,
        class_name: &str,
        a: &ArchKwargs,
        in_channels: usize,
        num_classes: usize,
    ) -> Result<Self, NnUnetError> {
        let refuse = |what: String| NnUnetError::unsupported(plans, what);
        let class = match class_name.rsplit('.').next().unwrap_or(class_name) {
            "PlainConvUNet" => NetworkClass::PlainConvUNet,
            "ResidualEncoderUNet" => NetworkClass::ResidualEncoderUNet,
            other => {
                return Err(refuse(format!(
                    "network class {other} is not supported (supported: PlainConvUNet, \
                     ResidualEncoderUNet of dynamic_network_architectures)"
                )));
            }
        };
        let dims = match a.conv_op.rsplit('.').next() {
            Some("Conv3d") => 3,
            Some("Conv2d") => 2,
            _ => return Err(refuse(format!("conv_op {} is not supported", a.conv_op))),
        };
        let n = a.n_stages;
        let lens_ok = a.features_per_stage.len() == n
            && a.kernel_sizes.len() == n
            && a.strides.len() == n
            && a.n_conv_per_stage_decoder.len() + 1 == n
            && n >= 2;
        if !lens_ok {
            return Err(NnUnetError::file(
                plans,
                format!(
                    "arch_kwargs: features_per_stage, kernel_sizes and strides need n_stages = {n} entries, n_conv_per_stage_decoder n_stages - 1"
                ),
            ));
        }
        let per_axis = |v: &Vec<usize>, key: &str| -> Result<[usize; 3], NnUnetError> {
            match (dims, v.as_slice()) {
                (3, [d, h, w]) => Ok([*d, *h, *w]),
                (2, [h, w]) => Ok([1, *h, *w]),
                _ => Err(NnUnetError::file(
                    plans,
                    format!("arch_kwargs.{key}: {v:?} does not have {dims} entries"),
                )),
            }
        };
        let kernels = (a.kernel_sizes.iter())
            .map(|k| per_axis(k, "kernel_sizes"))
            .collect::<Result<Vec<_>, _>>()?;
        if kernels.iter().flatten().any(|k| k % 2 == 0) {
            return Err(refuse(
                "even kernel sizes are not supported (nnU-Net plans odd ones)".into(),
            ));
        }
        let strides = (a.strides.iter())
            .map(|s| per_axis(s, "strides"))
            .collect::<Result<Vec<_>, _>>()?;
        if strides.iter().flatten().any(|&s| s == 0) {
            return Err(NnUnetError::file(
                plans,
                "arch_kwargs.strides: a stride is 0",
            ));
        }
        let encoder_depth = match class {
            NetworkClass::PlainConvUNet => a.n_conv_per_stage.clone(),
            NetworkClass::ResidualEncoderUNet => a.n_blocks_per_stage.clone(),
        }
        .filter(|d| d.len() == n && d.iter().all(|&x| x >= 1))
        .ok_or_else(|| {
            NnUnetError::file(
                plans,
                format!(
                    "arch_kwargs: n_conv_per_stage / n_blocks_per_stage needs {n} entries >= 1"
                ),
            )
        })?;
        if class == NetworkClass::ResidualEncoderUNet {
            check_residual_options(plans, a)?;
        }
        let (norm_eps, norm_affine) = norm(plans, a)?;
        Ok(NetworkSpec {
            class,
            dims,
            in_channels,
            num_classes,
            features: a.features_per_stage.clone(),
            kernels,
            strides,
            encoder_depth,
            decoder_convs: a.n_conv_per_stage_decoder.clone(),
            conv_bias: a.conv_bias,
            norm_eps,
            norm_affine,
            negative_slope: nonlin_slope(plans, a)?,
            stem_channels: a.stem_channels.unwrap_or(a.features_per_stage[0]),
        })
    }

    /// The product of the strides per axis: tile sizes must be multiples of it.
    pub fn total_stride(&self) -> [usize; 3] {
        let mut t = [1; 3];
        for s in &self.strides {
            for a in 0..3 {
                t[a] *= s[a];
            }
        }
        t
    }

    /// Builds the network with the checkpoint's weights on `device`; every tensor the
    /// architecture needs must be there with its shape, and nothing else may be.
    pub fn load(&self, mut w: WeightMap) -> Result<NnUnetNetwork, NnUnetError> {
        let device = w.device().clone();
        let encoder = match self.class {
            NetworkClass::PlainConvUNet => Encoder::Plain(self.plain_encoder(&mut w, &device)?),
            NetworkClass::ResidualEncoderUNet => self.residual_encoder(&mut w, &device)?,
        };
        let n = self.features.len();
        let mut decoder = Vec::with_capacity(n - 1);
        for s in 0..n - 1 {
            let (below, here) = (self.features[n - 1 - s], self.features[n - 2 - s]);
            let stride = self.strides[n - 1 - s];
            let up = self.transposed(
                &mut w,
                &format!("decoder.transpconvs.{s}"),
                [below, here],
                stride,
                &device,
            )?;
            let mut convs = Vec::new();
            for j in 0..self.decoder_convs[s] {
                let cin = if j == 0 { 2 * here } else { here };
                let p = format!("decoder.stages.{s}.convs.{j}");
                convs.push(self.block(
                    &mut w,
                    &p,
                    [cin, here],
                    self.kernels[n - 2 - s],
                    [1; 3],
                    true,
                    true,
                    &device,
                )?);
            }
            decoder.push(DecoderStage { up, convs });
        }
        let last = n - 2;
        let head = self.conv(
            &mut w,
            &format!("decoder.seg_layers.{last}"),
            [self.features[0], self.num_classes],
            [1; 3],
            [1; 3],
            true,
            &device,
        )?;
        w.finish(last)?;
        Ok(NnUnetNetwork {
            dims: self.dims,
            encoder,
            decoder,
            head,
        })
    }

    fn plain_encoder(
        &self,
        w: &mut WeightMap,
        device: &Device,
    ) -> Result<Vec<Vec<ConvBlock>>, NnUnetError> {
        let mut stages = Vec::new();
        let mut cin = self.in_channels;
        for (s, &cout) in self.features.iter().enumerate() {
            let mut convs = Vec::new();
            for j in 0..self.encoder_depth[s] {
                let stride = if j == 0 { self.strides[s] } else { [1; 3] };
                let ch = [if j == 0 { cin } else { cout }, cout];
                let p = format!("encoder.stages.{s}.0.convs.{j}");
                convs.push(self.block(w, &p, ch, self.kernels[s], stride, true, true, device)?);
            }
            stages.push(convs);
            cin = cout;
        }
        Ok(stages)
    }

    fn residual_encoder(&self, w: &mut WeightMap, device: &Device) -> Result<Encoder, NnUnetError> {
        let stem_ch = [self.in_channels, self.stem_channels];
        let stem = self.block(
            w,
            "encoder.stem.convs.0",
            stem_ch,
            self.kernels[0],
            [1; 3],
            true,
            true,
            device,
        )?;
        let mut stages = Vec::new();
        let mut cin = self.stem_channels;
        for (s, &cout) in self.features.iter().enumerate() {
            let mut blocks = Vec::new();
            for b in 0..self.encoder_depth[s] {
                let p = format!("encoder.stages.{s}.blocks.{b}");
                let (stride, ci) = if b == 0 {
                    (self.strides[s], cin)
                } else {
                    ([1; 3], cout)
                };
                blocks.push(self.basic_block(
                    w,
                    &p,
                    [ci, cout],
                    self.kernels[s],
                    stride,
                    device,
                )?);
            }
            stages.push(blocks);
            cin = cout;
        }
        Ok(Encoder::Residual {
            stem: Box::new(stem),
            stages,
        })
    }

    /// `BasicBlockD`: conv1 (conv-norm-act, strided), conv2 (conv-norm), skip = [AvgPool(stride)]
    /// then [1x1 conv without bias + norm] when the channels change.
    fn basic_block(
        &self,
        w: &mut WeightMap,
        p: &str,
        ch: [usize; 2],
        kernel: [usize; 3],
        stride: [usize; 3],
        device: &Device,
    ) -> Result<BasicBlock, NnUnetError> {
        let conv1 = self.block(
            w,
            &format!("{p}.conv1"),
            ch,
            kernel,
            stride,
            true,
            true,
            device,
        )?;
        let conv2 = self.block(
            w,
            &format!("{p}.conv2"),
            [ch[1], ch[1]],
            kernel,
            [1; 3],
            false,
            true,
            device,
        )?;
        let pool = (stride != [1; 3]).then_some(stride);
        let projection = if ch[0] != ch[1] {
            let index = usize::from(pool.is_some());
            let q = format!("{p}.skip.{index}");
            Some(self.block(w, &q, ch, [1; 3], [1; 3], false, false, device)?)
        } else {
            None
        };
        Ok(BasicBlock {
            conv1,
            conv2,
            pool,
            projection,
            negative_slope: self.negative_slope,
        })
    }

    /// `ConvDropoutNormReLU` at prefix `p`: `p.conv.{weight,bias}`, `p.norm.{weight,bias}`.
    #[allow(clippy::too_many_arguments)]
    fn block(
        &self,
        w: &mut WeightMap,
        p: &str,
        ch: [usize; 2],
        kernel: [usize; 3],
        stride: [usize; 3],
        activation: bool,
        bias: bool,
        device: &Device,
    ) -> Result<ConvBlock, NnUnetError> {
        let conv = self.conv(
            w,
            &format!("{p}.conv"),
            ch,
            kernel,
            stride,
            bias && self.conv_bias,
            device,
        )?;
        let mut norm = InstanceNormConfig::new(ch[1])
            .with_epsilon(self.norm_eps)
            .with_affine(self.norm_affine)
            .init(device);
        if self.norm_affine {
            norm.gamma = Some(Param::from_tensor(
                w.take(&format!("{p}.norm.weight"), [ch[1]])?,
            ));
            norm.beta = Some(Param::from_tensor(
                w.take(&format!("{p}.norm.bias"), [ch[1]])?,
            ));
        }
        Ok(ConvBlock {
            conv,
            norm,
            negative_slope: activation.then_some(self.negative_slope),
        })
    }

    /// A conv with padding `(k - 1) / 2` per axis, weights `[co, ci, *k]` as torch stores them.
    #[allow(clippy::too_many_arguments)]
    fn conv(
        &self,
        w: &mut WeightMap,
        p: &str,
        [ci, co]: [usize; 2],
        k: [usize; 3],
        s: [usize; 3],
        bias: bool,
        device: &Device,
    ) -> Result<ConvNd, NnUnetError> {
        let pad = |a: usize| (k[a] - 1) / 2;
        let weight_name = format!("{p}.weight");
        let bias_t = if bias {
            Some(Param::from_tensor(w.take::<1>(&format!("{p}.bias"), [co])?))
        } else {
            None
        };
        Ok(if self.dims == 3 {
            let mut c = Conv3dConfig::new([ci, co], k)
                .with_stride(s)
                .with_padding(PaddingConfig3d::Explicit(pad(0), pad(1), pad(2)))
                .with_bias(bias)
                .init(device);
            c.weight = Param::from_tensor(w.take(&weight_name, [co, ci, k[0], k[1], k[2]])?);
            c.bias = bias_t;
            ConvNd::D3(c)
        } else {
            let mut c = Conv2dConfig::new([ci, co], [k[1], k[2]])
                .with_stride([s[1], s[2]])
                .with_padding(PaddingConfig2d::Explicit(pad(1), pad(2), pad(1), pad(2)))
                .with_bias(bias)
                .init(device);
            c.weight = Param::from_tensor(w.take(&weight_name, [co, ci, k[1], k[2]])?);
            c.bias = bias_t;
            ConvNd::D2(c)
        })
    }

    /// Transposed conv with kernel = stride (weights `[ci, co, *s]`), bias = `conv_bias`.
    fn transposed(
        &self,
        w: &mut WeightMap,
        p: &str,
        [ci, co]: [usize; 2],
        s: [usize; 3],
        device: &Device,
    ) -> Result<ConvTransposeNd, NnUnetError> {
        let bias = if self.conv_bias {
            Some(Param::from_tensor(w.take::<1>(&format!("{p}.bias"), [co])?))
        } else {
            None
        };
        let weight_name = format!("{p}.weight");
        Ok(if self.dims == 3 {
            let mut c = ConvTranspose3dConfig::new([ci, co], s)
                .with_stride(s)
                .with_bias(self.conv_bias)
                .init(device);
            c.weight = Param::from_tensor(w.take(&weight_name, [ci, co, s[0], s[1], s[2]])?);
            c.bias = bias;
            ConvTransposeNd::D3(c)
        } else {
            let s2 = [s[1], s[2]];
            let mut c = ConvTranspose2dConfig::new([ci, co], s2)
                .with_stride(s2)
                .with_bias(self.conv_bias)
                .init(device);
            c.weight = Param::from_tensor(w.take(&weight_name, [ci, co, s[1], s[2]])?);
            c.bias = bias;
            ConvTransposeNd::D2(c)
        })
    }
}

/// InstanceNorm only (nnU-Net's default); eps and affine from `norm_op_kwargs`.
fn norm(plans: &Path, a: &ArchKwargs) -> Result<(f64, bool), NnUnetError> {
    let op = a.norm_op.as_deref().unwrap_or("None");
    if !op.ends_with("InstanceNorm3d") && !op.ends_with("InstanceNorm2d") {
        return Err(NnUnetError::unsupported(
            plans,
            format!("norm_op {op} is not supported (supported: InstanceNorm2d/3d)"),
        ));
    }
    let kw = a.norm_op_kwargs.clone().unwrap_or_default();
    let eps = kw.get("eps").and_then(Value::as_f64).unwrap_or(1e-5);
    let affine = kw.get("affine").and_then(Value::as_bool).unwrap_or(false);
    if kw.get("track_running_stats").and_then(Value::as_bool) == Some(true) {
        return Err(NnUnetError::unsupported(
            plans,
            "InstanceNorm with track_running_stats is not supported",
        ));
    }
    Ok((eps, affine))
}

/// LeakyReLU (slope from `nonlin_kwargs.negative_slope`, torch's default 0.01) or ReLU.
fn nonlin_slope(plans: &Path, a: &ArchKwargs) -> Result<f64, NnUnetError> {
    let op = a.nonlin.as_deref().unwrap_or("None");
    let kw = a.nonlin_kwargs.clone().unwrap_or_default();
    match op.rsplit('.').next() {
        Some("LeakyReLU") => Ok(kw
            .get("negative_slope")
            .and_then(Value::as_f64)
            .unwrap_or(0.01)),
        Some("ReLU") => Ok(0.0),
        _ => Err(NnUnetError::unsupported(
            plans,
            format!("nonlin {op} is not supported (supported: LeakyReLU, ReLU)"),
        )),
    }
}

fn check_residual_options(plans: &Path, a: &ArchKwargs) -> Result<(), NnUnetError> {
    let refuse = |what: &str| Err(NnUnetError::unsupported(plans, what.to_string()));
    if let Some(b) = &a.block
        && !b.ends_with("BasicBlockD")
    {
        return refuse("ResidualEncoderUNet block other than BasicBlockD is not supported");
    }
    if a.squeeze_excitation == Some(true) {
        return refuse("ResidualEncoderUNet with squeeze_excitation is not supported");
    }
    if a.bottleneck_channels.as_ref().is_some_and(|v| !v.is_null()) {
        return refuse("ResidualEncoderUNet with bottleneck_channels is not supported");
    }
    Ok(())
}

/// conv -> instance norm -> (LeakyReLU).
#[derive(Debug)]
pub struct ConvBlock {
    conv: ConvNd,
    norm: InstanceNorm,
    negative_slope: Option<f64>,
}

impl ConvBlock {
    fn forward(&self, x: Tensor<5>) -> Tensor<5> {
        let y = self.conv.forward(x);
        match self.negative_slope {
            Some(s) => ops::instance_norm_leaky_relu(&self.norm, y, s),
            None => ops::instance_norm(&self.norm, y),
        }
    }
}

/// `BasicBlockD`: `act(conv2(conv1(x)) + skip(x))`.
#[derive(Debug)]
pub struct BasicBlock {
    conv1: ConvBlock,
    conv2: ConvBlock,
    pool: Option<[usize; 3]>,
    projection: Option<ConvBlock>,
    negative_slope: f64,
}

impl BasicBlock {
    fn forward(&self, x: Tensor<5>) -> Tensor<5> {
        let mut skip = match self.pool {
            Some(s) => avg_pool(x.clone(), s),
            None => x.clone(),
        };
        if let Some(p) = &self.projection {
            skip = p.forward(skip);
        }
        let y = self.conv2.forward(self.conv1.forward(x));
        ops::leaky_relu(y + skip, self.negative_slope)
    }
}

/// Average pooling with kernel = stride = `s`, no padding, trailing remainders dropped
/// (torch's `AvgPoolNd(s, s)`, `ceil_mode=False`).
fn avg_pool(x: Tensor<5>, s: [usize; 3]) -> Tensor<5> {
    let [b, c, d, h, w] = x.dims();
    let [o0, o1, o2] = [d / s[0], h / s[1], w / s[2]];
    let mut y = if [o0 * s[0], o1 * s[1], o2 * s[2]] != [d, h, w] {
        x.slice([0..b, 0..c, 0..o0 * s[0], 0..o1 * s[1], 0..o2 * s[2]])
    } else {
        x
    };
    // one axis at a time: the pooled axis split into (out, s) and averaged over s
    if s[2] > 1 {
        let rows = b * c * o0 * s[0] * o1 * s[1];
        y = y
            .reshape([rows, o2, s[2]])
            .mean_dim(2)
            .reshape([b, c, o0 * s[0], o1 * s[1], o2]);
    }
    if s[1] > 1 {
        let planes = b * c * o0 * s[0];
        y = y
            .reshape([planes, o1, s[1], o2])
            .mean_dim(2)
            .reshape([b, c, o0 * s[0], o1, o2]);
    }
    if s[0] > 1 {
        y = y
            .reshape([b * c, o0, s[0], o1 * o2])
            .mean_dim(2)
            .reshape([b, c, o0, o1, o2]);
    }
    y
}

#[derive(Debug)]
enum Encoder {
    Plain(Vec<Vec<ConvBlock>>),
    Residual {
        stem: Box<ConvBlock>,
        stages: Vec<Vec<BasicBlock>>,
    },
}

#[derive(Debug)]
struct DecoderStage {
    up: ConvTransposeNd,
    convs: Vec<ConvBlock>,
}

/// A loaded nnU-Net network (one fold's weights).
#[derive(Debug)]
pub struct NnUnetNetwork {
    dims: usize,
    encoder: Encoder,
    decoder: Vec<DecoderStage>,
    head: ConvNd,
}

impl NnUnetNetwork {
    /// `[B, C_in, D, H, W]` -> logits `[B, classes, D, H, W]` (2D networks: D = 1).
    pub fn forward(&self, x: Tensor<5>) -> Tensor<5> {
        let mut skips = Vec::new();
        match &self.encoder {
            Encoder::Plain(stages) => {
                let mut x = x;
                for stage in stages {
                    for b in stage {
                        x = b.forward(x);
                    }
                    skips.push(x.clone());
                }
            }
            Encoder::Residual { stem, stages } => {
                let mut x = stem.forward(x);
                for stage in stages {
                    for b in stage {
                        x = b.forward(x);
                    }
                    skips.push(x.clone());
                }
            }
        }
        let mut x = skips.pop().expect("at least two stages");
        for stage in &self.decoder {
            let skip = skips.pop().expect("one skip per decoder stage");
            // upsampled first, skip second (UNetDecoder.forward)
            x = Tensor::cat(vec![stage.up.forward(x), skip], 1);
            for b in &stage.convs {
                x = b.forward(x);
            }
        }
        self.head.forward(x)
    }

    pub fn dims(&self) -> usize {
        self.dims
    }
}
