//! Segmentation losses with autodiff, any number of classes, 2D and 3D: cross-entropy
//! (class weights, ignore label), focal (softmax or sigmoid form, gamma, alpha), soft Dice
//! (smooth, include_background, batch Dice, squared denominator), soft IoU, Tversky, and any
//! weighted sum of them. Formulas and conventions are MONAI 1.6.1 / PyTorch's, checked against
//! `tests/fixtures/losses/` (see its README for every formula).
//!
//! Logits are `[B, C, *spatial]` (any rank), labels `[B, *spatial]` integer class ids. All
//! terms work on the flattened `[B, C, N]` view (a reshape, no copy of contiguous logits).

use crate::error::ModelError;
use burn::tensor::activation::{log_sigmoid, log_softmax};
use burn::tensor::{Int, Tensor};
use medseg_config::LossConfig;

/// The focal term's form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FocalMode {
    /// MONAI `FocalLoss(use_softmax=True)`: `-(1-p_t)^γ log p_t`, averaged over voxels **and**
    /// classes (MONAI's `.mean()` over the one-hot tensor).
    Softmax,
    /// MONAI `sigmoid_focal_loss` (what `DiceFocalLoss` uses): per-channel binary focal loss on
    /// the raw logits, averaged over voxels and channels.
    Sigmoid,
}

/// A weighted sum of segmentation loss terms, built from `[loss]`.
#[derive(Debug, Clone, PartialEq)]
pub struct SegLoss {
    pub num_classes: usize,
    /// Term weights; a zero weight skips the term entirely.
    pub dice: f64,
    pub ce: f64,
    pub focal: f64,
    pub iou: f64,
    pub tversky: f64,
    /// Dice/IoU/Tversky/focal over all classes (else classes 1..C; CE always uses all).
    pub include_background: bool,
    /// Sum Dice/IoU/Tversky statistics over the batch before the ratio.
    pub batch_dice: bool,
    /// Dice/IoU denominator uses Σp² (and Σg² = Σg).
    pub squared_pred: bool,
    /// Added to numerator and denominator of Dice/IoU/Tversky (MONAI's smooth_nr = smooth_dr).
    pub smooth: f64,
    pub focal_gamma: f64,
    pub focal_alpha: Option<f64>,
    pub focal_mode: FocalMode,
    pub tversky_alpha: f64,
    pub tversky_beta: f64,
    pub class_weights: Option<Vec<f32>>,
    /// Voxels with this label count in no term (nnU-Net's ignore label).
    pub ignore_label: Option<i64>,
}

impl SegLoss {
    /// Dice + CE, weight 1 each (nnU-Net's default).
    pub fn dice_ce(num_classes: usize) -> Self {
        Self::from_config(&LossConfig::default(), num_classes)
            .expect("default loss config is valid")
    }

    /// Checks `[loss]` against `num_classes` (>= 2, class weights one per class and >= 0,
    /// term weights finite and >= 0 with at least one positive, gamma >= 0).
    pub fn from_config(cfg: &LossConfig, num_classes: usize) -> Result<Self, ModelError> {
        let bad = |m: String| Err(ModelError::Config(m));
        if num_classes < 2 {
            return bad(format!(
                "the loss needs at least 2 classes, got {num_classes}"
            ));
        }
        let terms = [
            ("dice", cfg.dice),
            ("ce", cfg.ce),
            ("focal", cfg.focal),
            ("iou", cfg.iou),
            ("tversky", cfg.tversky),
        ];
        for (name, w) in terms {
            if !w.is_finite() || w < 0.0 {
                return bad(format!("loss.{name} must be a finite weight >= 0, got {w}"));
            }
        }
        if terms.iter().all(|(_, w)| *w == 0.0) {
            return bad(
                "every loss weight is 0: set at least one of dice, ce, focal, iou, tversky".into(),
            );
        }
        if !cfg.smooth.is_finite() || cfg.smooth < 0.0 {
            return bad(format!("loss.smooth must be >= 0, got {}", cfg.smooth));
        }
        if !cfg.focal_gamma.is_finite() || cfg.focal_gamma < 0.0 {
            return bad(format!(
                "loss.focal_gamma must be >= 0, got {}",
                cfg.focal_gamma
            ));
        }
        if let Some(a) = cfg.focal_alpha
            && !(0.0..=1.0).contains(&a)
        {
            return bad(format!("loss.focal_alpha must be in [0, 1], got {a}"));
        }
        let focal_mode = match cfg.focal_mode.as_str() {
            "softmax" => FocalMode::Softmax,
            "sigmoid" => FocalMode::Sigmoid,
            other => {
                return bad(format!(
                    "loss.focal_mode must be \"softmax\" or \"sigmoid\", got {other:?}"
                ));
            }
        };
        let class_weights = match &cfg.class_weights {
            None => None,
            Some(w) if w.len() != num_classes => {
                return bad(format!(
                    "loss.class_weights has {} values but there are {num_classes} classes",
                    w.len()
                ));
            }
            Some(w)
                if w.iter().any(|v| !v.is_finite() || *v < 0.0) || w.iter().all(|v| *v == 0.0) =>
            {
                return bad(format!(
                    "loss.class_weights must be >= 0 and not all 0, got {w:?}"
                ));
            }
            Some(w) => Some(w.iter().map(|&v| v as f32).collect()),
        };
        Ok(Self {
            num_classes,
            dice: cfg.dice,
            ce: cfg.ce,
            focal: cfg.focal,
            iou: cfg.iou,
            tversky: cfg.tversky,
            include_background: cfg.include_background,
            batch_dice: cfg.batch_dice,
            squared_pred: cfg.squared_pred,
            smooth: cfg.smooth,
            focal_gamma: cfg.focal_gamma,
            focal_alpha: cfg.focal_alpha,
            focal_mode,
            tversky_alpha: cfg.tversky_alpha,
            tversky_beta: cfg.tversky_beta,
            class_weights,
            ignore_label: cfg.ignore_label,
        })
    }

    /// The weighted loss, a 1-element tensor (differentiable w.r.t. `logits`).
    ///
    /// Panics if `logits` is not `[B, num_classes, *S]` with labels `[B, *S]`, or if a label
    /// outside `0..num_classes` (other than the ignore label) occurs — such a label is not
    /// detected on the device and would silently act as "no class"; callers validate labels
    /// when loading data.
    pub fn forward<const D: usize, const DL: usize>(
        &self,
        logits: Tensor<D>,
        labels: Tensor<DL, Int>,
    ) -> Tensor<1> {
        let prep = Prepared::new(self, logits, labels);
        let mut total: Option<Tensor<1>> = None;
        let mut add = |w: f64, t: Tensor<1>| {
            let t = t.mul_scalar(w);
            total = Some(match total.take() {
                Some(acc) => acc + t,
                None => t,
            });
        };
        if self.ce > 0.0 {
            add(self.ce, prep.cross_entropy(self));
        }
        if self.focal > 0.0 {
            add(self.focal, prep.focal(self));
        }
        if self.dice > 0.0 || self.iou > 0.0 || self.tversky > 0.0 {
            let st = prep.overlap_stats(self);
            if self.dice > 0.0 {
                add(self.dice, st.dice(self.smooth));
            }
            if self.iou > 0.0 {
                add(self.iou, st.iou(self.smooth));
            }
            if self.tversky > 0.0 {
                add(
                    self.tversky,
                    st.tversky(self.smooth, self.tversky_alpha, self.tversky_beta),
                );
            }
        }
        total.expect("from_config guarantees one positive weight")
    }
}

/// Shared intermediate tensors on the `[B, C, N]` view.
struct Prepared {
    /// raw logits [B, C, N]
    x: Tensor<3>,
    logp: Tensor<3>,
    /// one-hot labels [B, C, N], zero on ignored voxels
    g: Tensor<3>,
    /// 1 on counted voxels [B, 1, N]; None when nothing is ignored
    mask: Option<Tensor<3>>,
    b: usize,
    c: usize,
    n: usize,
}

impl Prepared {
    fn new<const D: usize, const DL: usize>(
        loss: &SegLoss,
        logits: Tensor<D>,
        labels: Tensor<DL, Int>,
    ) -> Self {
        assert!(
            D >= 3 && DL == D - 1,
            "logits [B, C, *S] need labels [B, *S]"
        );
        let dims = logits.dims();
        let (b, c) = (dims[0], dims[1]);
        assert_eq!(
            c, loss.num_classes,
            "logits have {c} channels, the loss expects {}",
            loss.num_classes
        );
        let n: usize = dims[2..].iter().product();
        let ldims = labels.dims();
        assert_eq!(
            &ldims[..],
            &[&dims[..1], &dims[2..]].concat()[..],
            "labels {ldims:?} do not match logits {dims:?}"
        );
        let x = logits.reshape([b, c, n]);
        let mut labels: Tensor<2, Int> = labels.reshape([b, n]);
        let mut mask = None;
        if let Some(ig) = loss.ignore_label {
            let ignored = labels.clone().equal_elem(ig);
            mask = Some(ignored.clone().bool_not().float().reshape([b, 1, n]));
            labels = labels.mask_fill(ignored, 0);
        }
        let planes: Vec<Tensor<2>> = (0..c)
            .map(|k| labels.clone().equal_elem(k as i64).float())
            .collect();
        let mut g: Tensor<3> = Tensor::stack(planes, 1);
        if let Some(m) = &mask {
            g = g * m.clone();
        }
        let logp = log_softmax(x.clone(), 1);
        Self {
            x,
            logp,
            g,
            mask,
            b,
            c,
            n,
        }
    }

    /// Number of counted voxels (a tensor when there is a mask, so it stays on the device).
    fn count(&self) -> Tensor<1> {
        match &self.mask {
            Some(m) => m.clone().sum(),
            None => Tensor::<1>::from_floats([(self.b * self.n) as f32], &self.x.device()),
        }
    }

    /// PyTorch `cross_entropy`: mean NLL over counted voxels; with class weights
    /// `Σ w[t] nll / Σ w[t]`.
    fn cross_entropy(&self, loss: &SegLoss) -> Tensor<1> {
        let nll = (self.logp.clone() * self.g.clone()).sum_dim(1).neg(); // [B, 1, N]
        match &loss.class_weights {
            Some(w) => {
                let w = Tensor::<1>::from_floats(w.as_slice(), &self.x.device())
                    .reshape([1, self.c, 1]);
                let wv = (self.g.clone() * w).sum_dim(1); // [B, 1, N], 0 on ignored voxels
                (wv.clone() * nll).sum() / wv.sum()
            }
            None => nll.sum() / self.count(),
        }
    }

    fn focal(&self, loss: &SegLoss) -> Tensor<1> {
        let first = if loss.include_background { 0 } else { 1 };
        let classes = self.c - first;
        let denom = self.count().mul_scalar(classes as f64);
        match loss.focal_mode {
            FocalMode::Softmax => {
                // MONAI drops channel 0 *before* the softmax when include_background = false.
                let (logp, g) = if first == 0 {
                    (self.logp.clone(), self.g.clone())
                } else {
                    let x = self.x.clone().slice([0..self.b, 1..self.c, 0..self.n]);
                    (
                        log_softmax(x, 1),
                        self.g.clone().slice([0..self.b, 1..self.c, 0..self.n]),
                    )
                };
                let logpt = (logp * g.clone()).sum_dim(1); // [B, 1, N]; 0 where no class counts
                let modulating = logpt
                    .clone()
                    .exp()
                    .neg()
                    .add_scalar(1.0)
                    .clamp_min(0.0)
                    .powf_scalar(loss.focal_gamma);
                let mut term = modulating * logpt.neg();
                // a scalar alpha is ignored by MONAI when the background channel is dropped
                if let (Some(a), 0) = (loss.focal_alpha, first) {
                    let mut av = vec![a as f32; self.c];
                    av[0] = (1.0 - a) as f32;
                    let av = Tensor::<1>::from_floats(av.as_slice(), &self.x.device())
                        .reshape([1, self.c, 1]);
                    term = term * (g * av).sum_dim(1);
                }
                term.sum() / denom
            }
            FocalMode::Sigmoid => {
                let sl = [0..self.b, first..self.c, 0..self.n];
                let z = self.x.clone().slice(sl.clone());
                let g = self.g.clone().slice(sl);
                // BCE with logits = softplus(z) - z g = -log_sigmoid(-z) - z g
                let bce = log_sigmoid(z.clone().neg()).neg() - z.clone() * g.clone();
                // (1 - p_t)^γ = exp(γ log_sigmoid(-z (2g - 1)))  (MONAI's form, stable)
                let sign = g.clone().mul_scalar(2.0).sub_scalar(1.0);
                let modulating = log_sigmoid((z * sign).neg())
                    .mul_scalar(loss.focal_gamma)
                    .exp();
                let mut term = modulating * bce;
                if let Some(a) = loss.focal_alpha {
                    // α on positives, 1-α on negatives
                    term = term * g.clone().mul_scalar(2.0 * a - 1.0).add_scalar(1.0 - a);
                }
                if let Some(m) = &self.mask {
                    term = term * m.clone();
                }
                term.sum() / denom
            }
        }
    }

    fn overlap_stats(&self, loss: &SegLoss) -> OverlapStats {
        let p = self.logp.clone().exp();
        let (mut p, g) = if loss.include_background {
            (p, self.g.clone())
        } else {
            let sl = [0..self.b, 1..self.c, 0..self.n];
            (p.slice(sl.clone()), self.g.clone().slice(sl))
        };
        if let Some(m) = &self.mask {
            p = p * m.clone();
        }
        let reduce = |t: Tensor<3>| {
            let t = t.sum_dim(2);
            if loss.batch_dice { t.sum_dim(0) } else { t }
        };
        let inter = reduce(p.clone() * g.clone());
        let pred_sq = loss.squared_pred.then(|| reduce(p.clone() * p.clone()));
        let pred = reduce(p);
        let gt = reduce(g);
        OverlapStats {
            inter,
            pred_dice: pred_sq.unwrap_or_else(|| pred.clone()),
            pred,
            gt,
        }
    }
}

/// Per (sample, class) — or per class with batch Dice — sums: `inter = Σ p g`, `pred = Σ p`,
/// `pred_dice = Σ p` or `Σ p²` (squared_pred), `gt = Σ g` (= Σ g²).
struct OverlapStats {
    inter: Tensor<3>,
    pred: Tensor<3>,
    pred_dice: Tensor<3>,
    gt: Tensor<3>,
}

impl OverlapStats {
    /// `mean(1 - (2 I + s) / (P + G + s))`.
    fn dice(&self, s: f64) -> Tensor<1> {
        let num = self.inter.clone().mul_scalar(2.0).add_scalar(s);
        let den = (self.pred_dice.clone() + self.gt.clone()).add_scalar(s);
        (num / den).neg().add_scalar(1.0).mean()
    }

    /// MONAI's Jaccard: `mean(1 - (2 I + s) / (2 (P + G - I) + s))` (smoothing not halved).
    fn iou(&self, s: f64) -> Tensor<1> {
        let num = self.inter.clone().mul_scalar(2.0).add_scalar(s);
        let den = (self.pred_dice.clone() + self.gt.clone() - self.inter.clone())
            .mul_scalar(2.0)
            .add_scalar(s);
        (num / den).neg().add_scalar(1.0).mean()
    }

    /// `mean(1 - (TP + s) / (TP + α FP + β FN + s))`, FP = Σp - TP, FN = Σg - TP.
    fn tversky(&self, s: f64, alpha: f64, beta: f64) -> Tensor<1> {
        let tp = self.inter.clone();
        let fp = self.pred.clone() - tp.clone();
        let fn_ = self.gt.clone() - tp.clone();
        let den = tp.clone() + fp.mul_scalar(alpha) + fn_.mul_scalar(beta);
        (tp.add_scalar(s) / den.add_scalar(s))
            .neg()
            .add_scalar(1.0)
            .mean()
    }
}
