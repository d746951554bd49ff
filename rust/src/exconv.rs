//! The dual of an expand-convolute code (Raghuraman, Rindal and Tanguy, "Expand-Convolute Codes
//! for Pseudorandom Correlation Generators from LPN", CRYPTO 2023): the compressing map that
//! turns a sparse-noise correlation of length `n` into a pseudorandom one of length `k`, with
//! `n >= 2·k` (dual LPN).
//!
//! Systematic form: with `x = (x_0 | x_1)`, `x_0` the first `k` entries and `x_1` the other
//! `p = n - k` (the parity part), `y = x_0 + B·(C·x_1)`.
//! - `C` is a convolution, applied twice with independent coefficients: every parity entry `i`
//!   is added to each of the next `WIDTH` entries whose coefficient bit is set, and always to
//!   the entry `WIDTH + 1` after it (indices wrap at `p`, so that the last entries spread too).
//! - `B` is `k × p` with `WEIGHT` ones per row: `REGULAR` of them one in each of `REGULAR`
//!   equal bands of the parity part, the rest anywhere in it.
//!
//! Both the coefficients and the positions come from AES in counter mode under a public seed,
//! each chunk of rows from its own part of the stream so that the result does not depend on
//! how the work is split. A position is `(r·len) >> 32` for a 32-bit `r`: its distribution is
//! within `len / 2^32` of uniform, immaterial to a public code.
//!
//! Security: the authors estimate the minimum distance of this code (weight 7, width 24,
//! `n = 2·k`) at `0.15·n`. Against the linear tests of dual LPN, regular noise of weight `t`
//! leaves a bias of `(1 - 2·0.15)^t`, so `t = 128 / -log2(0.7) = 249` noisy positions give
//! 128-bit security: `MIN_NOISE` rounds it up to 256. Compared with the dual expand-accumulate
//! code of weight 21 (Boyle, Couteau, Gilboa, Ishai, Kohl, Resch and Scholl, CRYPTO 2022),
//! it reads 7 random entries per output instead of 21, over half the vector, and needs 256
//! noisy positions instead of 400: about a quarter of the time per output here.

use rayon::prelude::*;

use crate::block::{derive, Block, Cipher};

/// Ones per row of the expander.
pub const WEIGHT: usize = 7;
/// Of those, the ones drawn one per band.
pub const REGULAR: usize = 4;
/// Random coefficients of the convolution per entry.
pub const WIDTH: usize = 24;
/// Noisy positions needed for 128-bit security with this code (see the module note).
pub const MIN_NOISE: usize = 256;

const ROWS_PER_CHUNK: usize = 4096;

/// The keys of the code's three public streams (expander, two convolutions) from its seed.
fn keys(seed: Block) -> [Cipher; 3] {
    let s = seed.to_le_bytes();
    [
        Cipher::new(derive(&s, "exconv/expander", 0)),
        Cipher::new(derive(&s, "exconv/convolution", 0)),
        Cipher::new(derive(&s, "exconv/convolution", 1)),
    ]
}

/// 32-bit words `start ..` of the stream under `c` (`start` a multiple of 4), `n` of them.
fn words(c: &Cipher, start: usize, out: &mut Vec<u32>, n: usize) {
    debug_assert!(start.is_multiple_of(4));
    let mut blocks = vec![0u128; n.div_ceil(4)];
    c.fill((start / 4) as u128, &mut blocks);
    out.resize(4 * blocks.len(), 0);
    for (b, w) in blocks.iter().zip(out.chunks_exact_mut(4)) {
        w[0] = *b as u32;
        w[1] = (b >> 32) as u32;
        w[2] = (b >> 64) as u32;
        w[3] = (b >> 96) as u32;
    }
    out.truncate(n);
}

#[inline(always)]
fn below(r: u32, len: usize) -> usize {
    ((r as u64 * len as u64) >> 32) as usize
}

/// The positions of rows `first .. first + rows` of `B` over a parity part of `p` entries,
/// `WEIGHT` per row.
fn positions(c: &Cipher, first: usize, rows: usize, p: usize, out: &mut Vec<u32>) {
    words(c, first * WEIGHT, out, rows * WEIGHT);
    let band = p / REGULAR;
    for row in out.chunks_exact_mut(WEIGHT) {
        for (j, r) in row.iter_mut().enumerate() {
            *r = if j < REGULAR {
                (j * band + below(*r, band)) as u32
            } else {
                below(*r, p) as u32
            };
        }
    }
}

/// The convolution's coefficients: `WIDTH` random bits per entry.
fn coefficients(c: &Cipher, p: usize) -> Vec<u32> {
    let mut coef = Vec::new();
    words(c, 0, &mut coef, p);
    for w in coef.iter_mut() {
        *w &= (1 << WIDTH) - 1;
    }
    coef
}

/// One pass of the convolution over the parity part, in place: in order,
/// `y_j = x_j + y_(j-WIDTH-1) + Σ_(d <= WIDTH) a_(j,d)·y_(j-d)` over the entries before `j`,
/// then, for the first `WIDTH + 1` entries, the terms that reach before the start wrap to the
/// end (read as the first step left them). Bit `d - 1` of `coef[j]` is `a_(j,d)`.
fn convolve(coef: &[u32], x: &mut [Block]) {
    assert_eq!(coef.len(), x.len());
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F (checked just above).
            unsafe { pull_avx512(coef, x) };
            wrap(coef, x);
            return;
        }
    }
    pull_portable(coef, x);
    wrap(coef, x);
}

/// The first step of `convolve`, one entry at a time.
fn pull_portable(coef: &[u32], x: &mut [Block]) {
    for j in 0..x.len() {
        let m = coef[j];
        let mut s = x[j];
        for d in 1..=WIDTH.min(j) {
            // branch-free: the coefficients are coin flips, a branch would miss half the time
            s ^= x[j - d] & (((m >> (d - 1)) & 1) as u128).wrapping_neg();
        }
        if j > WIDTH {
            s ^= x[j - WIDTH - 1];
        }
        x[j] = s;
    }
}

/// The first step of `convolve` with AVX-512. The entries from two to `WIDTH + 1` back sit in
/// six registers (four blocks each, the nearest in the lowest lane of the first), the last
/// entry in a seventh: per entry, six masked moves pick the terms, XORs and two lane shuffles
/// sum them, and six lane shifts move the window on. Keeping the last entry apart lets the
/// sum for the next entry start before this one is done: the next entry waits only on one
/// masked XOR. Same result as `pull_portable`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn pull_avx512(coef: &[u32], x: &mut [Block]) {
    use std::arch::x86_64::*;
    // a nibble of coefficients (one per block) to the mask of its eight 64-bit lanes
    const LANES: [u8; 16] = {
        let mut t = [0u8; 16];
        let mut i = 0;
        while i < 16 {
            let mut b = 0;
            while b < 4 {
                if (i >> b) & 1 == 1 {
                    t[i] |= 3 << (2 * b);
                }
                b += 1;
            }
            i += 1;
        }
        t
    };
    let zero = _mm512_setzero_si512();
    let (mut w0, mut w1, mut w2, mut w3, mut w4, mut w5) = (zero, zero, zero, zero, zero, zero);
    let mut prev = _mm_setzero_si128();
    let ptr = x.as_mut_ptr() as *mut __m128i;
    for (j, &c) in coef.iter().enumerate() {
        // bit i of the window's mask is the term d = i + 2; the last, d = WIDTH + 1, is fixed
        let m = ((c >> 1) | (1 << (WIDTH - 1))) as usize;
        let t0 = _mm512_maskz_mov_epi64(LANES[m & 15], w0);
        let t1 = _mm512_maskz_mov_epi64(LANES[(m >> 4) & 15], w1);
        let t2 = _mm512_maskz_mov_epi64(LANES[(m >> 8) & 15], w2);
        let t3 = _mm512_maskz_mov_epi64(LANES[(m >> 12) & 15], w3);
        let t4 = _mm512_maskz_mov_epi64(LANES[(m >> 16) & 15], w4);
        let t5 = _mm512_maskz_mov_epi64(LANES[(m >> 20) & 15], w5);
        let acc = _mm512_xor_si512(
            _mm512_xor_si512(t0, t1),
            _mm512_xor_si512(_mm512_xor_si512(t2, t3), _mm512_xor_si512(t4, t5)),
        );
        let h = _mm512_xor_si512(acc, _mm512_shuffle_i64x2::<0x4E>(acc, acc));
        let h = _mm512_xor_si512(h, _mm512_shuffle_i64x2::<0xB1>(h, h));
        let part = _mm_xor_si128(_mm512_castsi512_si128(h), _mm_loadu_si128(ptr.add(j)));
        // the window moves on by the last entry while this one is being finished
        let y = _mm512_broadcast_i32x4(prev);
        w5 = _mm512_alignr_epi64::<6>(w5, w4);
        w4 = _mm512_alignr_epi64::<6>(w4, w3);
        w3 = _mm512_alignr_epi64::<6>(w3, w2);
        w2 = _mm512_alignr_epi64::<6>(w2, w1);
        w1 = _mm512_alignr_epi64::<6>(w1, w0);
        w0 = _mm512_alignr_epi64::<6>(w0, y);
        let near = _mm_and_si128(prev, _mm_set1_epi64x(-((c & 1) as i64)));
        prev = _mm_xor_si128(part, near);
        _mm_storeu_si128(ptr.add(j), prev);
    }
}

/// The second step of `convolve`: the wrapped terms of the first `WIDTH + 1` entries.
fn wrap(coef: &[u32], x: &mut [Block]) {
    let p = x.len();
    let add: Vec<Block> = (0..(WIDTH + 1).min(p))
        .map(|j| {
            let mut s = 0u128;
            for d in j + 1..=WIDTH + 1 {
                if d == WIDTH + 1 || (coef[j] >> (d - 1)) & 1 == 1 {
                    s ^= x[(p * (WIDTH + 1) + j - d) % p];
                }
            }
            s
        })
        .collect();
    for (j, a) in add.into_iter().enumerate() {
        x[j] ^= a;
    }
}

/// `x_0 + B·(C·x_1)` into `x[..k]`; the parity part is overwritten with `C·x_1`.
///
/// # Panics
/// If `x.len() < 2·k` or `x.len() >= 2^32`.
pub fn dual_encode(x: &mut [Block], k: usize, seed: Block) {
    let n = x.len();
    assert!(n >= 2 * k && n < 1 << 32, "exconv: needs 2·k <= n < 2^32");
    let (out, parity) = x.split_at_mut(k);
    convolve_and_expand(out, parity, seed);
}

/// The encoding of a sparse vector of length `n`, given by its nonzero entries (position,
/// value; a position named twice adds up): the `k` outputs. `scratch` (`n - k` blocks,
/// overwritten) holds the parity part while it is convolved, so that a caller that has
/// just encoded another vector of the same length can lend that vector's parity part.
///
/// # Panics
/// If `n < 2·k`, `n >= 2^32`, `scratch` is not `n - k` long or a position is `n` or more.
pub fn dual_encode_sparse(
    n: usize,
    k: usize,
    seed: Block,
    entries: &[(usize, Block)],
    scratch: &mut [Block],
) -> Vec<Block> {
    assert!(n >= 2 * k && n < 1 << 32, "exconv: needs 2·k <= n < 2^32");
    assert_eq!(
        scratch.len(),
        n - k,
        "exconv: the scratch holds the parity part"
    );
    let mut out = crate::block::zeroed(k);
    scratch.fill(0);
    for &(pos, v) in entries {
        assert!(pos < n, "exconv: a position past the vector");
        if pos < k {
            out[pos] ^= v;
        } else {
            scratch[pos - k] ^= v;
        }
    }
    convolve_and_expand(&mut out, scratch, seed);
    out
}

/// `out += B·(C·parity)`, the parity part convolved in place.
fn convolve_and_expand(out: &mut [Block], parity: &mut [Block], seed: Block) {
    let [expander, c0, c1] = keys(seed);
    let p = parity.len();
    convolve(&coefficients(&c0, p), parity);
    convolve(&coefficients(&c1, p), parity);
    let parity = &*parity;
    out.par_chunks_mut(ROWS_PER_CHUNK)
        .enumerate()
        .for_each(|(c, rows)| {
            let mut pos = Vec::with_capacity(rows.len() * WEIGHT);
            positions(&expander, c * ROWS_PER_CHUNK, rows.len(), p, &mut pos);
            // The reads are random over a vector larger than the near caches: ask for each
            // one a few rows ahead so that many misses are in flight at once.
            const AHEAD: usize = 4 * WEIGHT;
            for &q in pos.iter().take(AHEAD) {
                crate::block::prefetch(&parity[q as usize]);
            }
            for (i, y) in rows.iter_mut().enumerate() {
                let mut s = *y;
                for j in 0..WEIGHT {
                    let k = i * WEIGHT + j;
                    if let Some(&q) = pos.get(k + AHEAD) {
                        crate::block::prefetch(&parity[q as usize]);
                    }
                    s ^= parity[pos[k] as usize];
                }
                *y = s;
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The code written out plainly: each pass as the recursion of its definition, with
    /// explicit branches, then the wrapped terms from a copy; the matrix `B` row by row.
    fn reference(x: &[Block], k: usize, seed: Block) -> Vec<Block> {
        let [expander, c0, c1] = keys(seed);
        let mut y = x[k..].to_vec();
        let p = y.len();
        for c in [&c0, &c1] {
            let coef = coefficients(c, p);
            let tap = |j: usize, d: usize| d == WIDTH + 1 || (coef[j] >> (d - 1)) & 1 == 1;
            for j in 0..p {
                for d in 1..=WIDTH + 1 {
                    if d <= j && tap(j, d) {
                        let v = y[j - d];
                        y[j] ^= v;
                    }
                }
            }
            let first = y.clone();
            for j in 0..p.min(WIDTH + 1) {
                for d in j + 1..=WIDTH + 1 {
                    if tap(j, d) {
                        y[j] ^= first[(p * (WIDTH + 1) + j - d) % p];
                    }
                }
            }
        }
        let mut pos = Vec::new();
        positions(&expander, 0, k, p, &mut pos);
        (0..k)
            .map(|i| (0..WEIGHT).fold(x[i], |s, j| s ^ y[pos[i * WEIGHT + j] as usize]))
            .collect()
    }

    #[test]
    fn both_convolutions_agree() {
        let [_, c, _] = keys(3);
        for p in [1usize, 7, 25, 26, 27, 1000] {
            let coef = coefficients(&c, p);
            let x = vector(p, 9);
            let (mut a, mut b) = (x.clone(), x.clone());
            pull_portable(&coef, &mut a);
            convolve(&coef, &mut b);
            wrap(&coef, &mut a);
            assert_eq!(a, b, "p {p}");
        }
    }

    fn vector(n: usize, salt: u128) -> Vec<Block> {
        (0..n as u128)
            .map(|i| (i ^ salt).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835))
            .collect()
    }

    #[test]
    fn matches_the_plain_reference_across_chunks() {
        // sizes across the row chunks, the convolution chunks and the wrap at the end
        for (n, k) in [
            (2, 1),
            (30, 10),
            (60, 30),
            (100, 17),
            (2 * 9000 + 3, 9000),
            (40_000, 16_385),
        ] {
            let x = vector(n, n as u128);
            let mut y = x.clone();
            dual_encode(&mut y, k, 7);
            assert_eq!(&y[..k], &reference(&x, k, 7)[..], "n {n} k {k}");
        }
    }

    #[test]
    fn linear_and_seeded() {
        let (n, k) = (20_000, 9_000);
        let (a, b) = (vector(n, 1), vector(n, 2));
        let s: Vec<Block> = a.iter().zip(&b).map(|(x, y)| x ^ y).collect();
        let enc = |v: &[Block], seed| {
            let mut v = v.to_vec();
            dual_encode(&mut v, k, seed);
            v.truncate(k);
            v
        };
        let (ea, eb, es) = (enc(&a, 3), enc(&b, 3), enc(&s, 3));
        assert!((0..k).all(|i| es[i] == ea[i] ^ eb[i]));
        assert_ne!(ea, enc(&a, 4));
    }

    #[test]
    fn a_single_noisy_entry_spreads() {
        // one 1 in the parity part reaches many outputs (the convolution's reach), and the
        // positions cover every band
        let (n, k) = (8192, 4096);
        let mut x = vec![0u128; n];
        x[k + 5] = 1;
        dual_encode(&mut x, k, 11);
        let ones = x[..k].iter().filter(|&&v| v == 1).count();
        assert!(ones > k / 4, "{ones}");
        let mut pos = Vec::new();
        let [e, _, _] = keys(11);
        positions(&e, 0, k, n - k, &mut pos);
        let band = (n - k) / REGULAR;
        for (i, &q) in pos.iter().enumerate() {
            let j = i % WEIGHT;
            if j < REGULAR {
                assert_eq!(q as usize / band, j);
            }
            assert!((q as usize) < n - k);
        }
    }

    #[test]
    fn a_sparse_vector_encodes_as_its_dense_form() {
        let (n, k) = (9000, 4000);
        let entries: Vec<(usize, Block)> = [3usize, 3999, 4000, 4001, 8999, 4001]
            .iter()
            .enumerate()
            .map(|(i, &p)| (p, (i as u128 + 1) << 70 | 5))
            .collect();
        let mut dense = vec![0u128; n];
        for &(p, v) in &entries {
            dense[p] ^= v;
        }
        let want = reference(&dense, k, 21);
        let mut scratch = vector(n - k, 4); // whatever it held before
        assert_eq!(dual_encode_sparse(n, k, 21, &entries, &mut scratch), want);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]
        #[test]
        fn any_size_and_seed_matches_the_reference(
            k in 1usize..3000,
            extra in 0usize..500,
            seed in proptest::prelude::any::<u128>(),
            salt in proptest::prelude::any::<u128>(),
        ) {
            let n = 2 * k + extra;
            let x = vector(n, salt);
            let mut y = x.clone();
            dual_encode(&mut y, k, seed);
            proptest::prop_assert_eq!(&y[..k], &reference(&x, k, seed)[..]);
        }
    }

    #[test]
    #[should_panic]
    fn refuses_a_short_vector() {
        dual_encode(&mut [0u128; 10], 6, 1);
    }
}
