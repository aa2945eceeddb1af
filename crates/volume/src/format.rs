//! Which reader a file needs, from its name (or, for DICOM, its contents), and one entry
//! point for all of them.

use crate::{
    NiftiScalar, RawScalar, Volume, VolumeError, WriteOptions, read_metaimage, read_nrrd,
    read_volume, write_metaimage, write_nrrd, write_volume,
};
use std::path::Path;

/// The image formats medseg reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    /// `.nii`, `.nii.gz`, `.hdr`/`.img`
    Nifti,
    /// `.mha`, `.mhd`
    MetaImage,
    /// `.nrrd`, `.nhdr`
    Nrrd,
    /// 2D natural images: `.png`, `.tif`, `.tiff`, `.bmp` (one slice, unit spacing)
    Natural,
    /// A DICOM series: a folder of DICOM files, or one DICOM file (`.dcm`, `.dicom`, or any
    /// name whose bytes 128..132 are `DICM`). Read only: medseg writes no DICOM.
    Dicom,
}

impl ImageFormat {
    /// The format of `path` by its extension (case-insensitive), `None` for anything else.
    pub fn of(path: &Path) -> Option<Self> {
        let name = path.file_name()?.to_string_lossy().to_ascii_lowercase();
        let ends = |e: &str| name.ends_with(e);
        if ends(".nii") || ends(".nii.gz") || ends(".hdr") || ends(".img") || ends(".img.gz") {
            Some(ImageFormat::Nifti)
        } else if ends(".mha") || ends(".mhd") {
            Some(ImageFormat::MetaImage)
        } else if ends(".nrrd") || ends(".nhdr") {
            Some(ImageFormat::Nrrd)
        } else if ends(".png") || ends(".tif") || ends(".tiff") || ends(".bmp") {
            Some(ImageFormat::Natural)
        } else if ends(".dcm") || ends(".dicom") {
            Some(ImageFormat::Dicom)
        } else {
            None
        }
    }

    /// The format of `path` on disk: a folder is a DICOM series (whatever its name), a file is
    /// known by its extension and, failing that, a file with the `DICM` magic is DICOM.
    /// `None` for anything else (a missing path, an unknown file).
    pub fn detect(path: &Path) -> Option<Self> {
        if path.is_dir() {
            return Some(ImageFormat::Dicom);
        }
        Self::of(path).or_else(|| crate::is_dicom_file(path).then_some(ImageFormat::Dicom))
    }

    /// The name of a format as `--output-format` and `medseg inspect` write it.
    pub fn name(self) -> &'static str {
        match self {
            ImageFormat::Nifti => "nifti",
            ImageFormat::MetaImage => "metaimage",
            ImageFormat::Nrrd => "nrrd",
            ImageFormat::Natural => "natural image",
            ImageFormat::Dicom => "dicom",
        }
    }

    /// The extension medseg writes for this format.
    pub fn extension(self) -> &'static str {
        match self {
            ImageFormat::Nifti => ".nii.gz",
            ImageFormat::MetaImage => ".mha",
            ImageFormat::Nrrd => ".nrrd",
            ImageFormat::Natural => ".png",
            // never written (see write_image); DICOM predictions are NIfTI
            ImageFormat::Dicom => ".dcm",
        }
    }
}

/// Reads a 3D (or 2D) scalar image of any supported format as f32 (by [`ImageFormat::detect`]:
/// a folder is a DICOM series, a file goes by its extension or its DICOM magic; other names
/// are read as NIfTI).
pub fn read_image(path: &Path) -> Result<Volume<f32>, VolumeError> {
    match ImageFormat::detect(path) {
        Some(ImageFormat::Dicom) => crate::read_dicom_series(path),
        Some(ImageFormat::MetaImage) => read_metaimage(path),
        Some(ImageFormat::Nrrd) => read_nrrd(path),
        Some(ImageFormat::Natural) => crate::natural::read_natural_volume(path),
        // any other name: NIfTI, whose reader checks the magic bytes and says what it found
        Some(ImageFormat::Nifti) | None => read_volume(path),
    }
}

/// Writes `v` in the format of `path`'s extension (NIfTI with a fresh header).
pub fn write_image<T: RawScalar + NiftiScalar>(
    path: &Path,
    v: &Volume<T>,
) -> Result<(), VolumeError> {
    match ImageFormat::of(path) {
        Some(ImageFormat::Nifti) => write_volume(path, v, &WriteOptions::default()),
        Some(ImageFormat::MetaImage) => write_metaimage(path, v),
        Some(ImageFormat::Nrrd) => write_nrrd(path, v),
        Some(ImageFormat::Natural) => crate::natural::write_png(path, v),
        Some(ImageFormat::Dicom) => Err(VolumeError::unsupported(
            path,
            "medseg does not write DICOM; write .nii.gz, .mha or .nrrd",
        )),
        None => Err(VolumeError::unsupported(
            path,
            "unknown image format (supported: .nii.gz, .mha, .mhd, .nrrd, .nhdr, .png)",
        )),
    }
}
