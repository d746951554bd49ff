//! Eight X25519 Montgomery ladders at once in AVX-512 IFMA lanes.
//!
//! A field element mod p = 2^255 - 19 is five limbs in radix 2^52 (the last limb holds the
//! top 47 bits), and a vector register holds the same limb of eight independent elements, so
//! every instruction advances eight ladders. `vpmadd52luq` / `vpmadd52huq` multiply the low
//! 52 bits of two lanes and add the low / high 52 bits of the 104-bit product: exactly the
//! partial products of radix-2^52 schoolbook multiplication.
//!
//! Invariant between operations ("normalised"): limbs 0..3 < 2^52, limb 4 < 2^47 + 2^6, so
//! every limb is a valid IFMA input and the value is below 2^255 + 2^214 < 2p. The tests drive
//! every operation with limbs at (and beyond: limb 4 up to 2^47 + 2^12) these bounds against
//! a plain big-integer reference.
//!
//! Constant time: the ladder's conditional swaps are mask blends computed from the scalar
//! bits; there is no secret-dependent branch or memory index. The same function as the
//! portable path, checked lane against lane in the tests.

// Limb loops index several arrays in step; iterators would hide the arithmetic.
#![allow(clippy::needless_range_loop)]

#[cfg(target_arch = "x86_64")]
mod imp {
    use std::arch::x86_64::*;

    const M52: u64 = (1 << 52) - 1;
    const M47: u64 = (1 << 47) - 1;

    type V = __m512i;

    #[derive(Clone, Copy)]
    pub(super) struct Fe([V; 5]);

    #[inline]
    #[target_feature(enable = "avx512f,avx512ifma")]
    unsafe fn splat(x: u64) -> V {
        _mm512_set1_epi64(x as i64)
    }

    /// Carries so that the result is normalised; inputs limbs must be below 2^63.
    #[inline]
    #[target_feature(enable = "avx512f,avx512ifma")]
    unsafe fn normalise(mut c: [V; 5]) -> Fe {
        let m52 = splat(M52);
        let m47 = splat(M47);
        // Start at the top limb, whose spare bits absorb the last carry.
        let t = _mm512_srli_epi64(c[4], 47);
        c[4] = _mm512_and_si512(c[4], m47);
        c[0] = _mm512_madd52lo_epu64(c[0], t, splat(19));
        for i in 0..4 {
            let carry = _mm512_srli_epi64(c[i], 52);
            c[i] = _mm512_and_si512(c[i], m52);
            c[i + 1] = _mm512_add_epi64(c[i + 1], carry);
        }
        Fe(c)
    }

    #[inline]
    #[target_feature(enable = "avx512f,avx512ifma")]
    unsafe fn add(a: &Fe, b: &Fe) -> Fe {
        let mut c = a.0;
        for (ci, bi) in c.iter_mut().zip(b.0.iter()) {
            *ci = _mm512_add_epi64(*ci, *bi);
        }
        normalise(c)
    }

    /// a - b + 2p, limb by limb: 2p's limbs dominate any normalised b's, so no lane underflows.
    #[inline]
    #[target_feature(enable = "avx512f,avx512ifma")]
    unsafe fn sub(a: &Fe, b: &Fe) -> Fe {
        const TWO_P: [u64; 5] = [
            (1 << 53) - 38,
            (1 << 53) - 2,
            (1 << 53) - 2,
            (1 << 53) - 2,
            (1 << 48) - 2,
        ];
        let mut c = a.0;
        for i in 0..5 {
            c[i] = _mm512_sub_epi64(_mm512_add_epi64(c[i], splat(TWO_P[i])), b.0[i]);
        }
        normalise(c)
    }

    #[inline]
    #[target_feature(enable = "avx512f,avx512ifma")]
    unsafe fn mul(a: &Fe, b: &Fe) -> Fe {
        let zero = _mm512_setzero_si512();
        // Separate low and high accumulators give the multiply-adds independent chains.
        let mut lo = [zero; 10];
        let mut hi = [zero; 10];
        for i in 0..5 {
            for j in 0..5 {
                lo[i + j] = _mm512_madd52lo_epu64(lo[i + j], a.0[i], b.0[j]);
                hi[i + j + 1] = _mm512_madd52hi_epu64(hi[i + j + 1], a.0[i], b.0[j]);
            }
        }
        let mut z = [zero; 10];
        for k in 0..10 {
            z[k] = _mm512_add_epi64(lo[k], hi[k]);
        }
        reduce(z)
    }

    /// a^2 with 15 partial products instead of 25: cross terms once, then doubled.
    #[inline]
    #[target_feature(enable = "avx512f,avx512ifma")]
    unsafe fn sqr(a: &Fe) -> Fe {
        let zero = _mm512_setzero_si512();
        let mut lo = [zero; 10];
        let mut hi = [zero; 10];
        for i in 0..5 {
            for j in i + 1..5 {
                lo[i + j] = _mm512_madd52lo_epu64(lo[i + j], a.0[i], a.0[j]);
                hi[i + j + 1] = _mm512_madd52hi_epu64(hi[i + j + 1], a.0[i], a.0[j]);
            }
        }
        let mut z = [zero; 10];
        for k in 0..10 {
            let cross = _mm512_add_epi64(lo[k], hi[k]);
            z[k] = _mm512_add_epi64(cross, cross);
        }
        for i in 0..5 {
            z[2 * i] = _mm512_madd52lo_epu64(z[2 * i], a.0[i], a.0[i]);
            z[2 * i + 1] = _mm512_madd52hi_epu64(z[2 * i + 1], a.0[i], a.0[i]);
        }
        reduce(z)
    }

    /// a * k for a small constant k < 2^20 (the ladder's a24 = 121665): 10 multiply-adds.
    #[inline]
    #[target_feature(enable = "avx512f,avx512ifma")]
    unsafe fn mul_small(a: &Fe, k: u64) -> Fe {
        let zero = _mm512_setzero_si512();
        let kv = splat(k);
        let mut c = [zero; 5];
        let mut h = [zero; 5];
        for i in 0..5 {
            c[i] = _mm512_madd52lo_epu64(zero, a.0[i], kv);
            h[i] = _mm512_madd52hi_epu64(zero, a.0[i], kv);
        }
        for i in 0..4 {
            c[i + 1] = _mm512_add_epi64(c[i + 1], h[i]);
        }
        // h[4] sits at 2^260 = 608 (mod p)
        c[0] = _mm512_madd52lo_epu64(c[0], h[4], splat(608));
        normalise(c)
    }

    /// Ten columns (each below 2^57) of a product, reduced mod p and normalised.
    #[inline]
    #[target_feature(enable = "avx512f,avx512ifma")]
    unsafe fn reduce(mut z: [V; 10]) -> Fe {
        let zero = _mm512_setzero_si512();
        // Bring the upper columns below 2^52 so they can be IFMA inputs for the fold.
        let m52 = splat(M52);
        for k in 5..9 {
            let carry = _mm512_srli_epi64(z[k], 52);
            z[k] = _mm512_and_si512(z[k], m52);
            z[k + 1] = _mm512_add_epi64(z[k + 1], carry);
        }
        let z10 = _mm512_srli_epi64(z[9], 52);
        z[9] = _mm512_and_si512(z[9], m52);
        // 2^260 = 2^5 * 2^255 = 608 (mod p): column k + 5 folds into column k times 608.
        let c608 = splat(608);
        let mut c = [zero; 5];
        let mut h = [zero; 5];
        for k in 0..5 {
            c[k] = _mm512_madd52lo_epu64(z[k], z[k + 5], c608);
            h[k] = _mm512_madd52hi_epu64(zero, z[k + 5], c608);
        }
        for k in 0..4 {
            c[k + 1] = _mm512_add_epi64(c[k + 1], h[k]);
        }
        // h[4] sits at 2^260 again, z10 at 2^520 = 608^2. (Within the normalised bounds
        // column 9 stays below 2^44, so z10 is zero; the fold keeps `reduce` correct for any
        // columns below 2^57 all the same.)
        c[0] = _mm512_madd52lo_epu64(c[0], h[4], c608);
        c[0] = _mm512_madd52lo_epu64(c[0], z10, splat(608 * 608));
        normalise(c)
    }

    #[inline]
    #[target_feature(enable = "avx512f,avx512ifma")]
    unsafe fn sqr_n(a: &Fe, n: usize) -> Fe {
        let mut r = *a;
        for _ in 0..n {
            r = sqr(&r);
        }
        r
    }

    /// z^(p - 2), the classic addition chain (254 squarings, 11 multiplications).
    #[target_feature(enable = "avx512f,avx512ifma")]
    unsafe fn invert(z: &Fe) -> Fe {
        let z2 = sqr_n(z, 1);
        let z9 = mul(&sqr_n(&z2, 2), z);
        let z11 = mul(&z9, &z2);
        let z_5_0 = mul(&sqr_n(&z11, 1), &z9);
        let z_10_0 = mul(&sqr_n(&z_5_0, 5), &z_5_0);
        let z_20_0 = mul(&sqr_n(&z_10_0, 10), &z_10_0);
        let z_40_0 = mul(&sqr_n(&z_20_0, 20), &z_20_0);
        let z_50_0 = mul(&sqr_n(&z_40_0, 10), &z_10_0);
        let z_100_0 = mul(&sqr_n(&z_50_0, 50), &z_50_0);
        let z_200_0 = mul(&sqr_n(&z_100_0, 100), &z_100_0);
        let z_250_0 = mul(&sqr_n(&z_200_0, 50), &z_50_0);
        mul(&sqr_n(&z_250_0, 5), &z11)
    }

    #[inline]
    #[target_feature(enable = "avx512f,avx512ifma")]
    unsafe fn blend(m: __mmask8, a: &Fe, b: &Fe) -> Fe {
        let mut r = a.0;
        for i in 0..5 {
            r[i] = _mm512_mask_blend_epi64(m, a.0[i], b.0[i]);
        }
        Fe(r)
    }

    #[target_feature(enable = "avx512f,avx512ifma")]
    unsafe fn load(us: &[[u8; 32]; 8]) -> Fe {
        let mut limbs = [[0u64; 8]; 5];
        for (lane, u) in us.iter().enumerate() {
            let w = |i: usize| u64::from_le_bytes(u[8 * i..8 * i + 8].try_into().unwrap());
            let (w0, w1, w2, w3) = (w(0), w(1), w(2), w(3));
            // RFC 7748: the top bit of u is ignored; u >= p is accepted and reduced.
            limbs[0][lane] = w0 & M52;
            limbs[1][lane] = ((w0 >> 52) | (w1 << 12)) & M52;
            limbs[2][lane] = ((w1 >> 40) | (w2 << 24)) & M52;
            limbs[3][lane] = ((w2 >> 28) | (w3 << 36)) & M52;
            limbs[4][lane] = (w3 >> 16) & M47;
        }
        let mut v = [_mm512_setzero_si512(); 5];
        for i in 0..5 {
            v[i] = _mm512_loadu_si512(limbs[i].as_ptr() as *const _);
        }
        Fe(v)
    }

    /// Fully reduces mod p and writes eight 32-byte little-endian encodings.
    #[target_feature(enable = "avx512f,avx512ifma")]
    unsafe fn store(a: &Fe, out: &mut [[u8; 32]; 8]) {
        let a = normalise(a.0);
        // w = a + 19; if w >= 2^255 then a >= p and the canonical value is w - 2^255.
        let mut w = a.0;
        w[0] = _mm512_add_epi64(w[0], splat(19));
        let m52 = splat(M52);
        for i in 0..4 {
            let carry = _mm512_srli_epi64(w[i], 52);
            w[i] = _mm512_and_si512(w[i], m52);
            w[i + 1] = _mm512_add_epi64(w[i + 1], carry);
        }
        let ge_p = _mm512_test_epi64_mask(w[4], splat(1 << 47));
        w[4] = _mm512_and_si512(w[4], splat(M47));
        let r = blend(ge_p, &a, &Fe(w));
        let mut limbs = [[0u64; 8]; 5];
        for i in 0..5 {
            _mm512_storeu_si512(limbs[i].as_mut_ptr() as *mut _, r.0[i]);
        }
        for (lane, o) in out.iter_mut().enumerate() {
            let l = |i: usize| limbs[i][lane];
            let words = [
                l(0) | (l(1) << 52),
                (l(1) >> 12) | (l(2) << 40),
                (l(2) >> 24) | (l(3) << 28),
                (l(3) >> 36) | (l(4) << 16),
            ];
            for (i, wd) in words.iter().enumerate() {
                o[8 * i..8 * i + 8].copy_from_slice(&wd.to_le_bytes());
            }
        }
    }

    /// Field operations on raw limbs (within the normalised bounds), for stress tests.
    #[target_feature(enable = "avx512f,avx512ifma")]
    pub(super) unsafe fn field_op8(
        op: super::FieldOp,
        a: &[[u64; 5]; 8],
        b: &[[u64; 5]; 8],
        out: &mut [[u8; 32]; 8],
    ) {
        let vec = |x: &[[u64; 5]; 8]| {
            let mut v = [_mm512_setzero_si512(); 5];
            for (i, limb) in v.iter_mut().enumerate() {
                let lanes: [u64; 8] = std::array::from_fn(|lane| x[lane][i]);
                *limb = _mm512_loadu_si512(lanes.as_ptr() as *const _);
            }
            Fe(v)
        };
        let (a, b) = (vec(a), vec(b));
        let r = match op {
            super::FieldOp::Add => add(&a, &b),
            super::FieldOp::Sub => sub(&a, &b),
            super::FieldOp::Mul => mul(&a, &b),
            super::FieldOp::Sqr => sqr(&a),
            super::FieldOp::MulA24 => mul_small(&a, 121665),
            super::FieldOp::Invert => invert(&a),
        };
        store(&r, out);
    }

    /// X25519 of eight u-coordinates by eight clamped scalars.
    #[target_feature(enable = "avx512f,avx512ifma")]
    pub(super) unsafe fn ladder8(ks: &[[u8; 32]; 8], us: &[[u8; 32]; 8], out: &mut [[u8; 32]; 8]) {
        let x1 = load(us);
        let zero = _mm512_setzero_si512();
        let one = Fe([splat(1), zero, zero, zero, zero]);
        let mut x2 = one;
        let mut z2 = Fe([zero; 5]);
        let mut x3 = x1;
        let mut z3 = one;
        let mut swap: u8 = 0;
        for t in (0..255).rev() {
            let mut bits: u8 = 0;
            for (lane, k) in ks.iter().enumerate() {
                bits |= ((k[t >> 3] >> (t & 7)) & 1) << lane;
            }
            swap ^= bits;
            let (nx2, nx3) = (blend(swap, &x2, &x3), blend(swap, &x3, &x2));
            let (nz2, nz3) = (blend(swap, &z2, &z3), blend(swap, &z3, &z2));
            x2 = nx2;
            x3 = nx3;
            z2 = nz2;
            z3 = nz3;
            swap = bits;
            let a = add(&x2, &z2);
            let aa = sqr(&a);
            let b = sub(&x2, &z2);
            let bb = sqr(&b);
            let e = sub(&aa, &bb);
            let c = add(&x3, &z3);
            let d = sub(&x3, &z3);
            let da = mul(&d, &a);
            let cb = mul(&c, &b);
            let s = add(&da, &cb);
            x3 = sqr(&s);
            let df = sub(&da, &cb);
            z3 = mul(&x1, &sqr(&df));
            x2 = mul(&aa, &bb);
            z2 = mul(&e, &add(&aa, &mul_small(&e, 121665)));
        }
        let x2f = blend(swap, &x2, &x3);
        let z2f = blend(swap, &z2, &z3);
        let r = mul(&x2f, &invert(&z2f));
        store(&r, out);
    }
}

pub use crate::x25519::FieldOp;

/// Applies `op` lane by lane to raw radix-2^52 limbs (limbs 0..3 below 2^52, limb 4 below
/// 2^47 + 2^12: the bounds the arithmetic keeps between operations) and returns canonical
/// encodings. For tests that drive every limb to its bound, which random ladders rarely do.
#[doc(hidden)]
pub fn field_op_lanes(op: FieldOp, a: &[[u64; 5]; 8], b: &[[u64; 5]; 8]) -> [[u8; 32]; 8] {
    #[cfg(target_arch = "x86_64")]
    {
        assert!(
            available(),
            "IFMA back end used on a CPU without AVX-512 IFMA"
        );
        for x in a.iter().chain(b.iter()) {
            assert!(x[..4].iter().all(|&l| l < 1 << 52) && x[4] < (1 << 47) + (1 << 12));
        }
        let mut out = [[0u8; 32]; 8];
        // SAFETY: `available()` was asserted above, so the CPU has AVX-512F and IFMA.
        unsafe { imp::field_op8(op, a, b, &mut out) };
        out
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (op, a, b);
        unreachable!("IFMA back end used on a non-x86 CPU");
    }
}

/// Whether this CPU can run the IFMA ladder.
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512ifma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Eight ladders with eight clamped scalars, one per lane (the batch API uses one scalar for
/// all lanes; this checks that lanes are independent). Callers must have checked [`available`].
pub fn ladder_lanes(ks_clamped: &[[u8; 32]; 8], us: &[[u8; 32]; 8]) -> [[u8; 32]; 8] {
    #[cfg(target_arch = "x86_64")]
    {
        assert!(
            available(),
            "IFMA back end used on a CPU without AVX-512 IFMA"
        );
        let mut out = [[0u8; 32]; 8];
        // SAFETY: `available()` was asserted above, so the CPU has AVX-512F and IFMA.
        unsafe { imp::ladder8(ks_clamped, us, &mut out) };
        out
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (ks_clamped, us);
        unreachable!("IFMA back end used on a non-x86 CPU");
    }
}

/// X25519 of every u in `inputs` by the clamped scalar `k`, into `out` (32 bytes each).
/// Callers must have checked [`available`].
pub fn mul_batch(k_clamped: &[u8; 32], inputs: &[[u8; 32]], out: &mut [u8]) {
    #[cfg(target_arch = "x86_64")]
    {
        assert!(
            available(),
            "IFMA back end used on a CPU without AVX-512 IFMA"
        );
        let ks = [*k_clamped; 8];
        for (src, dst) in inputs.chunks(8).zip(out.chunks_mut(8 * 32)) {
            let mut us = [[0u8; 32]; 8];
            // Pad a short tail with u = 9 (the base point): its lanes are computed and dropped.
            for (lane, u) in us.iter_mut().enumerate() {
                *u = src.get(lane).copied().unwrap_or({
                    let mut nine = [0u8; 32];
                    nine[0] = 9;
                    nine
                });
            }
            let mut res = [[0u8; 32]; 8];
            // SAFETY: `available()` was asserted above, so the CPU has AVX-512F and IFMA.
            unsafe { imp::ladder8(&ks, &us, &mut res) };
            for (lane, slot) in dst.chunks_exact_mut(32).enumerate() {
                slot.copy_from_slice(&res[lane]);
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (k_clamped, inputs, out);
        unreachable!("IFMA back end used on a non-x86 CPU");
    }
}
