use std::path::PathBuf;

/// Everything that can go wrong reading or writing a volume. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file is not a NIfTI file we can read, or its header is inconsistent.
    #[error("{}: {reason}", path.display())]
    Format { path: PathBuf, reason: String },
    /// The file is valid NIfTI, but holds data medseg does not handle (complex, RGB, ...).
    #[error("{}: {reason}", path.display())]
    Unsupported { path: PathBuf, reason: String },
    /// The file ends before the data the header announces.
    #[error("{}: truncated: the header announces {expected} bytes of voxel data, the file holds {found}; re-export or re-download it", path.display())]
    Truncated {
        path: PathBuf,
        expected: u64,
        found: u64,
    },
    /// Two volumes that must share a grid do not.
    #[error("{}: {reason}", path.display())]
    Geometry { path: PathBuf, reason: String },
    /// A dataset folder problem (missing files, bad dataset.json, undeclared labels, ...).
    #[error("{}: {reason}", path.display())]
    Dataset { path: PathBuf, reason: String },
    #[error("{}: {reason}", path.display())]
    Image { path: PathBuf, reason: String },
}

impl VolumeError {
    pub(crate) fn format(path: &std::path::Path, reason: impl Into<String>) -> Self {
        VolumeError::Format {
            path: path.to_path_buf(),
            reason: reason.into(),
        }
    }
    pub(crate) fn unsupported(path: &std::path::Path, reason: impl Into<String>) -> Self {
        VolumeError::Unsupported {
            path: path.to_path_buf(),
            reason: reason.into(),
        }
    }
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        VolumeError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
