use std::path::PathBuf;

/// Everything that can go wrong while building, validating, saving or loading a network.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The `[model]`/`[loss]` settings do not describe a buildable network or loss.
    #[error("invalid model config: {0}")]
    Config(String),
    /// The patch size does not fit the network's downsampling (message names the nearest
    /// valid sizes).
    #[error("{0}")]
    Patch(String),
    /// Reading or writing a weights file failed.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A weights file could not be encoded, decoded or applied to the network.
    #[error("{path}: {reason}")]
    Record { path: PathBuf, reason: String },
    /// A tensor or array had a shape the caller did not promise.
    #[error("shape error: {0}")]
    Shape(String),
    /// An unknown compute device, or one this build does not include.
    #[error("invalid device: {0}")]
    Device(String),
}
