//! Data augmentation for training patches (2D and 3D), each transform with a probability.
//! Defaults follow nnU-Net's `get_training_transforms` (probabilities and ranges).

use crate::PreprocessError;
use crate::resample::{Boundary, Interpolation, ResampleOptions, resample_general, resize};
use ndarray::{Array3, Array4, Axis, Zip};
use rand::Rng;

/// Probabilities and ranges of every augmentation. As a TOML table (`[train] augmentation =
/// { mirror = 0.5, rotate = 0.2 }`) every key is optional and unknown keys are errors.
/// A probability of 0 switches a transform off.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AugmentationConfig {
    /// Per spatial axis: reverse it. Default 0.5.
    pub mirror: f64,
    /// In-plane (`i`-`j`) rotation by a multiple of 90° (only 180° when the plane is not
    /// square). Default 0 (nnU-Net does not use it).
    pub rot90: f64,
    /// Rotation by uniform angles in ±`rotate_max_degrees` (3D: about each axis; 2D: in
    /// plane). Default 0.2.
    pub rotate: f64,
    /// Default 30.
    pub rotate_max_degrees: f64,
    /// Isotropic scaling by a factor in `scale_range` (> 1 zooms in). Default 0.2, [0.7, 1.4].
    /// Rotation and scaling are applied in one resampling pass (image linear, label nearest,
    /// zero outside).
    pub scale: f64,
    pub scale_range: [f64; 2],
    /// Additive gaussian noise with a variance drawn from `noise_variance`. Default 0.1,
    /// [0, 0.1].
    pub noise: f64,
    pub noise_variance: [f64; 2],
    /// Gaussian blur with sigma (voxels) from `blur_sigma`. Default 0.2, [0.5, 1.0].
    pub blur: f64,
    pub blur_sigma: [f64; 2],
    /// Multiplicative brightness from `brightness_range`. Default 0.15, [0.75, 1.25].
    pub brightness: f64,
    pub brightness_range: [f64; 2],
    /// Contrast about the mean, factor from `contrast_range`, clipped to the original range.
    /// Default 0.15, [0.75, 1.25].
    pub contrast: f64,
    pub contrast_range: [f64; 2],
    /// Simulated low resolution: nearest downsampling by a zoom from `low_resolution_zoom`,
    /// cubic upsampling back. Default 0.25, [0.5, 1.0].
    pub low_resolution: f64,
    pub low_resolution_zoom: [f64; 2],
    /// Gamma from `gamma_range` on the intensities rescaled to [0, 1] (mean and std kept).
    /// Default 0.3, [0.7, 1.5]; `gamma_inverted` (default 0.1) applies it to the negated image.
    pub gamma: f64,
    pub gamma_inverted: f64,
    pub gamma_range: [f64; 2],
}

impl Default for AugmentationConfig {
    fn default() -> Self {
        Self {
            mirror: 0.5,
            rot90: 0.0,
            rotate: 0.2,
            rotate_max_degrees: 30.0,
            scale: 0.2,
            scale_range: [0.7, 1.4],
            noise: 0.1,
            noise_variance: [0.0, 0.1],
            blur: 0.2,
            blur_sigma: [0.5, 1.0],
            brightness: 0.15,
            brightness_range: [0.75, 1.25],
            contrast: 0.15,
            contrast_range: [0.75, 1.25],
            low_resolution: 0.25,
            low_resolution_zoom: [0.5, 1.0],
            gamma: 0.3,
            gamma_inverted: 0.1,
            gamma_range: [0.7, 1.5],
        }
    }
}

impl AugmentationConfig {
    /// Every augmentation off.
    pub fn none() -> Self {
        Self {
            mirror: 0.0,
            rot90: 0.0,
            rotate: 0.0,
            scale: 0.0,
            noise: 0.0,
            blur: 0.0,
            brightness: 0.0,
            contrast: 0.0,
            low_resolution: 0.0,
            gamma: 0.0,
            gamma_inverted: 0.0,
            ..Self::default()
        }
    }
}

/// Applies an [`AugmentationConfig`] to patches; all randomness comes from the caller's RNG.
#[derive(Debug, Clone)]
pub struct Augmenter {
    cfg: AugmentationConfig,
}

fn check_p(name: &str, p: f64) -> Result<(), PreprocessError> {
    if (0.0..=1.0).contains(&p) {
        Ok(())
    } else {
        Err(PreprocessError::setting(
            &format!("train.augmentation.{name}"),
            p,
            "probability must be in [0, 1]",
        ))
    }
}

fn check_range(name: &str, r: [f64; 2], positive: bool) -> Result<(), PreprocessError> {
    if r[0] <= r[1] && r.iter().all(|v| v.is_finite()) && (!positive || r[0] > 0.0) && r[0] >= 0.0 {
        Ok(())
    } else {
        Err(PreprocessError::setting(
            &format!("train.augmentation.{name}"),
            format!("{r:?}"),
            "needs [low, high] with 0 <= low <= high (low > 0 for factors)",
        ))
    }
}

fn uniform(rng: &mut impl Rng, r: [f64; 2]) -> f64 {
    if r[1] > r[0] {
        rng.random_range(r[0]..r[1])
    } else {
        r[0]
    }
}

impl Augmenter {
    /// Validates probabilities (in [0, 1]) and ranges.
    pub fn new(cfg: AugmentationConfig) -> Result<Self, PreprocessError> {
        for (n, p) in [
            ("mirror", cfg.mirror),
            ("rot90", cfg.rot90),
            ("rotate", cfg.rotate),
            ("scale", cfg.scale),
            ("noise", cfg.noise),
            ("blur", cfg.blur),
            ("brightness", cfg.brightness),
            ("contrast", cfg.contrast),
            ("low_resolution", cfg.low_resolution),
            ("gamma", cfg.gamma),
            ("gamma_inverted", cfg.gamma_inverted),
        ] {
            check_p(n, p)?;
        }
        check_range("scale_range", cfg.scale_range, true)?;
        check_range("noise_variance", cfg.noise_variance, false)?;
        check_range("blur_sigma", cfg.blur_sigma, false)?;
        check_range("brightness_range", cfg.brightness_range, true)?;
        check_range("contrast_range", cfg.contrast_range, true)?;
        check_range("low_resolution_zoom", cfg.low_resolution_zoom, true)?;
        check_range("gamma_range", cfg.gamma_range, true)?;
        if !(cfg.rotate_max_degrees.is_finite() && cfg.rotate_max_degrees >= 0.0) {
            return Err(PreprocessError::setting(
                "train.augmentation.rotate_max_degrees",
                cfg.rotate_max_degrees,
                "must be >= 0",
            ));
        }
        Ok(Self { cfg })
    }

    pub fn config(&self) -> &AugmentationConfig {
        &self.cfg
    }

    /// Augments one patch in place: `image` `[c, k, j, i]`, `label` `[k, j, i]` (same
    /// spatial shape). A patch with `k` extent 1 is treated as 2D (in-plane transforms only).
    /// Order: rot90, rotation + scaling, noise, blur, brightness, contrast, low resolution,
    /// gamma, mirroring.
    pub fn apply(
        &self,
        image: &mut Array4<f32>,
        label: &mut Array3<u16>,
        rng: &mut impl Rng,
    ) -> Result<(), PreprocessError> {
        let s = image.shape();
        if s[1..] != *label.shape() {
            return Err(PreprocessError::Shape {
                what: "augmentation: label vs image patch".into(),
                expected: s[1..].to_vec(),
                got: label.shape().to_vec(),
            });
        }
        let planar = s[1] == 1;
        let c = &self.cfg;
        if rng.random_bool(c.rot90) {
            self.rot90(image, label, rng);
        }
        let rotate = rng.random_bool(c.rotate);
        let scale = rng.random_bool(c.scale);
        if rotate || scale {
            let max = c.rotate_max_degrees.to_radians();
            let mut ang = [0.0f64; 3];
            if rotate {
                if planar {
                    ang[2] = rng.random_range(-max..=max);
                } else {
                    for a in &mut ang {
                        *a = rng.random_range(-max..=max);
                    }
                }
            }
            let f = if scale {
                uniform(rng, c.scale_range)
            } else {
                1.0
            };
            spatial(image, label, ang, f);
        }
        if rng.random_bool(c.noise) {
            let sigma = uniform(rng, c.noise_variance).sqrt() as f32;
            for v in image.iter_mut() {
                *v += sigma * normal(rng);
            }
        }
        if rng.random_bool(c.blur) {
            let sigma = uniform(rng, c.blur_sigma);
            for mut ch in image.outer_iter_mut() {
                let blurred = gaussian_blur(ch.to_owned(), sigma, planar);
                ch.assign(&blurred);
            }
        }
        if rng.random_bool(c.brightness) {
            let f = uniform(rng, c.brightness_range) as f32;
            image.mapv_inplace(|v| v * f);
        }
        if rng.random_bool(c.contrast) {
            let f = uniform(rng, c.contrast_range) as f32;
            for mut ch in image.outer_iter_mut() {
                let (mean, lo, hi) = stats(ch.iter());
                ch.mapv_inplace(|v| (((v as f64 - mean) * f as f64 + mean) as f32).clamp(lo, hi));
            }
        }
        if rng.random_bool(c.low_resolution) {
            let z = uniform(rng, c.low_resolution_zoom);
            for mut ch in image.outer_iter_mut() {
                let d = ch.dim();
                let full = [d.0, d.1, d.2];
                let small = [0, 1, 2].map(|a| {
                    if planar && a == 0 {
                        1
                    } else {
                        ((full[a] as f64 * z).round() as usize).max(1)
                    }
                });
                let down = resize(ch.view(), small, Interpolation::Nearest);
                ch.assign(&resize(down.view(), full, Interpolation::Cubic));
            }
        }
        for (p, inverted) in [(c.gamma_inverted, true), (c.gamma, false)] {
            if rng.random_bool(p) {
                let g = if rng.random_bool(0.5) && c.gamma_range[0] < 1.0 {
                    uniform(rng, [c.gamma_range[0], 1.0])
                } else {
                    uniform(rng, [c.gamma_range[0].max(1.0), c.gamma_range[1].max(1.0)])
                };
                for mut ch in image.outer_iter_mut() {
                    let mut x = ch.to_owned();
                    gamma(&mut x, g, inverted);
                    ch.assign(&x);
                }
            }
        }
        let axes: &[usize] = if planar { &[1, 2] } else { &[0, 1, 2] };
        for &ax in axes {
            if rng.random_bool(c.mirror) {
                image.invert_axis(Axis(ax + 1));
                label.invert_axis(Axis(ax));
            }
        }
        *image = image.as_standard_layout().into_owned();
        *label = label.as_standard_layout().into_owned();
        Ok(())
    }

    fn rot90(&self, image: &mut Array4<f32>, label: &mut Array3<u16>, rng: &mut impl Rng) {
        let square = image.shape()[2] == image.shape()[3];
        let turns = if square { rng.random_range(1..=3) } else { 2 };
        for _ in 0..turns {
            if square {
                // one quarter turn in the (j, i) plane: transpose then reverse i
                let mut img = image.view().permuted_axes([0, 1, 3, 2]);
                img.invert_axis(Axis(3));
                *image = img.as_standard_layout().into_owned();
                let mut lab = label.view().permuted_axes([0, 2, 1]);
                lab.invert_axis(Axis(2));
                *label = lab.as_standard_layout().into_owned();
            } else {
                image.invert_axis(Axis(2));
                image.invert_axis(Axis(3));
                label.invert_axis(Axis(1));
                label.invert_axis(Axis(2));
                *image = image.as_standard_layout().into_owned();
                *label = label.as_standard_layout().into_owned();
                break;
            }
        }
    }
}

/// Standard normal by Box-Muller.
fn normal(rng: &mut impl Rng) -> f32 {
    let u1: f64 = rng.random_range(f64::MIN_POSITIVE..1.0);
    let u2: f64 = rng.random();
    ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
}

fn stats<'a>(it: impl Iterator<Item = &'a f32> + Clone) -> (f64, f32, f32) {
    let (mut n, mut sum, mut lo, mut hi) = (0usize, 0.0f64, f32::INFINITY, f32::NEG_INFINITY);
    for &v in it {
        n += 1;
        sum += v as f64;
        lo = lo.min(v);
        hi = hi.max(v);
    }
    (if n > 0 { sum / n as f64 } else { 0.0 }, lo, hi)
}

/// Rotation (radians about the i, j, k axes) and scaling in one resampling pass about the
/// patch centre: image linear, label nearest, 0 outside.
fn spatial(image: &mut Array4<f32>, label: &mut Array3<u16>, ang: [f64; 3], scale: f64) {
    let (cx, sx) = (ang[0].cos(), ang[0].sin());
    let (cy, sy) = (ang[1].cos(), ang[1].sin());
    let (cz, sz) = (ang[2].cos(), ang[2].sin());
    let rx = [[1.0, 0.0, 0.0], [0.0, cx, -sx], [0.0, sx, cx]];
    let ry = [[cy, 0.0, sy], [0.0, 1.0, 0.0], [-sy, 0.0, cy]];
    let rz = [[cz, -sz, 0.0], [sz, cz, 0.0], [0.0, 0.0, 1.0]];
    let mul = |a: [[f64; 3]; 3], b: [[f64; 3]; 3]| {
        let mut m = [[0.0; 3]; 3];
        for r in 0..3 {
            for c in 0..3 {
                m[r][c] = (0..3).map(|q| a[r][q] * b[q][c]).sum();
            }
        }
        m
    };
    let mut m = mul(rz, mul(ry, rx));
    for row in &mut m {
        for v in row.iter_mut() {
            *v /= scale;
        }
    }
    let d = label.dim();
    let shape = [d.0, d.1, d.2];
    let centre = [
        (d.2 as f64 - 1.0) / 2.0,
        (d.1 as f64 - 1.0) / 2.0,
        (d.0 as f64 - 1.0) / 2.0,
    ];
    let t = [0, 1, 2].map(|r| centre[r] - (0..3).map(|c| m[r][c] * centre[c]).sum::<f64>());
    let lin = ResampleOptions {
        interpolation: Interpolation::Linear,
        boundary: Boundary::Zero,
        nearest_axis: None,
    };
    let near = ResampleOptions {
        interpolation: Interpolation::Nearest,
        ..lin
    };
    for mut ch in image.outer_iter_mut() {
        let r = resample_general(ch.view(), &m, &t, shape, &lin);
        ch.assign(&r);
    }
    let lf = label.mapv(|v| v as f32);
    *label = resample_general(lf.view(), &m, &t, shape, &near).mapv(|v| v as u16);
}

/// Separable gaussian blur (edge values extended), `planar`: not across `k`.
fn gaussian_blur(mut x: Array3<f32>, sigma: f64, planar: bool) -> Array3<f32> {
    if sigma <= 0.0 {
        return x;
    }
    let radius = (4.0 * sigma).ceil() as isize;
    let mut kernel: Vec<f32> = (-radius..=radius)
        .map(|d| (-(d * d) as f64 / (2.0 * sigma * sigma)).exp() as f32)
        .collect();
    let sum: f32 = kernel.iter().sum();
    kernel.iter_mut().for_each(|w| *w /= sum);
    let axes: &[usize] = if planar { &[1, 2] } else { &[0, 1, 2] };
    for &ax in axes {
        let n = x.shape()[ax] as isize;
        let mut out = Array3::<f32>::zeros(x.dim());
        Zip::from(out.lanes_mut(Axis(ax)))
            .and(x.lanes(Axis(ax)))
            .par_for_each(|mut o, l| {
                for i in 0..n {
                    let mut acc = 0.0;
                    for (q, w) in kernel.iter().enumerate() {
                        let j = (i + q as isize - radius).clamp(0, n - 1);
                        acc += w * l[j as usize];
                    }
                    o[i as usize] = acc;
                }
            });
        x = out;
    }
    x
}

/// nnU-Net's gamma transform with `retain_stats`.
fn gamma(x: &mut Array3<f32>, g: f64, inverted: bool) {
    if inverted {
        x.mapv_inplace(|v| -v);
    }
    let n = x.len().max(1) as f64;
    let mean = x.iter().map(|&v| v as f64).sum::<f64>() / n;
    let sd = (x.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n).sqrt();
    let (_, lo, hi) = stats(x.iter());
    let range = (hi - lo) as f64 + 1e-7;
    x.mapv_inplace(|v| ((((v - lo) as f64 / range).max(0.0).powf(g)) * range + lo as f64) as f32);
    let mean2 = x.iter().map(|&v| v as f64).sum::<f64>() / n;
    let sd2 = (x.iter().map(|&v| (v as f64 - mean2).powi(2)).sum::<f64>() / n).sqrt();
    x.mapv_inplace(|v| ((v as f64 - mean2) / (sd2 + 1e-8) * sd + mean) as f32);
    if inverted {
        x.mapv_inplace(|v| -v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn patch(planar: bool) -> (Array4<f32>, Array3<u16>) {
        let nk = if planar { 1 } else { 12 };
        let label = Array3::from_shape_fn((nk, 16, 16), |(k, j, i)| {
            let d = (k as f64 - (nk as f64 - 1.0) / 2.0).powi(2)
                + (j as f64 - 7.5).powi(2)
                + (i as f64 - 7.5).powi(2);
            (d < 20.0) as u16
        });
        (
            label.mapv(|v| v as f32 * 100.0 + 10.0).insert_axis(Axis(0)),
            label,
        )
    }

    #[test]
    fn everything_on_keeps_shapes_labels_and_determinism() {
        let all = AugmentationConfig {
            mirror: 1.0,
            rot90: 1.0,
            rotate: 1.0,
            scale: 1.0,
            noise: 1.0,
            blur: 1.0,
            brightness: 1.0,
            contrast: 1.0,
            low_resolution: 1.0,
            gamma: 1.0,
            gamma_inverted: 1.0,
            ..Default::default()
        };
        let aug = Augmenter::new(all).unwrap();
        for planar in [true, false] {
            let (img0, lab0) = patch(planar);
            let run = |seed| {
                let (mut img, mut lab) = (img0.clone(), lab0.clone());
                aug.apply(&mut img, &mut lab, &mut ChaCha8Rng::seed_from_u64(seed))
                    .unwrap();
                (img, lab)
            };
            let (a, la) = run(1);
            let (b, lb) = run(1);
            assert_eq!(a, b);
            assert_eq!(la, lb);
            assert_eq!(a.dim(), img0.dim());
            assert!(la.iter().all(|&v| v <= 1));
            assert!(la.iter().any(|&v| v == 1), "the object survives");
            assert!(a.iter().all(|v| v.is_finite()));
        }
    }

    #[test]
    fn off_is_identity_and_validation() {
        let aug = Augmenter::new(AugmentationConfig::none()).unwrap();
        let (mut img, mut lab) = patch(false);
        let (i0, l0) = (img.clone(), lab.clone());
        aug.apply(&mut img, &mut lab, &mut ChaCha8Rng::seed_from_u64(0))
            .unwrap();
        assert_eq!((img, lab), (i0, l0));
        let bad = AugmentationConfig {
            mirror: 1.5,
            ..Default::default()
        };
        assert!(Augmenter::new(bad).is_err());
        let bad = AugmentationConfig {
            scale_range: [1.2, 0.8],
            ..Default::default()
        };
        assert!(Augmenter::new(bad).is_err());
    }

    #[test]
    fn config_tables_fill_defaults_and_reject_unknown_keys() {
        let c: AugmentationConfig =
            serde_json::from_str(r#"{"mirror": 0.2, "rotate": 0.0}"#).unwrap();
        assert_eq!(c.mirror, 0.2);
        assert_eq!(c.rotate, 0.0);
        assert_eq!(c.gamma, AugmentationConfig::default().gamma);
        assert!(serde_json::from_str::<AugmentationConfig>(r#"{"mirorr": 0.2}"#).is_err());
    }

    #[test]
    fn mirror_only_reverses() {
        let cfg = AugmentationConfig {
            mirror: 1.0,
            ..AugmentationConfig::none()
        };
        let aug = Augmenter::new(cfg).unwrap();
        let img = Array4::from_shape_fn((1, 2, 3, 4), |(_, k, j, i)| (k * 100 + j * 10 + i) as f32);
        let mut lab = Array3::<u16>::zeros((2, 3, 4));
        let mut x = img.clone();
        aug.apply(&mut x, &mut lab, &mut ChaCha8Rng::seed_from_u64(0))
            .unwrap();
        assert_eq!(x[[0, 0, 0, 0]], 123.0);
    }
}
