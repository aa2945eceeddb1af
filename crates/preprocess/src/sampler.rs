//! Training patches: random crops with foreground oversampling, deterministic from a seed.

use ndarray::{Array3, Array4, ArrayView3, ArrayView4, s};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Voxel positions `[k, j, i]` of each foreground class of one case (a bounded random sample,
/// as nnU-Net's `class_locations`), so foreground patches are drawn without rescanning.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClassLocations {
    /// `(class, positions)` for every class > 0 present, ascending.
    pub classes: Vec<(u16, Vec<[u32; 3]>)>,
}

impl ClassLocations {
    /// Scans `label` once and keeps at most `max_per_class` positions per class (uniform
    /// sample, seeded by `seed`). nnU-Net keeps 10000.
    pub fn from_label(label: ArrayView3<u16>, max_per_class: usize, seed: u64) -> Self {
        let mut all: std::collections::BTreeMap<u16, Vec<[u32; 3]>> = Default::default();
        for ((k, j, i), &v) in label.indexed_iter() {
            if v > 0 {
                all.entry(v)
                    .or_default()
                    .push([k as u32, j as u32, i as u32]);
            }
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let classes = all
            .into_iter()
            .map(|(c, pos)| {
                if pos.len() <= max_per_class {
                    (c, pos)
                } else {
                    let mut idx =
                        rand::seq::index::sample(&mut rng, pos.len(), max_per_class).into_vec();
                    idx.sort_unstable();
                    (c, idx.into_iter().map(|i| pos[i]).collect())
                }
            })
            .collect();
        Self { classes }
    }

    /// True when no foreground class is present.
    pub fn is_empty(&self) -> bool {
        self.classes.iter().all(|(_, p)| p.is_empty())
    }
}

/// Draws patch positions. Patches may reach past the image (the outside is padded with 0 in
/// the image and background in the label), so images smaller than the patch work.
#[derive(Debug, Clone)]
pub struct PatchSampler {
    /// Patch extents `[k, j, i]` (`k` = 1 for 2D training on slices).
    pub patch_kji: [usize; 3],
    /// Fraction of each batch centred on foreground (nnU-Net: 0.33).
    pub foreground_fraction: f64,
    rng: ChaCha8Rng,
}

impl PatchSampler {
    /// A sampler drawing from ChaCha8 seeded with `seed`.
    pub fn new(patch_kji: [usize; 3], foreground_fraction: f64, seed: u64) -> Self {
        Self {
            patch_kji: patch_kji.map(|p| p.max(1)),
            foreground_fraction: foreground_fraction.clamp(0.0, 1.0),
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    /// The random generator (for choosing cases and for augmentation, so one seed drives
    /// everything).
    pub fn rng(&mut self) -> &mut ChaCha8Rng {
        &mut self.rng
    }

    /// nnU-Net's rule: the last `round(batch * fraction)` samples of a batch are forced onto
    /// foreground (with 2 per batch and 0.33: the second one).
    pub fn force_foreground(&self, index_in_batch: usize, batch_size: usize) -> bool {
        index_in_batch as f64 >= (batch_size as f64 * (1.0 - self.foreground_fraction)).round()
    }

    /// Start corner `[k, j, i]` (may be negative or reach past the end) of a patch in an image
    /// of `shape_kji`. Foreground: a random present class, a random voxel of it, the patch
    /// centred there (clamped so it stays over the image as much as possible); otherwise (or
    /// when no class is present) uniform over all positions.
    pub fn draw_start(
        &mut self,
        shape_kji: [usize; 3],
        locations: Option<&ClassLocations>,
        foreground: bool,
    ) -> [isize; 3] {
        let p = self.patch_kji;
        // valid start range per axis: [min(0, n - p), max(0, n - p)]
        let lo = [0, 1, 2].map(|a| (shape_kji[a] as isize - p[a] as isize).min(0));
        let hi = [0, 1, 2].map(|a| (shape_kji[a] as isize - p[a] as isize).max(0));
        let present: Vec<&(u16, Vec<[u32; 3]>)> = locations
            .map(|l| l.classes.iter().filter(|(_, v)| !v.is_empty()).collect())
            .unwrap_or_default();
        if foreground && !present.is_empty() {
            let (_, pos) = present[self.rng.random_range(0..present.len())];
            let v = pos[self.rng.random_range(0..pos.len())];
            return [0, 1, 2].map(|a| (v[a] as isize - (p[a] / 2) as isize).clamp(lo[a], hi[a]));
        }
        [0, 1, 2].map(|a| self.rng.random_range(lo[a] as i64..=hi[a] as i64) as isize)
    }

    /// Copies the patch at `start` (zero padding outside).
    pub fn extract(
        &self,
        image: ArrayView4<f32>,
        label: Option<ArrayView3<u16>>,
        start: [isize; 3],
    ) -> (Array4<f32>, Option<Array3<u16>>) {
        let p = self.patch_kji;
        let c = image.shape()[0];
        let shape = [image.shape()[1], image.shape()[2], image.shape()[3]];
        let mut img = Array4::<f32>::zeros((c, p[0], p[1], p[2]));
        let mut lab = label.map(|_| Array3::<u16>::zeros((p[0], p[1], p[2])));
        // overlap of [start, start + p) with [0, n)
        let src_lo = [0, 1, 2].map(|a| start[a].max(0) as usize);
        let src_hi =
            [0, 1, 2].map(|a| ((start[a] + p[a] as isize).min(shape[a] as isize)).max(0) as usize);
        if (0..3).any(|a| src_lo[a] >= src_hi[a]) {
            return (img, lab);
        }
        let dst_lo = [0, 1, 2].map(|a| (src_lo[a] as isize - start[a]) as usize);
        let dst_hi = [0, 1, 2].map(|a| dst_lo[a] + src_hi[a] - src_lo[a]);
        img.slice_mut(s![
            ..,
            dst_lo[0]..dst_hi[0],
            dst_lo[1]..dst_hi[1],
            dst_lo[2]..dst_hi[2]
        ])
        .assign(&image.slice(s![
            ..,
            src_lo[0]..src_hi[0],
            src_lo[1]..src_hi[1],
            src_lo[2]..src_hi[2]
        ]));
        if let (Some(l), Some(out)) = (label, lab.as_mut()) {
            out.slice_mut(s![
                dst_lo[0]..dst_hi[0],
                dst_lo[1]..dst_hi[1],
                dst_lo[2]..dst_hi[2]
            ])
            .assign(&l.slice(s![
                src_lo[0]..src_hi[0],
                src_lo[1]..src_hi[1],
                src_lo[2]..src_hi[2]
            ]));
        }
        (img, lab)
    }

    /// Draws and extracts one patch: [`draw_start`](Self::draw_start) then
    /// [`extract`](Self::extract).
    pub fn sample(
        &mut self,
        image: ArrayView4<f32>,
        label: ArrayView3<u16>,
        locations: Option<&ClassLocations>,
        foreground: bool,
    ) -> (Array4<f32>, Array3<u16>) {
        let d = label.dim();
        let start = self.draw_start([d.0, d.1, d.2], locations, foreground);
        let (img, lab) = self.extract(image, Some(label), start);
        (img, lab.unwrap_or_else(|| Array3::zeros(self.patch_kji)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn foreground_patches_contain_foreground_and_are_seeded() {
        let mut label = Array3::<u16>::zeros((40, 50, 60));
        label[[30, 7, 55]] = 2;
        let image = label.mapv(|v| v as f32).insert_axis(ndarray::Axis(0));
        let loc = ClassLocations::from_label(label.view(), 10_000, 0);
        let mut s = PatchSampler::new([8, 8, 8], 0.33, 7);
        assert!(!s.force_foreground(0, 2) && s.force_foreground(1, 2));
        for _ in 0..20 {
            let (img, lab) = s.sample(image.view(), label.view(), Some(&loc), true);
            assert_eq!(lab.iter().filter(|&&v| v == 2).count(), 1);
            assert_eq!(img.dim(), (1, 8, 8, 8));
        }
        let mut a = PatchSampler::new([8, 8, 8], 0.33, 9);
        let mut b = PatchSampler::new([8, 8, 8], 0.33, 9);
        for _ in 0..10 {
            assert_eq!(
                a.draw_start([40, 50, 60], Some(&loc), false),
                b.draw_start([40, 50, 60], Some(&loc), false)
            );
        }
    }

    #[test]
    fn small_images_are_padded() {
        let label = Array3::<u16>::from_elem((1, 5, 6), 1);
        let image = label.mapv(|v| v as f32).insert_axis(ndarray::Axis(0));
        let mut s = PatchSampler::new([1, 8, 8], 0.0, 1);
        let (img, lab) = s.sample(image.view(), label.view(), None, false);
        assert_eq!(lab.iter().filter(|&&v| v == 1).count(), 30);
        assert_eq!(img.iter().filter(|&&v| v == 1.0).count(), 30);
    }
}
