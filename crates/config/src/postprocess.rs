use serde::{Deserialize, Serialize};

/// `[postprocess]`: applied to predictions (validation and `medseg predict`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PostprocessConfig {
    /// Keep only the largest connected component of each class. Default false.
    #[serde(default)]
    pub largest_component: bool,
    /// Keep only the largest connected component of these classes (the others keep all
    /// their components). `largest_component = true` covers every class. Default empty.
    #[serde(default)]
    pub largest_component_labels: Vec<u16>,
    /// Remove components smaller than this many voxels (0 = off). Default 0.
    #[serde(default)]
    pub min_size_voxels: usize,
    /// Remove components smaller than this volume in mm³ (0 = off). Default 0.
    #[serde(default)]
    pub min_size_mm3: f64,
    /// Keep only the largest connected component of the whole foreground (all classes
    /// together, each voxel keeping its class). Default false.
    #[serde(default)]
    pub largest_foreground: bool,
    /// Fill holes inside each class (only background voxels are filled; 2D images as 2D).
    /// Default false.
    #[serde(default)]
    pub fill_holes: bool,
    /// Connectivity of components in 3D: 6, 18 or 26 (2D uses 4 or 8 accordingly). Default 26.
    #[serde(default = "default_connectivity")]
    pub connectivity: u8,
}

fn default_connectivity() -> u8 {
    26
}

impl Default for PostprocessConfig {
    fn default() -> Self {
        Self {
            largest_component: false,
            largest_component_labels: Vec::new(),
            largest_foreground: false,
            min_size_voxels: 0,
            min_size_mm3: 0.0,
            fill_holes: false,
            connectivity: default_connectivity(),
        }
    }
}
