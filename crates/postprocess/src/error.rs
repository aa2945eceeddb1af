use thiserror::Error;

/// Errors of medseg-postprocess: only invalid settings or mismatched shapes; the algorithms
/// themselves cannot fail.
#[derive(Debug, Error)]
pub enum PostprocessError {
    /// A connectivity that is none of 4, 6, 8, 18, 26.
    #[error("connectivity {0} is not one of 6, 18, 26 (3D) or 4, 8 (2D)")]
    Connectivity(u32),
    /// Two arrays that must share a shape do not.
    #[error("shape mismatch: {what}: expected {expected:?}, got {got:?}")]
    Shape {
        what: &'static str,
        expected: Vec<usize>,
        got: Vec<usize>,
    },
    /// A setting out of range (negative size, NaN threshold, ...).
    #[error("invalid setting {key} = {value}: {reason}")]
    Setting {
        key: &'static str,
        value: String,
        reason: &'static str,
    },
}
