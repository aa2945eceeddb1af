use std::path::PathBuf;

/// A lower-level error kept as the source of a [`VolumeError`] (a parser's or codec's own error
/// type, which medseg does not re-export).
pub type BoxedError = Box<dyn std::error::Error + Send + Sync + 'static>;

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
    /// The file's bytes cannot be decoded (corrupt gzip stream, a header the NIfTI parser
    /// rejects, voxel data that do not fit the announced grid); `source` says why.
    #[error("{}: {what}: {source}", path.display())]
    Decode {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: BoxedError,
    },
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
    /// A dataset folder without a readable `dataset.json`.
    #[error("{}: cannot read dataset.json ({source}); a dataset folder needs one (see `medseg synth` for an example)", path.display())]
    NoDatasetJson {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A JSON file that cannot be parsed (`what` = "invalid JSON") or serialized.
    #[error("{}: {what}: {source}", path.display())]
    Json {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    /// A DICOM folder holding several series, none of them chosen: each is listed (UID,
    /// description, modality, slice count).
    #[error("{}: {} DICOM series here: {}; choose one with --series UID", path.display(), series.len(), crate::dicom::describe_series(series))]
    SeveralSeries {
        path: PathBuf,
        series: Vec<crate::SeriesSummary>,
    },
    /// A PNG that cannot be decoded or encoded.
    #[error("{}: {source}", path.display())]
    Image {
        path: PathBuf,
        #[source]
        source: BoxedError,
    },
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
    pub(crate) fn decode(
        path: &std::path::Path,
        what: &'static str,
        source: impl Into<BoxedError>,
    ) -> Self {
        VolumeError::Decode {
            path: path.to_path_buf(),
            what,
            source: source.into(),
        }
    }
    pub(crate) fn image(path: &std::path::Path, source: impl Into<BoxedError>) -> Self {
        VolumeError::Image {
            path: path.to_path_buf(),
            source: source.into(),
        }
    }
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        VolumeError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
