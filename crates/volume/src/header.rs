//! The NIfTI header as medseg keeps it: NIfTI-1 and NIfTI-2 parse into one [`Header`] with
//! `f64` fields (NIfTI-1's `f32` values convert exactly, so writing them back is lossless), and
//! the affine is chosen exactly as nibabel chooses it.

use crate::geometry::Geometry;

/// Which NIfTI flavour a header came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NiftiFormat {
    Nifti1,
    Nifti2,
}

/// Voxel datatypes medseg reads (every real scalar type of the standard).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataType {
    U8,
    I8,
    I16,
    U16,
    I32,
    U32,
    I64,
    U64,
    F32,
    F64,
}

impl DataType {
    /// Maps a NIfTI datatype code; `Err` carries a readable reason for codes medseg rejects.
    pub fn from_code(code: i64) -> Result<Self, String> {
        Ok(match code {
            2 => DataType::U8,
            4 => DataType::I16,
            8 => DataType::I32,
            16 => DataType::F32,
            64 => DataType::F64,
            256 => DataType::I8,
            512 => DataType::U16,
            768 => DataType::U32,
            1024 => DataType::I64,
            1280 => DataType::U64,
            32 | 1792 | 2048 => {
                return Err(format!(
                    "complex data (datatype {code}) is not an image medseg can segment; save the magnitude as float32"
                ));
            }
            128 | 2304 => {
                return Err(format!(
                    "RGB/RGBA data (datatype {code}) is not supported; convert it to one grayscale channel or to one file per channel"
                ));
            }
            1536 => {
                return Err(
                    "float128 data (datatype 1536) is not supported; convert it to float32".into(),
                );
            }
            1 => {
                return Err(
                    "1-bit binary data (datatype 1) is not supported; save the mask as uint8"
                        .into(),
                );
            }
            _ => return Err(format!("unknown NIfTI datatype code {code}")),
        })
    }

    pub fn code(self) -> i16 {
        match self {
            DataType::U8 => 2,
            DataType::I16 => 4,
            DataType::I32 => 8,
            DataType::F32 => 16,
            DataType::F64 => 64,
            DataType::I8 => 256,
            DataType::U16 => 512,
            DataType::U32 => 768,
            DataType::I64 => 1024,
            DataType::U64 => 1280,
        }
    }

    pub fn size(self) -> usize {
        match self {
            DataType::U8 | DataType::I8 => 1,
            DataType::I16 | DataType::U16 => 2,
            DataType::I32 | DataType::U32 | DataType::F32 => 4,
            DataType::I64 | DataType::U64 | DataType::F64 => 8,
        }
    }

    /// nibabel's (numpy's) name of the type, e.g. "int16".
    pub fn name(self) -> &'static str {
        match self {
            DataType::U8 => "uint8",
            DataType::I8 => "int8",
            DataType::I16 => "int16",
            DataType::U16 => "uint16",
            DataType::I32 => "int32",
            DataType::U32 => "uint32",
            DataType::I64 => "int64",
            DataType::U64 => "uint64",
            DataType::F32 => "float32",
            DataType::F64 => "float64",
        }
    }

    pub fn is_integer(self) -> bool {
        !matches!(self, DataType::F32 | DataType::F64)
    }
}

/// A NIfTI header (either version). Field names follow the standard.
#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    pub format: NiftiFormat,
    pub big_endian: bool,
    /// `dim[0]` is the number of dimensions; `dim[1..=dim[0]]` the extents.
    pub dim: [i64; 8],
    /// `pixdim[0]` is qfac; `pixdim[1..=3]` the voxel size.
    pub pixdim: [f64; 8],
    pub datatype: DataType,
    pub vox_offset: f64,
    pub scl_slope: f64,
    pub scl_inter: f64,
    pub cal_min: f64,
    pub cal_max: f64,
    pub toffset: f64,
    pub slice_duration: f64,
    pub slice_start: i64,
    pub slice_end: i64,
    pub slice_code: i32,
    pub dim_info: u8,
    pub xyzt_units: i32,
    pub intent_code: i32,
    pub intent_p: [f64; 3],
    pub intent_name: [u8; 16],
    pub descrip: [u8; 80],
    pub aux_file: [u8; 24],
    pub qform_code: i32,
    pub sform_code: i32,
    /// quatern_b, quatern_c, quatern_d.
    pub quatern: [f64; 3],
    /// qoffset_x, qoffset_y, qoffset_z.
    pub qoffset: [f64; 3],
    /// srow_x, srow_y, srow_z.
    pub srow: [[f64; 4]; 3],
}

impl Header {
    /// A fresh NIfTI-1 header for `shape` (NIfTI order: i, j, k, ...) and geometry: sform and
    /// qform both set from the geometry with code 1 (scanner), units mm.
    pub fn from_geometry(shape: &[usize], geometry: &Geometry, datatype: DataType) -> Self {
        let mut h = Header {
            format: NiftiFormat::Nifti1,
            big_endian: false,
            dim: [0; 8],
            pixdim: [1.0; 8],
            datatype,
            vox_offset: 352.0,
            scl_slope: 1.0,
            scl_inter: 0.0,
            cal_min: 0.0,
            cal_max: 0.0,
            toffset: 0.0,
            slice_duration: 0.0,
            slice_start: 0,
            slice_end: 0,
            slice_code: 0,
            dim_info: 0,
            xyzt_units: 2, // mm
            intent_code: 0,
            intent_p: [0.0; 3],
            intent_name: [0; 16],
            descrip: [0; 80],
            aux_file: [0; 24],
            qform_code: 1,
            sform_code: 1,
            quatern: [0.0; 3],
            qoffset: [0.0; 3],
            srow: [[0.0; 4]; 3],
        };
        h.set_shape(shape);
        h.set_geometry(geometry);
        let d = b"medseg";
        h.descrip[..d.len()].copy_from_slice(d);
        h
    }

    /// Sets `dim` from a shape in NIfTI order.
    pub fn set_shape(&mut self, shape: &[usize]) {
        self.dim = [1; 8];
        self.dim[0] = shape.len().clamp(1, 7) as i64;
        for (d, &s) in self.dim[1..].iter_mut().zip(shape) {
            *d = s as i64;
        }
    }

    /// Sets sform (exactly the affine) and qform (rotation + qfac + zooms, as nibabel's
    /// `set_qform`) from a geometry, keeping the codes.
    pub fn set_geometry(&mut self, g: &Geometry) {
        let a = g.affine();
        self.srow.copy_from_slice(&a[..3]);
        let mut rot = g.direction;
        let det = crate::geometry::det3(&rot);
        let qfac = if det < 0.0 { -1.0 } else { 1.0 };
        if qfac < 0.0 {
            for row in rot.iter_mut() {
                row[2] = -row[2];
            }
        }
        let [_, b, c, d] = rotation_to_quaternion(&rot);
        self.quatern = [b, c, d];
        self.qoffset = g.origin;
        self.pixdim[0] = qfac;
        self.pixdim[1..4].copy_from_slice(&g.spacing);
    }

    /// The extents `dim[1..=dim[0]]` (NIfTI order, as nibabel's `shape`).
    pub fn shape(&self) -> Vec<usize> {
        let n = self.dim[0].clamp(0, 7) as usize;
        self.dim[1..=n].iter().map(|&d| d.max(0) as usize).collect()
    }

    /// The three spatial extents (missing axes are 1).
    pub fn spatial_shape(&self) -> [usize; 3] {
        let s = self.shape();
        [0, 1, 2].map(|a| s.get(a).copied().unwrap_or(1))
    }

    /// `scl_slope`/`scl_inter` as nibabel applies them: slope 0 or non-finite means no scaling
    /// (and then the intercept is ignored too).
    pub fn effective_scaling(&self) -> Option<(f64, f64)> {
        if self.scl_slope == 0.0 || !self.scl_slope.is_finite() {
            return None;
        }
        let inter = if self.scl_inter.is_finite() {
            self.scl_inter
        } else {
            0.0
        };
        if self.scl_slope == 1.0 && inter == 0.0 {
            None
        } else {
            Some((self.scl_slope, inter))
        }
    }

    /// The sform matrix (rows srow_x, srow_y, srow_z).
    pub fn sform(&self) -> [[f64; 4]; 4] {
        [
            self.srow[0],
            self.srow[1],
            self.srow[2],
            [0.0, 0.0, 0.0, 1.0],
        ]
    }

    /// The qform matrix exactly as nibabel builds it (whatever qform_code says). Like
    /// nibabel's `fillpositive`, a quaternion `a` whose square is within 3 machine epsilons of
    /// 0 (of float32 for NIfTI-1, float64 for NIfTI-2) is taken as exactly 0: headers store
    /// 180° rotations that way, and recovering `a` by a square root would add ~1e-4 of noise.
    pub fn qform(&self) -> [[f64; 4]; 4] {
        let [b, c, d] = self.quatern;
        let eps = if self.format == NiftiFormat::Nifti1 {
            f32::EPSILON as f64
        } else {
            f64::EPSILON
        };
        let w2 = 1.0 - (b * b + c * c + d * d);
        let a = if w2.abs() < 3.0 * eps || w2 < 0.0 {
            0.0
        } else {
            w2.sqrt()
        };
        let r = quaternion_to_rotation([a, b, c, d]);
        let mut zooms = [self.pixdim[1], self.pixdim[2], self.pixdim[3]];
        // nibabel fixes a qfac that is neither 1 nor -1 to 1.
        if self.pixdim[0] == -1.0 {
            zooms[2] = -zooms[2];
        }
        let mut m = [[0.0; 4]; 4];
        for i in 0..3 {
            for j in 0..3 {
                m[i][j] = r[i][j] * zooms[j];
            }
            m[i][3] = self.qoffset[i];
        }
        m[3][3] = 1.0;
        m
    }

    /// nibabel's fallback affine when neither form is set (`shape_zoom_affine` with an x flip).
    pub fn base_affine(&self) -> [[f64; 4]; 4] {
        let shape = self.spatial_shape();
        let mut zooms = [self.pixdim[1], self.pixdim[2], self.pixdim[3]];
        let n = self.dim[0].clamp(0, 7) as usize;
        for (a, z) in zooms.iter_mut().enumerate() {
            if a >= n {
                *z = 1.0;
            }
        }
        zooms[0] = -zooms[0];
        let mut m = [[0.0; 4]; 4];
        for a in 0..3 {
            m[a][a] = zooms[a];
            m[a][3] = -((shape[a] as f64 - 1.0) / 2.0) * zooms[a];
        }
        m[3][3] = 1.0;
        m
    }

    /// The affine nibabel uses: sform if `sform_code` != 0, else qform if `qform_code` != 0,
    /// else the pixdim-only fallback.
    pub fn affine(&self) -> [[f64; 4]; 4] {
        if self.sform_code != 0 {
            self.sform()
        } else if self.qform_code != 0 {
            self.qform()
        } else {
            self.base_affine()
        }
    }

    /// Spacing, origin and direction of the chosen affine. The spacing is `pixdim[1..=3]`
    /// (as ITK and nibabel's zooms report it) when that agrees with the affine's column
    /// lengths to 1e-4 relative; float32 sforms of oblique grids lose the last bits of the
    /// column lengths, and metrics in mm³ must not depend on that noise.
    pub fn geometry(&self) -> Geometry {
        let mut g = Geometry::from_affine(&self.affine());
        for a in 0..3 {
            let p = self.pixdim[a + 1].abs();
            if p > 0.0 && p.is_finite() && ((p - g.spacing[a]).abs() <= 1e-4 * p) {
                g.spacing[a] = p;
            }
        }
        g
    }

    /// Total number of voxels, or `None` on overflow.
    pub fn voxel_count(&self) -> Option<u64> {
        self.shape()
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64))
    }

    /// Spatial unit name ("mm", "meter", "micron", "unknown").
    pub fn spatial_unit(&self) -> &'static str {
        match self.xyzt_units & 0x07 {
            1 => "meter",
            2 => "mm",
            3 => "micron",
            _ => "unknown",
        }
    }

    /// `descrip` as text (up to the first NUL).
    pub fn description(&self) -> String {
        let end = self.descrip.iter().position(|&b| b == 0).unwrap_or(80);
        String::from_utf8_lossy(&self.descrip[..end]).into_owned()
    }
}

/// Rotation matrix of a unit quaternion (a, b, c, d) (nibabel's `quat2mat`).
pub(crate) fn quaternion_to_rotation(q: [f64; 4]) -> [[f64; 3]; 3] {
    let [w, x, y, z] = q;
    let n = w * w + x * x + y * y + z * z;
    if n < f64::EPSILON {
        return [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
    }
    let s = 2.0 / n;
    let (xs, ys, zs) = (x * s, y * s, z * s);
    let (wx, wy, wz) = (w * xs, w * ys, w * zs);
    let (xx, xy, xz) = (x * xs, x * ys, x * zs);
    let (yy, yz, zz) = (y * ys, y * zs, z * zs);
    [
        [1.0 - (yy + zz), xy - wz, xz + wy],
        [xy + wz, 1.0 - (xx + zz), yz - wx],
        [xz - wy, yz + wx, 1.0 - (xx + yy)],
    ]
}

/// Quaternion (a >= 0, b, c, d) of a proper rotation matrix (Shepperd's method). A slightly
/// non-orthogonal matrix (sheared header) gives the nearest rotation's quaternion approximately;
/// the sform keeps the exact affine.
pub(crate) fn rotation_to_quaternion(r: &[[f64; 3]; 3]) -> [f64; 4] {
    let tr = r[0][0] + r[1][1] + r[2][2];
    let q = if tr > 0.0 {
        let s = (tr + 1.0).sqrt() * 2.0;
        [
            0.25 * s,
            (r[2][1] - r[1][2]) / s,
            (r[0][2] - r[2][0]) / s,
            (r[1][0] - r[0][1]) / s,
        ]
    } else if r[0][0] > r[1][1] && r[0][0] > r[2][2] {
        let s = (1.0 + r[0][0] - r[1][1] - r[2][2]).sqrt() * 2.0;
        [
            (r[2][1] - r[1][2]) / s,
            0.25 * s,
            (r[0][1] + r[1][0]) / s,
            (r[0][2] + r[2][0]) / s,
        ]
    } else if r[1][1] > r[2][2] {
        let s = (1.0 + r[1][1] - r[0][0] - r[2][2]).sqrt() * 2.0;
        [
            (r[0][2] - r[2][0]) / s,
            (r[0][1] + r[1][0]) / s,
            0.25 * s,
            (r[1][2] + r[2][1]) / s,
        ]
    } else {
        let s = (1.0 + r[2][2] - r[0][0] - r[1][1]).sqrt() * 2.0;
        [
            (r[1][0] - r[0][1]) / s,
            (r[0][2] + r[2][0]) / s,
            (r[1][2] + r[2][1]) / s,
            0.25 * s,
        ]
    };
    let n = q.iter().map(|v| v * v).sum::<f64>().sqrt();
    let mut q = q.map(|v| v / n);
    if q[0] < 0.0 {
        q = q.map(|v| -v);
    }
    q
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quaternion_round_trip() {
        let t: f64 = 0.4;
        let r = [
            [t.cos(), 0.0, t.sin()],
            [0.0, 1.0, 0.0],
            [-t.sin(), 0.0, t.cos()],
        ];
        let q = rotation_to_quaternion(&r);
        let r2 = quaternion_to_rotation(q);
        for i in 0..3 {
            for j in 0..3 {
                assert!((r[i][j] - r2[i][j]).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn qform_matches_sform_for_generated_header() {
        let g = Geometry {
            spacing: [0.7, 0.9, 2.5],
            origin: [1.0, -2.0, 3.0],
            direction: [[-1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]],
        };
        let h = Header::from_geometry(&[4, 5, 6], &g, DataType::F32);
        let (q, s) = (h.qform(), h.sform());
        // The quaternion is stored as float32, so the qform is only float32-accurate.
        for i in 0..4 {
            for j in 0..4 {
                assert!((q[i][j] - s[i][j]).abs() < 1e-5, "{q:?} vs {s:?}");
            }
        }
    }
}
