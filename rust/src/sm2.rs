//! SM2 digital signatures (GB/T 32918.2-2016) on the recommended curve, for the 国密 suite.
//!
//! Signing and verification come from RustCrypto's `sm2` crate: its signatures are hedged
//! (the nonce is derived RFC 6979-style from the key, the message hash and fresh OS
//! randomness), so a weak RNG cannot leak the key. `sign_with_nonce` exists only to
//! reproduce the standard's worked example with its fixed `k`; it must never be used with a
//! nonce that is not uniformly random and fresh.

use sm2::dsa::signature::{RandomizedSigner, Verifier};
use sm2::dsa::{Signature, SigningKey, VerifyingKey};
use sm2::elliptic_curve::ops::Reduce;
use sm2::elliptic_curve::point::AffineCoordinates;
use sm2::elliptic_curve::sec1::ToEncodedPoint;
use sm2::elliptic_curve::PrimeField;
use sm2::{FieldBytes, NonZeroScalar, ProjectivePoint, Scalar, U256};
use sm3::{Digest, Sm3};

use crate::error::{CoreError, Result};

/// The standard's default distinguishing identifier.
pub const DEFAULT_DISTID: &[u8] = b"1234567812345678";

// Curve constants of GB/T 32918.5 (a, b, G), as hashed into Z_A.
const A: [u8; 32] = hex32("FFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFC");
const B: [u8; 32] = hex32("28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93");
const GX: [u8; 32] = hex32("32C4AE2C1F1981195F9904466A39C9948FE30BBFF2660BE1715A4589334C74C7");
const GY: [u8; 32] = hex32("BC3736A2F4F6779C59BDCEE36B692153D0A9877CC62A474002DF32E52139F0A0");

const fn hex32(s: &str) -> [u8; 32] {
    let b = s.as_bytes();
    let mut out = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        out[i] = (nibble(b[2 * i]) << 4) | nibble(b[2 * i + 1]);
        i += 1;
    }
    out
}

const fn nibble(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        b'A'..=b'F' => c - b'A' + 10,
        _ => panic!("not a hex digit"),
    }
}

fn distid_str(distid: &[u8]) -> Result<&str> {
    // the crate takes the ID as text; the standard allows any bytes but every deployment
    // uses ASCII IDs, and an ENTL over 65535 bits is invalid
    if distid.len() > 8191 {
        return Err(CoreError::InvalidKey("the distinguishing ID is too long"));
    }
    std::str::from_utf8(distid)
        .map_err(|_| CoreError::InvalidKey("the distinguishing ID must be UTF-8"))
}

fn signing_key(private_key: &[u8], distid: &[u8]) -> Result<SigningKey> {
    if private_key.len() != 32 {
        return Err(CoreError::InvalidKey("an SM2 private key is 32 bytes"));
    }
    SigningKey::from_slice(distid_str(distid)?, private_key)
        .map_err(|_| CoreError::InvalidKey("the SM2 private key is zero or not below n - 1"))
}

fn verifying_key(public_key: &[u8], distid: &[u8]) -> Result<VerifyingKey> {
    if public_key.len() != 65 || public_key[0] != 0x04 {
        return Err(CoreError::InvalidKey(
            "an SM2 public key is 65 bytes: 04 || x || y",
        ));
    }
    VerifyingKey::from_sec1_bytes(distid_str(distid)?, public_key)
        .map_err(|_| CoreError::InvalidKey("the SM2 public key is not a point of the curve"))
}

/// The uncompressed public key (04 || x || y) of a 32-byte private key.
pub fn public_key(private_key: &[u8]) -> Result<Vec<u8>> {
    let sk = signing_key(private_key, DEFAULT_DISTID)?;
    Ok(sk
        .verifying_key()
        .to_encoded_point(false)
        .as_bytes()
        .to_vec())
}

/// A fresh private key (uniform in [1, n-2], as the standard requires).
pub fn random_private_key() -> Vec<u8> {
    loop {
        let mut b = [0u8; 32];
        getrandom::getrandom(&mut b).expect("the OS random number generator failed");
        if signing_key(&b, DEFAULT_DISTID).is_ok() {
            return b.to_vec();
        }
    }
}

/// Z_A = SM3(ENTL || ID || a || b || xG || yG || xA || yA).
pub fn za(public_key: &[u8], distid: &[u8]) -> Result<[u8; 32]> {
    verifying_key(public_key, distid)?;
    let entl = ((distid.len() * 8) as u16).to_be_bytes();
    let mut h = Sm3::new();
    h.update(entl);
    h.update(distid);
    for part in [&A, &B, &GX, &GY] {
        h.update(part);
    }
    h.update(&public_key[1..]);
    Ok(h.finalize().into())
}

/// A signature (r || s, 64 bytes) of `message` under `private_key` with identity `distid`.
pub fn sign(private_key: &[u8], distid: &[u8], message: &[u8]) -> Result<Vec<u8>> {
    Signer::new(private_key, distid)?.sign(message)
}

/// A private key ready to sign many messages: the public key and Z_A are computed once.
pub struct Signer(SigningKey);

impl Signer {
    pub fn new(private_key: &[u8], distid: &[u8]) -> Result<Self> {
        Ok(Signer(signing_key(private_key, distid)?))
    }

    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>> {
        let sig: Signature = self
            .0
            .try_sign_with_rng(&mut sm2::elliptic_curve::rand_core::OsRng, message)
            .map_err(|_| CoreError::InvalidKey("SM2 signing failed"))?;
        Ok(sig.to_bytes().to_vec())
    }

    pub fn public_key(&self) -> Vec<u8> {
        self.0
            .verifying_key()
            .to_encoded_point(false)
            .as_bytes()
            .to_vec()
    }
}

/// Whether `signature` is a valid signature of `message` under `public_key` and `distid`.
/// A malformed key is an error; a malformed or wrong signature is `false`.
pub fn verify(public_key: &[u8], distid: &[u8], message: &[u8], signature: &[u8]) -> Result<bool> {
    let vk = verifying_key(public_key, distid)?;
    let Ok(sig) = Signature::from_slice(signature) else {
        return Ok(false); // wrong length, r or s zero or not below n
    };
    Ok(vk.verify(message, &sig).is_ok())
}

/// HAZMAT: the signature with a caller-chosen nonce `k` (GB/T 32918.2 steps A1-A7), only to
/// reproduce the standard's examples. Reusing or biasing `k` reveals the private key.
pub fn sign_with_nonce(
    private_key: &[u8],
    distid: &[u8],
    message: &[u8],
    nonce: &[u8],
) -> Result<Vec<u8>> {
    let pk = public_key(private_key)?;
    let sk = signing_key(private_key, distid)?;
    let d: Scalar = *sk.as_nonzero_scalar().as_ref();
    if nonce.len() != 32 {
        return Err(CoreError::InvalidScalar("the nonce is 32 bytes"));
    }
    let k = Option::<NonZeroScalar>::from(NonZeroScalar::from_repr(*FieldBytes::from_slice(nonce)))
        .ok_or(CoreError::InvalidScalar("the nonce must be in [1, n-1]"))?;
    let mut h = Sm3::new();
    h.update(za(&pk, distid)?);
    h.update(message);
    let e = <Scalar as Reduce<U256>>::reduce_bytes(&h.finalize());
    let x1 = (ProjectivePoint::GENERATOR * *k).to_affine().x();
    let r = e + <Scalar as Reduce<U256>>::reduce_bytes(&x1);
    if bool::from(r.is_zero()) || bool::from((r + *k).is_zero()) {
        return Err(CoreError::InvalidScalar(
            "this nonce gives r = 0 or r + k = n",
        ));
    }
    let inv = Option::<Scalar>::from((d + Scalar::ONE).invert())
        .ok_or(CoreError::InvalidKey("d + 1 is not invertible"))?;
    let s = inv * (*k - r * d);
    if bool::from(s.is_zero()) {
        return Err(CoreError::InvalidScalar("this nonce gives s = 0"));
    }
    let mut out = r.to_repr().to_vec();
    out.extend_from_slice(&s.to_repr());
    Ok(out)
}
