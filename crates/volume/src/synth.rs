//! Deterministic synthetic phantoms in the nnU-Net v2 layout, for the demo, tests and
//! benchmarks.
//!
//! Each case is a body-like ellipsoid holding two organs (label 1 `organ_a`, a bright large
//! ellipsoid; label 2 `organ_b`, a dark small one) and 1-3 bright spherical lesions (label 3, radius 5-9 mm)
//! inside organ_a, with a smooth multiplicative bias field and Gaussian noise. Anatomy is
//! defined in world millimetres and sampled at each voxel's world position, so cases with
//! different (anisotropic) spacing, origins and directions (some LPS-flipped, some rotated
//! 10° about z) show the same anatomy once resampled. Everything derives from the seed.

use crate::{Geometry, Volume, VolumeError, WriteOptions, write_volume};
use ndarray::Array3;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::Path;

/// What to generate. Defaults: 3D, 12 training and 4 test cases, 64 voxels in-plane, seed 0.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthConfig {
    /// Training cases (`imagesTr`/`labelsTr`).
    pub cases: usize,
    /// Held-out cases (`imagesTs`/`labelsTs`).
    pub test_cases: usize,
    /// 2 (single-slice images) or 3.
    pub dims: usize,
    /// Nominal in-plane size in voxels (the field of view is fixed at 96 mm, so this sets the
    /// resolution); the through-plane size follows from the z spacing.
    pub size: usize,
    pub seed: u64,
}

impl Default for SynthConfig {
    fn default() -> Self {
        Self {
            cases: 12,
            test_cases: 4,
            dims: 3,
            size: 64,
            seed: 0,
        }
    }
}

/// Label names and ids of the phantoms, as written to `dataset.json`.
pub const LABELS: [(&str, u16); 4] = [
    ("background", 0),
    ("organ_a", 1),
    ("organ_b", 2),
    ("lesion", 3),
];

const FOV_MM: f64 = 96.0;

struct Ellipsoid {
    centre: [f64; 3],
    semi: [f64; 3],
}

impl Ellipsoid {
    fn r2(&self, p: [f64; 3]) -> f64 {
        (0..3)
            .map(|a| ((p[a] - self.centre[a]) / self.semi[a]).powi(2))
            .sum()
    }
}

fn gauss(rng: &mut ChaCha8Rng) -> f64 {
    // Box-Muller; rand 0.9 has no normal distribution without rand_distr.
    let u1: f64 = rng.random_range(f64::EPSILON..1.0);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// One phantom: the image (int16 intensities, MR-like) and its label map.
pub fn phantom(index: usize, cfg: &SynthConfig) -> (Volume<i16>, Volume<u16>) {
    let mut rng =
        ChaCha8Rng::seed_from_u64(cfg.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ index as u64);
    let base = FOV_MM / cfg.size.max(8) as f64;
    let u = |rng: &mut ChaCha8Rng, lo: f64, hi: f64| rng.random_range(lo..hi);
    let sxy = [
        base * u(&mut rng, 0.85, 1.15),
        base * u(&mut rng, 0.85, 1.15),
    ];
    let (sz, nz) = if cfg.dims == 2 {
        (base * 2.0, 1)
    } else {
        let sz = base * u(&mut rng, 1.3, 2.0);
        (sz, ((80.0 / sz).round() as usize).max(4))
    };
    let n = [
        ((FOV_MM / sxy[0]).round() as usize).max(8),
        ((FOV_MM / sxy[1]).round() as usize).max(8),
        nz,
    ];
    let spacing = [sxy[0], sxy[1], sz];
    let direction = match index % 4 {
        1 => [[-1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, 1.0]],
        3 => {
            let t = 10f64.to_radians();
            [
                [t.cos(), -t.sin(), 0.0],
                [t.sin(), t.cos(), 0.0],
                [0.0, 0.0, 1.0],
            ]
        }
        _ => [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
    };
    let centre_world = [
        u(&mut rng, -10.0, 10.0),
        u(&mut rng, -10.0, 10.0),
        u(&mut rng, -10.0, 10.0),
    ];
    let mut geometry = Geometry {
        spacing,
        origin: [0.0; 3],
        direction,
    };
    // Put the grid centre at centre_world.
    let half = [0, 1, 2].map(|a| (n[a] as f64 - 1.0) / 2.0);
    let off = geometry.voxel_to_world(half);
    for a in 0..3 {
        geometry.origin[a] = centre_world[a] - off[a];
    }
    let jitter = |rng: &mut ChaCha8Rng, c: [f64; 3], j: f64| {
        [0, 1, 2].map(|a| c[a] + rng.random_range(-j..j))
    };
    let scale = |rng: &mut ChaCha8Rng, s: [f64; 3], lo: f64, hi: f64| {
        let f = rng.random_range(lo..hi);
        s.map(|v| v * f)
    };
    let body = Ellipsoid {
        centre: centre_world,
        semi: scale(&mut rng, [42.0, 32.0, 36.0], 0.92, 1.05),
    };
    let organ_a = Ellipsoid {
        centre: jitter(
            &mut rng,
            [
                centre_world[0] - 12.0,
                centre_world[1] + 4.0,
                centre_world[2],
            ],
            3.0,
        ),
        semi: scale(&mut rng, [16.0, 13.0, 15.0], 0.85, 1.15),
    };
    let organ_b = Ellipsoid {
        centre: jitter(
            &mut rng,
            [
                centre_world[0] + 18.0,
                centre_world[1] - 6.0,
                centre_world[2] + 2.0,
            ],
            3.0,
        ),
        semi: scale(&mut rng, [8.0, 7.0, 10.0], 0.85, 1.15),
    };
    let n_lesions = rng.random_range(1..=3);
    let lesions: Vec<Ellipsoid> = (0..n_lesions)
        .map(|_| {
            // A point well inside organ_a (normalised radius < 0.55).
            let dir = [
                gauss(&mut rng),
                gauss(&mut rng),
                if cfg.dims == 2 { 0.0 } else { gauss(&mut rng) },
            ];
            let norm = dir.iter().map(|d| d * d).sum::<f64>().sqrt().max(1e-9);
            let r = rng.random_range(0.0..0.55);
            let c = [0, 1, 2].map(|a| organ_a.centre[a] + organ_a.semi[a] * r * dir[a] / norm);
            let radius = rng.random_range(5.0..9.0);
            Ellipsoid {
                centre: c,
                semi: [radius; 3],
            }
        })
        .collect();
    // In 2D the slice is the plane through the body centre.
    let noise_sd = rng.random_range(0.03..0.06);
    let bias_w = [
        rng.random_range(0.01..0.03),
        rng.random_range(0.01..0.03),
        rng.random_range(0.01..0.03),
    ];
    // 6.28, not TAU: the phantoms (and the fixtures and benchmarks made from them) are defined
    // by this exact range of the seeded generator.
    #[allow(clippy::approx_constant)]
    let bias_phase = [rng.random_range(0.0..6.28), rng.random_range(0.0..6.28)];
    let mut image = Array3::<i16>::zeros((n[2], n[1], n[0]));
    let mut label = Array3::<u16>::zeros((n[2], n[1], n[0]));
    for k in 0..n[2] {
        for j in 0..n[1] {
            for i in 0..n[0] {
                let mut p = geometry.voxel_to_world([i as f64, j as f64, k as f64]);
                if cfg.dims == 2 {
                    p[2] = centre_world[2];
                }
                let (mut v, mut l) = (0.02, 0u16);
                if body.r2(p) <= 1.0 {
                    v = 0.35;
                }
                if organ_a.r2(p) <= 1.0 {
                    v = 0.75;
                    l = 1;
                    if lesions.iter().any(|e| e.r2(p) <= 1.0) {
                        v = 1.1;
                        l = 3;
                    }
                }
                if organ_b.r2(p) <= 1.0 {
                    v = 0.15;
                    l = 2;
                }
                let bias = 1.0
                    + 0.15
                        * ((bias_w[0] * p[0] + bias_phase[0]).sin()
                            * (bias_w[1] * p[1] + bias_phase[1]).cos()
                            + 0.5 * (bias_w[2] * p[2]).sin());
                let val = v * bias + noise_sd * gauss(&mut rng);
                image[[k, j, i]] = (val * 1000.0).round().clamp(-32768.0, 32767.0) as i16;
                label[[k, j, i]] = l;
            }
        }
    }
    (Volume::new(image, geometry), Volume::new(label, geometry))
}

/// Writes a whole dataset under `dir` (creating it): `dataset.json`, `imagesTr`, `labelsTr`,
/// `imagesTs`, `labelsTs`. Case names are `case_000`, ...; test cases continue the numbering.
/// `on_case` is called after each case (progress). Files are written atomically.
pub fn write_dataset(
    dir: &Path,
    cfg: &SynthConfig,
    on_case: &(dyn Fn(&str) + Sync),
) -> Result<(), VolumeError> {
    use rayon::prelude::*;
    if cfg.dims != 2 && cfg.dims != 3 {
        return Err(VolumeError::Dataset {
            path: dir.to_path_buf(),
            reason: format!("--dims must be 2 or 3, got {}", cfg.dims),
        });
    }
    for sub in ["imagesTr", "labelsTr", "imagesTs", "labelsTs"] {
        std::fs::create_dir_all(dir.join(sub)).map_err(|e| VolumeError::Io {
            path: dir.join(sub),
            source: e,
        })?;
    }
    let total = cfg.cases + cfg.test_cases;
    (0..total).into_par_iter().try_for_each(|idx| {
        let (img, lab) = phantom(idx, cfg);
        let name = format!("case_{idx:03}");
        let (id, ld) = if idx < cfg.cases {
            ("imagesTr", "labelsTr")
        } else {
            ("imagesTs", "labelsTs")
        };
        let opts = WriteOptions::default();
        write_volume(
            &dir.join(id).join(format!("{name}_0000.nii.gz")),
            &img,
            &opts,
        )?;
        let lab8 = lab.map(|&l| l as u8);
        write_volume(&dir.join(ld).join(format!("{name}.nii.gz")), &lab8, &opts)?;
        on_case(&name);
        Ok::<(), VolumeError>(())
    })?;
    let labels: serde_json::Map<String, serde_json::Value> = LABELS
        .iter()
        .map(|(n, id)| (n.to_string(), (*id).into()))
        .collect();
    let json = serde_json::json!({
        "name": "MedsegSynthetic",
        "description": format!("medseg synthetic phantoms ({}D, seed {}, size {})", cfg.dims, cfg.seed, cfg.size),
        "channel_names": {"0": "MR"},
        "labels": labels,
        "numTraining": cfg.cases,
        "numTest": cfg.test_cases,
        "file_ending": ".nii.gz",
        "synth": {"dims": cfg.dims, "seed": cfg.seed, "size": cfg.size},
    });
    let path = dir.join("dataset.json");
    let text = serde_json::to_string_pretty(&json).map_err(|source| VolumeError::Json {
        path: path.clone(),
        what: "cannot serialize JSON",
        source,
    })?;
    crate::write_atomically(&path, |w| std::io::Write::write_all(w, text.as_bytes()))
}
