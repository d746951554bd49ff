//! Correlated OT extension (IKNP, Ishai–Kilian–Nissim–Petrank 2003), semi-honest, for the
//! few ten thousand correlations that seed the silent VOLE of RR22.
//!
//! 128 base OTs run the other way: the extension's receiver is the base sender (keys `k0_i`,
//! `k1_i`), the extension's sender the base receiver (choices `s`, keys `k_{s_i}`). The
//! receiver, with choice bits `r`, sends `u^i = G(k0_i) ⊕ G(k1_i) ⊕ r` for every `i`. After a
//! bit transpose the receiver holds `t_j` and the sender `q_j = t_j ⊕ r_j·Δ` with `Δ = s`: a
//! correlated OT, that is a VOLE over GF(2) with the sender's global key `Δ`.

use rayon::prelude::*;

use crate::bits::transpose_128;
use crate::block::{from_bytes, Block, Cipher};
use crate::error::{CoreError, Result};

/// Base OTs (and so rows of the matrix).
pub const BASE: usize = 128;

/// Rounds a number of correlations up to what one extension produces (a multiple of 128).
pub fn rounded(m: usize) -> usize {
    m.div_ceil(128).max(1) * 128
}

fn expand(key: Block, blocks: usize) -> Vec<Block> {
    let mut out = vec![0u128; blocks];
    Cipher::new(key).fill(0, &mut out);
    out
}

fn row_bytes(rows: &[Vec<Block>]) -> Vec<u8> {
    let mut mat = Vec::with_capacity(rows.len() * rows[0].len() * 16);
    for r in rows {
        for b in r {
            mat.extend_from_slice(&b.to_le_bytes());
        }
    }
    mat
}

/// The receiver's message `u` (128 rows of `m / 8` bytes) and its blocks `t_j`.
/// `choices` holds `m` bits (bit `j % 8` of byte `j / 8`), `m` a multiple of 128.
pub fn receiver(
    k0: &[Block],
    k1: &[Block],
    choices: &[u8],
    m: usize,
) -> Result<(Vec<u8>, Vec<Block>)> {
    if k0.len() != BASE || k1.len() != BASE || !m.is_multiple_of(128) || choices.len() != m / 8 {
        return Err(CoreError::Shape(
            "IKNP receiver: 128 key pairs and m/8 choice bytes, m a multiple of 128".into(),
        ));
    }
    let blocks = m / 128;
    let r = from_bytes(choices);
    let rows: Vec<(Vec<Block>, Vec<Block>)> = (0..BASE)
        .into_par_iter()
        .map(|i| {
            let t = expand(k0[i], blocks);
            let g1 = expand(k1[i], blocks);
            let u = t
                .iter()
                .zip(&g1)
                .zip(&r)
                .map(|((a, b), c)| a ^ b ^ c)
                .collect();
            (t, u)
        })
        .collect();
    let (t_rows, u_rows): (Vec<_>, Vec<_>) = rows.into_iter().unzip();
    let t = from_bytes(&transpose_128(&row_bytes(&t_rows), m / 8, m)?);
    Ok((row_bytes(&u_rows), t))
}

/// The sender's blocks `q_j = t_j ⊕ r_j·Δ` from its 128 chosen keys, `Δ` and the message `u`.
pub fn sender(keys: &[Block], delta: Block, u: &[u8], m: usize) -> Result<Vec<Block>> {
    if keys.len() != BASE || !m.is_multiple_of(128) {
        return Err(CoreError::Shape(
            "IKNP sender: 128 keys, m a multiple of 128".into(),
        ));
    }
    if u.len() != BASE * m / 8 {
        return Err(CoreError::Shape(format!(
            "IKNP message holds {} bytes, expected {}",
            u.len(),
            BASE * m / 8
        )));
    }
    let blocks = m / 128;
    let rows: Vec<Vec<Block>> = (0..BASE)
        .into_par_iter()
        .map(|i| {
            let mut q = expand(keys[i], blocks);
            if (delta >> i) & 1 == 1 {
                let ui = from_bytes(&u[i * m / 8..(i + 1) * m / 8]);
                q.iter_mut().zip(&ui).for_each(|(a, b)| *a ^= b);
            }
            q
        })
        .collect();
    Ok(from_bytes(&transpose_128(&row_bytes(&rows), m / 8, m)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::random_block;

    #[test]
    fn correlation_holds() {
        let m = 1024;
        let k0: Vec<Block> = (0..BASE).map(|_| random_block()).collect();
        let k1: Vec<Block> = (0..BASE).map(|_| random_block()).collect();
        let delta = random_block();
        let chosen: Vec<Block> = (0..BASE)
            .map(|i| if (delta >> i) & 1 == 1 { k1[i] } else { k0[i] })
            .collect();
        let choices: Vec<u8> = (0..m / 8).map(|i| (i * 37 + 11) as u8).collect();
        let (u, t) = receiver(&k0, &k1, &choices, m).unwrap();
        let q = sender(&chosen, delta, &u, m).unwrap();
        for j in 0..m {
            let r = (choices[j / 8] >> (j % 8)) & 1;
            assert_eq!(
                q[j] ^ t[j],
                if r == 1 { delta } else { 0 },
                "correlation {j}"
            );
        }
        assert!(sender(&chosen, delta, &u[1..], m).is_err());
    }
}
