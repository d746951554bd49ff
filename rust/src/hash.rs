//! Hashing to bytes: expand_message_xmd with SHA-512 (RFC 9380 §5.3.1).

use sha2::{Digest, Sha512};

/// expand_message_xmd(msg, dst, LEN) with SHA-512, for LEN <= 64 (one block of output),
/// which is all hash-to-ristretto255 (RFC 9497) needs. `dst` must be 1..=255 bytes.
pub fn expand_message_xmd_sha512<const LEN: usize>(msg: &[u8], dst: &[u8]) -> [u8; LEN] {
    const { assert!(LEN <= 64 && LEN > 0) };
    debug_assert!(!dst.is_empty() && dst.len() <= 255);
    let dst_len = [dst.len() as u8];
    let mut h = Sha512::new();
    h.update([0u8; 128]); // Z_pad: one SHA-512 block of zeros
    h.update(msg);
    h.update((LEN as u16).to_be_bytes());
    h.update([0u8]);
    h.update(dst);
    h.update(dst_len);
    let b0 = h.finalize();
    let mut h = Sha512::new();
    h.update(b0);
    h.update([1u8]);
    h.update(dst);
    h.update(dst_len);
    let b1 = h.finalize();
    let mut out = [0u8; LEN];
    out.copy_from_slice(&b1[..LEN]);
    out
}

/// Longer outputs (several blocks), for the published expander vectors and later OPRF needs.
pub fn expand_message_xmd_sha512_vec(msg: &[u8], dst: &[u8], len: usize) -> Vec<u8> {
    assert!(len <= 255 * 64 && !dst.is_empty() && dst.len() <= 255);
    let ell = len.div_ceil(64);
    let dst_len = [dst.len() as u8];
    let mut h = Sha512::new();
    h.update([0u8; 128]);
    h.update(msg);
    h.update((len as u16).to_be_bytes());
    h.update([0u8]);
    h.update(dst);
    h.update(dst_len);
    let b0 = h.finalize();
    let mut out = Vec::with_capacity(ell * 64);
    let mut prev = [0u8; 64];
    for i in 1..=ell {
        let mut h = Sha512::new();
        if i == 1 {
            h.update(b0);
        } else {
            let x: Vec<u8> = b0.iter().zip(prev.iter()).map(|(a, b)| a ^ b).collect();
            h.update(x);
        }
        h.update([i as u8]);
        h.update(dst);
        h.update(dst_len);
        prev.copy_from_slice(&h.finalize());
        out.extend_from_slice(&prev);
    }
    out.truncate(len);
    out
}
