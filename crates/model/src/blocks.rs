//! The building blocks of the UNet family: conv -> (dropout) -> norm -> LeakyReLU, plain and
//! residual encoder stages, attention gates, the transformer bottleneck, decoder stages.

use crate::layers::{ConvNd, ConvTransposeNd, Norm, max_pool};
use burn::module::{Module, Param};
use burn::nn::attention::{MhaInput, MultiHeadAttention, MultiHeadAttentionConfig};
use burn::nn::{
    Dropout, DropoutConfig, Initializer, LayerNorm, LayerNormConfig, Linear, LinearConfig,
};
use burn::tensor::activation::{gelu, relu, sigmoid};
use burn::tensor::{Device, Tensor};
use medseg_config::NormKind;
use medseg_kernels::ops::leaky_relu;

/// Settings shared by every conv block of one network.
#[derive(Debug, Clone, Copy)]
pub struct BlockSettings {
    pub dims: usize,
    pub norm: NormKind,
    pub dropout: f64,
    pub negative_slope: f64,
}

/// conv -> dropout (if p > 0) -> norm -> LeakyReLU, nnU-Net's `ConvDropoutNormReLU`.
#[derive(Module, Debug)]
pub struct ConvNormAct {
    pub conv: ConvNd,
    pub dropout: Option<Dropout>,
    pub norm: Norm,
    pub negative_slope: f64,
}

impl ConvNormAct {
    pub fn new(
        s: &BlockSettings,
        channels: [usize; 2],
        kernel: [usize; 3],
        stride: [usize; 3],
        dilation: usize,
        device: &Device,
    ) -> Self {
        Self {
            conv: ConvNd::new(s.dims, channels, kernel, stride, dilation, device),
            dropout: (s.dropout > 0.0).then(|| DropoutConfig::new(s.dropout).init()),
            norm: Norm::new(s.norm, channels[1], device),
            negative_slope: s.negative_slope,
        }
    }

    /// conv -> dropout, before the norm.
    fn conv_dropout(&self, x: Tensor<5>) -> Tensor<5> {
        let y = self.conv.forward(x);
        match &self.dropout {
            Some(d) => d.forward(y),
            None => y,
        }
    }

    /// conv -> dropout -> norm, without the activation (residual blocks add first).
    fn forward_linear(&self, x: Tensor<5>) -> Tensor<5> {
        self.norm.forward(self.conv_dropout(x))
    }

    pub fn forward(&self, x: Tensor<5>) -> Tensor<5> {
        self.norm
            .forward_leaky_relu(self.conv_dropout(x), self.negative_slope)
    }
}

/// 1x1 projection (+ norm) of a residual block's shortcut when channels or size change.
#[derive(Module, Debug)]
pub struct Projection {
    pub conv: ConvNd,
    pub norm: Norm,
}

/// One encoder stage (the deepest one is the bottleneck).
///
/// * plain: `blocks` run in sequence; the first one carries the stage stride (strided-conv
///   downsampling) unless `pool` is set, in which case max pooling by `pool` comes first.
/// * residual (`residual = true`): a basic residual block per pair of conv blocks —
///   `act(norm(conv2(block1(x))) + shortcut(x))`, where the shortcut is the identity or a
///   strided 1x1 conv + norm when the shape changes (nnU-Net's ResidualEncoderUNet, BasicBlockD).
#[derive(Module, Debug)]
pub struct EncoderStage {
    pub blocks: Vec<ConvNormAct>,
    pub shortcut: Option<Projection>,
    pub residual: bool,
    pub pool: Option<[usize; 3]>,
}

impl EncoderStage {
    /// `dilations` has one entry per conv block (2 blocks normally; the dilated bottleneck has
    /// one per rate). A residual stage needs an even number of blocks after the first pair;
    /// with an odd count the last block is added plainly.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        s: &BlockSettings,
        channels: [usize; 2],
        kernel: [usize; 3],
        stride: [usize; 3],
        pool: bool,
        residual: bool,
        dilations: &[usize],
        device: &Device,
    ) -> Self {
        let pool = (pool && stride != [1, 1, 1]).then_some(stride);
        let conv_stride = if pool.is_some() { [1, 1, 1] } else { stride };
        let blocks = dilations
            .iter()
            .enumerate()
            .map(|(j, &d)| {
                let cin = if j == 0 { channels[0] } else { channels[1] };
                let st = if j == 0 { conv_stride } else { [1, 1, 1] };
                ConvNormAct::new(s, [cin, channels[1]], kernel, st, d, device)
            })
            .collect();
        let shortcut =
            (residual && (channels[0] != channels[1] || conv_stride != [1, 1, 1])).then(|| {
                Projection {
                    conv: ConvNd::new(s.dims, channels, [1; 3], conv_stride, 1, device),
                    norm: Norm::new(s.norm, channels[1], device),
                }
            });
        Self {
            blocks,
            shortcut,
            residual,
            pool,
        }
    }

    pub fn forward(&self, x: Tensor<5>) -> Tensor<5> {
        let mut x = match self.pool {
            Some(p) => max_pool(x, p),
            None => x,
        };
        if !self.residual {
            for b in &self.blocks {
                x = b.forward(x);
            }
            return x;
        }
        let slope = self.blocks[0].negative_slope;
        let mut i = 0;
        while i + 1 < self.blocks.len() {
            let short = match (&self.shortcut, i) {
                (Some(p), 0) => p.norm.forward(p.conv.forward(x.clone())),
                _ => x.clone(),
            };
            let y = self.blocks[i + 1].forward_linear(self.blocks[i].forward(x));
            x = leaky_relu(y + short, slope);
            i += 2;
        }
        if i < self.blocks.len() {
            x = self.blocks[i].forward(x);
        }
        x
    }
}

/// Additive attention gate (Attention U-Net, Oktay et al. 2018) on a skip connection:
/// `skip * sigmoid(psi(relu(W_x skip + W_g g)))`, all 1x1 convs, with the gating signal `g`
/// taken from the upsampled decoder features (same resolution as the skip, so no resampling).
#[derive(Module, Debug)]
pub struct AttentionGate {
    pub w_x: ConvNd,
    pub w_g: ConvNd,
    pub psi: ConvNd,
}

impl AttentionGate {
    /// Intermediate channels: half the skip's (at least 1).
    pub fn new(dims: usize, skip_channels: usize, gate_channels: usize, device: &Device) -> Self {
        let inter = (skip_channels / 2).max(1);
        Self {
            w_x: ConvNd::pointwise(dims, [skip_channels, inter], device),
            w_g: ConvNd::pointwise(dims, [gate_channels, inter], device),
            psi: ConvNd::pointwise(dims, [inter, 1], device),
        }
    }

    pub fn forward(&self, skip: Tensor<5>, gate: Tensor<5>) -> Tensor<5> {
        let a = relu(self.w_x.forward(skip.clone()) + self.w_g.forward(gate));
        let alpha = sigmoid(self.psi.forward(a)); // [B, 1, D, H, W], broadcast over channels
        skip * alpha
    }
}

/// One post-norm transformer layer on tokens `[B, N, C]`:
/// `x = LN(x + MHA(x))`, `x = LN(x + MLP(x))`, MLP = Linear(C, 4C) -> GELU -> Linear(4C, C).
/// MHA: per head softmax(Q K^T / sqrt(d_k)) V with Q = W_Q X, K = W_K X, V = W_V X, heads
/// concatenated and projected by a linear layer.
#[derive(Module, Debug)]
pub struct TransformerLayer {
    pub attention: MultiHeadAttention,
    pub norm1: LayerNorm,
    pub mlp_in: Linear,
    pub mlp_out: Linear,
    pub norm2: LayerNorm,
}

impl TransformerLayer {
    pub fn new(channels: usize, heads: usize, device: &Device) -> Self {
        Self {
            attention: MultiHeadAttentionConfig::new(channels, heads)
                .with_dropout(0.0)
                .init(device),
            norm1: LayerNormConfig::new(channels).init(device),
            mlp_in: LinearConfig::new(channels, 4 * channels).init(device),
            mlp_out: LinearConfig::new(4 * channels, channels).init(device),
            norm2: LayerNormConfig::new(channels).init(device),
        }
    }

    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let a = self
            .attention
            .forward(MhaInput::self_attn(x.clone()))
            .context;
        let x = self.norm1.forward(x + a);
        let m = self.mlp_out.forward(gelu(self.mlp_in.forward(x.clone())));
        self.norm2.forward(x + m)
    }
}

/// Transformer bottleneck: the bottleneck's voxels become tokens (`[B, N, C]`), a learned
/// positional embedding `[1, N, C]` is added, then the layers run; the result is folded back.
/// N is fixed by the training patch size.
#[derive(Module, Debug)]
pub struct TransformerBottleneck {
    pub position: Param<Tensor<3>>,
    pub layers: Vec<TransformerLayer>,
}

impl TransformerBottleneck {
    pub fn new(
        channels: usize,
        tokens: usize,
        heads: usize,
        layers: usize,
        device: &Device,
    ) -> Self {
        Self {
            position: Initializer::Normal {
                mean: 0.0,
                std: 0.02,
            }
            .init([1, tokens, channels], device),
            layers: (0..layers)
                .map(|_| TransformerLayer::new(channels, heads, device))
                .collect(),
        }
    }

    /// Panics if the bottleneck has a different voxel count than the one it was built for
    /// (the network's patch size).
    pub fn forward(&self, x: Tensor<5>) -> Tensor<5> {
        let [b, c, d, h, w] = x.dims();
        let [_, n, _] = self.position.val().dims();
        assert_eq!(
            d * h * w,
            n,
            "transformer bottleneck built for {n} tokens, got {d}x{h}x{w}; use the training patch size"
        );
        let mut t = x.reshape([b, c, n]).swap_dims(1, 2) + self.position.val();
        for l in &self.layers {
            t = l.forward(t);
        }
        t.swap_dims(1, 2).reshape([b, c, d, h, w])
    }
}

/// One decoder stage: transposed-conv upsampling, optional attention gate on the skip,
/// concatenation [skip, up], two conv blocks.
#[derive(Module, Debug)]
pub struct DecoderStage {
    pub up: ConvTransposeNd,
    pub gate: Option<AttentionGate>,
    pub blocks: Vec<ConvNormAct>,
}

impl DecoderStage {
    pub fn new(
        s: &BlockSettings,
        below: usize,
        channels: usize,
        kernel: [usize; 3],
        stride: [usize; 3],
        gate: bool,
        device: &Device,
    ) -> Self {
        Self {
            up: ConvTransposeNd::new(s.dims, [below, channels], stride, device),
            gate: gate.then(|| AttentionGate::new(s.dims, channels, channels, device)),
            blocks: vec![
                ConvNormAct::new(s, [2 * channels, channels], kernel, [1; 3], 1, device),
                ConvNormAct::new(s, [channels, channels], kernel, [1; 3], 1, device),
            ],
        }
    }

    pub fn forward(&self, x: Tensor<5>, skip: Tensor<5>) -> Tensor<5> {
        let up = self.up.forward(x);
        let skip = match &self.gate {
            Some(g) => g.forward(skip, up.clone()),
            None => skip,
        };
        let mut y = Tensor::cat(vec![skip, up], 1);
        for b in &self.blocks {
            y = b.forward(y);
        }
        y
    }
}
