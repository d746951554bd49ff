//! SM2 for ECDH-PSI: the interconnection standard's `<SM2, SM3, TRY_AND_INCREMENT>` suite.
//!
//! Hash to the curve as the deployed implementation does: `x = SM3(item)` read big-endian
//! and reduced mod p, the point with that `x` and an even `y` if there is one, else
//! `x = SM3(previous digest)` and again (at most 100 times; each try succeeds with
//! probability about 1/2). Points travel compressed (ANSI X9.62 / GB/T 32918: `02|03 ‖ X`,
//! 33 bytes). Received points are decoded and checked to be on the curve and not the
//! identity; scalars are canonical (big-endian, below the order) and non-zero.

use rayon::prelude::*;
use sm2::elliptic_curve::point::DecompressPoint;
use sm2::elliptic_curve::sec1::{FromEncodedPoint, ToEncodedPoint};
use sm2::elliptic_curve::subtle::Choice;
use sm2::elliptic_curve::{Field, PrimeField};
use sm2::{AffinePoint, EncodedPoint, FieldBytes, ProjectivePoint, Scalar};
use sm3::{Digest, Sm3};

use crate::error::{CoreError, Result};
use crate::items::Items;

/// Bytes of a compressed point.
pub const ELEMENT: usize = 33;
const TRIES: usize = 100;
/// p of the SM2 curve, big-endian.
const P: [u8; 32] = [
    0xFF, 0xFF, 0xFF, 0xFE, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
    0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0x00, 0x00, 0x00, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
];

/// A canonical, non-zero scalar (32 bytes, big-endian).
pub fn scalar(bytes: &[u8; 32]) -> Result<Scalar> {
    let s = Option::<Scalar>::from(Scalar::from_repr(FieldBytes::clone_from_slice(bytes))).ok_or(
        CoreError::InvalidScalar("not canonical (must be below the SM2 order)"),
    )?;
    if bool::from(s.is_zero()) {
        return Err(CoreError::InvalidScalar("zero"));
    }
    Ok(s)
}

/// A fresh uniform non-zero scalar (big-endian).
pub fn random_scalar() -> [u8; 32] {
    let s = Scalar::random(&mut rand_core::OsRng);
    let mut out = [0u8; 32];
    out.copy_from_slice(&s.to_repr());
    out
}

/// `d mod p` for a 32-byte big-endian `d` (< 2^256 < 2p, so one subtraction at most).
fn reduce(d: &[u8]) -> [u8; 32] {
    let mut x = [0u8; 32];
    x.copy_from_slice(d);
    if x >= P {
        let mut borrow = 0i16;
        for i in (0..32).rev() {
            let v = x[i] as i16 - P[i] as i16 - borrow;
            borrow = i16::from(v < 0);
            x[i] = (v + 256 * borrow) as u8;
        }
    }
    x
}

/// The item's point (see the module's note).
pub fn hash_to_curve(item: &[u8]) -> Result<AffinePoint> {
    let mut d = Sm3::digest(item);
    for _ in 0..TRIES {
        let x = reduce(&d);
        let p = AffinePoint::decompress(&FieldBytes::clone_from_slice(&x), Choice::from(0));
        if let Some(p) = Option::<AffinePoint>::from(p) {
            return Ok(p);
        }
        d = Sm3::digest(d);
    }
    Err(CoreError::Shape(
        "SM2 hash to curve: no point after 100 tries".into(),
    ))
}

fn compress(p: &ProjectivePoint, out: &mut [u8]) {
    out.copy_from_slice(p.to_affine().to_encoded_point(true).as_bytes());
}

/// Decodes a compressed point, refusing anything else and the identity.
pub fn decode(bytes: &[u8], index: usize) -> Result<ProjectivePoint> {
    if bytes.len() != ELEMENT || !(bytes[0] == 2 || bytes[0] == 3) {
        return Err(CoreError::InvalidElement {
            index,
            reason: "not a compressed SM2 point",
        });
    }
    let enc = EncodedPoint::from_bytes(bytes).map_err(|_| CoreError::InvalidElement {
        index,
        reason: "not a compressed SM2 point",
    })?;
    let p = Option::<AffinePoint>::from(AffinePoint::from_encoded_point(&enc)).ok_or(
        CoreError::InvalidElement {
            index,
            reason: "not on the SM2 curve",
        },
    )?;
    Ok(ProjectivePoint::from(p))
}

/// `k·H(item)` for every item, compressed, into `out` (33 bytes each).
pub fn hash_mul_batch_into(k: &[u8; 32], items: &Items<'_>, out: &mut [u8]) -> Result<()> {
    let s = scalar(k)?;
    if out.len() != items.len() * ELEMENT {
        return Err(CoreError::Shape("SM2: output of the wrong size".into()));
    }
    out.par_chunks_mut(ELEMENT)
        .enumerate()
        .with_min_len(256)
        .try_for_each(|(i, buf)| {
            let p = ProjectivePoint::from(hash_to_curve(items.get(i))?) * s;
            compress(&p, buf);
            Ok(())
        })
}

/// `k·P` for every compressed `P`, into `out` (as long as `points`).
pub fn mul_batch_into(k: &[u8; 32], points: &[u8], out: &mut [u8]) -> Result<()> {
    let s = scalar(k)?;
    if !points.len().is_multiple_of(ELEMENT) || out.len() != points.len() {
        return Err(CoreError::Shape(
            "SM2 points come in whole 33-byte elements".into(),
        ));
    }
    out.par_chunks_mut(ELEMENT)
        .zip(points.par_chunks(ELEMENT))
        .enumerate()
        .with_min_len(256)
        .try_for_each(|(i, (buf, p))| {
            compress(&(decode(p, i)? * s), buf);
            Ok(())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_commute_and_points_are_checked() {
        let (a, b) = (random_scalar(), random_scalar());
        let data = b"alicebob";
        let offsets = [0i64, 5, 8];
        let items = Items::new(data, &offsets).unwrap();
        let mut pa = vec![0u8; 2 * ELEMENT];
        hash_mul_batch_into(&a, &items, &mut pa).unwrap();
        let mut pab = vec![0u8; 2 * ELEMENT];
        mul_batch_into(&b, &pa, &mut pab).unwrap();
        let mut pb = vec![0u8; 2 * ELEMENT];
        hash_mul_batch_into(&b, &items, &mut pb).unwrap();
        let mut pba = vec![0u8; 2 * ELEMENT];
        mul_batch_into(&a, &pb, &mut pba).unwrap();
        assert_eq!(pab, pba);
        assert_ne!(pab[..ELEMENT], pab[ELEMENT..]);
        // hashing is deterministic and lands on even y
        let h = hash_to_curve(b"alice").unwrap();
        assert_eq!(h.to_encoded_point(true).as_bytes()[0], 2);
        assert_eq!(h, hash_to_curve(b"alice").unwrap());
        let mut out = vec![0u8; ELEMENT];
        let mut bad = pa[..ELEMENT].to_vec();
        bad[0] = 4;
        assert!(mul_batch_into(&a, &bad, &mut out).is_err());
        let flipped = (0..8).any(|i| {
            let mut t = pa[..ELEMENT].to_vec();
            t[1 + i] ^= 0x80;
            mul_batch_into(&a, &t, &mut out).is_err()
        });
        assert!(flipped);
        assert!(scalar(&[0u8; 32]).is_err());
        assert!(scalar(&[0xFF; 32]).is_err());
        assert_eq!(reduce(&P), [0u8; 32]);
    }
}
