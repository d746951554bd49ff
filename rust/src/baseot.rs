//! Base oblivious transfers: the "simplest OT" of Chou and Orlandi (2015) over ristretto255,
//! semi-honest. A handful (128) of them seed an OT extension (IKNP), which the Python layer
//! runs with AES; see `rainbridge.protocols.mpc.ot`.
//!
//! Sender: secret `a`, sends `A = aG`. Receiver, for each choice bit `c_i`: secret `b_i`,
//! sends `B_i = b_i G + c_i A` and keeps `k_i = H(i, A, B_i, b_i A)`. Sender: `k0_i = H(i, A,
//! B_i, a B_i)`, `k1_i = H(i, A, B_i, a (B_i - A))`. The receiver's key equals the sender's
//! key for its choice; the other key hides behind a Diffie-Hellman problem, and `B_i` is
//! uniform either way, so the sender learns nothing of `c_i`.

use curve25519_dalek::ristretto::RistrettoPoint;
use curve25519_dalek::scalar::Scalar;
use sha2::{Digest, Sha256};

use crate::error::{CoreError, Result};
use crate::ristretto::{decode, random_scalar, scalar};

/// Bytes of each key (an AES-128 key for the extension's PRG).
pub const KEY_BYTES: usize = 16;
const DOMAIN: &[u8] = b"rainbridge/baseot/v1";

fn key(i: usize, a: &RistrettoPoint, b: &RistrettoPoint, p: &RistrettoPoint) -> [u8; KEY_BYTES] {
    let mut h = Sha256::new();
    h.update(DOMAIN);
    h.update((i as u64).to_le_bytes());
    h.update(a.compress().as_bytes());
    h.update(b.compress().as_bytes());
    h.update(p.compress().as_bytes());
    let d = h.finalize();
    let mut out = [0u8; KEY_BYTES];
    out.copy_from_slice(&d[..KEY_BYTES]);
    out
}

/// The sender's secret scalar and its message `A` (32 bytes).
pub fn sender_setup() -> Result<([u8; 32], [u8; 32])> {
    let a = random_scalar();
    let s = scalar(&a)?;
    Ok((a, RistrettoPoint::mul_base(&s).compress().to_bytes()))
}

/// For each choice (0 or 1): the message `B_i` (32 bytes each) and the chosen key.
pub fn receiver(sender_a: &[u8; 32], choices: &[u8]) -> Result<(Vec<u8>, Vec<u8>)> {
    let a_pt = decode(sender_a, 0)?;
    let mut msgs = Vec::with_capacity(32 * choices.len());
    let mut keys = Vec::with_capacity(KEY_BYTES * choices.len());
    for (i, &c) in choices.iter().enumerate() {
        if c > 1 {
            return Err(CoreError::Shape(format!("choice {i} is {c}, not 0 or 1")));
        }
        let b = scalar(&random_scalar())?;
        let mut b_pt = RistrettoPoint::mul_base(&b);
        if c == 1 {
            b_pt += a_pt;
        }
        msgs.extend_from_slice(b_pt.compress().as_bytes());
        keys.extend_from_slice(&key(i, &a_pt, &b_pt, &(a_pt * b)));
    }
    Ok((msgs, keys))
}

/// Both keys of every transfer, from the sender's secret and the receiver's messages.
pub fn sender_keys(secret: &[u8; 32], msgs: &[u8]) -> Result<(Vec<u8>, Vec<u8>)> {
    if !msgs.len().is_multiple_of(32) {
        return Err(CoreError::Shape(
            "base OT messages are 32 bytes each".into(),
        ));
    }
    let a: Scalar = scalar(secret)?;
    let a_pt = RistrettoPoint::mul_base(&a);
    let a_a = a_pt * a;
    let mut k0 = Vec::with_capacity(msgs.len() / 2);
    let mut k1 = Vec::with_capacity(msgs.len() / 2);
    for (i, m) in msgs.chunks_exact(32).enumerate() {
        let b_pt = decode(m.try_into().expect("32-byte chunk"), i)?;
        let ab = b_pt * a;
        k0.extend_from_slice(&key(i, &a_pt, &b_pt, &ab));
        k1.extend_from_slice(&key(i, &a_pt, &b_pt, &(ab - a_a)));
    }
    Ok((k0, k1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_receiver_gets_exactly_the_key_it_chose() {
        let (secret, a) = sender_setup().unwrap();
        let choices: Vec<u8> = (0..128).map(|i| ((i * 7) % 3 == 0) as u8).collect();
        let (msgs, keys) = receiver(&a, &choices).unwrap();
        let (k0, k1) = sender_keys(&secret, &msgs).unwrap();
        for (i, &c) in choices.iter().enumerate() {
            let got = &keys[16 * i..16 * i + 16];
            let (want, other) = if c == 1 { (&k1, &k0) } else { (&k0, &k1) };
            assert_eq!(got, &want[16 * i..16 * i + 16]);
            assert_ne!(got, &other[16 * i..16 * i + 16]);
        }
    }

    #[test]
    fn malformed_messages_are_refused() {
        let (secret, a) = sender_setup().unwrap();
        assert!(receiver(&a, &[2]).is_err());
        assert!(sender_keys(&secret, &[0u8; 31]).is_err());
        assert!(sender_keys(&secret, &[0u8; 32]).is_err()); // the identity
        assert!(receiver(&[0u8; 32], &[0]).is_err());
    }
}
