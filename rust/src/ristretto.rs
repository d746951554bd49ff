//! ristretto255 (RFC 9496) batches on curve25519-dalek: hash-to-group, validated decoding,
//! scalar multiplication, hash-to-scalar and multi-scalar multiplication (the batched DLEQ
//! proofs of RFC 9497's verifiable mode).

use curve25519_dalek::ristretto::{CompressedRistretto, RistrettoPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::{Identity, VartimeMultiscalarMul};
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

/// A canonical scalar, zero allowed (a proof's or a composite's public scalar may be zero;
/// a non-canonical one is refused: it would be a forged or corrupted proof).
pub fn public_scalar(bytes: &[u8; 32]) -> Result<Scalar> {
    Option::<Scalar>::from(Scalar::from_canonical_bytes(*bytes)).ok_or(CoreError::InvalidScalar(
        "not canonical (must be below the group order)",
    ))
}

/// RFC 9497 HashToScalar for ristretto255: 64 bytes of expand_message_xmd(SHA-512, `dst`),
/// little-endian, reduced mod the group order.
pub fn hash_to_scalar(item: &[u8], dst: &[u8]) -> Scalar {
    Scalar::from_bytes_mod_order_wide(&expand_message_xmd_sha512::<64>(item, dst))
}

/// [`hash_to_scalar`] of every item into `out` (32 bytes per item, canonical little-endian).
pub fn hash_to_scalar_batch_into(items: &Items<'_>, dst: &[u8], out: &mut [u8]) -> Result<()> {
    check_dst(dst)?;
    check_out(out, items.len())?;
    out.par_chunks_mut(32 * CHUNK)
        .enumerate()
        .for_each(|(c, buf)| {
            for (k, slot) in buf.chunks_exact_mut(32).enumerate() {
                slot.copy_from_slice(hash_to_scalar(items.get(c * CHUNK + k), dst).as_bytes());
            }
        });
    Ok(())
}

/// `s_i * P_i` (or `s_i^-1 * P_i` with `invert`: a client's unblinding) for each pair of
/// a secret scalar (canonical, non-zero) and a received element (validated as in
/// [`mul_batch`], naming the first bad one), into `out` (as long as `points`). Constant
/// time in the scalars. On error `out` holds no useful data.
pub fn mul_each_into(scalars: &[u8], points: &[u8], invert: bool, out: &mut [u8]) -> Result<()> {
    let ks = elements(scalars)?;
    let pts = elements(points)?;
    if ks.len() != pts.len() {
        return Err(CoreError::Shape(format!(
            "{} scalars for {} elements",
            ks.len(),
            pts.len()
        )));
    }
    check_out(out, pts.len())?;
    let err = out
        .par_chunks_mut(32 * CHUNK)
        .zip(pts.par_chunks(CHUNK).zip(ks.par_chunks(CHUNK)))
        .enumerate()
        .find_map_first(|(c, (buf, (src, ks)))| {
            let run = || -> Result<Vec<RistrettoPoint>> {
                let mut ss = ks.iter().map(scalar).collect::<Result<Vec<_>>>()?;
                if invert {
                    // one inversion for the chunk (Montgomery's trick), constant time
                    Scalar::batch_invert(&mut ss);
                }
                src.iter()
                    .zip(&ss)
                    .enumerate()
                    .map(|(j, (p, s))| decode(p, c * CHUNK + j).map(|p| p * half(s)))
                    .collect()
            };
            match run() {
                Ok(qs) => {
                    double_and_compress_into(&qs, buf);
                    None
                }
                Err(e) => Some(e),
            }
        });
    err.map_or(Ok(()), Err)
}

/// `s_i * HashToGroup(item_i)` (with `dst`) for each item and its own secret scalar (a
/// client's blinding), into `out` (32 bytes per item).
pub fn hash_mul_each_into(
    scalars: &[u8],
    items: &Items<'_>,
    dst: &[u8],
    out: &mut [u8],
) -> Result<()> {
    check_dst(dst)?;
    let ks = elements(scalars)?;
    if ks.len() != items.len() {
        return Err(CoreError::Shape(format!(
            "{} scalars for {} items",
            ks.len(),
            items.len()
        )));
    }
    check_out(out, items.len())?;
    let err = out
        .par_chunks_mut(32 * CHUNK)
        .zip(ks.par_chunks(CHUNK))
        .enumerate()
        .find_map_first(|(c, (buf, ks))| {
            let qs = ks
                .iter()
                .enumerate()
                .map(|(j, k)| {
                    scalar(k).map(|s| hash_to_group(items.get(c * CHUNK + j), dst) * half(&s))
                })
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

/// `a * b + c mod l` in constant time (a proof's response from its secret nonce and key,
/// which must not meet variable-time big-integer arithmetic). Scalars canonical, zero allowed.
pub fn scalar_muladd(a: &[u8; 32], b: &[u8; 32], c: &[u8; 32]) -> Result<[u8; 32]> {
    Ok((public_scalar(a)? * public_scalar(b)? + public_scalar(c)?).to_bytes())
}

/// Points per rayon task of a multi-scalar multiplication (Pippenger's gain grows with the
/// batch, so tasks stay large).
const MSM_CHUNK: usize = 1024;

/// `sum_i s_i * P_i`, encoded, for public scalars (canonical, zero allowed) and public
/// elements (validated as [`mul_batch`] does, naming the first bad one). Variable time: only
/// for values every party may see (composites and proofs), never for a secret scalar.
pub fn msm_vartime(scalars: &[u8], points: &[u8]) -> Result<[u8; 32]> {
    let ss = elements(scalars)?;
    let ps = elements(points)?;
    if ss.len() != ps.len() {
        return Err(CoreError::Shape(format!(
            "{} scalars for {} elements",
            ss.len(),
            ps.len()
        )));
    }
    let parts = ss
        .par_chunks(MSM_CHUNK)
        .zip(ps.par_chunks(MSM_CHUNK))
        .enumerate()
        .map(|(c, (sc, pc))| {
            let s = sc.iter().map(public_scalar).collect::<Result<Vec<_>>>()?;
            let p = pc
                .iter()
                .enumerate()
                .map(|(j, b)| decode(b, c * MSM_CHUNK + j))
                .collect::<Result<Vec<_>>>()?;
            Ok(RistrettoPoint::vartime_multiscalar_mul(&s, &p))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(parts
        .into_iter()
        .fold(RistrettoPoint::identity(), |acc, p| acc + p)
        .compress()
        .to_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use curve25519_dalek::constants::RISTRETTO_BASEPOINT_POINT;
    use proptest::prelude::*;

    fn point(k: u64) -> RistrettoPoint {
        RISTRETTO_BASEPOINT_POINT * Scalar::from(k)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        /// The multi-scalar product equals the sum of single products (plaintext reference),
        /// across the rayon task boundary too.
        #[test]
        fn msm_matches_the_sum_of_products(
            ks in proptest::collection::vec((1u64..u64::MAX, any::<u64>()), 0..40),
            long in any::<bool>(),
        ) {
            let mut pairs = ks.clone();
            if long {
                let n = MSM_CHUNK + 3;
                pairs = (0..n).map(|i| ks.get(i % ks.len().max(1)).copied()
                    .unwrap_or((i as u64 + 1, i as u64))).collect();
            }
            let mut ss = Vec::new();
            let mut ps = Vec::new();
            let mut want = RistrettoPoint::identity();
            for (p, s) in &pairs {
                let (p, s) = (point(*p), Scalar::from(*s));
                want += p * s;
                ss.extend_from_slice(s.as_bytes());
                ps.extend_from_slice(p.compress().as_bytes());
            }
            prop_assert_eq!(msm_vartime(&ss, &ps).unwrap(), want.compress().to_bytes());
        }

        #[test]
        fn hash_to_scalar_batch_matches_one_at_a_time(
            items in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..50), 0..20)
        ) {
            let data: Vec<u8> = items.concat();
            let mut offsets = vec![0i64];
            for it in &items {
                offsets.push(offsets.last().unwrap() + it.len() as i64);
            }
            let it = Items::new(&data, &offsets).unwrap();
            let mut out = vec![0u8; 32 * items.len()];
            hash_to_scalar_batch_into(&it, b"dst", &mut out).unwrap();
            for (i, x) in items.iter().enumerate() {
                let want = hash_to_scalar(x, b"dst").to_bytes();
                prop_assert_eq!(&out[32 * i..32 * i + 32], &want[..]);
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(16))]

        /// Per-element products (and unblinding) equal one multiplication at a time, across
        /// the rayon task boundary.
        #[test]
        fn mul_each_matches_one_at_a_time(
            seeds in proptest::collection::vec(1u64..u64::MAX, 1..8),
            long in any::<bool>(),
        ) {
            let n = if long { CHUNK + 5 } else { seeds.len() };
            let ks: Vec<Scalar> = (0..n)
                .map(|i| Scalar::from(seeds[i % seeds.len()]) * Scalar::from(i as u64 + 3))
                .collect();
            let pts: Vec<RistrettoPoint> = (0..n).map(|i| point(i as u64 + 1)).collect();
            let sb: Vec<u8> = ks.iter().flat_map(|k| k.to_bytes()).collect();
            let pb: Vec<u8> = pts.iter().flat_map(|p| p.compress().to_bytes()).collect();
            let mut out = vec![0u8; pb.len()];
            mul_each_into(&sb, &pb, false, &mut out).unwrap();
            let mut back = vec![0u8; pb.len()];
            mul_each_into(&sb, &out, true, &mut back).unwrap();
            prop_assert_eq!(&back, &pb);
            for i in 0..n {
                let want = (pts[i] * ks[i]).compress().to_bytes();
                prop_assert_eq!(&out[32 * i..32 * i + 32], &want[..]);
            }
            let items: Vec<Vec<u8>> = (0..n).map(|i| format!("id{i}").into_bytes()).collect();
            let data = items.concat();
            let mut offsets = vec![0i64];
            for it in &items {
                offsets.push(offsets.last().unwrap() + it.len() as i64);
            }
            let it = Items::new(&data, &offsets).unwrap();
            let mut hm = vec![0u8; 32 * n];
            hash_mul_each_into(&sb, &it, b"dst", &mut hm).unwrap();
            for i in 0..n {
                let want = (hash_to_group(&items[i], b"dst") * ks[i]).compress().to_bytes();
                prop_assert_eq!(&hm[32 * i..32 * i + 32], &want[..]);
            }
        }
    }

    #[test]
    fn mul_each_refuses_bad_inputs() {
        let p = point(7).compress().to_bytes();
        let one = Scalar::ONE.to_bytes();
        let mut out = [0u8; 64];
        assert!(matches!(
            mul_each_into(&[0u8; 32], &p, false, &mut out[..32]),
            Err(CoreError::InvalidScalar(_))
        ));
        let mut pts = p.to_vec();
        pts.extend_from_slice(&[0u8; 32]);
        let mut ss = one.to_vec();
        ss.extend_from_slice(&one);
        assert!(matches!(
            mul_each_into(&ss, &pts, true, &mut out),
            Err(CoreError::InvalidElement { index: 1, .. })
        ));
        assert!(matches!(
            mul_each_into(&one, &pts, false, &mut out),
            Err(CoreError::Shape(_))
        ));
        let it = Items::new(b"ab", &[0, 1, 2]).unwrap();
        assert!(matches!(
            hash_mul_each_into(&one, &it, b"dst", &mut out),
            Err(CoreError::Shape(_))
        ));
    }

    #[test]
    fn scalar_muladd_is_arithmetic_mod_l() {
        let (a, b, c) = (Scalar::from(7u64), -Scalar::from(3u64), Scalar::from(5u64));
        let got = scalar_muladd(&a.to_bytes(), &b.to_bytes(), &c.to_bytes()).unwrap();
        assert_eq!(got, (-Scalar::from(16u64)).to_bytes());
        assert!(matches!(
            scalar_muladd(&[0xff; 32], &b.to_bytes(), &c.to_bytes()),
            Err(CoreError::InvalidScalar(_))
        ));
    }

    #[test]
    fn msm_refuses_bad_inputs() {
        let p = point(7).compress().to_bytes();
        let one = Scalar::ONE.to_bytes();
        // a scalar at or above the group order
        assert!(matches!(
            msm_vartime(&[0xff; 32], &p),
            Err(CoreError::InvalidScalar(_))
        ));
        // the identity and a non-canonical encoding, named by index
        let mut pts = p.to_vec();
        pts.extend_from_slice(&[0u8; 32]);
        let mut ss = one.to_vec();
        ss.extend_from_slice(&one);
        assert!(matches!(
            msm_vartime(&ss, &pts),
            Err(CoreError::InvalidElement { index: 1, .. })
        ));
        assert!(matches!(
            msm_vartime(&one, &[0xff; 32]),
            Err(CoreError::InvalidElement { index: 0, .. })
        ));
        // shapes
        assert!(matches!(msm_vartime(&ss, &p), Err(CoreError::Shape(_))));
        assert!(matches!(
            msm_vartime(&one[..31], &p),
            Err(CoreError::Shape(_))
        ));
        // the empty sum is the identity; a zero scalar is allowed
        assert_eq!(msm_vartime(&[], &[]).unwrap(), [0u8; 32]);
        assert_eq!(msm_vartime(&[0u8; 32], &p).unwrap(), [0u8; 32]);
    }
}
