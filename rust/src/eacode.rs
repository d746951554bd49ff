//! The dual of an expand-accumulate code (Boyle, Couteau, Gilboa, Ishai, Kohl, Resch and
//! Scholl, "Correlated Pseudorandomness from Expand-Accumulate Codes", CRYPTO 2022): the
//! compressing map that turns a sparse-noise VOLE of length `N` into a pseudorandom one of
//! length `m <= N / 2` (dual LPN).
//!
//! `y = B·(A·x)`: `A` accumulates (prefix XOR), `B` is an `m × N` matrix with `WEIGHT` ones
//! per row at positions drawn from AES in counter mode under a public seed. Both VOLE parties
//! apply it to their shares; it is GF(2)-linear, so `c = b + e·Δ` becomes `C = B + A·Δ`.
//! With expander weight 21 the code's minimum distance is estimated at 0.1·N by its authors'
//! implementation, so 400 noisy positions give 128-bit security against linear attacks
//! (`t = -128 / log2(1 - 2·0.1)`); see `rr22::Layout`.

use rayon::prelude::*;

use crate::block::{Block, Cipher};

pub const WEIGHT: usize = 21;

/// Noisy positions needed for 128-bit security with this code (see the module note).
pub const MIN_NOISE: usize = 400;

const ROWS_PER_CHUNK: usize = 2048;

/// `B·(A·x)` with `m` outputs; `x` is accumulated in place.
pub fn dual_encode(x: &mut [Block], m: usize, seed: Block) -> Vec<Block> {
    dual_encode_with(x, m, seed, None::<fn(usize) -> Block>).0
}

/// Also encodes a second vector given by its accumulated value at each position (`acc`),
/// reading the same positions: the receiver's sparse noise, whose prefix sums it knows
/// without storing them.
pub fn dual_encode_with<F>(
    x: &mut [Block],
    m: usize,
    seed: Block,
    acc: Option<F>,
) -> (Vec<Block>, Vec<Block>)
where
    F: Fn(usize) -> Block + Sync,
{
    assert!(x.len() < 1 << 32, "positions are 32-bit");
    let n = x.len() as u64;
    for i in 1..x.len() {
        x[i] ^= x[i - 1];
    }
    let x = &*x;
    let mut out = crate::block::zeroed(m);
    let mut out2 = if acc.is_some() {
        crate::block::zeroed(m)
    } else {
        Vec::new()
    };
    let acc = acc.as_ref();
    let cipher = Cipher::new(seed);
    let mut second: Vec<&mut [Block]> = out2.chunks_mut(ROWS_PER_CHUNK).collect();
    second.resize_with(m.div_ceil(ROWS_PER_CHUNK), Default::default);
    out.par_chunks_mut(ROWS_PER_CHUNK)
        .zip(second.into_par_iter())
        .enumerate()
        .for_each(|(c, (rows, rows2))| {
            // Each chunk draws its own part of the stream, so the result does not depend on
            // how rayon splits the work.
            let words = rows.len() * WEIGHT;
            let mut rnd = vec![0u128; words.div_ceil(2)];
            cipher.fill((c * ROWS_PER_CHUNK * WEIGHT) as u128, &mut rnd);
            let pos: Vec<u32> = (0..words)
                .map(|k| {
                    let r = (rnd[k / 2] >> (64 * (k % 2))) as u64;
                    ((r as u128 * n as u128) >> 64) as u32
                })
                .collect();
            // The reads are random over a vector far larger than the caches: ask for each
            // one a few rows ahead so that many misses are in flight at once.
            const AHEAD: usize = 4 * WEIGHT;
            for &p in pos.iter().take(AHEAD) {
                crate::block::prefetch(&x[p as usize]);
            }
            for (i, y) in rows.iter_mut().enumerate() {
                let (mut s, mut s2) = (0u128, 0u128);
                for j in 0..WEIGHT {
                    let k = i * WEIGHT + j;
                    if let Some(&q) = pos.get(k + AHEAD) {
                        crate::block::prefetch(&x[q as usize]);
                    }
                    let p = pos[k] as usize;
                    s ^= x[p];
                    if let Some(f) = acc {
                        s2 ^= f(p);
                    }
                }
                *y = s;
                if acc.is_some() {
                    rows2[i] = s2;
                }
            }
        });
    (out, out2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_and_deterministic() {
        let n = 5000;
        let a: Vec<Block> = (0..n)
            .map(|i| (i as u128).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835))
            .collect();
        let b: Vec<Block> = (0..n).map(|i| (i as u128) << 64 | 77).collect();
        let sum: Vec<Block> = a.iter().zip(&b).map(|(x, y)| x ^ y).collect();
        let ea = dual_encode(&mut a.clone(), 2000, 9);
        let eb = dual_encode(&mut b.clone(), 2000, 9);
        let es = dual_encode(&mut sum.clone(), 2000, 9);
        for i in 0..2000 {
            assert_eq!(es[i], ea[i] ^ eb[i]);
        }
        assert_eq!(ea, dual_encode(&mut a.clone(), 2000, 9));
        assert_ne!(ea, dual_encode(&mut a.clone(), 2000, 10));
    }
}
