//! The UNet family (nnU-Net's PlainConvUNet and its variants) built from one [`UNetConfig`].

use crate::blocks::{BlockSettings, DecoderStage, EncoderStage, TransformerBottleneck};
use crate::config::{Bottleneck, Downsample, UNetConfig};
use crate::layers::ConvNd;
use crate::shapes;
use burn::module::Module;
use burn::tensor::{Device, Tensor};

/// A 2D or 3D UNet. Inputs and outputs are always `[B, C, D, H, W]`; a 2D network takes D = 1
/// (see [`UNet::forward_logits_2d`] for `[B, C, H, W]`).
#[derive(Module, Debug)]
pub struct UNet {
    pub encoder: Vec<EncoderStage>,
    pub transformer: Option<TransformerBottleneck>,
    /// Deepest decoder stage first.
    pub decoder: Vec<DecoderStage>,
    /// 1x1 segmentation heads, aligned with `decoder` from the *end*: `heads.last()` belongs to
    /// the full-resolution stage; with deep supervision there is one per decoder stage.
    pub heads: Vec<ConvNd>,
    pub dims: usize,
}

impl UNetConfig {
    /// Builds the network with freshly initialized weights on `device` (use an autodiff device
    /// for training). The config must have passed [`UNetConfig::from_model_config`]'s checks.
    pub fn init(&self, device: &Device) -> UNet {
        let s = BlockSettings {
            dims: self.dims,
            norm: self.norm,
            dropout: self.dropout,
            negative_slope: self.negative_slope,
        };
        let n = self.num_stages();
        let mut encoder = Vec::with_capacity(n);
        for st in 0..n {
            let cin = if st == 0 {
                self.in_channels
            } else {
                self.features[st - 1]
            };
            let dil: Vec<usize> = match (&self.bottleneck, st + 1 == n) {
                (Bottleneck::Dilated { rates }, true) => rates.clone(),
                _ => vec![1, 1],
            };
            encoder.push(EncoderStage::new(
                &s,
                [cin, self.features[st]],
                self.kernel_sizes[st],
                self.strides[st],
                self.downsample == Downsample::MaxPool,
                self.residual,
                &dil,
                device,
            ));
        }
        let transformer = match &self.bottleneck {
            Bottleneck::Transformer { heads, layers } => {
                let tokens = self.bottleneck_size().iter().product();
                Some(TransformerBottleneck::new(
                    self.features[n - 1],
                    tokens,
                    *heads,
                    *layers,
                    device,
                ))
            }
            _ => None,
        };
        let decoder = (0..n - 1)
            .rev()
            .map(|st| {
                DecoderStage::new(
                    &s,
                    self.features[st + 1],
                    self.features[st],
                    self.kernel_sizes[st],
                    self.strides[st + 1],
                    self.attention_gates,
                    device,
                )
            })
            .collect();
        let head_stages: Vec<usize> = if self.deep_supervision {
            (0..n - 1).rev().collect()
        } else {
            vec![0]
        };
        let heads = head_stages
            .into_iter()
            .map(|st| ConvNd::pointwise(self.dims, [self.features[st], self.num_classes], device))
            .collect();
        UNet {
            encoder,
            transformer,
            decoder,
            heads,
            dims: self.dims,
        }
    }

    /// The bottleneck's `[d, h, w]` for the configured patch size.
    pub fn bottleneck_size(&self) -> [usize; 3] {
        let mut s = self.patch_size;
        for st in &self.strides {
            for a in 0..3 {
                s[a] /= st[a];
            }
        }
        s
    }

    /// Parameter count without building the network's weights (burn initializes lazily).
    pub fn num_params(&self) -> usize {
        let device = Device::flex();
        self.init(&device).num_params()
    }

    /// Every layer's output shape for `patch` (`[d, h, w]`, 2D: d = 1).
    pub fn layer_shapes(
        &self,
        patch: &[usize; 3],
    ) -> Result<Vec<shapes::LayerShape>, crate::ModelError> {
        shapes::plan_layers(self, patch)
    }
}

impl UNet {
    /// Encoder + bottleneck + decoder; calls `head` on each decoder stage's output
    /// (deepest first) when that stage has a head.
    fn run(&self, x: Tensor<5>, all_heads: bool) -> Vec<Tensor<5>> {
        let mut skips = Vec::with_capacity(self.encoder.len());
        let mut x = x;
        for (i, stage) in self.encoder.iter().enumerate() {
            x = stage.forward(x);
            if i + 1 < self.encoder.len() {
                skips.push(x.clone());
            }
        }
        if let Some(t) = &self.transformer {
            x = t.forward(x);
        }
        let nd = self.decoder.len();
        let first_head = nd - self.heads.len();
        let mut outs = Vec::with_capacity(self.heads.len());
        for (i, stage) in self.decoder.iter().enumerate() {
            let skip = skips.pop().expect("one skip per decoder stage");
            x = stage.forward(x, skip);
            if i >= first_head && (all_heads || i + 1 == nd) {
                outs.push(self.heads[i - first_head].forward(x.clone()));
            }
        }
        outs.reverse();
        outs
    }

    /// Full-resolution logits `[B, classes, D, H, W]` (inference).
    pub fn forward_logits(&self, x: Tensor<5>) -> Tensor<5> {
        self.run(x, false).swap_remove(0)
    }

    /// Deep-supervision outputs, full resolution first, then each coarser decoder stage
    /// (one output without deep supervision).
    pub fn forward_train(&self, x: Tensor<5>) -> Vec<Tensor<5>> {
        self.run(x, true)
    }

    /// Same as [`UNet::forward_logits`].
    pub fn forward(&self, x: Tensor<5>) -> Tensor<5> {
        self.forward_logits(x)
    }

    /// [`UNet::forward_logits`] for a 2D network on `[B, C, H, W]` (reshape only, no copy).
    pub fn forward_logits_2d(&self, x: Tensor<4>) -> Tensor<4> {
        let [b, c, h, w] = x.dims();
        let y = self.forward_logits(x.reshape([b, c, 1, h, w]));
        let [b, k, _, h, w] = y.dims();
        y.reshape([b, k, h, w])
    }
}
