//! [`Volume`] and [`MultiChannel`]: arrays with their geometry.

use crate::Geometry;
use ndarray::{Array3, Array4, Axis};

/// A 3D scalar image: data in C layout indexed `[k, j, i]`, and its geometry.
/// A 2D image is a volume with one slice (`k` extent 1).
#[derive(Debug, Clone, PartialEq)]
pub struct Volume<T> {
    pub data: Array3<T>,
    pub geometry: Geometry,
}

impl<T> Volume<T> {
    pub fn new(data: Array3<T>, geometry: Geometry) -> Self {
        Self { data, geometry }
    }

    /// Extents in `(i, j, k)` order (NIfTI's `dim[1..=3]`).
    pub fn shape_ijk(&self) -> [usize; 3] {
        let s = self.data.shape();
        [s[2], s[1], s[0]]
    }

    /// True for a single-slice (2D) image.
    pub fn is_2d(&self) -> bool {
        self.data.shape()[0] == 1
    }

    /// Applies `f` to every voxel, keeping the geometry.
    pub fn map<U>(&self, f: impl FnMut(&T) -> U) -> Volume<U> {
        Volume {
            data: self.data.map(f),
            geometry: self.geometry,
        }
    }
}

/// Several channels (modalities) of one case on one grid: data `[c, k, j, i]`.
#[derive(Debug, Clone, PartialEq)]
pub struct MultiChannel {
    pub data: Array4<f32>,
    pub geometry: Geometry,
}

impl MultiChannel {
    /// Stacks volumes that share a grid. The caller checks geometry (see
    /// [`crate::read_channels`]); here only shapes must agree.
    pub fn stack(channels: &[Volume<f32>]) -> Option<Self> {
        let first = channels.first()?;
        let views: Vec<_> = channels.iter().map(|v| v.data.view()).collect();
        let data = ndarray::stack(Axis(0), &views).ok()?;
        Some(Self {
            data,
            geometry: first.geometry,
        })
    }

    pub fn num_channels(&self) -> usize {
        self.data.shape()[0]
    }

    /// One channel as a volume (copied).
    pub fn channel(&self, c: usize) -> Volume<f32> {
        Volume::new(self.data.index_axis(Axis(0), c).to_owned(), self.geometry)
    }

    /// Spatial extents in `(i, j, k)` order.
    pub fn shape_ijk(&self) -> [usize; 3] {
        let s = self.data.shape();
        [s[3], s[2], s[1]]
    }
}
