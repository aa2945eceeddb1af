//! Crop to the nonzero region, its exact inverse, and padding.

use medseg_postprocess::{Connectivity, fill_holes};
use medseg_volume::Geometry;
use ndarray::{Array3, Array4, ArrayView3, ArrayView4, Axis, s};

/// A half-open box in array order `[k, j, i]`: `start <= index < end` per axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BoundingBox {
    pub start_kji: [usize; 3],
    pub end_kji: [usize; 3],
}

impl BoundingBox {
    /// The whole array.
    pub fn full(shape_kji: [usize; 3]) -> Self {
        Self {
            start_kji: [0; 3],
            end_kji: shape_kji,
        }
    }

    /// The tightest box around the true voxels of `mask`; `None` when the mask is empty.
    pub fn of_mask(mask: ArrayView3<bool>) -> Option<Self> {
        let mut lo = [usize::MAX; 3];
        let mut hi = [0usize; 3];
        let mut any = false;
        for ((k, j, i), &v) in mask.indexed_iter() {
            if v {
                any = true;
                for (a, x) in [k, j, i].into_iter().enumerate() {
                    lo[a] = lo[a].min(x);
                    hi[a] = hi[a].max(x + 1);
                }
            }
        }
        any.then_some(Self {
            start_kji: lo,
            end_kji: hi,
        })
    }

    /// Extents of the box `[k, j, i]`.
    pub fn shape_kji(&self) -> [usize; 3] {
        [0, 1, 2].map(|a| self.end_kji[a] - self.start_kji[a])
    }

    /// The geometry of the cropped array: same spacing and direction, origin at the world
    /// position of the box's first voxel (as `sitk.RegionOfInterest`).
    pub fn cropped_geometry(&self, g: &Geometry) -> Geometry {
        let mut out = *g;
        let s = self.start_kji;
        out.origin = g.voxel_to_world([s[2] as f64, s[1] as f64, s[0] as f64]);
        out
    }

    /// Copies the box out of a 3D array.
    pub fn crop<T: Clone>(&self, a: ArrayView3<T>) -> Array3<T> {
        let (s0, e0) = (self.start_kji, self.end_kji);
        a.slice(s![s0[0]..e0[0], s0[1]..e0[1], s0[2]..e0[2]])
            .to_owned()
    }

    /// Copies the box out of every channel of a `[c, k, j, i]` array.
    pub fn crop_channels<T: Clone>(&self, a: ArrayView4<T>) -> Array4<T> {
        let (s0, e0) = (self.start_kji, self.end_kji);
        a.slice(s![.., s0[0]..e0[0], s0[1]..e0[1], s0[2]..e0[2]])
            .to_owned()
    }
}

/// nnU-Net's nonzero mask: OR over channels of `x != 0`, then holes filled (6-connected
/// background), so an enclosed zero cavity is inside.
pub fn nonzero_mask(data: ArrayView4<f32>) -> Array3<bool> {
    let (_, nk, nj, ni) = data.dim();
    let mut m = Array3::from_elem((nk, nj, ni), false);
    for ch in data.axis_iter(Axis(0)) {
        ndarray::Zip::from(&mut m)
            .and(&ch)
            .par_for_each(|m, &x| *m |= x != 0.0);
    }
    fill_holes(m.view(), Connectivity::Faces)
}

/// The bounding box of [`nonzero_mask`] (the whole image when everything is zero) and the
/// mask itself (uncropped).
pub fn crop_to_nonzero(data: ArrayView4<f32>) -> (BoundingBox, Array3<bool>) {
    let mask = nonzero_mask(data);
    let (_, nk, nj, ni) = data.dim();
    let bbox = BoundingBox::of_mask(mask.view()).unwrap_or(BoundingBox::full([nk, nj, ni]));
    (bbox, mask)
}

/// The exact inverse of [`BoundingBox::crop`]: `a` placed at the box inside an array of
/// `full_shape_kji` filled with `fill`. Panics never: a box that does not fit `full_shape`
/// or an `a` of another shape is an error.
pub fn uncrop<T: Clone>(
    a: ArrayView3<T>,
    bbox: &BoundingBox,
    full_shape_kji: [usize; 3],
    fill: T,
) -> Result<Array3<T>, crate::PreprocessError> {
    if a.shape() != bbox.shape_kji() || (0..3).any(|x| bbox.end_kji[x] > full_shape_kji[x]) {
        return Err(crate::PreprocessError::Shape {
            what: format!("uncrop into {full_shape_kji:?} at {bbox:?}"),
            expected: bbox.shape_kji().to_vec(),
            got: a.shape().to_vec(),
        });
    }
    let mut out = Array3::from_elem(full_shape_kji, fill);
    let (s0, e0) = (bbox.start_kji, bbox.end_kji);
    out.slice_mut(s![s0[0]..e0[0], s0[1]..e0[1], s0[2]..e0[2]])
        .assign(&a);
    Ok(out)
}

/// Pads `a` with `value` so every axis is at least `min_shape_kji`, split evenly (the odd
/// voxel after). Returns the padded array and the box where `a` sits in it (crop with it to
/// undo).
pub fn pad_to_shape<T: Clone>(
    a: ArrayView3<T>,
    min_shape_kji: [usize; 3],
    value: T,
) -> (Array3<T>, BoundingBox) {
    let d = a.dim();
    let shape = [d.0, d.1, d.2];
    let new = [0, 1, 2].map(|x| shape[x].max(min_shape_kji[x]));
    let before = [0, 1, 2].map(|x| (new[x] - shape[x]) / 2);
    let bbox = BoundingBox {
        start_kji: before,
        end_kji: [0, 1, 2].map(|x| before[x] + shape[x]),
    };
    let mut out = Array3::from_elem(new, value);
    out.slice_mut(s![
        before[0]..bbox.end_kji[0],
        before[1]..bbox.end_kji[1],
        before[2]..bbox.end_kji[2]
    ])
    .assign(&a);
    (out, bbox)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crop_uncrop_pad_round_trip() {
        let mut a = Array3::<f32>::zeros((5, 6, 7));
        a[[1, 2, 3]] = 1.0;
        a[[3, 4, 3]] = 2.0;
        let data = a.clone().insert_axis(Axis(0));
        let (bbox, _) = crop_to_nonzero(data.view());
        assert_eq!(bbox.start_kji, [1, 2, 3]);
        assert_eq!(bbox.end_kji, [4, 5, 4]);
        let c = bbox.crop(a.view());
        assert_eq!(uncrop(c.view(), &bbox, [5, 6, 7], 0.0).unwrap(), a);
        assert!(uncrop(c.view(), &bbox, [2, 6, 7], 0.0).is_err());
        let (p, inner) = pad_to_shape(c.view(), [4, 4, 4], -1.0);
        assert_eq!(p.dim(), (4, 4, 4));
        assert_eq!(inner.crop(p.view()), c);
        let g = Geometry::with_spacing([2.0, 3.0, 4.0]);
        assert_eq!(bbox.cropped_geometry(&g).origin, [6.0, 6.0, 4.0]);
    }
}
