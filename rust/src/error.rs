//! The core's one error type; the Python module converts it to `InvalidElementError` /
//! `ValueError` in exactly one place (`python.rs`).

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CoreError {
    /// A received element is invalid: non-canonical, not on the group, identity, or its
    /// X25519 product is all zero (a low-order input). Carries the batch index.
    InvalidElement { index: usize, reason: &'static str },
    /// A scalar is not canonical (>= group order) or is zero.
    InvalidScalar(&'static str),
    /// Buffers do not describe a valid batch (lengths, offsets).
    Shape(String),
    /// A key (or a distinguishing ID) is malformed or out of range.
    InvalidKey(&'static str),
}

impl fmt::Display for CoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CoreError::InvalidElement { index, reason } => {
                write!(f, "invalid group element at index {index}: {reason}")
            }
            CoreError::InvalidScalar(reason) => write!(f, "invalid scalar: {reason}"),
            CoreError::Shape(msg) => f.write_str(msg),
            CoreError::InvalidKey(reason) => write!(f, "invalid key: {reason}"),
        }
    }
}

impl std::error::Error for CoreError {}

pub type Result<T> = std::result::Result<T, CoreError>;
