//! The `[postprocess]` config section as one operation on a label map.

use crate::{
    Connectivity, PostprocessChoice, PostprocessError, fill_holes_per_class,
    keep_largest_foreground, keep_largest_of_classes, keep_largest_per_class,
    remove_small_per_class,
};
use medseg_config::PostprocessConfig;
use medseg_volume::Volume;
use ndarray::Array3;

/// Validated postprocessing settings. Applied in this order: small-object removal (the
/// larger of the voxel and the mm³ thresholds), largest component (whole foreground, then
/// per class), hole filling, then the steps a training run chose on its validation
/// ([`Self::with_choice`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Postprocessor {
    pub connectivity: Connectivity,
    pub min_size_voxels: usize,
    pub min_size_mm3: f64,
    pub largest_per_class: bool,
    /// Classes whose largest component alone is kept (when `largest_per_class` is off).
    pub largest_labels: Vec<u16>,
    pub largest_foreground: bool,
    pub fill_holes: bool,
    /// Chosen by validation (`RUN/postprocessing.json`); applied last, as it was scored.
    pub chosen: Option<PostprocessChoice>,
}

impl Postprocessor {
    /// Checks the config: connectivity 4/6/8/18/26, `min_size_mm3` finite and >= 0.
    pub fn new(cfg: &PostprocessConfig) -> Result<Self, PostprocessError> {
        if !cfg.min_size_mm3.is_finite() || cfg.min_size_mm3 < 0.0 {
            return Err(PostprocessError::Setting {
                key: "postprocess.min_size_mm3",
                value: cfg.min_size_mm3.to_string(),
                reason: "must be a finite number >= 0",
            });
        }
        if cfg.largest_component_labels.contains(&0) {
            return Err(PostprocessError::Setting {
                key: "postprocess.largest_component_labels",
                value: format!("{:?}", cfg.largest_component_labels),
                reason: "lists class labels (> 0); background 0 has no component to keep",
            });
        }
        Ok(Self {
            connectivity: Connectivity::from_count(cfg.connectivity as u32)?,
            min_size_voxels: cfg.min_size_voxels,
            min_size_mm3: cfg.min_size_mm3,
            largest_per_class: cfg.largest_component,
            largest_labels: cfg.largest_component_labels.clone(),
            largest_foreground: cfg.largest_foreground,
            fill_holes: cfg.fill_holes,
            chosen: None,
        })
    }

    /// These settings followed by the steps validation chose (`None`: unchanged).
    pub fn with_choice(mut self, chosen: Option<PostprocessChoice>) -> Self {
        self.chosen = chosen.filter(|c| !c.is_identity());
        self
    }

    /// True when applying changes nothing (every step off).
    pub fn is_identity(&self) -> bool {
        self.min_size_voxels <= 1
            && self.min_size_mm3 == 0.0
            && !self.largest_per_class
            && self.largest_labels.is_empty()
            && !self.largest_foreground
            && !self.fill_holes
            && self
                .chosen
                .as_ref()
                .is_none_or(PostprocessChoice::is_identity)
    }

    /// Smallest component kept, in voxels, for voxels of `voxel_volume_mm3`: a component of
    /// `n` voxels is removed when `n < min_size_voxels` or `n * voxel_volume < min_size_mm3`.
    pub fn min_voxels(&self, voxel_volume_mm3: f64) -> usize {
        let from_mm3 = if self.min_size_mm3 > 0.0 && voxel_volume_mm3 > 0.0 {
            // smallest n with n * v >= min_size_mm3 (a tiny epsilon absorbs rounding of n * v)
            (self.min_size_mm3 / voxel_volume_mm3 - 1e-9)
                .ceil()
                .max(0.0) as usize
        } else {
            0
        };
        self.min_size_voxels.max(from_mm3)
    }

    /// Applies every enabled step to `labels` in place; `spacing` (mm, any order) converts
    /// the mm³ threshold to voxels.
    pub fn apply(&self, labels: &mut Array3<u16>, spacing: [f64; 3]) {
        let min_voxels = self.min_voxels(spacing.iter().product());
        if min_voxels > 1 {
            remove_small_per_class(labels, self.connectivity, min_voxels);
        }
        if self.largest_foreground {
            keep_largest_foreground(labels, self.connectivity);
        }
        if self.largest_per_class {
            keep_largest_per_class(labels, self.connectivity);
        } else if !self.largest_labels.is_empty() {
            keep_largest_of_classes(labels, &self.largest_labels, self.connectivity);
        }
        if self.fill_holes {
            fill_holes_per_class(labels, self.connectivity);
        }
        if let Some(chosen) = &self.chosen {
            chosen.apply(labels);
        }
    }

    /// [`apply`](Self::apply) on a volume, using its header spacing.
    pub fn apply_volume(&self, labels: &mut Volume<u16>) {
        let spacing = labels.geometry.spacing;
        self.apply(&mut labels.data, spacing);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mm3_threshold_and_validation() {
        let cfg = PostprocessConfig {
            min_size_mm3: 10.0,
            min_size_voxels: 3,
            ..Default::default()
        };
        let p = Postprocessor::new(&cfg).unwrap();
        assert_eq!(p.min_voxels(2.0), 5);
        assert_eq!(p.min_voxels(8.0), 3);
        assert!(!p.is_identity());
        let mut bad = cfg.clone();
        bad.connectivity = 7;
        assert!(Postprocessor::new(&bad).is_err());
        bad = cfg.clone();
        bad.min_size_mm3 = -1.0;
        assert!(Postprocessor::new(&bad).is_err());
        bad = cfg;
        bad.largest_component_labels = vec![0, 1];
        assert!(Postprocessor::new(&bad).is_err());
        // a 4-voxel (8 mm³ at 2 mm³/voxel) object goes, a 5-voxel one stays
        let mut l = Array3::<u16>::zeros((1, 3, 12));
        for i in 0..4 {
            l[[0, 0, i]] = 1;
        }
        for i in 6..11 {
            l[[0, 2, i]] = 1;
        }
        p.apply(&mut l, [1.0, 1.0, 2.0]);
        assert_eq!(l.iter().filter(|&&v| v == 1).count(), 5);
    }

    #[test]
    fn largest_component_of_listed_classes_then_the_choice() {
        // class 1 and class 2, each with a big and a one-voxel piece
        let mut l = Array3::<u16>::zeros((1, 4, 9));
        for i in 0..3 {
            l[[0, 0, i]] = 1;
            l[[0, 3, i]] = 2;
        }
        l[[0, 0, 8]] = 1;
        l[[0, 3, 8]] = 2;
        let cfg = PostprocessConfig {
            largest_component_labels: vec![2],
            connectivity: 6,
            ..Default::default()
        };
        let p = Postprocessor::new(&cfg).unwrap();
        assert!(!p.is_identity());
        let mut a = l.clone();
        p.apply(&mut a, [1.0; 3]);
        assert_eq!(
            (a[[0, 0, 8]], a[[0, 3, 8]]),
            (1, 0),
            "only class 2 is reduced"
        );
        // the run's choice (class 1) comes on top
        let choice = PostprocessChoice {
            largest_foreground: false,
            largest_component_labels: vec![1],
            connectivity: Connectivity::Faces,
            cases: 1,
            foreground_mean_before: 0.5,
            foreground_mean_after: 0.6,
            dice_before: Default::default(),
            dice_after: Default::default(),
        };
        let p = p.with_choice(Some(choice));
        let mut b = l.clone();
        p.apply(&mut b, [1.0; 3]);
        assert_eq!((b[[0, 0, 8]], b[[0, 3, 8]]), (0, 0));
        assert_eq!(b[[0, 0, 0]], 1);
    }
}
