use std::path::PathBuf;

/// Errors reading or overriding a config file. Each names the file or the override.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file is not valid TOML or does not match the schema. `message` is toml's error on
    /// one line; the error itself is not kept as a source, because its text spans several lines
    /// (an excerpt of the file) and would be printed again by an error chain.
    #[error("invalid config {}: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    /// The config cannot be written as TOML (e.g. a path that is not valid UTF-8).
    #[error("cannot write the config as TOML: {0}")]
    Serialize(#[source] toml::ser::Error),
    #[error(
        "invalid --set '{spec}': {reason} (expected section.key=value, e.g. --set train.epochs=10)"
    )]
    Override { spec: String, reason: String },
    /// A well-formed `--set` whose value the schema rejects (wrong type, unknown key).
    #[error("invalid --set {spec}: {reason}")]
    SetValue { spec: String, reason: String },
    #[error("invalid value in config: {0}")]
    Invalid(String),
    /// A setting that parses but cannot work; `origin` is the config file or the `--set`
    /// that set it.
    #[error("{origin}: {key} {reason}")]
    Value {
        origin: String,
        key: String,
        reason: String,
    },
}
