//! medseg-volume: the ground floor of medseg.
//!
//! * [`Volume`]: an `ndarray::Array3` in C layout indexed `[k, j, i]` (slowest to fastest = the
//!   file's voxel order) plus its [`Geometry`] (spacing, origin, direction, voxel-to-world affine
//!   in RAS+ world space). [`MultiChannel`] stacks channels on one geometry.
//! * NIfTI-1 and NIfTI-2 reading ([`read_nifti`], [`read_volume`], [`read_labels`]) with
//!   nibabel's rules for scaling and the affine, and writing ([`write_volume`],
//!   [`write_channels`]) that preserves a reference header's geometry exactly. Bad files give a
//!   [`VolumeError`] that names the file; nothing panics on user input.
//! * MetaImage (`.mha`, `.mhd`) and NRRD (`.nrrd`, `.nhdr`) reading and writing
//!   ([`read_metaimage`], [`write_metaimage`], [`read_nrrd`], [`write_nrrd`]) with their LPS /
//!   `space` conventions converted to RAS; [`ImageFormat`] tells the format from a file name and
//!   [`read_image`] reads any of them.
//! * DICOM series in ([`read_dicom_series`], [`read_dicom`]): a folder of slices or one
//!   (multi-frame) file, grouped by SeriesInstanceUID, sorted along the slice normal, LPS
//!   converted to RAS, rescaled to f32; the rules are in [`dicom`].
//! * PNG slices ([`png`]), the MSD / nnU-Net dataset layout ([`dataset`]) and deterministic
//!   synthetic phantoms ([`synth`]).

// deny, not forbid: ndarray's `s!` macro expands to an `#[allow(unsafe_code)]` block.
#![deny(unsafe_code)]

pub mod dataset;
pub mod dicom;
mod error;
mod format;
mod geometry;
mod header;
mod metaimage;
mod natural;
mod nifti_io;
mod nrrd;
pub mod png;
mod raw;
pub mod synth;
mod volume;
mod warn;

pub use dicom::{
    DicomOptions, DicomSeries, MAX_COMPRESSION_RATIO, MIN_STEP_TOLERANCE_MM, STEP_TOLERANCE,
    SeriesSummary, is_dicom_dir, is_dicom_file, list_dicom_series, read_dicom, read_dicom_files,
    read_dicom_series,
};
pub use error::{BoxedError, VolumeError};
pub use format::{ImageFormat, read_image, write_image};
pub use geometry::{Geometry, SINGULAR_RATIO, det3, invert3};
pub use header::{DataType, Header, NiftiFormat};
pub use metaimage::{read_metaimage, write_metaimage};
pub use natural::{read_natural, read_natural_volume, write_png};
pub use nifti_io::{
    NiftiImage, NiftiScalar, WriteOptions, read_channels, read_header, read_labels, read_nifti,
    read_nifti_f64, read_volume, write_channels, write_volume,
};
pub use nrrd::{read_nrrd, write_nrrd};
pub use raw::{RawElement, RawScalar};
pub use volume::{MultiChannel, Volume};
pub use warn::warn_once;

/// Writes `bytes` to `path` through a temporary file in the same folder, then renames it into
/// place, so a crash never leaves a half-written output.
pub fn write_atomically(
    path: &std::path::Path,
    write: impl FnOnce(&mut std::io::BufWriter<std::fs::File>) -> std::io::Result<()>,
) -> Result<(), VolumeError> {
    use std::io::Write;
    let io_err = |source| VolumeError::Io {
        path: path.to_path_buf(),
        source,
    };
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let file = std::fs::File::create(&tmp)?;
        let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
        write(&mut w)?;
        w.flush()?;
        w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(io_err)
}
