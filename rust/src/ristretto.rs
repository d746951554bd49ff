//! ristretto255 (RFC 9496) batches on curve25519-dalek: hash-to-group, validated decoding,
//! scalar multiplication.

use curve25519_dalek::ristretto::{CompressedRistretto, RistrettoPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::Identity;
use rayon::prelude::*;

use crate::error::{CoreError, Result};
use crate::hash::expand_message_xmd_sha512;
use crate::items::{check_out, elements, Items};

/// Items per rayon task: large enough to amortise scheduling, small enough to balance.
const CHUNK: usize = 256;

/// A canonical, non-zero scalar (we refuse rather than reduce: a peer's or caller's
/// non-canonical scalar is a bug or an attack).
pub fn scalar(bytes: &[u8; 32]) -> Result<Scalar> {
    let s = Option::<Scalar>::from(Scalar::from_canonical_bytes(*bytes)).ok_or(
        CoreError::InvalidScalar("not canonical (must be below the group order)"),
    )?;
    if s == Scalar::ZERO {
        return Err(CoreError::InvalidScalar("zero"));
    }
    Ok(s)
}

/// Decodes an element, refusing non-canonical encodings, non-points and the identity.
pub fn decode(bytes: &[u8; 32], index: usize) -> Result<RistrettoPoint> {
    let p = CompressedRistretto(*bytes)
        .decompress()
        .ok_or(CoreError::InvalidElement {
            index,
            reason: "not a canonical ristretto255 encoding",
        })?;
    if p == RistrettoPoint::identity() {
        return Err(CoreError::InvalidElement {
            index,
            reason: "identity element",
        });
    }
    Ok(p)
}

pub fn hash_to_group(item: &[u8], dst: &[u8]) -> RistrettoPoint {
    let uniform = expand_message_xmd_sha512::<64>(item, dst);
    RistrettoPoint::from_uniform_bytes(&uniform)
}

fn check_dst(dst: &[u8]) -> Result<()> {
    if dst.is_empty() || dst.len() > 255 {
        return Err(CoreError::Shape(
            "domain separation tag must be 1 to 255 bytes".into(),
        ));
    }
    Ok(())
}

/// HashToGroup(item) (RFC 9497, with `dst`) for every item, encoded.
pub fn hash_to_group_batch(items: &Items<'_>, dst: &[u8]) -> Result<Vec<u8>> {
    let mut out = vec![0u8; items.len() * 32];
    hash_to_group_batch_into(items, dst, &mut out)?;
    Ok(out)
}

/// [`hash_to_group_batch`] into `out` (32 bytes per item).
pub fn hash_to_group_batch_into(items: &Items<'_>, dst: &[u8], out: &mut [u8]) -> Result<()> {
    check_dst(dst)?;
    check_out(out, items.len())?;
    out.par_chunks_mut(32 * CHUNK)
        .enumerate()
        .for_each(|(c, buf)| {
            for (k, slot) in buf.chunks_exact_mut(32).enumerate() {
                let p = hash_to_group(items.get(c * CHUNK + k), dst);
                slot.copy_from_slice(p.compress().as_bytes());
            }
        });
    Ok(())
}

/// Encodes `2 * q` for every `q` into `out`, sharing one field inversion across the chunk
/// (curve25519-dalek's `double_and_compress_batch`). With `q = (k / 2) * P` this is the
/// encoding of `k * P` at about one inversion-and-square-root less per element.
fn double_and_compress_into(qs: &[RistrettoPoint], out: &mut [u8]) {
    for (slot, enc) in out
        .chunks_exact_mut(32)
        .zip(RistrettoPoint::double_and_compress_batch(qs))
    {
        slot.copy_from_slice(enc.as_bytes());
    }
}

/// `k / 2 mod l`: multiplying by it and then doubling is multiplying by `k` (`l` is odd).
fn half(s: &Scalar) -> Scalar {
    s * Scalar::from(2u64).invert()
}

/// `k * HashToGroup(item)` for every item, in one pass.
pub fn hash_mul_batch(k: &[u8; 32], items: &Items<'_>, dst: &[u8]) -> Result<Vec<u8>> {
    let mut out = vec![0u8; items.len() * 32];
    hash_mul_batch_into(k, items, dst, &mut out)?;
    Ok(out)
}

/// [`hash_mul_batch`] into `out` (32 bytes per item).
pub fn hash_mul_batch_into(
    k: &[u8; 32],
    items: &Items<'_>,
    dst: &[u8],
    out: &mut [u8],
) -> Result<()> {
    check_dst(dst)?;
    check_out(out, items.len())?;
    let h = half(&scalar(k)?);
    out.par_chunks_mut(32 * CHUNK)
        .enumerate()
        .for_each(|(c, buf)| {
            let qs: Vec<RistrettoPoint> = (c * CHUNK..c * CHUNK + buf.len() / 32)
                .map(|i| hash_to_group(items.get(i), dst) * h)
                .collect();
            double_and_compress_into(&qs, buf);
        });
    Ok(())
}

/// `k * P` for every encoded `P`; refuses (with the index of the first one) any encoding that
/// is not canonical, not a point, or the identity.
pub fn mul_batch(k: &[u8; 32], points: &[u8]) -> Result<Vec<u8>> {
    let mut out = vec![0u8; points.len()];
    mul_batch_into(k, points, &mut out)?;
    Ok(out)
}

/// [`mul_batch`] into `out` (as long as `points`). On error `out` holds no useful data.
pub fn mul_batch_into(k: &[u8; 32], points: &[u8], out: &mut [u8]) -> Result<()> {
    let h = half(&scalar(k)?);
    let pts = elements(points)?;
    check_out(out, pts.len())?;
    // As in x25519: the lowest failing chunk's first bad element is the batch's first.
    let err = out
        .par_chunks_mut(32 * CHUNK)
        .zip(pts.par_chunks(CHUNK))
        .enumerate()
        .find_map_first(|(c, (buf, src))| {
            let qs = src
                .iter()
                .enumerate()
                .map(|(j, p)| decode(p, c * CHUNK + j).map(|p| p * h))
                .collect::<Result<Vec<_>>>();
            match qs {
                Ok(qs) => {
                    double_and_compress_into(&qs, buf);
                    None
                }
                Err(e) => Some(e),
            }
        });
    err.map_or(Ok(()), Err)
}

/// Checks every element as [`mul_batch`] would, naming the first bad one.
pub fn validate_batch(points: &[u8]) -> Result<()> {
    let pts = elements(points)?;
    let err = pts
        .par_chunks(CHUNK)
        .enumerate()
        .find_map_first(|(c, src)| {
            src.iter()
                .enumerate()
                .find_map(|(j, p)| decode(p, c * CHUNK + j).err())
        });
    err.map_or(Ok(()), Err)
}

pub fn from_uniform_bytes_batch(buf: &[u8]) -> Result<Vec<u8>> {
    if !buf.len().is_multiple_of(64) {
        return Err(CoreError::Shape(
            "uniform bytes must be a multiple of 64".into(),
        ));
    }
    let mut out = vec![0u8; buf.len() / 2];
    out.par_chunks_mut(32)
        .zip(buf.par_chunks(64))
        .for_each(|(slot, u)| {
            let arr: &[u8; 64] = u.try_into().expect("64-byte chunk");
            slot.copy_from_slice(
                RistrettoPoint::from_uniform_bytes(arr)
                    .compress()
                    .as_bytes(),
            );
        });
    Ok(out)
}

pub fn base_mul(k: &[u8; 32]) -> Result<[u8; 32]> {
    let s = scalar(k)?;
    Ok(RistrettoPoint::mul_base(&s).compress().to_bytes())
}

pub fn random_scalar() -> [u8; 32] {
    loop {
        let mut wide = [0u8; 64];
        getrandom::getrandom(&mut wide).expect("operating system randomness");
        let s = Scalar::from_bytes_mod_order_wide(&wide);
        if s != Scalar::ZERO {
            return s.to_bytes();
        }
    }
}
