//! The dataset fingerprint: what the plan is computed from.

use crate::crop::crop_to_nonzero;
use crate::normalize::replace_non_finite;
use crate::pipeline::{case_reorientation, check_label_shape};
use crate::stats::{mean_std, percentile_sorted};
use crate::{BoundingBox, PreprocessError};
use medseg_volume::dataset::Dataset;
use medseg_volume::{MultiChannel, Volume};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;

/// Settings of the fingerprint.
#[derive(Debug, Clone, PartialEq)]
pub struct FingerprintOptions {
    /// Reorient to RAS first (so spacings are in the axis order training will see).
    pub reorient: bool,
    /// Crop to nonzero first (shapes are those after cropping, as nnU-Net).
    pub crop: bool,
    /// Foreground voxels sampled per case and channel for the intensity statistics
    /// (default 10000; the sample is uniform without replacement, seeded).
    pub samples_per_case: usize,
    /// Seed of the sampling.
    pub seed: u64,
}

impl Default for FingerprintOptions {
    fn default() -> Self {
        Self {
            reorient: true,
            crop: true,
            samples_per_case: 10_000,
            seed: 0,
        }
    }
}

/// What one case contributes.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CaseFingerprint {
    pub name: String,
    /// Orientation code of the file ("LPS", ...).
    pub orientation: String,
    /// Extents `[k, j, i]` of the file.
    pub shape_kji: [usize; 3],
    /// Spacing `(i, j, k)` after reorientation (when enabled).
    pub spacing: [f64; 3],
    /// Nonzero bounding box (after reorientation) and the extents after cropping.
    pub nonzero_bbox: BoundingBox,
    pub cropped_shape_kji: [usize; 3],
    /// Voxels per label value (background included).
    pub label_voxels: BTreeMap<u16, usize>,
    /// Voxel volume in mm³ (label volumes in mm³ = `label_voxels` x this).
    pub voxel_volume_mm3: f64,
    /// Foreground intensity statistics of this case per channel (from its sample).
    pub intensity: Vec<Option<ChannelIntensity>>,
    /// Sampled foreground intensities per channel (not saved).
    #[serde(skip)]
    pub foreground_samples: Vec<Vec<f32>>,
    /// Non-finite voxels per channel, replaced as preprocessing replaces them before the
    /// statistics (see [`crate::replace_non_finite`]).
    #[serde(default)]
    pub non_finite: Vec<usize>,
}

/// Foreground intensity statistics of one channel over the whole dataset.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ChannelIntensity {
    pub mean: f64,
    /// Population standard deviation.
    pub std: f64,
    pub min: f64,
    pub max: f64,
    pub percentile_00_5: f64,
    pub percentile_50_0: f64,
    pub percentile_99_5: f64,
    /// Voxels the statistics are computed from.
    pub samples: usize,
}

impl ChannelIntensity {
    /// Statistics of a sample (numpy's linear percentiles). `None` when empty.
    pub fn of(values: &[f32]) -> Option<Self> {
        let mut v: Vec<f64> = values
            .iter()
            .map(|&x| x as f64)
            .filter(|x| !x.is_nan())
            .collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(|a, b| a.total_cmp(b));
        let (mean, std, n) = mean_std(v.iter().copied());
        Some(Self {
            mean,
            std,
            min: v[0],
            max: v[n - 1],
            percentile_00_5: percentile_sorted(&v, 0.5),
            percentile_50_0: percentile_sorted(&v, 50.0),
            percentile_99_5: percentile_sorted(&v, 99.5),
            samples: n,
        })
    }
}

/// The fingerprint of a dataset.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DatasetFingerprint {
    pub dataset: String,
    pub channel_names: Vec<String>,
    pub labels: BTreeMap<String, u16>,
    pub cases: Vec<CaseFingerprint>,
    /// Per channel; `None` when no case has foreground.
    pub channels: Vec<Option<ChannelIntensity>>,
    /// Median spacing `(i, j, k)` and median cropped extents `[k, j, i]` over cases.
    pub median_spacing: [f64; 3],
    pub median_shape_kji: [f64; 3],
    /// Median over cases of (cropped voxels / original voxels); nnU-Net uses the nonzero mask
    /// for z-score normalization when this is below 3/4.
    pub median_crop_ratio: f64,
}

impl DatasetFingerprint {
    /// Spacings of every case, `(i, j, k)`.
    pub fn spacings(&self) -> Vec<[f64; 3]> {
        self.cases.iter().map(|c| c.spacing).collect()
    }

    /// Summarizes per-case fingerprints (pooled intensity samples, medians).
    pub fn from_cases(
        dataset: String,
        channel_names: Vec<String>,
        labels: BTreeMap<String, u16>,
        cases: Vec<CaseFingerprint>,
    ) -> Self {
        let nch = channel_names
            .len()
            .max(cases.first().map_or(0, |c| c.foreground_samples.len()));
        let channels = (0..nch)
            .map(|c| {
                let pooled: Vec<f32> = cases
                    .iter()
                    .filter_map(|cf| cf.foreground_samples.get(c))
                    .flat_map(|s| s.iter().copied())
                    .collect();
                ChannelIntensity::of(&pooled)
            })
            .collect();
        let med = |f: &dyn Fn(&CaseFingerprint) -> f64| {
            let v: Vec<f64> = cases.iter().map(f).collect();
            crate::stats::median(&v)
        };
        let median_spacing = [0, 1, 2].map(|a| med(&|c| c.spacing[a]));
        let median_shape_kji = [0, 1, 2].map(|a| med(&|c| c.cropped_shape_kji[a] as f64));
        let median_crop_ratio = med(&|c| {
            let n: usize = c.shape_kji.iter().product();
            let m: usize = c.cropped_shape_kji.iter().product();
            if n == 0 { 1.0 } else { m as f64 / n as f64 }
        });
        Self {
            dataset,
            channel_names,
            labels,
            cases,
            channels,
            median_spacing,
            median_shape_kji,
            median_crop_ratio,
        }
    }
}

/// Fingerprints one case: reorients and crops like the pipeline will, counts label voxels and
/// samples foreground (label > 0) intensities. Without a label, every nonzero-mask voxel counts
/// as foreground.
pub fn fingerprint_case(
    name: &str,
    images: &MultiChannel,
    label: Option<&Volume<u16>>,
    opts: &FingerprintOptions,
    case_index: usize,
) -> Result<CaseFingerprint, PreprocessError> {
    let s = images.data.shape();
    let shape = [s[1], s[2], s[3]];
    check_label_shape(label, shape, || format!("label of case {name}"))?;
    let r = case_reorientation(opts.reorient, images, shape);
    let geometry = r.apply_geometry(&images.geometry, shape);
    let mut data = r.apply_channels(images.data.view());
    let non_finite: Vec<usize> = data.outer_iter_mut().map(replace_non_finite).collect();
    let lab = label.map(|l| r.apply(l.data.view()));
    let (bbox, mask) = if opts.crop {
        crop_to_nonzero(data.view())
    } else {
        let d = data.shape();
        let full = BoundingBox::full([d[1], d[2], d[3]]);
        (full, ndarray::Array3::from_elem((d[1], d[2], d[3]), true))
    };
    let mut label_voxels = BTreeMap::new();
    if let Some(l) = &lab {
        for &v in l.iter() {
            *label_voxels.entry(v).or_insert(0usize) += 1;
        }
    }
    // foreground voxel indices (flat, C order of the reoriented array)
    let fg: Vec<usize> = match &lab {
        Some(l) => l
            .iter()
            .enumerate()
            .filter(|(_, v)| **v > 0)
            .map(|(i, _)| i)
            .collect(),
        None => mask
            .iter()
            .enumerate()
            .filter(|(_, v)| **v)
            .map(|(i, _)| i)
            .collect(),
    };
    let mut rng = ChaCha8Rng::seed_from_u64(
        opts.seed ^ (case_index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
    );
    let picked: Vec<usize> = if fg.len() <= opts.samples_per_case {
        fg
    } else {
        let mut idx: Vec<usize> =
            rand::seq::index::sample(&mut rng, fg.len(), opts.samples_per_case)
                .into_iter()
                .map(|i| fg[i])
                .collect();
        idx.sort_unstable();
        idx
    };
    let d = data.shape();
    let (nj, ni) = (d[2], d[3]);
    let foreground_samples: Vec<Vec<f32>> = data
        .outer_iter()
        .map(|ch| {
            picked
                .iter()
                .map(|&i| ch[[i / (nj * ni), (i / ni) % nj, i % ni]])
                .collect()
        })
        .collect();
    Ok(CaseFingerprint {
        name: name.to_string(),
        orientation: images.geometry.orientation_code(),
        shape_kji: shape,
        spacing: geometry.spacing,
        nonzero_bbox: bbox,
        cropped_shape_kji: bbox.shape_kji(),
        label_voxels,
        voxel_volume_mm3: geometry.voxel_volume_mm3(),
        intensity: foreground_samples
            .iter()
            .map(|s| ChannelIntensity::of(s))
            .collect(),
        foreground_samples,
        non_finite,
    })
}

/// Fingerprints every training case of `dataset`, one case at a time (memory: a few copies of
/// one case). `on_case` is called after each case (progress).
pub fn fingerprint_dataset(
    dataset: &Dataset,
    opts: &FingerprintOptions,
    on_case: &dyn Fn(&str),
) -> Result<DatasetFingerprint, PreprocessError> {
    if dataset.cases.is_empty() {
        return Err(PreprocessError::Dataset {
            path: dataset.root.clone(),
            reason: "has no training cases".into(),
        });
    }
    let mut cases = Vec::with_capacity(dataset.cases.len());
    for (i, case) in dataset.cases.iter().enumerate() {
        let wrap = |e: PreprocessError| e.in_case(&case.name);
        let images = medseg_volume::read_channels(&case.images).map_err(|e| wrap(e.into()))?;
        let label = match &case.label {
            Some(p) => Some(medseg_volume::read_labels(p).map_err(|e| wrap(e.into()))?),
            None => None,
        };
        cases.push(fingerprint_case(&case.name, &images, label.as_ref(), opts, i).map_err(wrap)?);
        on_case(&case.name);
    }
    Ok(DatasetFingerprint::from_cases(
        dataset.name.clone(),
        dataset.channel_names.clone(),
        dataset.labels.clone(),
        cases,
    ))
}
