//! DICOM series in: a folder of slice files (searched recursively), a list of files, or one
//! (possibly multi-frame) file, read into one [`Volume`] with medseg's RAS geometry.
//!
//! The rules, in order:
//!
//! * **Which files.** Every regular file under the folder (symbolic links to files are
//!   followed, links to folders are not) whose bytes 128..132 are the `DICM` magic of a DICOM
//!   Part 10 file; anything else (a README, a `.nii.gz`, a file without the 128-byte preamble)
//!   is skipped. DICOM files that are not images (no Rows/Columns: a DICOMDIR, a structured
//!   report, an RT structure set) are skipped too. A DICOM image file that cannot be parsed is
//!   an error naming it.
//! * **Which series.** Images are grouped by SeriesInstanceUID. With one series, that one; with
//!   several, an error ([`VolumeError::SeveralSeries`]) listing each (UID, description, slice
//!   count) and asking for `--series UID` ([`DicomOptions::series`]); medseg never guesses.
//! * **Slice order.** Slices (and the frames of an enhanced multi-frame object) are sorted by
//!   the projection of ImagePositionPatient onto the slice normal, the cross product of
//!   ImageOrientationPatient's row and column directions, ascending; file names and
//!   InstanceNumber play no part. The third voxel axis points along the normal.
//! * **Spacing.** In plane from PixelSpacing, which DICOM writes as (between rows, between
//!   columns), so `spacing[0]` (along i, a row) is its second value. Between slices: the
//!   distance from the first to the last slice along the normal over `n - 1`. Every step must
//!   lie within [`STEP_TOLERANCE`] (relative, or [`MIN_STEP_TOLERANCE_MM`]) of the median
//!   step: a step of about twice the median is reported as a missing slice, any other as
//!   non-uniform spacing, two slices at one position as a 4D / multi-echo series, positions
//!   off the normal as a gantry tilt; each error names the two slices and their positions.
//!   One slice: SpacingBetweenSlices, else SliceThickness, else 1 mm.
//! * **Geometry.** Origin = ImagePositionPatient of the first slice, direction columns = row
//!   direction, column direction, normal; all converted from DICOM's LPS patient space to
//!   medseg's RAS by negating x and y, exactly as MetaImage's (ITK's) LPS is converted. One
//!   slice without position or orientation (a projection radiograph) gets origin 0 and the
//!   identity, as ITK gives it.
//! * **Values.** Stored values (BitsAllocated 8, 16 or 32; BitsStored bits below HighBit,
//!   sign-extended when PixelRepresentation = 1) times RescaleSlope plus RescaleIntercept of
//!   their own slice or frame, as f32. MONOCHROME1 images are not inverted (the values stay
//!   the modality's). Colour (SamplesPerPixel > 1), 1-bit and 12-bit packed data, float pixel
//!   data and the other photometric interpretations are refused with the reason.
//! * **Transfer syntaxes.** Native (implicit / explicit VR, little or big endian, deflated),
//!   RLE Lossless and the JPEG family that `jpeg-decoder` decodes (baseline, extended,
//!   lossless) are read in pure Rust; any other (JPEG 2000, JPEG-LS, JPEG XL, HTJ2K, video) is
//!   an error naming the transfer syntax and how to convert the files.
//! * **Enhanced multi-frame objects.** Each frame is a slice, with its position from
//!   PerFrameFunctionalGroupsSequence / PlanePositionSequence and its orientation, pixel
//!   measures and rescale from the per-frame group, else the shared group
//!   (SharedFunctionalGroupsSequence), else the top level. A multi-frame object without
//!   per-frame positions is refused.
//! * **Hostile files.** Rows x Columns x frames x BitsAllocated is checked against the file's
//!   size before anything is allocated: a native file must hold that many bytes, a compressed
//!   one may not promise more than [`MAX_COMPRESSION_RATIO`] times its size. Pixel data
//!   shorter than announced is [`VolumeError::Truncated`].
//!
//! Slices are decoded in parallel (rayon), straight into the output array.

use crate::{DataType, Geometry, Volume, VolumeError, raw};
use dicom_core::{DicomValue, Tag};
use dicom_dictionary_std::tags;
use dicom_object::{InMemDicomObject, OpenFileOptions};
use dicom_pixeldata::PixelDecoder;
use dicom_transfer_syntax_registry::{TransferSyntaxIndex, TransferSyntaxRegistry};
use ndarray::Array3;
use rayon::prelude::*;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

mod lengths;
mod rle;

use lengths::check_lengths;
use rle::decode_rle;

/// Largest relative difference of a slice step from the median step that still counts as
/// uniform spacing (1%: the rounding of ImagePositionPatient's decimal strings is far below).
pub const STEP_TOLERANCE: f64 = 0.01;
/// Smallest tolerance on a slice step or an in-plane offset between slices, in mm.
pub const MIN_STEP_TOLERANCE_MM: f64 = 1e-3;
/// A compressed file may announce at most this many times its own size in decoded pixels
/// (RLE reaches 64, JPEG lossless 16 per sample; a flat JPEG block about 200), so that a
/// header cannot make the decoder allocate without bound.
pub const MAX_COMPRESSION_RATIO: u64 = 1024;
/// RLE Lossless, decoded by [`decode_rle`].
const RLE_LOSSLESS: &str = "1.2.840.10008.1.2.5";
/// Deepest folder nesting searched for DICOM files.
const MAX_DEPTH: usize = 32;

/// How to read a DICOM folder.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DicomOptions {
    /// The SeriesInstanceUID to read when the folder holds several series.
    pub series: Option<String>,
}

/// One series found in a folder: what the several-series error lists.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SeriesSummary {
    /// SeriesInstanceUID.
    pub uid: String,
    /// SeriesDescription (empty when absent).
    pub description: String,
    /// Modality (CT, MR, ...; empty when absent).
    pub modality: String,
    /// Slices (frames) in the series.
    pub slices: usize,
    /// Files holding them.
    pub files: usize,
}

/// A DICOM series read into a volume, with what `medseg inspect` reports about it.
#[derive(Debug, Clone)]
pub struct DicomSeries {
    /// The voxels (rescaled, f32) and the RAS geometry.
    pub volume: Volume<f32>,
    /// The series read.
    pub series: SeriesSummary,
    /// PatientID (empty when absent).
    pub patient_id: String,
    /// The transfer syntaxes of its files, by name.
    pub transfer_syntaxes: Vec<String>,
    /// The stored pixel type, e.g. "int16 (12 bits stored)".
    pub stored_type: String,
    /// RescaleSlope and RescaleIntercept when every slice has the same, else `None`.
    pub rescale: Option<(f64, f64)>,
    /// Files under the path that were skipped (not DICOM, or DICOM but not an image).
    pub skipped_files: usize,
    /// The other series in the folder (read with [`DicomOptions::series`]).
    pub other_series: Vec<SeriesSummary>,
}

/// Reads the one DICOM series under `path` (a folder, searched recursively, or one file).
pub fn read_dicom_series(path: &Path) -> Result<Volume<f32>, VolumeError> {
    Ok(read_dicom(path, &DicomOptions::default())?.volume)
}

/// Reads a DICOM series from `path` (a folder, searched recursively, or one file).
pub fn read_dicom(path: &Path, options: &DicomOptions) -> Result<DicomSeries, VolumeError> {
    let files = if path.is_dir() {
        let mut files = Vec::new();
        walk(path, 0, &mut files)?;
        files.sort();
        files
    } else {
        vec![path.to_path_buf()]
    };
    read_dicom_files(path, &files, options)
}

/// Reads a DICOM series from `files` (non-DICOM files among them are skipped); `root` names
/// the input in errors about the series as a whole.
pub fn read_dicom_files(
    root: &Path,
    files: &[PathBuf],
    options: &DicomOptions,
) -> Result<DicomSeries, VolumeError> {
    let headers: Vec<Option<FileHeader>> = files
        .par_iter()
        .map(|f| read_file_header(f))
        .collect::<Result<_, _>>()?;
    let skipped_files = headers.iter().filter(|h| h.is_none()).count();
    let headers: Vec<FileHeader> = headers.into_iter().flatten().collect();
    if headers.is_empty() {
        return Err(VolumeError::format(
            root,
            format!(
                "no DICOM image files ({} file(s) looked at; a DICOM file has `DICM` at byte 128)",
                files.len()
            ),
        ));
    }
    let mut by_series: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (n, h) in headers.iter().enumerate() {
        by_series.entry(h.series_uid.clone()).or_default().push(n);
    }
    let summaries: Vec<SeriesSummary> = by_series
        .iter()
        .map(|(uid, members)| summary(uid, members, &headers))
        .collect();
    let chosen = match &options.series {
        Some(uid) => by_series.get(uid.trim()).ok_or_else(|| {
            VolumeError::format(
                root,
                format!(
                    "no DICOM series {uid} here; the series are: {}",
                    describe_series(&summaries)
                ),
            )
        })?,
        None if by_series.len() == 1 => by_series.values().next().ok_or_else(|| {
            VolumeError::format(root, "no DICOM series") // unreachable: one entry
        })?,
        None => {
            return Err(VolumeError::SeveralSeries {
                path: root.to_path_buf(),
                series: summaries,
            });
        }
    };
    let members: Vec<&FileHeader> = chosen.iter().map(|&n| &headers[n]).collect();
    let uid = &members[0].series_uid;
    let this = summaries
        .iter()
        .find(|s| &s.uid == uid)
        .cloned()
        .ok_or_else(|| VolumeError::format(root, "series vanished"))?;
    let other_series = summaries.into_iter().filter(|s| &s.uid != uid).collect();
    let (volume, rescale) = assemble(root, &members)?;
    let mut transfer_syntaxes: Vec<String> = members
        .iter()
        .map(|h| transfer_syntax_name(&h.transfer_syntax))
        .collect();
    transfer_syntaxes.sort();
    transfer_syntaxes.dedup();
    let px = &members[0].pixel;
    let stored_type = format!(
        "{}{}",
        px.element().name(),
        if px.bits_stored < px.bits_allocated {
            format!(" ({} bits stored)", px.bits_stored)
        } else {
            String::new()
        }
    );
    Ok(DicomSeries {
        volume,
        series: this,
        patient_id: members[0].patient_id.clone(),
        transfer_syntaxes,
        stored_type,
        rescale,
        skipped_files,
        other_series,
    })
}

/// The series under `path` (a folder or one file), without reading any pixel data.
pub fn list_dicom_series(path: &Path) -> Result<Vec<SeriesSummary>, VolumeError> {
    let mut files = Vec::new();
    if path.is_dir() {
        walk(path, 0, &mut files)?;
    } else {
        files.push(path.to_path_buf());
    }
    let headers: Vec<FileHeader> = files
        .par_iter()
        .map(|f| read_file_header(f))
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .flatten()
        .collect();
    let mut by_series: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (n, h) in headers.iter().enumerate() {
        by_series.entry(h.series_uid.clone()).or_default().push(n);
    }
    Ok(by_series
        .iter()
        .map(|(uid, m)| summary(uid, m, &headers))
        .collect())
}

/// True when `path` is a DICOM Part 10 file (`DICM` at byte 128).
pub fn is_dicom_file(path: &Path) -> bool {
    let Ok(f) = std::fs::File::open(path) else {
        return false;
    };
    let mut head = [0u8; 132];
    f.take(132).read_exact(&mut head).is_ok() && &head[128..] == b"DICM"
}

/// True when `path` is a folder with at least one DICOM file directly inside it (what
/// `medseg predict --input` and `medseg inspect` take for one DICOM series).
pub fn is_dicom_dir(path: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(path) else {
        return false;
    };
    entries
        .flatten()
        .map(|e| e.path())
        .any(|p| p.is_file() && is_dicom_file(&p))
}

/// The one-line list of series in [`VolumeError::SeveralSeries`].
pub(crate) fn describe_series(series: &[SeriesSummary]) -> String {
    series
        .iter()
        .map(|s| {
            let modality = if s.modality.is_empty() {
                String::new()
            } else {
                format!("{}, ", s.modality)
            };
            format!(
                "{} \"{}\" ({modality}{} slice{})",
                s.uid,
                s.description,
                s.slices,
                if s.slices == 1 { "" } else { "s" }
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn summary(uid: &str, members: &[usize], headers: &[FileHeader]) -> SeriesSummary {
    let first = &headers[members[0]];
    SeriesSummary {
        uid: uid.to_string(),
        description: first.description.clone(),
        modality: first.modality.clone(),
        slices: members.iter().map(|&n| headers[n].frames.len()).sum(),
        files: members.len(),
    }
}

fn walk(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) -> Result<(), VolumeError> {
    if depth > MAX_DEPTH {
        return Err(VolumeError::format(
            dir,
            format!(
                "folders nested deeper than {MAX_DEPTH} levels; point medseg at the series folder"
            ),
        ));
    }
    for entry in std::fs::read_dir(dir).map_err(|e| VolumeError::io(dir, e))? {
        let entry = entry.map_err(|e| VolumeError::io(dir, e))?;
        let path = entry.path();
        let kind = entry.file_type().map_err(|e| VolumeError::io(&path, e))?;
        if kind.is_dir() {
            walk(&path, depth + 1, out)?;
        } else if kind.is_file() || (kind.is_symlink() && path.is_file()) {
            out.push(path);
        }
    }
    Ok(())
}

/// The stored pixel format of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PixelFormat {
    bits_allocated: u16,
    bits_stored: u16,
    high_bit: u16,
    signed: bool,
}

impl PixelFormat {
    fn bytes(self) -> usize {
        usize::from(self.bits_allocated / 8)
    }

    fn element(self) -> DataType {
        match (self.bits_allocated, self.signed) {
            (8, false) => DataType::U8,
            (8, true) => DataType::I8,
            (16, false) => DataType::U16,
            (16, true) => DataType::I16,
            (32, false) => DataType::U32,
            _ => DataType::I32,
        }
    }
}

/// One slice: a single-frame file, or one frame of a multi-frame file.
#[derive(Debug, Clone)]
struct Frame {
    /// Frame number within its file (0 for single-frame files).
    index: u32,
    position: Option<[f64; 3]>,
    orientation: Option<[f64; 6]>,
    /// (between rows, between columns), as DICOM writes it.
    pixel_spacing: Option<[f64; 2]>,
    slope: f64,
    intercept: f64,
}

/// What one file says about itself (everything before Pixel Data).
#[derive(Debug, Clone)]
struct FileHeader {
    path: PathBuf,
    series_uid: String,
    description: String,
    modality: String,
    patient_id: String,
    transfer_syntax: String,
    rows: u16,
    columns: u16,
    pixel: PixelFormat,
    slice_thickness: Option<f64>,
    spacing_between_slices: Option<f64>,
    frames: Vec<Frame>,
}

impl FileHeader {
    fn frame_bytes(&self) -> u64 {
        u64::from(self.rows) * u64::from(self.columns) * self.pixel.bytes() as u64
    }
}

fn text(obj: &InMemDicomObject, tag: Tag) -> String {
    obj.get(tag)
        .and_then(|e| e.to_str().ok())
        .map(|s| {
            s.trim_matches(|c: char| c == '\0' || c.is_whitespace())
                .to_string()
        })
        .unwrap_or_default()
}

fn uint(
    path: &Path,
    obj: &InMemDicomObject,
    tag: Tag,
    name: &str,
) -> Result<Option<u32>, VolumeError> {
    match obj.get(tag) {
        None => Ok(None),
        Some(e) => e.to_int::<u32>().map(Some).map_err(|_| {
            VolumeError::format(
                path,
                format!(
                    "{name} {tag} = {:?} is not a number; the file is damaged",
                    e.to_str().unwrap_or_default()
                ),
            )
        }),
    }
}

fn floats<const N: usize>(
    path: &Path,
    obj: &InMemDicomObject,
    tag: Tag,
    name: &str,
) -> Result<Option<[f64; N]>, VolumeError> {
    let Some(e) = obj.get(tag) else {
        return Ok(None);
    };
    let bad = || {
        VolumeError::format(
            path,
            format!(
                "{name} {tag} = {:?} is not {N} finite number(s); the file is damaged",
                e.to_str().unwrap_or_default()
            ),
        )
    };
    let v = e.to_multi_float64().map_err(|_| bad())?;
    if v.is_empty() {
        return Ok(None);
    }
    let a: [f64; N] = v.try_into().map_err(|_| bad())?;
    if a.iter().all(|x| x.is_finite()) {
        Ok(Some(a))
    } else {
        Err(bad())
    }
}

/// The first item of sequence `seq` in `obj`.
fn item(obj: &InMemDicomObject, seq: Tag) -> Option<&InMemDicomObject> {
    obj.get(seq)?.items()?.first()
}

/// The first of `sources` (per-frame group, shared group, top level) with `tag`, looked up in
/// the functional group sequence `seq` (or at the top level when `seq` is `None`).
fn lookup<'a>(
    levels: &[Option<&'a InMemDicomObject>],
    top: &'a InMemDicomObject,
    seq: Tag,
    tag: Tag,
) -> &'a InMemDicomObject {
    for group in levels.iter().flatten() {
        if let Some(inner) = item(group, seq)
            && inner.get(tag).is_some()
        {
            return inner;
        }
    }
    top
}

/// Reads a file's header (everything before Pixel Data); `None` for a file that is not a
/// DICOM image.
fn read_file_header(path: &Path) -> Result<Option<FileHeader>, VolumeError> {
    if !is_dicom_file(path) {
        return Ok(None);
    }
    let file_len = std::fs::metadata(path)
        .map_err(|e| VolumeError::io(path, e))?
        .len();
    check_lengths(path, file_len)?;
    let obj = OpenFileOptions::new()
        .read_until(tags::PIXEL_DATA)
        .open_file(path)
        .map_err(|e| {
            VolumeError::decode(path, "not a readable DICOM file (truncated or damaged?)", e)
        })?;
    let transfer_syntax = obj
        .meta()
        .transfer_syntax()
        .trim_end_matches('\0')
        .to_string();
    let obj: &InMemDicomObject = &obj;
    let (Some(rows), Some(columns)) = (
        uint(path, obj, tags::ROWS, "Rows")?,
        uint(path, obj, tags::COLUMNS, "Columns")?,
    ) else {
        return Ok(None); // not an image (DICOMDIR, SR, RTSTRUCT, ...)
    };
    let (rows, columns) = match (u16::try_from(rows), u16::try_from(columns)) {
        (Ok(r), Ok(c)) if r > 0 && c > 0 => (r, c),
        _ => {
            return Err(VolumeError::format(
                path,
                format!("Rows x Columns = {rows} x {columns}: not an image size"),
            ));
        }
    };
    if obj.get(tags::FLOAT_PIXEL_DATA).is_some() || obj.get(tags::DOUBLE_FLOAT_PIXEL_DATA).is_some()
    {
        return Err(VolumeError::unsupported(
            path,
            "float pixel data (7FE0,0008 / 7FE0,0009) is not supported; convert the series to integer pixel data",
        ));
    }
    let samples = uint(path, obj, tags::SAMPLES_PER_PIXEL, "SamplesPerPixel")?.unwrap_or(1);
    if samples != 1 {
        return Err(VolumeError::unsupported(
            path,
            format!(
                "SamplesPerPixel = {samples} (colour): medseg reads greyscale series; convert it to one grey channel"
            ),
        ));
    }
    let photometric = text(obj, tags::PHOTOMETRIC_INTERPRETATION);
    if !photometric.is_empty() && photometric != "MONOCHROME1" && photometric != "MONOCHROME2" {
        return Err(VolumeError::unsupported(
            path,
            format!(
                "PhotometricInterpretation = {photometric}: medseg reads greyscale (MONOCHROME1/2) series"
            ),
        ));
    }
    let bits_allocated =
        uint(path, obj, tags::BITS_ALLOCATED, "BitsAllocated")?.ok_or_else(|| {
            VolumeError::format(
                path,
                "no BitsAllocated (0028,0100): the image header is incomplete",
            )
        })?;
    if !matches!(bits_allocated, 8 | 16 | 32) {
        return Err(VolumeError::unsupported(
            path,
            format!(
                "BitsAllocated = {bits_allocated} is not supported (8, 16 or 32 bits per pixel)"
            ),
        ));
    }
    let bits_stored = uint(path, obj, tags::BITS_STORED, "BitsStored")?.unwrap_or(bits_allocated);
    let high_bit =
        uint(path, obj, tags::HIGH_BIT, "HighBit")?.unwrap_or(bits_stored.saturating_sub(1));
    if bits_stored == 0
        || bits_stored > bits_allocated
        || high_bit >= bits_allocated
        || high_bit + 1 < bits_stored
    {
        return Err(VolumeError::format(
            path,
            format!(
                "BitsStored = {bits_stored} and HighBit = {high_bit} do not fit BitsAllocated = {bits_allocated}"
            ),
        ));
    }
    let signed =
        match uint(path, obj, tags::PIXEL_REPRESENTATION, "PixelRepresentation")?.unwrap_or(0) {
            0 => false,
            1 => true,
            other => {
                return Err(VolumeError::format(
                    path,
                    format!("PixelRepresentation = {other} (0 unsigned or 1 signed)"),
                ));
            }
        };
    let pixel = PixelFormat {
        bits_allocated: bits_allocated as u16,
        bits_stored: bits_stored as u16,
        high_bit: high_bit as u16,
        signed,
    };
    let n_frames = match obj.get(tags::NUMBER_OF_FRAMES) {
        None => 1,
        Some(e) => match e.to_int::<i64>() {
            Ok(n) if n >= 1 => u32::try_from(n).unwrap_or(u32::MAX),
            _ => {
                return Err(VolumeError::format(
                    path,
                    format!(
                        "NumberOfFrames = {:?} is not a positive number",
                        e.to_str().unwrap_or_default()
                    ),
                ));
            }
        },
    };
    // Size checks before anything is allocated: what the header announces must fit the file.
    let announced = u64::from(n_frames)
        .saturating_mul(u64::from(rows) * u64::from(columns))
        .saturating_mul(pixel.bytes() as u64);
    let encapsulated = TransferSyntaxRegistry
        .get(&transfer_syntax)
        .is_some_and(|ts| ts.is_encapsulated_pixel_data());
    let limit = if encapsulated {
        file_len
            .saturating_mul(MAX_COMPRESSION_RATIO)
            .saturating_add(1 << 20)
    } else {
        file_len
    };
    if announced > limit {
        return Err(if encapsulated {
            VolumeError::format(
                path,
                format!(
                    "the header announces {n_frames} frame(s) of {rows} x {columns} pixels ({announced} bytes), more than {MAX_COMPRESSION_RATIO} times the file's {file_len} bytes: absurd dimensions or a damaged file"
                ),
            )
        } else {
            VolumeError::Truncated {
                path: path.to_path_buf(),
                expected: announced,
                found: file_len,
            }
        });
    }
    let shared = item(obj, tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE);
    let per_frame: &[InMemDicomObject] = obj
        .get(tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE)
        .and_then(|e| e.items())
        .unwrap_or(&[]);
    if n_frames > 1 && per_frame.len() != n_frames as usize {
        return Err(VolumeError::unsupported(
            path,
            format!(
                "a multi-frame object with {n_frames} frames and {} per-frame functional groups: medseg reads enhanced multi-frame objects whose PerFrameFunctionalGroupsSequence gives each frame's PlanePositionSequence",
                per_frame.len()
            ),
        ));
    }
    let mut frames = Vec::with_capacity(n_frames as usize);
    for index in 0..n_frames {
        let levels = [per_frame.get(index as usize), shared];
        let at = |seq: Tag, tag: Tag| lookup(&levels, obj, seq, tag);
        let position = floats::<3>(
            path,
            at(tags::PLANE_POSITION_SEQUENCE, tags::IMAGE_POSITION_PATIENT),
            tags::IMAGE_POSITION_PATIENT,
            "ImagePositionPatient",
        )?;
        if n_frames > 1 && position.is_none() {
            return Err(VolumeError::unsupported(
                path,
                format!(
                    "frame {} has no ImagePositionPatient (PerFrameFunctionalGroupsSequence / PlanePositionSequence); medseg cannot place it",
                    index + 1
                ),
            ));
        }
        let orientation = floats::<6>(
            path,
            at(
                tags::PLANE_ORIENTATION_SEQUENCE,
                tags::IMAGE_ORIENTATION_PATIENT,
            ),
            tags::IMAGE_ORIENTATION_PATIENT,
            "ImageOrientationPatient",
        )?;
        let pixel_spacing = floats::<2>(
            path,
            at(tags::PIXEL_MEASURES_SEQUENCE, tags::PIXEL_SPACING),
            tags::PIXEL_SPACING,
            "PixelSpacing",
        )?;
        let rescale = at(
            tags::PIXEL_VALUE_TRANSFORMATION_SEQUENCE,
            tags::RESCALE_SLOPE,
        );
        let slope =
            floats::<1>(path, rescale, tags::RESCALE_SLOPE, "RescaleSlope")?.map_or(1.0, |v| v[0]);
        let rescale = at(
            tags::PIXEL_VALUE_TRANSFORMATION_SEQUENCE,
            tags::RESCALE_INTERCEPT,
        );
        let intercept = floats::<1>(path, rescale, tags::RESCALE_INTERCEPT, "RescaleIntercept")?
            .map_or(0.0, |v| v[0]);
        frames.push(Frame {
            index,
            position,
            orientation,
            pixel_spacing,
            slope,
            intercept,
        });
    }
    let measures = |tag: Tag, name: &str| -> Result<Option<f64>, VolumeError> {
        let levels = [per_frame.first(), shared];
        let o = lookup(&levels, obj, tags::PIXEL_MEASURES_SEQUENCE, tag);
        Ok(floats::<1>(path, o, tag, name)?
            .map(|v| v[0])
            .filter(|&v| v > 0.0))
    };
    let slice_thickness = measures(tags::SLICE_THICKNESS, "SliceThickness")?;
    let spacing_between_slices = measures(tags::SPACING_BETWEEN_SLICES, "SpacingBetweenSlices")?;
    let series_uid = text(obj, tags::SERIES_INSTANCE_UID);
    Ok(Some(FileHeader {
        path: path.to_path_buf(),
        series_uid,
        description: text(obj, tags::SERIES_DESCRIPTION),
        modality: text(obj, tags::MODALITY),
        patient_id: text(obj, tags::PATIENT_ID),
        transfer_syntax,
        rows,
        columns,
        pixel,
        slice_thickness,
        spacing_between_slices,
        frames,
    }))
}

fn transfer_syntax_name(uid: &str) -> String {
    match TransferSyntaxRegistry.get(uid) {
        Some(ts) => format!("{} ({uid})", ts.name()),
        None => format!("unknown transfer syntax {uid}"),
    }
}

/// Refuses a transfer syntax medseg cannot decode, naming it and the fix.
fn check_transfer_syntax(h: &FileHeader) -> Result<(), VolumeError> {
    let uid = &h.transfer_syntax;
    let fix = "convert the series to an uncompressed transfer syntax first (e.g. `gdcmconv --raw IN OUT` or `dcmdjpeg`/`dcmdjp2k`), or to JPEG lossless / RLE";
    match TransferSyntaxRegistry.get(uid) {
        None => Err(VolumeError::unsupported(
            &h.path,
            format!("unknown transfer syntax {uid}; {fix}"),
        )),
        Some(ts) if !ts.can_decode_all() => Err(VolumeError::unsupported(
            &h.path,
            format!(
                "transfer syntax {} ({uid}) cannot be decoded by medseg (pure-Rust decoders: native, deflate, RLE, JPEG baseline/extended/lossless); {fix}",
                ts.name()
            ),
        )),
        Some(_) => Ok(()),
    }
}

/// RescaleSlope and RescaleIntercept.
type Rescale = (f64, f64);

/// A slice in the sorted series: its file, its frame and its position along the normal.
struct Placed<'a> {
    header: &'a FileHeader,
    frame: &'a Frame,
    along: f64,
    position: [f64; 3],
}

fn close(a: &[f64], b: &[f64], tol: f64) -> bool {
    a.iter().zip(b).all(|(x, y)| (x - y).abs() <= tol)
}

fn dot(a: [f64; 3], b: [f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

fn cross(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
}

fn fmt3(v: [f64; 3]) -> String {
    format!("({:.4}, {:.4}, {:.4})", v[0], v[1], v[2])
}

/// Checks that the files of one series agree, sorts their slices and decodes them.
fn assemble(
    root: &Path,
    members: &[&FileHeader],
) -> Result<(Volume<f32>, Option<Rescale>), VolumeError> {
    let first = members[0];
    for h in members {
        check_transfer_syntax(h)?;
        if (h.rows, h.columns) != (first.rows, first.columns) || h.pixel != first.pixel {
            return Err(VolumeError::format(
                &h.path,
                format!(
                    "{} x {} pixels of {:?}, where {} has {} x {} of {:?}: the files of one series must agree",
                    h.rows,
                    h.columns,
                    h.pixel,
                    first.path.display(),
                    first.rows,
                    first.columns,
                    first.pixel
                ),
            ));
        }
    }
    let frames: Vec<(&FileHeader, &Frame)> = members
        .iter()
        .flat_map(|h| h.frames.iter().map(move |f| (*h, f)))
        .collect();
    let (h0, f0) = frames[0];
    let n = frames.len();
    let name = |h: &FileHeader, f: &Frame| {
        if h.frames.len() > 1 {
            format!("{} frame {}", h.path.display(), f.index + 1)
        } else {
            h.path.display().to_string()
        }
    };
    // orientation and in-plane spacing: one for the whole series
    let orientation = match f0.orientation {
        Some(o) => o,
        None if n == 1 => [1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
        None => {
            return Err(VolumeError::format(
                &h0.path,
                "no ImageOrientationPatient (0020,0037): medseg cannot order the slices",
            ));
        }
    };
    let pixel_spacing = f0.pixel_spacing.unwrap_or([1.0, 1.0]);
    for &(h, f) in &frames {
        if !close(&f.orientation.unwrap_or(orientation), &orientation, 1e-4) {
            return Err(VolumeError::Geometry {
                path: h.path.clone(),
                reason: format!(
                    "ImageOrientationPatient {:?} differs from {:?} in {}: slices of several orientations (a localizer?) in one series",
                    f.orientation.unwrap_or(orientation),
                    orientation,
                    name(h0, f0)
                ),
            });
        }
        if !close(
            &f.pixel_spacing.unwrap_or(pixel_spacing),
            &pixel_spacing,
            1e-4,
        ) {
            return Err(VolumeError::Geometry {
                path: h.path.clone(),
                reason: format!(
                    "PixelSpacing {:?} differs from {:?} in {}: the slices of one series must share it",
                    f.pixel_spacing.unwrap_or(pixel_spacing),
                    pixel_spacing,
                    name(h0, f0)
                ),
            });
        }
    }
    if pixel_spacing.iter().any(|&s| s <= 0.0) {
        return Err(VolumeError::format(
            &h0.path,
            format!("PixelSpacing {pixel_spacing:?} is not positive"),
        ));
    }
    let row = [orientation[0], orientation[1], orientation[2]];
    let col = [orientation[3], orientation[4], orientation[5]];
    let normal = cross(row, col);
    let unit = |v: [f64; 3]| (dot(v, v) - 1.0).abs() < 1e-3;
    if !unit(row) || !unit(col) || dot(row, col).abs() > 1e-3 || !unit(normal) {
        return Err(VolumeError::Geometry {
            path: h0.path.clone(),
            reason: format!(
                "ImageOrientationPatient {orientation:?} is not two orthogonal unit vectors"
            ),
        });
    }
    let mut placed = Vec::with_capacity(n);
    for &(h, f) in &frames {
        let position = match f.position {
            Some(p) => p,
            None if n == 1 => [0.0; 3],
            None => {
                return Err(VolumeError::format(
                    &h.path,
                    "no ImagePositionPatient (0020,0032): medseg cannot place this slice in the series",
                ));
            }
        };
        placed.push(Placed {
            header: h,
            frame: f,
            along: dot(position, normal),
            position,
        });
    }
    placed.sort_by(|a, b| {
        a.along
            .total_cmp(&b.along)
            .then_with(|| a.header.path.cmp(&b.header.path))
            .then(a.frame.index.cmp(&b.frame.index))
    });
    let spacing_k = slice_spacing(root, &placed, normal, &name)?;
    let mut g = Geometry::with_spacing([pixel_spacing[1], pixel_spacing[0], spacing_k]);
    g.origin = raw::flip_xy(placed[0].position);
    for (c, axis) in [row, col, normal].into_iter().enumerate() {
        for (r, v) in raw::flip_xy(axis).into_iter().enumerate() {
            g.direction[r][c] = v;
        }
    }
    let (ni, nj) = (usize::from(first.columns), usize::from(first.rows));
    let total = raw::byte_count(root, &[ni, nj, n], DataType::F32)? / 4;
    let mut data = vec![0f32; total];
    decode_all(&placed, &mut data, ni * nj)?;
    let array = Array3::from_shape_vec((n, nj, ni), data)
        .map_err(|e| VolumeError::decode(root, "unexpected data size", e))?;
    let rescale = {
        let (s, i) = (placed[0].frame.slope, placed[0].frame.intercept);
        placed
            .iter()
            .all(|p| p.frame.slope == s && p.frame.intercept == i)
            .then_some((s, i))
    };
    Ok((Volume::new(array, g), rescale))
}

/// The spacing between slices of a sorted series, or an error naming the first gap.
fn slice_spacing(
    root: &Path,
    placed: &[Placed],
    normal: [f64; 3],
    name: &dyn Fn(&FileHeader, &Frame) -> String,
) -> Result<f64, VolumeError> {
    let n = placed.len();
    if n == 1 {
        let h = placed[0].header;
        return Ok(h
            .spacing_between_slices
            .or(h.slice_thickness)
            .unwrap_or(1.0));
    }
    let steps: Vec<f64> = placed.windows(2).map(|w| w[1].along - w[0].along).collect();
    let mut sorted = steps.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    let tol = (STEP_TOLERANCE * median).max(MIN_STEP_TOLERANCE_MM);
    for (w, &step) in placed.windows(2).zip(&steps) {
        let (a, b) = (&w[0], &w[1]);
        let between = || {
            format!(
                "{} at {:.4} mm and {} at {:.4} mm along the slice normal",
                name(a.header, a.frame),
                a.along,
                name(b.header, b.frame),
                b.along
            )
        };
        if step.abs() <= MIN_STEP_TOLERANCE_MM {
            return Err(VolumeError::Geometry {
                path: root.to_path_buf(),
                reason: format!(
                    "two slices at one position: {}; a series with several images per position (4D, multi-echo, several acquisitions) is not supported: split it into one series per volume",
                    between()
                ),
            });
        }
        if (step - median).abs() > tol {
            let ratio = step / median;
            let missing = ratio.round();
            let reason = if missing >= 2.0 && (step - missing * median).abs() <= tol * missing {
                format!(
                    "missing slice{}: {} slice(s) between {} (a step of {step:.4} mm, expected {median:.4} mm); re-export the complete series",
                    if missing > 2.0 { "s" } else { "" },
                    missing as u64 - 1,
                    between()
                )
            } else {
                format!(
                    "non-uniform slice spacing: a step of {step:.4} mm between {}, expected {median:.4} mm (tolerance {:.0}% or {MIN_STEP_TOLERANCE_MM} mm); medseg reads evenly spaced series only",
                    between(),
                    STEP_TOLERANCE * 100.0
                )
            };
            return Err(VolumeError::Geometry {
                path: root.to_path_buf(),
                reason,
            });
        }
        // gantry tilt: the step between positions must lie along the normal
        let d: [f64; 3] = std::array::from_fn(|c| b.position[c] - a.position[c] - step * normal[c]);
        let off = dot(d, d).sqrt();
        if off > tol {
            return Err(VolumeError::Geometry {
                path: root.to_path_buf(),
                reason: format!(
                    "the slices are not stacked along their normal (ImagePositionPatient {} to {} is {off:.4} mm off it): a gantry-tilted or sheared series, which medseg does not resample",
                    fmt3(a.position),
                    fmt3(b.position)
                ),
            });
        }
    }
    Ok((placed[n - 1].along - placed[0].along) / (n - 1) as f64)
}

/// Decodes every slice into its plane of `data` (`plane` values each), file by file in
/// parallel; a multi-frame file is opened once for all its frames.
fn decode_all(placed: &[Placed], data: &mut [f32], plane: usize) -> Result<(), VolumeError> {
    type Job<'a, 'b> = (&'a FileHeader, Vec<(&'a Frame, &'b mut [f32])>);
    let mut jobs: BTreeMap<&Path, Job> = BTreeMap::new();
    for (p, out) in placed.iter().zip(data.chunks_mut(plane)) {
        jobs.entry(p.header.path.as_path())
            .or_insert_with(|| (p.header, Vec::new()))
            .1
            .push((p.frame, out));
    }
    jobs.into_values()
        .collect::<Vec<_>>()
        .into_par_iter()
        .try_for_each(|(h, frames)| decode_file(h, frames))
}

fn decode_file(h: &FileHeader, frames: Vec<(&Frame, &mut [f32])>) -> Result<(), VolumeError> {
    let path = &h.path;
    let obj = OpenFileOptions::new().open_file(path).map_err(|e| {
        VolumeError::decode(
            path,
            "cannot read the DICOM file (truncated or damaged?)",
            e,
        )
    })?;
    let pixel_data = obj.get(tags::PIXEL_DATA).ok_or_else(|| {
        VolumeError::format(
            path,
            "no Pixel Data (7FE0,0010): an image header without its pixels",
        )
    })?;
    let frame_bytes = h.frame_bytes() as usize;
    match pixel_data.value() {
        DicomValue::Primitive(p) => {
            let bytes = p.to_bytes();
            let expected = frame_bytes * h.frames.len();
            if bytes.len() < expected {
                return Err(VolumeError::Truncated {
                    path: path.clone(),
                    expected: expected as u64,
                    found: bytes.len() as u64,
                });
            }
            for (f, out) in frames {
                let at = f.index as usize * frame_bytes;
                convert(
                    &bytes[at..at + frame_bytes],
                    out,
                    h.pixel,
                    f.slope,
                    f.intercept,
                );
            }
        }
        DicomValue::PixelSequence(seq) if h.transfer_syntax == RLE_LOSSLESS => {
            let fragments = seq.fragments();
            for (f, out) in frames {
                let fragment = fragments.get(f.index as usize).ok_or_else(|| {
                    VolumeError::format(
                        path,
                        format!(
                            "RLE pixel data with {} fragment(s) has no fragment for frame {}",
                            fragments.len(),
                            f.index + 1
                        ),
                    )
                })?;
                let bytes = decode_rle(path, fragment, h.pixel.bytes(), out.len())?;
                convert(&bytes, out, h.pixel, f.slope, f.intercept);
            }
        }
        DicomValue::PixelSequence(seq) => {
            if h.transfer_syntax.starts_with("1.2.840.10008.1.2.4.")
                && let Some(first) = seq.fragments().first()
            {
                check_jpeg_size(path, first, h.rows, h.columns)?;
            }
            for (f, out) in frames {
                // The codecs are other crates' code: a panic on corrupt data is an error here.
                let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    if h.frames.len() == 1 {
                        obj.decode_pixel_data()
                    } else {
                        obj.decode_pixel_data_frame(f.index)
                    }
                }))
                .map_err(|_| {
                    VolumeError::format(
                        path,
                        "the compressed pixel data are corrupt (the decoder failed)",
                    )
                })?
                .map_err(|e| {
                    VolumeError::decode(path, "cannot decode the compressed pixel data", e)
                })?;
                let bytes = decoded.data();
                if bytes.len() < frame_bytes {
                    return Err(VolumeError::Truncated {
                        path: path.clone(),
                        expected: frame_bytes as u64,
                        found: bytes.len() as u64,
                    });
                }
                convert(&bytes[..frame_bytes], out, h.pixel, f.slope, f.intercept);
            }
        }
        DicomValue::Sequence(_) => {
            return Err(VolumeError::format(
                path,
                "Pixel Data (7FE0,0010) holds a sequence, not pixels: the file is damaged",
            ));
        }
    }
    Ok(())
}

/// The JPEG codec trusts the frame header's size; this checks that the first SOF marker of a
/// frame's first fragment announces one component of Rows x Columns before it decodes.
fn check_jpeg_size(
    path: &Path,
    fragment: &[u8],
    rows: u16,
    columns: u16,
) -> Result<(), VolumeError> {
    let mut i = 0;
    while i + 4 <= fragment.len() {
        if fragment[i] != 0xFF {
            i += 1;
            continue;
        }
        let marker = fragment[i + 1];
        let sof = matches!(marker, 0xC0..=0xCF) && !matches!(marker, 0xC4 | 0xC8 | 0xCC);
        if sof {
            let Some(h) = fragment.get(i + 4..i + 10) else {
                break;
            };
            let (height, width, components) = (
                u16::from_be_bytes([h[1], h[2]]),
                u16::from_be_bytes([h[3], h[4]]),
                h[5],
            );
            if (height, width, components) != (rows, columns, 1) {
                return Err(VolumeError::format(
                    path,
                    format!(
                        "the JPEG data hold {components} component(s) of {height} x {width} pixels where the header says 1 of {rows} x {columns}: a damaged file"
                    ),
                ));
            }
            return Ok(());
        }
        i += 2;
    }
    Err(VolumeError::format(
        path,
        "the JPEG data have no frame header (SOF marker): a damaged file",
    ))
}

/// Stored values (little-endian `bytes`) to rescaled f32 values.
fn convert(bytes: &[u8], out: &mut [f32], px: PixelFormat, slope: f64, intercept: f64) {
    let shift = u32::from(px.high_bit + 1 - px.bits_stored);
    let bits = u32::from(px.bits_stored);
    let width = u32::from(px.bits_allocated);
    let mask: u32 = if bits == 32 {
        u32::MAX
    } else {
        (1u32 << bits) - 1
    };
    // The stored value of raw sample `v` (as its bits in a u32).
    let value = move |v: u32| -> f64 {
        let v = (v >> shift) & mask;
        if px.signed {
            // sign-extend from `bits` bits
            f64::from(((v << (32 - bits)) as i32) >> (32 - bits))
        } else {
            f64::from(v)
        }
    };
    let identity = slope == 1.0 && intercept == 0.0;
    let put = |o: &mut f32, v: f64| {
        *o = if identity {
            v as f32
        } else {
            (v * slope + intercept) as f32
        };
    };
    match width {
        8 => {
            for (o, &b) in out.iter_mut().zip(bytes) {
                put(o, value(u32::from(b)));
            }
        }
        16 if shift == 0 && bits == 16 => {
            // the common case, without the bit fiddling
            for (o, c) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                let raw = [c[0], c[1]];
                let v = if px.signed {
                    f64::from(i16::from_le_bytes(raw))
                } else {
                    f64::from(u16::from_le_bytes(raw))
                };
                put(o, v);
            }
        }
        16 => {
            for (o, c) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                put(o, value(u32::from(u16::from_le_bytes([c[0], c[1]]))));
            }
        }
        _ => {
            for (o, c) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                put(o, value(u32::from_le_bytes([c[0], c[1], c[2], c[3]])));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn px(bits_allocated: u16, bits_stored: u16, high_bit: u16, signed: bool) -> PixelFormat {
        PixelFormat {
            bits_allocated,
            bits_stored,
            high_bit,
            signed,
        }
    }

    #[test]
    fn stored_bits_are_masked_and_sign_extended() {
        let mut out = [0f32; 3];
        // 12 bits stored in 16: garbage in the top nibble is masked off
        let bytes = [0xFF, 0xFF, 0x00, 0x08, 0x01, 0xF0];
        convert(&bytes, &mut out, px(16, 12, 11, false), 1.0, 0.0);
        assert_eq!(out, [4095.0, 2048.0, 1.0]);
        // signed 12 bits: 0x800 is -2048, 0xFFF is -1
        convert(&bytes, &mut out, px(16, 12, 11, true), 1.0, 0.0);
        assert_eq!(out, [-1.0, -2048.0, 1.0]);
        // high bit 15 with 12 stored: the value is in the top bits
        convert(
            &[0x10, 0x00, 0x00, 0x80, 0, 0],
            &mut out,
            px(16, 12, 15, false),
            1.0,
            0.0,
        );
        assert_eq!(out, [1.0, 2048.0, 0.0]);
        // 8-bit signed, rescaled
        let mut out2 = [0f32; 2];
        convert(&[0xFE, 0x02], &mut out2, px(8, 8, 7, true), 0.5, 10.0);
        assert_eq!(out2, [9.0, 11.0]);
        // 32-bit signed
        let mut out1 = [0f32; 1];
        convert(
            &(-70000i32).to_le_bytes(),
            &mut out1,
            px(32, 32, 31, true),
            1.0,
            0.0,
        );
        assert_eq!(out1, [-70000.0]);
    }
}
