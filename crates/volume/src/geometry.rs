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

    /// The 3x3 linear part of the voxel-to-world map, `direction * diag(spacing)` (rows): column
    /// `c` is the world step (mm) of one voxel along axis `c`.
    pub fn index_to_world(&self) -> [[f64; 3]; 3] {
        std::array::from_fn(|r| std::array::from_fn(|c| self.direction[r][c] * self.spacing[c]))
    }

    /// The 4x4 voxel-to-world affine (rows), as NIfTI's sform / nibabel's `affine`.
    pub fn affine(&self) -> [[f64; 4]; 4] {
        let m = self.index_to_world();
        let mut a = [[0.0; 4]; 4];
        for (row, (m_row, origin)) in a.iter_mut().zip(m.iter().zip(self.origin)) {
            row[..3].copy_from_slice(m_row);
            row[3] = origin;
        }
        a[3][3] = 1.0;
        a
    }

    /// Splits an affine into spacing (column norms), direction and origin. A zero column (a
    /// degenerate header) gets spacing 1 and the matching unit axis as direction.
    pub fn from_affine(a: &[[f64; 4]; 4]) -> Self {
        // The default already holds spacing 1 and the unit axes, the answer for a zero column.
        let mut g = Geometry {
            origin: std::array::from_fn(|r| a[r][3]),
            ..Geometry::default()
        };
        for c in 0..3 {
            let norm = (0..3).map(|r| a[r][c] * a[r][c]).sum::<f64>().sqrt();
            if norm > 0.0 && norm.is_finite() {
                g.spacing[c] = norm;
                for (r, row) in g.direction.iter_mut().enumerate() {
                    row[c] = a[r][c] / norm;
                }
            }
        }
        g
    }

    /// World position (mm) of a continuous voxel index `(i, j, k)`.
    pub fn voxel_to_world(&self, ijk: [f64; 3]) -> [f64; 3] {
        let m = self.index_to_world();
        // Accumulated onto the origin term by term (the order fixes the rounding).
        std::array::from_fn(|r| (0..3).fold(self.origin[r], |w, c| w + m[r][c] * ijk[c]))
    }

    /// Continuous voxel index `(i, j, k)` of a world position. Uses the inverse of the
    /// direction matrix (not its transpose), so slightly non-orthogonal headers still invert.
    pub fn world_to_voxel(&self, xyz: [f64; 3]) -> [f64; 3] {
        let inv = invert3(&self.direction).unwrap_or(self.direction);
        let d: [f64; 3] = std::array::from_fn(|r| xyz[r] - self.origin[r]);
        std::array::from_fn(|c| (0..3).fold(0.0, |s, r| s + inv[c][r] * d[r]) / self.spacing[c])
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
        let free = |used: [bool; 3]| (0..3).filter(move |&a| !used[a]);
        for _ in 0..3 {
            let mut best = (0, 0, -1.0);
            for c in free(used_voxel) {
                for r in free(used_world) {
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

/// Determinant of a 3x3 matrix (rows).
pub fn det3(m: &[[f64; 3]; 3]) -> f64 {
    m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
        - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
        + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
}

/// Below this, `|det| / (product of the column norms)` counts as singular in [`invert3`].
///
/// The ratio is scale-free: it is 1 for orthogonal columns, the same for a direction matrix and
/// for `direction * diag(spacing)` whatever the spacing (mm or µm), and about the angle (in
/// radians) between two nearly parallel columns. At 1e-12 the inverse still has about four
/// correct digits; for unit direction columns it is exactly the old absolute test
/// `|det| < 1e-12`.
pub const SINGULAR_RATIO: f64 = 1e-12;

/// Inverse of a 3x3 matrix (rows) by cofactors, or `None` when it is singular or not finite.
///
/// Singular means `|det| <= SINGULAR_RATIO * |col 0| * |col 1| * |col 2|` (see
/// [`SINGULAR_RATIO`]): by Hadamard's inequality `|det|` never exceeds the product of the column
/// norms, so the test is relative to the matrix's own scale and a valid grid with tiny (or huge)
/// spacing inverts, while one with (nearly) parallel or zero axes does not. Used for the
/// direction matrix ([`Geometry::world_to_voxel`]) and for the resampler's
/// `direction * diag(spacing)` ([`Geometry::index_to_world`]).
pub fn invert3(m: &[[f64; 3]; 3]) -> Option<[[f64; 3]; 3]> {
    let det = det3(m);
    let column_norms: f64 = (0..3)
        .map(|c| (0..3).map(|r| m[r][c] * m[r][c]).sum::<f64>().sqrt())
        .product();
    if !det.is_finite() || !column_norms.is_finite() || det.abs() <= SINGULAR_RATIO * column_norms {
        return None;
    }
    let inv_det = 1.0 / det;
    // Cofactor (r, c) of the transpose: the rows are cycled so that no sign flips are needed.
    let cofactor = |r: usize, c: usize| {
        let (r1, r2) = ((c + 1) % 3, (c + 2) % 3);
        let (c1, c2) = ((r + 1) % 3, (r + 2) % 3);
        (m[r1][c1] * m[r2][c2] - m[r1][c2] * m[r2][c1]) * inv_det
    };
    Some(std::array::from_fn(|r| {
        std::array::from_fn(|c| cofactor(r, c))
    }))
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
        let mut g = Geometry {
            direction: [[-1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, 1.0]],
            ..Geometry::default()
        };
        assert_eq!(g.orientation_code(), "LPS");
        g.direction = [[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]];
        assert_eq!(g.orientation_code(), "ASR");
    }

    fn product(a: &[[f64; 3]; 3], b: &[[f64; 3]; 3]) -> [[f64; 3]; 3] {
        std::array::from_fn(|r| std::array::from_fn(|c| (0..3).map(|q| a[r][q] * b[q][c]).sum()))
    }

    fn assert_inverse(m: &[[f64; 3]; 3], tol: f64) {
        let inv = invert3(m).expect("invertible");
        let id = product(m, &inv);
        for r in 0..3 {
            for c in 0..3 {
                let want = if r == c { 1.0 } else { 0.0 };
                assert!((id[r][c] - want).abs() < tol, "M * inv = {id:?}");
            }
        }
    }

    #[test]
    fn invert3_rejects_singular_matrices() {
        let zero_column = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]];
        let equal_columns = [[1.0, 1.0, 0.0], [2.0, 2.0, 0.0], [0.0, 0.0, 3.0]];
        let rank_two = [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]];
        for m in [zero_column, equal_columns, rank_two, [[0.0; 3]; 3]] {
            assert!(invert3(&m).is_none(), "{m:?}");
        }
        let mut not_finite = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
        not_finite[1][2] = f64::NAN;
        assert!(invert3(&not_finite).is_none());
        not_finite[1][2] = f64::INFINITY;
        assert!(invert3(&not_finite).is_none());
    }

    #[test]
    fn invert3_threshold_is_relative_to_the_column_norms() {
        // Two axes `angle` radians apart: |det| / (norms) is about the angle.
        let tilted = |angle: f64, scale: f64| {
            [
                [scale, scale * angle.cos(), 0.0],
                [0.0, scale * angle.sin(), 0.0],
                [0.0, 0.0, scale],
            ]
        };
        for scale in [1e-6, 1.0, 1e6] {
            assert!(invert3(&tilted(1e-13, scale)).is_none(), "scale {scale}");
            let m = tilted(1e-6, scale);
            let inv = invert3(&m).expect("a millionth of a radian still inverts");
            let id = product(&m, &inv);
            assert!(
                (id[0][0] - 1.0).abs() < 1e-6 && id[0][1].abs() < 1e-6,
                "{id:?}"
            );
        }
    }

    #[test]
    fn invert3_of_a_direction_times_spacing_matrix() {
        let t = 0.3f64;
        let direction = [
            [t.cos(), -t.sin(), 0.0],
            [t.sin(), t.cos(), 0.0],
            [0.0, 0.0, -1.0],
        ];
        // Anisotropic MR grid, and a micrometre grid whose |det| (1e-15) is below any absolute
        // threshold of 1e-12.
        for spacing in [[0.7, 0.7, 5.0], [1e-5, 1e-5, 1e-5]] {
            let g = Geometry {
                spacing,
                origin: [0.0; 3],
                direction,
            };
            let m = g.index_to_world();
            assert!((det3(&m).abs() - spacing.iter().product::<f64>()).abs() < 1e-12);
            assert_inverse(&m, 1e-12);
            let inv = invert3(&m).unwrap();
            let p = [3.0, -2.0, 7.5];
            let world = g.voxel_to_world(p);
            for c in 0..3 {
                let back: f64 = (0..3).map(|r| inv[c][r] * world[r]).sum();
                assert!((back - p[c]).abs() < 1e-9, "{back} vs {}", p[c]);
            }
        }
    }
}
