//! rainbridge-core: the hot kernels of Rainbridge.
//!
//! Batched group operations for PSI and, later, OPRF-based protocols: X25519 with the
//! interconnection standard's direct-hash suite (portable and AVX-512 IFMA back ends) and
//! ristretto255 (RFC 9496). No I/O, no protocol state: buffers in, buffers out, rayon inside.
//! The Python module `rainbridge._core` (feature `python`) releases the GIL around each call.

pub mod error;
pub mod hash;
pub mod items;
pub mod ristretto;
pub mod x25519;
pub mod x25519_ifma;

#[cfg(feature = "python")]
mod python;

pub use error::{CoreError, Result};
