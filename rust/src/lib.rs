//! rainbridge-core: the hot kernels of Rainbridge.
//!
//! Batched group operations for PSI and, later, OPRF-based protocols: X25519 with the
//! interconnection standard's direct-hash suite (portable and AVX-512 IFMA back ends) and
//! ristretto255 (RFC 9496); single-server lattice PIR (SimplePIR, `lwepir`). No I/O, no
//! protocol state: buffers in, buffers out, rayon inside. The Python module
//! `rainbridge._core` (feature `python`) releases the GIL around each call.

pub mod baseot;
pub mod bits;
pub mod block;
pub mod error;
pub mod exconv;
pub mod gilboa;
pub mod hash;
pub mod iknp;
pub mod items;
pub mod lwepir;
pub mod okvs;
pub mod ou;
pub mod pprf;
pub mod ristretto;
pub mod rr22;
pub mod silentot;
pub mod sm2;
pub mod sm2_ecdh;
pub mod x25519;
pub mod x25519_ifma;
pub mod x25519_u64;

#[cfg(feature = "python")]
mod python;

pub use error::{CoreError, Result};

/// The CPU features relevant to the kernels that this machine has (for `build_info`).
pub fn cpu_features() -> Vec<&'static str> {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        let mut v = Vec::new();
        for (name, present) in [
            ("avx2", has!("avx2")),
            ("bmi2", has!("bmi2")),
            ("adx", has!("adx")),
            ("avx512f", has!("avx512f")),
            ("avx512vl", has!("avx512vl")),
            ("avx512ifma", has!("avx512ifma")),
        ] {
            if present {
                v.push(name);
            }
        }
        v
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        Vec::new()
    }
}
