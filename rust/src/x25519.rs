//! X25519 (RFC 7748) batches, and the `<Curve25519, SHA-256, DIRECT_HASH_AS_POINT_X>` suite
//! of the interconnection standard: SHA-256(item) taken directly as the u-coordinate.
//!
//! Two back ends compute the same function: a portable one (a constant-time radix-2^64
//! Montgomery ladder, one point at a time, `x25519_u64`) and, where the CPU has AVX-512 IFMA,
//! an 8-lane ladder (`x25519_ifma`) that runs eight independent ladders in the lanes of one
//! register. curve25519-dalek's ladder is the tests' independent reference for both.

use curve25519_dalek::montgomery::MontgomeryPoint;
use rayon::prelude::*;
use sha2::{Digest, Sha256};

use crate::error::{CoreError, Result};
use crate::items::{check_out, elements, Items};

/// Items per rayon task (a multiple of the 8 IFMA lanes).
const CHUNK: usize = 256;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Portable,
    Ifma,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Portable => "portable",
            Backend::Ifma => "avx512ifma",
        }
    }
}

/// A field operation mod 2^255 - 19, exposed so that tests can drive each back end's
/// arithmetic at its bounds against a big-integer reference.
#[doc(hidden)]
#[derive(Clone, Copy, Debug)]
pub enum FieldOp {
    Add,
    Sub,
    Mul,
    Sqr,
    MulA24,
    Invert,
}

/// The best back end this CPU supports, unless `RAINBRIDGE_DISABLE_IFMA=1`.
pub fn detect() -> Backend {
    if std::env::var_os("RAINBRIDGE_DISABLE_IFMA").is_some_and(|v| v == "1") {
        return Backend::Portable;
    }
    if crate::x25519_ifma::available() {
        Backend::Ifma
    } else {
        Backend::Portable
    }
}

/// RFC 7748 scalar clamping.
pub fn clamp(k: &[u8; 32]) -> [u8; 32] {
    let mut s = *k;
    s[0] &= 248;
    s[31] &= 127;
    s[31] |= 64;
    s
}

/// X25519(k, u) on one point, portable: our radix-2^64 ladder (`x25519_u64`), about a fifth
/// faster than curve25519-dalek's here; the tests check it against dalek's.
pub fn x25519(k: &[u8; 32], u: &[u8; 32]) -> [u8; 32] {
    crate::x25519_u64::x25519(k, u)
}

pub fn hash_to_point(item: &[u8]) -> [u8; 32] {
    Sha256::digest(item).into()
}

/// The index of the first all-zero result in `out` (batch index `base + j`), as an error.
fn check(out: &[u8], base: usize) -> Result<()> {
    // A constant-time test is not needed: the output is handed to the caller anyway.
    match out.chunks_exact(32).position(|r| r.iter().all(|&b| b == 0)) {
        Some(j) => Err(CoreError::InvalidElement {
            index: base + j,
            reason: "X25519 result is all zero (low-order point)",
        }),
        None => Ok(()),
    }
}

/// Multiplies `inputs` (n u-coordinates) by `k` into `out`, with the chosen back end.
fn mul_into(backend: Backend, k: &[u8; 32], inputs: &[[u8; 32]], out: &mut [u8]) {
    match backend {
        Backend::Ifma => crate::x25519_ifma::mul_batch(&clamp(k), inputs, out),
        Backend::Portable => {
            for (slot, u) in out.chunks_exact_mut(32).zip(inputs) {
                slot.copy_from_slice(&x25519(k, u));
            }
        }
    }
}

/// X25519(k, u) for every 32-byte u in `points`; refuses (with the index of the first one)
/// any u whose result is all zero.
pub fn mul_batch(backend: Backend, k: &[u8; 32], points: &[u8]) -> Result<Vec<u8>> {
    let mut out = vec![0u8; points.len()];
    mul_batch_into(backend, k, points, &mut out)?;
    Ok(out)
}

/// [`mul_batch`] into `out` (as long as `points`). On error `out` holds no useful data.
pub fn mul_batch_into(backend: Backend, k: &[u8; 32], points: &[u8], out: &mut [u8]) -> Result<()> {
    let pts = elements(points)?;
    check_out(out, pts.len())?;
    // `find_map_first`: chunks run in parallel, but the error reported is the lowest chunk's,
    // and each chunk reports its own first bad element, so the index is the batch's first.
    let err = out
        .par_chunks_mut(32 * CHUNK)
        .zip(pts.par_chunks(CHUNK))
        .enumerate()
        .find_map_first(|(c, (buf, src))| {
            mul_into(backend, k, src, buf);
            check(buf, c * CHUNK).err()
        });
    err.map_or(Ok(()), Err)
}

/// X25519(k, SHA-256(item)) for every item, in one pass; refuses all-zero results as
/// [`mul_batch`] does (a SHA-256 image of low order has negligible probability).
pub fn hash_mul_batch(backend: Backend, k: &[u8; 32], items: &Items<'_>) -> Result<Vec<u8>> {
    let mut out = vec![0u8; items.len() * 32];
    hash_mul_batch_into(backend, k, items, &mut out)?;
    Ok(out)
}

/// [`hash_mul_batch`] into `out` (32 bytes per item).
pub fn hash_mul_batch_into(
    backend: Backend,
    k: &[u8; 32],
    items: &Items<'_>,
    out: &mut [u8],
) -> Result<()> {
    check_out(out, items.len())?;
    let err = out
        .par_chunks_mut(32 * CHUNK)
        .enumerate()
        .find_map_first(|(c, buf)| {
            let lo = c * CHUNK;
            let hashed: Vec<[u8; 32]> = (lo..lo + buf.len() / 32)
                .map(|i| hash_to_point(items.get(i)))
                .collect();
            mul_into(backend, k, &hashed, buf);
            check(buf, lo).err()
        });
    err.map_or(Ok(()), Err)
}

/// SHA-256(item) for every item: the suite's hash to the curve.
pub fn hash_batch(items: &Items<'_>) -> Vec<u8> {
    let mut out = vec![0u8; items.len() * 32];
    hash_batch_into(items, &mut out).expect("output sized for the items");
    out
}

/// [`hash_batch`] into `out` (32 bytes per item).
pub fn hash_batch_into(items: &Items<'_>, out: &mut [u8]) -> Result<()> {
    check_out(out, items.len())?;
    out.par_chunks_mut(32 * CHUNK)
        .enumerate()
        .for_each(|(c, buf)| {
            for (j, slot) in buf.chunks_exact_mut(32).enumerate() {
                slot.copy_from_slice(&hash_to_point(items.get(c * CHUNK + j)));
            }
        });
    Ok(())
}

/// X25519(k, 9): the public key of `k` (portable; one fixed-base multiplication).
pub fn base(k: &[u8; 32]) -> [u8; 32] {
    MontgomeryPoint::mul_base_clamped(*k).to_bytes()
}

/// 32 bytes from the operating system (clamped when used, as RFC 7748 says).
pub fn random_scalar() -> [u8; 32] {
    let mut k = [0u8; 32];
    getrandom::getrandom(&mut k).expect("operating system randomness");
    k
}
