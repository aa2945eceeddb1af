//! Voxel grid geometry and the one place the axis convention is written down.
//!
//! Arrays are indexed `[k, j, i]` (C order; `i` varies fastest, as in the file). Everything in
//! [`Geometry`] is in `(i, j, k)` = `(x, y, z)` order, as ITK and NIfTI write it:
//! `spacing[0]` is the size of a step along `i`, `direction` column `c` is the world direction
//! of voxel axis `c`, and world = origin + direction * diag(spacing) * (i, j, k). World space is
//! RAS+ (NIfTI's), not ITK's LPS.

/// Spacing (mm), origin (mm) and direction cosines of a voxel grid, in `(i, j, k)` order.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Geometry {
    /// Voxel size along i, j, k in mm (always positive).
    pub spacing: [f64; 3],
    /// World (RAS, mm) position of the centre of voxel (0, 0, 0).
    pub origin: [f64; 3],
    /// Row-major 3x3 matrix; column `c` is the unit direction of voxel axis `c` in world space.
    pub direction: [[f64; 3]; 3],
}

impl Default for Geometry {
    fn default() -> Self {
        Self::with_spacing([1.0; 3])
    }
}

impl Geometry {
    /// Identity direction and zero origin with the given spacing.
    pub fn with_spacing(spacing: [f64; 3]) -> Self {
        Self {
            spacing,
            origin: [0.0; 3],
            direction: [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
        }
    }

    /// The 4x4 voxel-to-world affine (rows), as NIfTI's sform / nibabel's `affine`.
    pub fn affine(&self) -> [[f64; 4]; 4] {
        let mut a = [[0.0; 4]; 4];
        for r in 0..3 {
            for c in 0..3 {
                a[r][c] = self.direction[r][c] * self.spacing[c];
            }
            a[r][3] = self.origin[r];
        }
        a[3][3] = 1.0;
        a
    }

    /// Splits an affine into spacing (column norms), direction and origin. A zero column (a
    /// degenerate header) gets spacing 1 and the matching unit axis as direction.
    pub fn from_affine(a: &[[f64; 4]; 4]) -> Self {
        let mut g = Geometry::default();
        for c in 0..3 {
            let norm = (0..3).map(|r| a[r][c] * a[r][c]).sum::<f64>().sqrt();
            if norm > 0.0 && norm.is_finite() {
                g.spacing[c] = norm;
                for r in 0..3 {
                    g.direction[r][c] = a[r][c] / norm;
                }
            } else {
                g.spacing[c] = 1.0;
                for r in 0..3 {
                    g.direction[r][c] = if r == c { 1.0 } else { 0.0 };
                }
            }
        }
        for r in 0..3 {
            g.origin[r] = a[r][3];
        }
        g
    }

    /// World position (mm) of a continuous voxel index `(i, j, k)`.
    pub fn voxel_to_world(&self, ijk: [f64; 3]) -> [f64; 3] {
        let mut w = self.origin;
        for r in 0..3 {
            for c in 0..3 {
                w[r] += self.direction[r][c] * self.spacing[c] * ijk[c];
            }
        }
        w
    }

    /// Continuous voxel index `(i, j, k)` of a world position. Uses the inverse of the
    /// direction matrix (not its transpose), so slightly non-orthogonal headers still invert.
    pub fn world_to_voxel(&self, xyz: [f64; 3]) -> [f64; 3] {
        let inv = invert3(&self.direction).unwrap_or(self.direction);
        let d = [
            xyz[0] - self.origin[0],
            xyz[1] - self.origin[1],
            xyz[2] - self.origin[2],
        ];
        let mut ijk = [0.0; 3];
        for c in 0..3 {
            let mut s = 0.0;
            for r in 0..3 {
                s += inv[c][r] * d[r];
            }
            ijk[c] = s / self.spacing[c];
        }
        ijk
    }

    /// Largest absolute difference to `other` in spacing, origin and direction; `None` when
    /// everything is within `tol` (mm for spacing/origin, cosine units for direction),
    /// otherwise a readable description of the first difference.
    pub fn difference(&self, other: &Geometry, tol: f64) -> Option<String> {
        let fmt = |v: &[f64; 3]| format!("({:.4}, {:.4}, {:.4})", v[0], v[1], v[2]);
        if (0..3).any(|c| (self.spacing[c] - other.spacing[c]).abs() > tol) {
            return Some(format!(
                "spacing {} vs {}",
                fmt(&self.spacing),
                fmt(&other.spacing)
            ));
        }
        if (0..3).any(|c| (self.origin[c] - other.origin[c]).abs() > tol) {
            return Some(format!(
                "origin {} vs {}",
                fmt(&self.origin),
                fmt(&other.origin)
            ));
        }
        if (0..3)
            .any(|r| (0..3).any(|c| (self.direction[r][c] - other.direction[r][c]).abs() > tol))
        {
            return Some("direction cosines differ".to_string());
        }
        None
    }

    /// Three-letter orientation code of the voxel axes (nibabel's `aff2axcodes`), e.g. "RAS"
    /// or "LPS": for each voxel axis, the world axis it is closest to and its sign.
    pub fn orientation_code(&self) -> String {
        self.axis_mapping()
            .iter()
            .map(|&(world, sign)| match (world, sign > 0.0) {
                (0, true) => 'R',
                (0, false) => 'L',
                (1, true) => 'A',
                (1, false) => 'P',
                (2, true) => 'S',
                _ => 'I',
            })
            .collect()
    }

    /// For each voxel axis `c`, the world axis it points along most and the sign.
    /// A greedy pick of the largest cosine, each world axis used once (as nibabel's
    /// `io_orientation`), so an oblique grid still maps to a permutation.
    pub fn axis_mapping(&self) -> [(usize, f64); 3] {
        let mut out = [(0usize, 1.0f64); 3];
        let mut used_world = [false; 3];
        let mut used_voxel = [false; 3];
        for _ in 0..3 {
            let mut best = (0, 0, -1.0);
            for c in 0..3 {
                if used_voxel[c] {
                    continue;
                }
                for r in 0..3 {
                    if used_world[r] {
                        continue;
                    }
                    let v = self.direction[r][c].abs();
                    if v > best.2 {
                        best = (r, c, v);
                    }
                }
            }
            let (r, c, _) = best;
            used_world[r] = true;
            used_voxel[c] = true;
            out[c] = (r, self.direction[r][c].signum());
        }
        out
    }

    /// Length of the grid's diagonal in mm for a grid of `shape_ijk` voxels (the worst-case
    /// distance used when exactly one mask is empty).
    pub fn diagonal_mm(&self, shape_ijk: [usize; 3]) -> f64 {
        (0..3)
            .map(|c| {
                let l = shape_ijk[c] as f64 * self.spacing[c];
                l * l
            })
            .sum::<f64>()
            .sqrt()
    }

    /// Volume of one voxel in mm³.
    pub fn voxel_volume_mm3(&self) -> f64 {
        self.spacing.iter().product()
    }
}

pub(crate) fn invert3(m: &[[f64; 3]; 3]) -> Option<[[f64; 3]; 3]> {
    let det = m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
        - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
        + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]);
    if det.abs() < 1e-12 || !det.is_finite() {
        return None;
    }
    let inv_det = 1.0 / det;
    let mut r = [[0.0; 3]; 3];
    r[0][0] = (m[1][1] * m[2][2] - m[1][2] * m[2][1]) * inv_det;
    r[0][1] = (m[0][2] * m[2][1] - m[0][1] * m[2][2]) * inv_det;
    r[0][2] = (m[0][1] * m[1][2] - m[0][2] * m[1][1]) * inv_det;
    r[1][0] = (m[1][2] * m[2][0] - m[1][0] * m[2][2]) * inv_det;
    r[1][1] = (m[0][0] * m[2][2] - m[0][2] * m[2][0]) * inv_det;
    r[1][2] = (m[0][2] * m[1][0] - m[0][0] * m[1][2]) * inv_det;
    r[2][0] = (m[1][0] * m[2][1] - m[1][1] * m[2][0]) * inv_det;
    r[2][1] = (m[0][1] * m[2][0] - m[0][0] * m[2][1]) * inv_det;
    r[2][2] = (m[0][0] * m[1][1] - m[0][1] * m[1][0]) * inv_det;
    Some(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn affine_round_trip_oblique() {
        let t = 0.3f64;
        let g = Geometry {
            spacing: [0.8, 1.2, 2.5],
            origin: [-10.0, 20.0, 5.0],
            direction: [
                [t.cos(), -t.sin(), 0.0],
                [t.sin(), t.cos(), 0.0],
                [0.0, 0.0, -1.0],
            ],
        };
        let g2 = Geometry::from_affine(&g.affine());
        assert!(g.difference(&g2, 1e-12).is_none());
        let p = [3.0, 4.5, 7.0];
        let back = g.world_to_voxel(g.voxel_to_world(p));
        for c in 0..3 {
            assert!((back[c] - p[c]).abs() < 1e-9);
        }
    }

    #[test]
    fn orientation_codes() {
        assert_eq!(Geometry::default().orientation_code(), "RAS");
        let mut g = Geometry::default();
        g.direction = [[-1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, 1.0]];
        assert_eq!(g.orientation_code(), "LPS");
        g.direction = [[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]];
        assert_eq!(g.orientation_code(), "ASR");
    }
}

pub(crate) fn det3(m: &[[f64; 3]; 3]) -> f64 {
    m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
        - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
        + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
}
