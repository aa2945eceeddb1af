//! Lossless reorientation to RAS and back (axis permutations and flips only).

use medseg_volume::Geometry;
use ndarray::{Array3, Array4, ArrayView3, ArrayView4, Axis};

/// A permutation + flips of the voxel axes. New `(i, j, k)` axis `a` is old axis `perm[a]`,
/// reversed when `flip[a]`. Applying it never interpolates, so [`Reorientation::invert`]
/// gives back the exact input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Reorientation {
    pub perm: [usize; 3],
    pub flip: [bool; 3],
}

impl Default for Reorientation {
    fn default() -> Self {
        Self::identity()
    }
}

impl Reorientation {
    pub fn identity() -> Self {
        Self {
            perm: [0, 1, 2],
            flip: [false; 3],
        }
    }

    pub fn is_identity(&self) -> bool {
        *self == Self::identity()
    }

    /// The reorientation that makes `geometry`'s voxel axes point (as closely as a
    /// permutation can) along +R, +A, +S (nibabel's `io_orientation` rule, via
    /// `Geometry::axis_mapping`). A one-slice (2D) image whose slice axis does not map to S
    /// keeps its axes (identity), so it stays a one-slice image.
    pub fn to_ras(geometry: &Geometry, shape_kji: [usize; 3]) -> Self {
        let map = geometry.axis_mapping();
        let mut r = Self::identity();
        for (c, &(world, sign)) in map.iter().enumerate() {
            r.perm[world] = c;
            r.flip[world] = sign < 0.0;
        }
        if shape_kji[0] == 1 && r.perm[2] != 2 {
            return Self::identity();
        }
        r
    }

    /// Array axis order for `permuted_axes`: new array axis `2 - a` is old array axis
    /// `2 - perm[a]`.
    fn array_axes(&self) -> [usize; 3] {
        [2 - self.perm[2], 2 - self.perm[1], 2 - self.perm[0]]
    }

    /// Extents `[k, j, i]` after reorientation.
    pub fn apply_shape(&self, shape_kji: [usize; 3]) -> [usize; 3] {
        self.array_axes().map(|ax| shape_kji[ax])
    }

    /// Reorients a 3D array.
    pub fn apply<T: Clone>(&self, a: ArrayView3<T>) -> Array3<T> {
        let mut v = a.permuted_axes(self.array_axes());
        for ax in 0..3 {
            if self.flip[ax] {
                v.invert_axis(Axis(2 - ax));
            }
        }
        v.as_standard_layout().into_owned()
    }

    /// Reorients every channel of a `[c, k, j, i]` array.
    pub fn apply_channels<T: Clone>(&self, a: ArrayView4<T>) -> Array4<T> {
        let p = self.array_axes();
        let mut v = a.permuted_axes([0, p[0] + 1, p[1] + 1, p[2] + 1]);
        for ax in 0..3 {
            if self.flip[ax] {
                v.invert_axis(Axis(3 - ax));
            }
        }
        v.as_standard_layout().into_owned()
    }

    /// The inverse transform (so `r.inverse().apply(r.apply(x)) == x`).
    pub fn inverse(&self) -> Self {
        let mut inv = Self::identity();
        for a in 0..3 {
            // new axis a <- old axis perm[a] (flipped): old axis perm[a] <- new axis a
            inv.perm[self.perm[a]] = a;
            inv.flip[self.perm[a]] = self.flip[a];
        }
        inv
    }

    /// Undoes [`apply`](Self::apply).
    pub fn invert<T: Clone>(&self, a: ArrayView3<T>) -> Array3<T> {
        self.inverse().apply(a)
    }

    /// Undoes [`apply_channels`](Self::apply_channels).
    pub fn invert_channels<T: Clone>(&self, a: ArrayView4<T>) -> Array4<T> {
        self.inverse().apply_channels(a)
    }

    /// The geometry of the reoriented array (`shape_kji`: extents before), describing the
    /// same world positions: spacing and direction columns permuted (negated where flipped),
    /// origin moved to the world position of the voxel that becomes index 0.
    pub fn apply_geometry(&self, g: &Geometry, shape_kji: [usize; 3]) -> Geometry {
        let n_ijk = [shape_kji[2], shape_kji[1], shape_kji[0]];
        let mut out = *g;
        let mut zero = [0.0; 3];
        for a in 0..3 {
            let p = self.perm[a];
            out.spacing[a] = g.spacing[p];
            let sign = if self.flip[a] { -1.0 } else { 1.0 };
            for r in 0..3 {
                out.direction[r][a] = sign * g.direction[r][p];
            }
            if self.flip[a] {
                zero[p] = (n_ijk[p].max(1) - 1) as f64;
            }
        }
        out.origin = g.voxel_to_world(zero);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lps_oblique_round_trip_keeps_world_positions() {
        let t = 0.2f64;
        let g = Geometry {
            spacing: [0.8, 1.2, 2.5],
            origin: [10.0, -5.0, 3.0],
            // voxel i -> -y (P), j -> +z-ish (S), k -> -x (L)
            direction: [
                [0.0, 0.0, -1.0],
                [-t.cos(), t.sin(), 0.0],
                [t.sin(), t.cos(), 0.0],
            ],
        };
        let shape = [4, 5, 6];
        let a = Array3::from_shape_fn(shape, |(k, j, i)| (k * 100 + j * 10 + i) as u16);
        let r = Reorientation::to_ras(&g, shape);
        let b = r.apply(a.view());
        let g2 = r.apply_geometry(&g, shape);
        assert_eq!(g2.orientation_code(), "RAS");
        assert_eq!(b.shape(), &r.apply_shape(shape)[..]);
        // every voxel keeps its world position
        for ((k, j, i), &v) in b.indexed_iter() {
            let w = g2.voxel_to_world([i as f64, j as f64, k as f64]);
            let (ok, oj, oi) = ((v / 100) as f64, ((v / 10) % 10) as f64, (v % 10) as f64);
            let w0 = g.voxel_to_world([oi, oj, ok]);
            for c in 0..3 {
                assert!((w[c] - w0[c]).abs() < 1e-9);
            }
        }
        assert_eq!(r.invert(b.view()), a);
        let c4 = a.clone().insert_axis(Axis(0));
        assert_eq!(r.invert_channels(r.apply_channels(c4.view()).view()), c4);
        assert!(Reorientation::to_ras(&Geometry::default(), shape).is_identity());
    }
}
