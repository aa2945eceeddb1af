//! Reading and writing NIfTI-1 / NIfTI-2 files (`.nii`, `.nii.gz`, `.hdr`/`.img`).
//!
//! Reading loads the (decompressed) file into memory once and decodes the voxels straight into
//! the output array, applying `scl_slope`/`scl_inter` in `f64` as nibabel does. Gzip is detected
//! by its magic bytes, not the extension, multi-member streams are read whole, and every
//! member's CRC-32 and length (ISIZE) must match: a damaged `.nii.gz` is an error, not data. Sizes are
//! checked before anything large is allocated: a header that announces more data than the file
//! can hold is an error, never an out-of-memory abort.

use crate::header::{DataType, Header, NiftiFormat};
use crate::{Geometry, MultiChannel, Volume, VolumeError};
use flate2::read::MultiGzDecoder;
use ndarray::{ArrayD, IxDyn};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// Deflate cannot expand data by more than about 1032x; anything beyond this ratio is a header
/// lying about its size (an allocation bomb), reported before allocating.
const MAX_GZIP_RATIO: u64 = 1100;
/// Largest voxel buffer medseg will allocate (64 GiB).
const MAX_DATA_BYTES: u64 = 64 << 30;

/// A NIfTI file in memory: its header and its scaled voxel values.
#[derive(Debug, Clone)]
pub struct NiftiImage {
    pub header: Header,
    /// C order, indexed `[..., t, k, j, i]` (the reverse of the NIfTI axis order), scaled.
    pub data: ArrayD<f32>,
}

impl NiftiImage {
    /// The header's geometry.
    pub fn geometry(&self) -> Geometry {
        self.header.geometry()
    }
}

/// Element types [`decode`] can produce (scaled values are computed in `f64` first).
pub(crate) trait DecodeTarget: Copy + Default + Send + Sync + 'static {
    fn from_f64(v: f64) -> Self;
}
impl DecodeTarget for f32 {
    fn from_f64(v: f64) -> Self {
        v as f32
    }
}
impl DecodeTarget for f64 {
    fn from_f64(v: f64) -> Self {
        v
    }
}

/// Reads a NIfTI file: header and scaled voxel values as `f32`.
pub fn read_nifti(path: &Path) -> Result<NiftiImage, VolumeError> {
    let (header, data) = read_nifti_as::<f32>(path)?;
    Ok(NiftiImage { header, data })
}

/// Reads a NIfTI file with values decoded to `f64` (used where statistics must be exact).
pub fn read_nifti_f64(path: &Path) -> Result<(Header, ArrayD<f64>), VolumeError> {
    read_nifti_as::<f64>(path)
}

fn read_nifti_as<T: DecodeTarget>(path: &Path) -> Result<(Header, ArrayD<T>), VolumeError> {
    let (bytes, compressed_len, gz) = read_maybe_gz(path)?;
    let header = parse_header(path, &bytes)?;
    let expected = data_bytes(path, &header)?;
    let shape = array_shape(&header);
    let is_pair = has_extension(path, ".hdr") || has_extension(path, ".hdr.gz");
    let data = if is_pair {
        let img = pair_image_path(path)?;
        let (img_bytes, img_compressed, img_gz) = read_maybe_gz(&img)?;
        if img_gz {
            check_ratio(&img, expected, img_compressed)?;
        }
        let offset = header.vox_offset.max(0.0) as u64;
        let body = slice_data(&img, &img_bytes, offset, expected)?;
        decode::<T>(&header, body, &shape)
    } else {
        // A single file's data cannot start inside its header: nibabel treats such a
        // vox_offset (often 0) as the minimum, 352 (NIfTI-1) or 544 (NIfTI-2).
        let min_offset = if header.format == NiftiFormat::Nifti1 {
            352.0
        } else {
            544.0
        };
        let offset = header.vox_offset.max(min_offset) as u64;
        if gz {
            check_ratio(path, expected + offset, compressed_len)?;
        }
        let body = slice_data(path, &bytes, offset, expected)?;
        decode::<T>(&header, body, &shape)
    };
    Ok((header, data))
}

/// Reads a 3D image (a 4D file must have one volume) as `f32` with its geometry.
pub fn read_volume(path: &Path) -> Result<Volume<f32>, VolumeError> {
    let img = read_nifti(path)?;
    into_volume(path, img)
}

fn into_volume(path: &Path, img: NiftiImage) -> Result<Volume<f32>, VolumeError> {
    let shape = img.header.shape();
    let extra: usize = shape.iter().skip(3).product();
    if extra != 1 {
        return Err(VolumeError::unsupported(
            path,
            format!(
                "has {extra} volumes (shape {shape:?}); medseg expects one 3D volume per file here (use one file per channel, CASE_0000, CASE_0001, ...)"
            ),
        ));
    }
    let [ni, nj, nk] = img.header.spatial_shape();
    let geometry = img.header.geometry();
    let data = img
        .data
        .into_shape_with_order((nk, nj, ni))
        .map_err(|e| VolumeError::decode(path, "unexpected data shape", e))?;
    Ok(Volume::new(data, geometry))
}

/// Reads an integer label map. Values must be whole numbers in `0..=65535`; anything else is an
/// error naming the first offending value (a probability map passed as labels, say).
pub fn read_labels(path: &Path) -> Result<Volume<u16>, VolumeError> {
    let v = crate::read_image(path)?;
    if let Some(bad) = v
        .data
        .iter()
        .find(|&&x| !((0.0..=65535.0).contains(&x) && x.fract() == 0.0))
    {
        return Err(VolumeError::format(
            path,
            format!(
                "is not a label map: it holds the value {bad} (labels must be whole numbers 0..65535)"
            ),
        ));
    }
    Ok(v.map(|&x| x as u16))
}

/// Reads the channels of one case: either one file per channel (nnU-Net's `CASE_0000`,
/// `CASE_0001`, ...) on one grid, or a single 4D file whose 4th axis holds the channels
/// (MSD v1). Channels whose shapes or geometries differ are an error naming both files.
pub fn read_channels(paths: &[PathBuf]) -> Result<MultiChannel, VolumeError> {
    let Some(first) = paths.first() else {
        return Err(VolumeError::format(
            Path::new("<case>"),
            "no image files given",
        ));
    };
    if paths.len() == 1 && crate::ImageFormat::of(first) == Some(crate::ImageFormat::Natural) {
        // one file holds every colour channel (nnU-Net's NaturalImage2DIO)
        return crate::read_natural(first);
    }
    let other_format = matches!(
        crate::ImageFormat::detect(first),
        Some(crate::ImageFormat::MetaImage | crate::ImageFormat::Nrrd | crate::ImageFormat::Dicom)
    );
    if paths.len() == 1 && other_format {
        let v = crate::read_image(first)?;
        return MultiChannel::stack(&[v])
            .ok_or_else(|| VolumeError::format(first, "cannot stack channels"));
    }
    if paths.len() == 1 {
        let img = read_nifti(first)?;
        let shape = img.header.shape();
        let extra: usize = shape.iter().skip(3).product();
        let [ni, nj, nk] = img.header.spatial_shape();
        let geometry = img.header.geometry();
        let data = img
            .data
            .into_shape_with_order((extra, nk, nj, ni))
            .map_err(|e| VolumeError::decode(first, "unexpected data shape", e))?;
        return Ok(MultiChannel { data, geometry });
    }
    let mut vols = Vec::with_capacity(paths.len());
    for p in paths {
        let v = crate::read_image(p)?;
        if let Some(v0) = vols.first() {
            let v0: &Volume<f32> = v0;
            if v0.shape_ijk() != v.shape_ijk() {
                return Err(VolumeError::Geometry {
                    path: p.clone(),
                    reason: format!(
                        "shape {:?} differs from {:?} of {}",
                        v.shape_ijk(),
                        v0.shape_ijk(),
                        first.display()
                    ),
                });
            }
            if let Some(d) = v0.geometry.difference(&v.geometry, 1e-3) {
                return Err(VolumeError::Geometry {
                    path: p.clone(),
                    reason: format!("grid differs from {}: {d}", first.display()),
                });
            }
        }
        vols.push(v);
    }
    MultiChannel::stack(&vols).ok_or_else(|| VolumeError::format(first, "cannot stack channels"))
}

// ---------------------------------------------------------------------------------------------
// Reading internals

fn has_extension(path: &Path, ext: &str) -> bool {
    path.file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase().ends_with(ext))
        .unwrap_or(false)
}

fn pair_image_path(hdr: &Path) -> Result<PathBuf, VolumeError> {
    let name = hdr.to_string_lossy();
    let stem = if let Some(s) = name.strip_suffix(".gz") {
        s
    } else {
        &name
    };
    let stem = &stem[..stem.len() - 4];
    for ext in [".img", ".img.gz", ".IMG"] {
        let p = PathBuf::from(format!("{stem}{ext}"));
        if p.exists() {
            return Ok(p);
        }
    }
    Err(VolumeError::format(
        hdr,
        format!("is a header-only file and its image file {stem}.img is missing"),
    ))
}

/// Reads a whole file, decompressing it when it starts with the gzip magic. Returns the bytes,
/// the on-disk length and whether it was gzip.
///
/// Every gzip member is read to its end, because that is where flate2 checks the member's
/// CRC-32 and ISIZE trailer: stopping after the bytes the header announces (or swallowing an
/// error once the header was decoded) would accept a flipped bit mid-stream, a damaged
/// trailer or a cut-off file as data. Any such error fails the read.
fn read_maybe_gz(path: &Path) -> Result<(Vec<u8>, u64, bool), VolumeError> {
    let raw = std::fs::read(path).map_err(|e| VolumeError::io(path, e))?;
    let disk_len = raw.len() as u64;
    if !(raw.len() >= 2 && raw[0] == 0x1f && raw[1] == 0x8b) {
        return Ok((raw, disk_len, false));
    }
    // Deflate cannot expand beyond the ratio rule, so a valid stream ends before this bound;
    // reading one byte more tells a bomb from a stream that ends exactly there.
    let bound = disk_len.saturating_mul(MAX_GZIP_RATIO);
    let mut out = Vec::with_capacity((raw.len() * 4).min(1 << 30));
    MultiGzDecoder::new(&raw[..])
        .take(bound.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| gzip_error(path, e))?;
    if out.len() as u64 > bound {
        return Err(VolumeError::format(
            path,
            format!(
                "the gzip stream expands to more than {MAX_GZIP_RATIO}x its {disk_len} bytes; the file is corrupt"
            ),
        ));
    }
    Ok((out, disk_len, true))
}

/// A gzip decoding error as one line naming the file: truncated, or damaged (a CRC-32 or
/// ISIZE mismatch, or deflate data that does not decode).
fn gzip_error(path: &Path, e: std::io::Error) -> VolumeError {
    let what = if e.kind() == std::io::ErrorKind::UnexpectedEof {
        "truncated gzip stream (the file ends inside the compressed data; re-download or re-export it)"
    } else {
        "corrupt gzip stream (CRC-32, length or deflate check failed: the file is damaged; re-download or re-export it)"
    };
    VolumeError::decode(path, what, e)
}

fn check_ratio(path: &Path, expected: u64, compressed_len: u64) -> Result<(), VolumeError> {
    if expected > compressed_len.saturating_mul(MAX_GZIP_RATIO) {
        return Err(VolumeError::format(
            path,
            format!(
                "header announces {expected} bytes of data, more than a {compressed_len}-byte file can hold; the header is corrupt"
            ),
        ));
    }
    Ok(())
}

fn slice_data<'a>(
    path: &Path,
    bytes: &'a [u8],
    offset: u64,
    expected: u64,
) -> Result<&'a [u8], VolumeError> {
    let have = (bytes.len() as u64).saturating_sub(offset);
    if have < expected {
        return Err(VolumeError::Truncated {
            path: path.to_path_buf(),
            expected,
            found: have,
        });
    }
    Ok(&bytes[offset as usize..(offset + expected) as usize])
}

fn data_bytes(path: &Path, h: &Header) -> Result<u64, VolumeError> {
    let n = h
        .voxel_count()
        .filter(|&n| n > 0)
        .ok_or_else(|| VolumeError::format(path, format!("invalid dimensions {:?}", h.shape())))?;
    let bytes = n
        .checked_mul(h.datatype.size() as u64)
        .filter(|&b| b <= MAX_DATA_BYTES)
        .ok_or_else(|| {
            VolumeError::format(
                path,
                format!(
                    "absurd dimensions {:?}: more than {} GiB of voxels; the header is corrupt",
                    h.shape(),
                    MAX_DATA_BYTES >> 30
                ),
            )
        })?;
    Ok(bytes)
}

fn array_shape(h: &Header) -> Vec<usize> {
    let mut s = h.shape();
    while s.len() < 3 {
        s.push(1);
    }
    s.reverse();
    s
}

/// Parses a NIfTI-1 or NIfTI-2 header from the start of `bytes`, rejecting Analyze 7.5 and
/// anything inconsistent with a clear reason.
pub(crate) fn parse_header(path: &Path, bytes: &[u8]) -> Result<Header, VolumeError> {
    if bytes.len() < 348 {
        return Err(VolumeError::format(
            path,
            format!(
                "only {} bytes: too short for a NIfTI header (348 bytes); the file is truncated or not NIfTI",
                bytes.len()
            ),
        ));
    }
    let le = i32::from_le_bytes(bytes[0..4].try_into().unwrap_or_default());
    let be = i32::from_be_bytes(bytes[0..4].try_into().unwrap_or_default());
    let header = if le == 540 || be == 540 {
        parse_nifti2(path, bytes, be == 540)?
    } else if le == 348 || be == 348 {
        let magic = &bytes[344..348];
        if magic != b"n+1\0" && magic != b"ni1\0" {
            return Err(VolumeError::unsupported(
                path,
                "is an Analyze 7.5 file (no NIfTI magic): its orientation is ambiguous; convert it to NIfTI first (e.g. nibabel: nib.save(nib.Nifti1Image(img.get_fdata(), affine), 'x.nii.gz'))",
            ));
        }
        check_nifti1_dim0(path, bytes, be == 348)?;
        parse_nifti1(path, bytes)?
    } else {
        return Err(VolumeError::format(
            path,
            "not a NIfTI file (header size field is neither 348 nor 540)",
        ));
    };
    validate_header(path, &header)?;
    let mut header = header;
    for fix in repair_geometry(&mut header) {
        crate::warn::warn_once(path, &fix);
    }
    Ok(header)
}

/// nibabel's repairs of a degenerate geometry, applied in memory (the file is never touched);
/// returns one message per repair.
///
/// * `pixdim[1..=3]` of 0 become 1 and negative ones their absolute value (nibabel's
///   `_chk_pixdims`, which logs the same fix), so the qform and the pixdim-only affine never
///   have a zero or mirrored voxel size. Reported only for axes the image has and only when
///   the affine depends on pixdim (no usable sform).
/// * A singular sform (all zero, or with a zero or repeated axis) with `sform_code` != 0 is
///   not a grid: nibabel would use it anyway; medseg ignores it (sform_code 0) and falls back
///   to the qform, else pixdim, as for a file without an sform.
pub(crate) fn repair_geometry(h: &mut Header) -> Vec<String> {
    let mut fixes = Vec::new();
    if h.sform_code != 0 {
        let s = h.sform();
        let m = [
            [s[0][0], s[0][1], s[0][2]],
            [s[1][0], s[1][1], s[1][2]],
            [s[2][0], s[2][1], s[2][2]],
        ];
        if crate::invert3(&m).is_none() {
            let fallback = if h.qform_code != 0 { "qform" } else { "pixdim" };
            fixes.push(format!(
                "sform_code is {} but the sform is singular (all zero or a zero/repeated axis); using the {fallback} instead (fix the header's sform, or set sform_code 0)",
                h.sform_code
            ));
            h.sform_code = 0;
        }
    }
    let uses_pixdim = h.sform_code == 0;
    let nd = h.dim[0].clamp(0, 3) as usize;
    for a in 1..=3 {
        let p = h.pixdim[a];
        let fixed = if p == 0.0 {
            1.0
        } else if p < 0.0 {
            p.abs()
        } else {
            continue;
        };
        if uses_pixdim && a <= nd {
            fixes.push(format!(
                "pixdim[{a}] = {p} is not a voxel size; using {fixed} as nibabel does (fix the header's pixdim)"
            ));
        }
        h.pixdim[a] = fixed;
    }
    fixes
}

/// `dim[0]` read in the byte order `sizeof_hdr` established. The nifti crate guesses the byte
/// order from `dim[0]` itself (a value above 7 means "swapped"), so a corrupt `dim[0] = 9`
/// would otherwise be reported byte-swapped, as 2304.
fn check_nifti1_dim0(path: &Path, bytes: &[u8], big: bool) -> Result<(), VolumeError> {
    let raw = [bytes[40], bytes[41]];
    let dim0 = if big {
        i16::from_be_bytes(raw)
    } else {
        i16::from_le_bytes(raw)
    };
    if !(1..=7).contains(&dim0) {
        return Err(VolumeError::format(
            path,
            format!("corrupt header: dim[0] = {dim0} (must be 1..7)"),
        ));
    }
    Ok(())
}

fn parse_nifti1(path: &Path, bytes: &[u8]) -> Result<Header, VolumeError> {
    let h = nifti::NiftiHeader::from_reader(&bytes[..348])
        .map_err(|e| VolumeError::decode(path, "invalid NIfTI-1 header", e))?;
    let datatype =
        DataType::from_code(h.datatype as i64).map_err(|r| VolumeError::unsupported(path, r))?;
    let mut dim = [0i64; 8];
    for (d, &s) in dim.iter_mut().zip(h.dim.iter()) {
        // dims are signed 16-bit in the standard
        *d = s as i16 as i64;
    }
    let f = |x: f32| x as f64;
    let mut descrip = [0u8; 80];
    let n = h.descrip.len().min(80);
    descrip[..n].copy_from_slice(&h.descrip[..n]);
    Ok(Header {
        format: NiftiFormat::Nifti1,
        big_endian: h.endianness == nifti::Endianness::Big,
        dim,
        pixdim: h.pixdim.map(f),
        datatype,
        vox_offset: f(h.vox_offset),
        scl_slope: f(h.scl_slope),
        scl_inter: f(h.scl_inter),
        cal_min: f(h.cal_min),
        cal_max: f(h.cal_max),
        toffset: f(h.toffset),
        slice_duration: f(h.slice_duration),
        slice_start: h.slice_start as i64,
        slice_end: h.slice_end as i64,
        slice_code: h.slice_code as i32,
        dim_info: h.dim_info,
        xyzt_units: h.xyzt_units as i32,
        intent_code: h.intent_code as i32,
        intent_p: [f(h.intent_p1), f(h.intent_p2), f(h.intent_p3)],
        intent_name: h.intent_name,
        descrip,
        aux_file: h.aux_file,
        qform_code: h.qform_code as i32,
        sform_code: h.sform_code as i32,
        quatern: [f(h.quatern_b), f(h.quatern_c), f(h.quatern_d)],
        qoffset: [f(h.quatern_x), f(h.quatern_y), f(h.quatern_z)],
        srow: [h.srow_x.map(f), h.srow_y.map(f), h.srow_z.map(f)],
    })
}

/// Little cursor over a byte slice in one byte order.
struct Fields<'a> {
    b: &'a [u8],
    big: bool,
}
impl Fields<'_> {
    fn arr<const N: usize>(&self, off: usize) -> [u8; N] {
        let mut a = [0u8; N];
        a.copy_from_slice(&self.b[off..off + N]);
        if self.big {
            a.reverse();
        }
        a
    }
    fn i16(&self, off: usize) -> i16 {
        i16::from_le_bytes(self.arr(off))
    }
    fn i32(&self, off: usize) -> i32 {
        i32::from_le_bytes(self.arr(off))
    }
    fn i64(&self, off: usize) -> i64 {
        i64::from_le_bytes(self.arr(off))
    }
    fn f64(&self, off: usize) -> f64 {
        f64::from_le_bytes(self.arr(off))
    }
    fn raw<const N: usize>(&self, off: usize) -> [u8; N] {
        let mut a = [0u8; N];
        a.copy_from_slice(&self.b[off..off + N]);
        a
    }
}

/// NIfTI-2: the 540-byte header (the nifti crate only reads NIfTI-1).
fn parse_nifti2(path: &Path, bytes: &[u8], big: bool) -> Result<Header, VolumeError> {
    if bytes.len() < 540 {
        return Err(VolumeError::format(
            path,
            format!(
                "only {} bytes: too short for a NIfTI-2 header (540 bytes)",
                bytes.len()
            ),
        ));
    }
    let f = Fields {
        b: &bytes[..540],
        big,
    };
    let magic: [u8; 8] = f.raw(4);
    if &magic[..3] != b"n+2" && &magic[..3] != b"ni2" {
        return Err(VolumeError::format(
            path,
            "NIfTI-2 header without the n+2 magic",
        ));
    }
    let datatype =
        DataType::from_code(f.i16(12) as i64).map_err(|r| VolumeError::unsupported(path, r))?;
    let mut dim = [0i64; 8];
    for (a, d) in dim.iter_mut().enumerate() {
        *d = f.i64(16 + 8 * a);
    }
    let mut pixdim = [0.0; 8];
    for (a, p) in pixdim.iter_mut().enumerate() {
        *p = f.f64(104 + 8 * a);
    }
    let mut srow = [[0.0; 4]; 3];
    for (r, row) in srow.iter_mut().enumerate() {
        for (c, v) in row.iter_mut().enumerate() {
            *v = f.f64(400 + 32 * r + 8 * c);
        }
    }
    Ok(Header {
        format: NiftiFormat::Nifti2,
        big_endian: big,
        dim,
        pixdim,
        datatype,
        vox_offset: f.i64(168) as f64,
        scl_slope: f.f64(176),
        scl_inter: f.f64(184),
        cal_max: f.f64(192),
        cal_min: f.f64(200),
        slice_duration: f.f64(208),
        toffset: f.f64(216),
        slice_start: f.i64(224),
        slice_end: f.i64(232),
        descrip: f.raw(240),
        aux_file: f.raw(320),
        qform_code: f.i32(344),
        sform_code: f.i32(348),
        quatern: [f.f64(352), f.f64(360), f.f64(368)],
        qoffset: [f.f64(376), f.f64(384), f.f64(392)],
        srow,
        slice_code: f.i32(496),
        xyzt_units: f.i32(500),
        intent_code: f.i32(504),
        intent_name: f.raw(508),
        dim_info: bytes[524],
        intent_p: [f.f64(80), f.f64(88), f.f64(96)],
    })
}

fn validate_header(path: &Path, h: &Header) -> Result<(), VolumeError> {
    let nd = h.dim[0];
    if !(1..=7).contains(&nd) {
        return Err(VolumeError::format(
            path,
            format!("corrupt header: dim[0] = {nd} (must be 1..7)"),
        ));
    }
    for a in 1..=nd as usize {
        if h.dim[a] < 1 {
            return Err(VolumeError::format(
                path,
                format!(
                    "corrupt header: dim[{a}] = {} (extents must be >= 1)",
                    h.dim[a]
                ),
            ));
        }
    }
    let min_offset = if h.format == NiftiFormat::Nifti1 {
        348.0
    } else {
        540.0
    };
    let is_single = h.vox_offset >= min_offset;
    if !(h.vox_offset.is_finite() && (is_single || h.vox_offset >= 0.0)) {
        return Err(VolumeError::format(
            path,
            format!("corrupt header: vox_offset = {}", h.vox_offset),
        ));
    }
    for a in 1..=3usize.min(nd as usize) {
        if !h.pixdim[a].is_finite() {
            return Err(VolumeError::format(
                path,
                format!("corrupt header: pixdim[{a}] = {}", h.pixdim[a]),
            ));
        }
    }
    if h.sform_code != 0 && h.srow.iter().flatten().any(|v| !v.is_finite()) {
        return Err(VolumeError::format(
            path,
            "corrupt header: non-finite sform",
        ));
    }
    Ok(())
}

/// Decodes raw voxel bytes (any endianness) into `T`, applying the header's scaling.
fn decode<T: DecodeTarget>(h: &Header, body: &[u8], shape: &[usize]) -> ArrayD<T> {
    let n: usize = shape.iter().product();
    let mut out: Vec<T> = Vec::with_capacity(n);
    let scale = h.effective_scaling();
    let big = h.big_endian;
    macro_rules! run {
        ($t:ty) => {{
            const S: usize = std::mem::size_of::<$t>();
            let it = body.chunks_exact(S).map(|c| {
                let a: [u8; S] = c.try_into().unwrap_or([0; S]);
                let v = if big {
                    <$t>::from_be_bytes(a)
                } else {
                    <$t>::from_le_bytes(a)
                };
                v as f64
            });
            match scale {
                Some((s, i)) => out.extend(it.map(|v| T::from_f64(v * s + i))),
                None => out.extend(it.map(T::from_f64)),
            }
        }};
    }
    match h.datatype {
        DataType::U8 => run!(u8),
        DataType::I8 => run!(i8),
        DataType::I16 => run!(i16),
        DataType::U16 => run!(u16),
        DataType::I32 => run!(i32),
        DataType::U32 => run!(u32),
        DataType::I64 => run!(i64),
        DataType::U64 => run!(u64),
        DataType::F32 => run!(f32),
        DataType::F64 => run!(f64),
    }
    out.resize(n, T::default());
    ArrayD::from_shape_vec(IxDyn(shape), out).unwrap_or_else(|_| ArrayD::default(IxDyn(shape)))
}

// ---------------------------------------------------------------------------------------------
// Writing

/// Voxel types medseg writes.
pub trait NiftiScalar: Copy + Send + Sync + 'static {
    const DATATYPE: DataType;
    fn put_le(self, out: &mut Vec<u8>);
}
impl NiftiScalar for u8 {
    const DATATYPE: DataType = DataType::U8;
    fn put_le(self, out: &mut Vec<u8>) {
        out.push(self);
    }
}
impl NiftiScalar for i16 {
    const DATATYPE: DataType = DataType::I16;
    fn put_le(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
}
impl NiftiScalar for u16 {
    const DATATYPE: DataType = DataType::U16;
    fn put_le(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
}
impl NiftiScalar for f32 {
    const DATATYPE: DataType = DataType::F32;
    fn put_le(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
}

/// How to write a file.
#[derive(Debug, Clone)]
pub struct WriteOptions {
    /// Header whose geometry (sform, qform, codes, pixdim, units, description) is copied
    /// exactly, e.g. the input of a prediction. Without one, sform and qform are built from the
    /// volume's geometry with code 1.
    pub reference: Option<Header>,
    /// Gzip level for `.nii.gz` (2..=9; 1 is raised to 2). Default 2: fast, and about as small
    /// as level 6 on label maps.
    pub gzip_level: u32,
}

impl Default for WriteOptions {
    fn default() -> Self {
        Self {
            reference: None,
            gzip_level: 2,
        }
    }
}

impl WriteOptions {
    pub fn with_reference(reference: Header) -> Self {
        Self {
            reference: Some(reference),
            ..Self::default()
        }
    }
}

/// Writes a 3D volume as NIfTI-1 (`.nii`, or gzip when the name ends in `.gz`), through a
/// temporary file renamed into place.
pub fn write_volume<T: NiftiScalar>(
    path: &Path,
    v: &Volume<T>,
    opts: &WriteOptions,
) -> Result<(), VolumeError> {
    let shape = v.shape_ijk();
    let header = output_header(path, &shape, &v.geometry, T::DATATYPE, opts)?;
    let data = v.data.as_standard_layout();
    let slice = data.as_slice().unwrap_or(&[]);
    write_file(path, &header, slice, opts)
}

/// Writes channels `[c, k, j, i]` as one 4D float32 file (NIfTI shape `(i, j, k, c)`), e.g.
/// probability maps with the background first.
pub fn write_channels(
    path: &Path,
    v: &MultiChannel,
    opts: &WriteOptions,
) -> Result<(), VolumeError> {
    let [ni, nj, nk] = v.shape_ijk();
    let shape = [ni, nj, nk, v.num_channels()];
    let header = output_header(path, &shape, &v.geometry, DataType::F32, opts)?;
    let data = v.data.as_standard_layout();
    let slice = data.as_slice().unwrap_or(&[]);
    write_file(path, &header, slice, opts)
}

fn output_header(
    path: &Path,
    shape: &[usize],
    geometry: &Geometry,
    datatype: DataType,
    opts: &WriteOptions,
) -> Result<Header, VolumeError> {
    let mut h = match &opts.reference {
        Some(r) => {
            if r.spatial_shape() != [shape[0], shape[1], shape[2]] {
                return Err(VolumeError::Geometry {
                    path: path.to_path_buf(),
                    reason: format!(
                        "data shape {:?} does not match the reference header's {:?}",
                        &shape[..3],
                        r.spatial_shape()
                    ),
                });
            }
            let mut h = r.clone();
            h.datatype = datatype;
            let pixdim_t = h.pixdim;
            h.set_shape(shape);
            h.pixdim = pixdim_t;
            // A 2D reference (dim[0] = 2, shape (x, y)) keeps its dimensionality: the data's
            // trailing singleton axes are medseg's 3D view of it, not part of the file.
            let nd = r.dim[0].clamp(1, 7) as usize;
            if nd < shape.len() && shape[nd..].iter().all(|&s| s == 1) {
                h.dim[0] = nd as i64;
            }
            h
        }
        None => Header::from_geometry(shape, geometry, datatype),
    };
    if shape.len() == 3 && h.dim[0] > 3 {
        h.dim[0] = 3;
    }
    h.format = NiftiFormat::Nifti1;
    h.big_endian = false;
    h.scl_slope = 1.0;
    h.scl_inter = 0.0;
    h.vox_offset = 352.0;
    h.cal_min = 0.0;
    h.cal_max = 0.0;
    if shape.iter().any(|&s| s > i16::MAX as usize) {
        return Err(VolumeError::format(
            path,
            format!("shape {shape:?} exceeds NIfTI-1's 32767 voxels per axis"),
        ));
    }
    Ok(h)
}

fn write_file<T: NiftiScalar>(
    path: &Path,
    h: &Header,
    data: &[T],
    opts: &WriteOptions,
) -> Result<(), VolumeError> {
    let mut bytes = Vec::with_capacity(352 + data.len() * T::DATATYPE.size());
    bytes.extend_from_slice(&encode_nifti1(h));
    bytes.extend_from_slice(&[0, 0, 0, 0]);
    for &x in data {
        x.put_le(&mut bytes);
    }
    let gz = path.to_string_lossy().to_ascii_lowercase().ends_with(".gz");
    let level = opts.gzip_level.clamp(2, 9);
    crate::write_atomically(path, |w| {
        if gz {
            write_gzip_parallel(w, &bytes, level)
        } else {
            w.write_all(&bytes)
        }
    })
}

/// Gzip in independent members compressed in parallel (a valid multi-member stream that
/// nibabel, ITK and zlib read), so writing scales with cores.
fn write_gzip_parallel(w: &mut impl Write, bytes: &[u8], level: u32) -> std::io::Result<()> {
    use flate2::{Compression, write::GzEncoder};
    use rayon::prelude::*;
    const CHUNK: usize = 4 << 20;
    let members: Vec<std::io::Result<Vec<u8>>> = bytes
        .par_chunks(CHUNK)
        .map(|chunk| {
            let mut enc =
                GzEncoder::new(Vec::with_capacity(chunk.len() / 3), Compression::new(level));
            enc.write_all(chunk)?;
            enc.finish()
        })
        .collect();
    if bytes.is_empty() {
        let enc = GzEncoder::new(Vec::new(), Compression::new(level));
        w.write_all(&enc.finish()?)?;
    }
    for m in members {
        w.write_all(&m?)?;
    }
    Ok(())
}

/// The 348-byte NIfTI-1 header, little-endian.
fn encode_nifti1(h: &Header) -> [u8; 348] {
    let mut b = [0u8; 348];
    let mut put = |off: usize, bytes: &[u8]| b[off..off + bytes.len()].copy_from_slice(bytes);
    put(0, &348i32.to_le_bytes());
    put(38, b"r");
    put(39, &[h.dim_info]);
    for a in 0..8 {
        put(40 + 2 * a, &(h.dim[a] as i16).to_le_bytes());
    }
    for a in 0..3 {
        put(56 + 4 * a, &(h.intent_p[a] as f32).to_le_bytes());
    }
    put(68, &(h.intent_code as i16).to_le_bytes());
    put(70, &h.datatype.code().to_le_bytes());
    put(72, &((h.datatype.size() * 8) as i16).to_le_bytes());
    put(74, &(h.slice_start as i16).to_le_bytes());
    for a in 0..8 {
        put(76 + 4 * a, &(h.pixdim[a] as f32).to_le_bytes());
    }
    put(108, &(h.vox_offset as f32).to_le_bytes());
    put(112, &(h.scl_slope as f32).to_le_bytes());
    put(116, &(h.scl_inter as f32).to_le_bytes());
    put(120, &(h.slice_end as i16).to_le_bytes());
    put(122, &[h.slice_code as u8]);
    put(123, &[h.xyzt_units as u8]);
    put(124, &(h.cal_max as f32).to_le_bytes());
    put(128, &(h.cal_min as f32).to_le_bytes());
    put(132, &(h.slice_duration as f32).to_le_bytes());
    put(136, &(h.toffset as f32).to_le_bytes());
    put(148, &h.descrip);
    put(228, &h.aux_file);
    put(252, &(h.qform_code as i16).to_le_bytes());
    put(254, &(h.sform_code as i16).to_le_bytes());
    for a in 0..3 {
        put(256 + 4 * a, &(h.quatern[a] as f32).to_le_bytes());
        put(268 + 4 * a, &(h.qoffset[a] as f32).to_le_bytes());
    }
    for r in 0..3 {
        for c in 0..4 {
            put(280 + 16 * r + 4 * c, &(h.srow[r][c] as f32).to_le_bytes());
        }
    }
    put(328, &h.intent_name);
    put(344, b"n+1\0");
    b
}

/// Reads only the header of a file (for `inspect` and geometry checks).
pub fn read_header(path: &Path) -> Result<Header, VolumeError> {
    let raw = std::fs::File::open(path).map_err(|e| VolumeError::io(path, e))?;
    let mut first = Vec::with_capacity(540);
    let mut r = std::io::BufReader::new(raw);
    r.by_ref()
        .take(2)
        .read_to_end(&mut first)
        .map_err(|e| VolumeError::io(path, e))?;
    let mut head = Vec::with_capacity(544);
    if first.len() == 2 && first[0] == 0x1f && first[1] == 0x8b {
        let chain = std::io::Cursor::new(first).chain(r);
        let _ = MultiGzDecoder::new(chain).take(540).read_to_end(&mut head);
    } else {
        head.extend_from_slice(&first);
        r.take(538)
            .read_to_end(&mut head)
            .map_err(|e| VolumeError::io(path, e))?;
    }
    parse_header(path, &head)
}
