use std::path::PathBuf;

/// Errors reading or overriding a config file. Each names the file or the override.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config {}: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    #[error(
        "invalid --set '{spec}': {reason} (expected section.key=value, e.g. --set train.epochs=10)"
    )]
    Override { spec: String, reason: String },
    #[error("invalid value in config: {0}")]
    Invalid(String),
}
