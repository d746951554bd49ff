//! Eight fixed-base exponentiations at once in AVX-512 IFMA lanes, for the key owner's
//! Okamoto–Uchiyama encryption (`Crt` in ou.rs): mod p² and mod q.
//!
//! A residue mod m is K limbs in radix 2^52 and a vector register holds the same limb of eight
//! independent residues, so every instruction advances eight rows. `vpmadd52luq` /
//! `vpmadd52huq` add the low / high 52 bits of a 52×52-bit product: the partial products of
//! radix-2^52 Montgomery multiplication (R = 2^(52K)). Products are "almost" reduced: below
//! 2m, which stays true of chained products because m < R/4 ([`Field::new`] checks it);
//! limbs are carried after every product so that each is a valid 52-bit multiplicand.
//!
//! Tables are indexed by the exponents' digits, as the portable tables are: the exponents are
//! the encryptor's plaintexts and nonces (see ou.rs on the timing model); nothing else here
//! depends on a secret.

// Limb loops index several arrays in step; iterators would hide the arithmetic.
#![allow(clippy::needless_range_loop)]

use crypto_bigint::Uint;

const M52: u64 = (1 << 52) - 1;
/// Rows per vector.
pub(super) const LANES: usize = 8;

/// Whether this CPU runs the IFMA path (and `RAINBRIDGE_DISABLE_IFMA=1` does not forbid it).
pub(super) fn available() -> bool {
    if std::env::var_os("RAINBRIDGE_DISABLE_IFMA").is_some_and(|v| v == "1") {
        return false;
    }
    crate::x25519_ifma::available()
}

/// Radix-2^52 limbs of `x` (below 2^(52K)), lowest first.
pub(super) fn to_limbs<const L: usize, const K: usize>(x: &Uint<L>) -> [u64; K] {
    let w = x.as_words();
    let mut out = [0u64; K];
    for k in 0..K {
        let bit = 52 * k;
        let (i, s) = (bit / 64, bit % 64);
        let mut v = if i < L { w[i] >> s } else { 0 };
        if s > 12 && i + 1 < L {
            v |= w[i + 1] << (64 - s);
        }
        out[k] = v & M52;
    }
    out
}

/// The number with radix-2^52 limbs `limbs` (each below 2^52), which must fit L words.
pub(super) fn from_limbs<const L: usize, const K: usize>(limbs: &[u64; K]) -> Uint<L> {
    let mut w = [0u64; L];
    for k in 0..K {
        let bit = 52 * k;
        let (i, s) = (bit / 64, bit % 64);
        if i < L {
            w[i] |= limbs[k] << s;
        }
        if s > 12 && i + 1 < L {
            w[i + 1] |= limbs[k] >> (64 - s);
        }
    }
    Uint::from_words(w)
}

/// A modulus m < 2^(52K - 2) and its Montgomery constants for R = 2^(52K).
pub(super) struct Field<const K: usize> {
    m: [u64; K],
    /// -m^(-1) mod 2^52
    n0: u64,
    /// R² mod m: a product with it enters Montgomery form
    r2: [u64; K],
}

impl<const K: usize> Field<K> {
    /// `None` unless m is odd and below R/4.
    pub(super) fn new<const L: usize>(m: &Uint<L>) -> Option<Self> {
        if m.bits() + 2 > 52 * K as u32 || !m.bit_vartime(0) {
            return None;
        }
        let m0 = m.as_words()[0];
        let mut inv: u64 = 1; // Newton: each step doubles the correct low bits of m^(-1)
        for _ in 0..7 {
            inv = inv.wrapping_mul(2u64.wrapping_sub(m0.wrapping_mul(inv)));
        }
        let mut x = Uint::<L>::ONE;
        for _ in 0..2 * 52 * K {
            x = x.add_mod(&x, m); // 2^(104K) mod m, by doublings (once per key)
        }
        Some(Field {
            m: to_limbs(m),
            n0: inv.wrapping_neg() & M52,
            r2: to_limbs(&x),
        })
    }

    /// The residue below m of a lane's almost-reduced limbs (below 2m).
    pub(super) fn reduce<const L: usize>(&self, limbs: &[u64; K]) -> Uint<L> {
        let x: Uint<L> = from_limbs(limbs);
        let m: Uint<L> = from_limbs(&self.m);
        if x >= m {
            x.wrapping_sub(&m)
        } else {
            x
        }
    }
}

/// `base^e` for eight exponents at once: per window, the eight digits' entries gathered from
/// one table and multiplied in.
pub(super) struct Table<const K: usize> {
    window: usize,
    windows: usize,
    /// Tables laid end to end (a lane picks one by its offset): `entries[((t·windows + i)·2^w
    /// + d)·K + k]` is limb k of base_t^(d·2^(w·i))·R mod m, digit 0 included (R, the one).
    entries: Vec<u64>,
    per_table: usize,
}

impl<const K: usize> Table<K> {
    /// Tables of `bases` (plain residues below m) for exponents of `bits` bits.
    pub(super) fn new<const L: usize>(
        f: &Field<K>,
        bases: &[Uint<L>],
        bits: usize,
        window: usize,
        mul: impl Fn(&Uint<L>, &Uint<L>) -> Uint<L>,
    ) -> Self {
        let windows = bits.div_ceil(window);
        let per = 1usize << window;
        let per_table = windows * per * K;
        // plain values first (the caller's product mod m), then all into Montgomery form
        let mut plain: Vec<[u64; K]> = Vec::with_capacity(bases.len() * windows * per);
        for base in bases {
            let mut b = *base;
            for _ in 0..windows {
                let mut acc = Uint::<L>::ONE;
                for _ in 0..per {
                    plain.push(to_limbs(&acc));
                    acc = mul(&acc, &b);
                }
                b = acc; // base^(2^(w(i+1)))
            }
        }
        let mut entries = vec![0u64; plain.len() * K];
        for (chunk, out) in plain.chunks(LANES).zip(entries.chunks_mut(LANES * K)) {
            let mut lanes = [[0u64; K]; LANES];
            lanes[..chunk.len()].copy_from_slice(chunk);
            // SAFETY: only built when `available()` said the CPU has AVX-512F and IFMA
            let mont = unsafe { imp::enter(f, &lanes) };
            for (o, limbs) in out.chunks_mut(K).zip(mont.iter()) {
                o.copy_from_slice(limbs);
            }
        }
        Table {
            window,
            windows,
            entries,
            per_table,
        }
    }

    /// For each lane, `base_which[lane]^e[lane] · other^e_other[lane] · times[lane]`, as
    /// the plain product (Montgomery factors cancel) as almost-reduced limbs; `e` are
    /// little-endian bytes whose bits past `windows·window` are zero.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn pow2_times(
        &self,
        other: &Table<K>,
        f: &Field<K>,
        which: [usize; LANES],
        e: [&[u8]; LANES],
        e_other: [&[u8]; LANES],
        times: &[[u64; K]; LANES],
    ) -> [[u64; K]; LANES] {
        // SAFETY: only built when `available()` said the CPU has AVX-512F and IFMA
        unsafe { imp::pow2_times(self, other, f, which, e, e_other, times) }
    }
}

/// Lane-wise a·b mod m (plain residues below m in, almost-reduced limbs out).
pub(super) fn mul_plain<const K: usize>(
    f: &Field<K>,
    a: &[[u64; K]; LANES],
    b: &[[u64; K]; LANES],
) -> [[u64; K]; LANES] {
    // SAFETY: only called where `available()` said the CPU has AVX-512F and IFMA
    unsafe { imp::mul_plain(f, a, b) }
}

/// `x[lane]^e` for eight plain residues below m and one secret exponent `e` (the
/// decryption exponent t), as plain almost-reduced limbs: the same constant-time 5-bit
/// fixed-window ladder as the portable `pow_ct` in ou.rs (every table entry read at every
/// window through masks, the same products whatever `e` is).
pub(super) fn pow_ct<const K: usize>(
    f: &Field<K>,
    x: &[[u64; K]; LANES],
    e: &crypto_bigint::U256,
) -> [[u64; K]; LANES] {
    // SAFETY: only called where `available()` said the CPU has AVX-512F and IFMA
    unsafe { imp::pow_ct(f, x, e) }
}

/// 2^bits mod m as limbs: the constant that moves a residue between Montgomery radices
/// (a product with 2^(2·52K − 64L) takes a 64-bit-limb Montgomery form to this one).
pub(super) fn pow2_mod<const L: usize, const K: usize>(m: &Uint<L>, bits: usize) -> [u64; K] {
    let mut x = Uint::<L>::ONE;
    for _ in 0..bits {
        x = x.add_mod(&x, m);
    }
    to_limbs(&x)
}

/// Lane-wise a·c·R^(-1) mod m for one constant `c` (a, c below 2m; almost reduced out).
pub(super) fn mul_const<const K: usize>(
    f: &Field<K>,
    a: &[[u64; K]; LANES],
    c: &[u64; K],
) -> [[u64; K]; LANES] {
    // SAFETY: only called where `available()` said the CPU has AVX-512F and IFMA
    unsafe { imp::mul_const(f, a, c) }
}

/// Eight histograms at once, one per lane: at every step, lane l multiplies its accumulator
/// of bin `bin[l]` by row `row[l]` of `rows` (Montgomery form), where `(row, bin) = at(step)`.
/// Accumulators start at `one` (R mod m). Returns each bin's eight plain products as
/// almost-reduced limbs. A lane with nothing left to add points at a row holding `one`.
///
/// Panics if `at` names a row past `rows` or a bin past `n_bins` (the gathers would read
/// out of bounds).
pub(super) fn histogram8<const K: usize>(
    f: &Field<K>,
    rows: &[[u64; K]],
    one: &[u64; K],
    n_bins: usize,
    steps: usize,
    at: impl Fn(usize) -> ([usize; LANES], [usize; LANES]),
) -> Vec<[[u64; K]; LANES]> {
    // SAFETY: only called where `available()` said the CPU has AVX-512F and IFMA
    unsafe { imp::histogram8(f, rows, one, n_bins, steps, at) }
}

/// Bits `[at, at + width)` of the little-endian `e` (zero past its end), `width` <= 16.
fn digit(e: &[u8], at: usize, width: usize) -> usize {
    let byte = at / 8;
    let mut v = 0u32;
    for k in 0..3 {
        if let Some(&b) = e.get(byte + k) {
            v |= (b as u32) << (8 * k);
        }
    }
    ((v >> (at % 8)) & ((1u32 << width) - 1)) as usize
}

#[cfg(not(target_arch = "x86_64"))]
mod imp {
    // never called: `available()` is false off x86-64
    use super::{Field, Table, LANES};

    pub(super) unsafe fn enter<const K: usize>(
        _: &Field<K>,
        _: &[[u64; K]; LANES],
    ) -> [[u64; K]; LANES] {
        unreachable!("IFMA off x86-64")
    }

    pub(super) unsafe fn pow_ct<const K: usize>(
        _: &Field<K>,
        _: &[[u64; K]; LANES],
        _: &crypto_bigint::U256,
    ) -> [[u64; K]; LANES] {
        unreachable!("IFMA off x86-64")
    }

    pub(super) unsafe fn mul_plain<const K: usize>(
        _: &Field<K>,
        _: &[[u64; K]; LANES],
        _: &[[u64; K]; LANES],
    ) -> [[u64; K]; LANES] {
        unreachable!("IFMA off x86-64")
    }

    pub(super) unsafe fn mul_const<const K: usize>(
        _: &Field<K>,
        _: &[[u64; K]; LANES],
        _: &[u64; K],
    ) -> [[u64; K]; LANES] {
        unreachable!("IFMA off x86-64")
    }

    pub(super) unsafe fn histogram8<const K: usize>(
        _: &Field<K>,
        _: &[[u64; K]],
        _: &[u64; K],
        _: usize,
        _: usize,
        _: impl Fn(usize) -> ([usize; LANES], [usize; LANES]),
    ) -> Vec<[[u64; K]; LANES]> {
        unreachable!("IFMA off x86-64")
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn pow2_times<const K: usize>(
        _: &Table<K>,
        _: &Table<K>,
        _: &Field<K>,
        _: [usize; LANES],
        _: [&[u8]; LANES],
        _: [&[u8]; LANES],
        _: &[[u64; K]; LANES],
    ) -> [[u64; K]; LANES] {
        unreachable!("IFMA off x86-64")
    }
}

#[cfg(target_arch = "x86_64")]
mod imp {
    use std::arch::x86_64::*;

    use super::{digit, Field, Table, LANES, M52};

    type V = __m512i;

    #[inline]
    #[target_feature(enable = "avx512f,avx512ifma")]
    fn splat(x: u64) -> V {
        _mm512_set1_epi64(x as i64)
    }

    /// Limb-major vectors of eight lanes' limbs.
    #[inline]
    #[target_feature(enable = "avx512f,avx512ifma")]
    fn load<const K: usize>(lanes: &[[u64; K]; LANES]) -> [V; K] {
        let mut out = [_mm512_setzero_si512(); K];
        for k in 0..K {
            let col: [u64; LANES] = std::array::from_fn(|l| lanes[l][k]);
            // SAFETY: `col` is 8 u64, an unaligned 512-bit load reads exactly it
            out[k] = unsafe { _mm512_loadu_si512(col.as_ptr().cast()) };
        }
        out
    }

    #[inline]
    #[target_feature(enable = "avx512f,avx512ifma")]
    fn store<const K: usize>(v: &[V; K]) -> [[u64; K]; LANES] {
        let mut out = [[0u64; K]; LANES];
        for k in 0..K {
            let mut col = [0u64; LANES];
            // SAFETY: `col` is 8 u64, an unaligned 512-bit store writes exactly it
            unsafe { _mm512_storeu_si512(col.as_mut_ptr().cast(), v[k]) };
            for l in 0..LANES {
                out[l][k] = col[l];
            }
        }
        out
    }

    /// a·b·R^(-1) mod m, almost reduced (below 2m for a, b below 2m), limbs carried.
    /// Limbs are carried only at the end: a limb takes four partial products below 2^52
    /// per row of a and shifts down once per row, so it sums at most 4K of them plus
    /// carries (below 2^60 for K ≤ 40), inside the 64-bit lanes.
    #[inline]
    #[target_feature(enable = "avx512f,avx512ifma")]
    fn mul<const K: usize>(mv: &[V; K], n0: V, a: &[V; K], b: &[V; K]) -> [V; K] {
        let zero = _mm512_setzero_si512();
        let m52 = splat(M52);
        let mut t = [zero; K];
        for i in 0..K {
            let ai = a[i];
            // limb 0 first: it fixes u, the multiple of m that clears it (x0 is a full
            // accumulator, not a 52-bit limb, but u = x0·n0 mod 2^52 needs only its low 52
            // bits, all that vpmadd52luq reads of it)
            let x0 = _mm512_madd52lo_epu64(t[0], ai, b[0]);
            let u = _mm512_and_si512(_mm512_madd52lo_epu64(zero, x0, n0), m52);
            let x0 = _mm512_madd52lo_epu64(x0, u, mv[0]);
            // x0 ≡ 0 mod 2^52: drop the limb, keep its carry; then one pass shifts every limb
            // down by one while adding this row's four partial products (one load and one
            // store of each limb per row instead of five)
            let carry = _mm512_srli_epi64(x0, 52);
            for j in 0..K - 1 {
                let mut v = _mm512_madd52lo_epu64(t[j + 1], ai, b[j + 1]);
                v = _mm512_madd52lo_epu64(v, u, mv[j + 1]);
                v = _mm512_madd52hi_epu64(v, ai, b[j]);
                t[j] = _mm512_madd52hi_epu64(v, u, mv[j]);
            }
            t[0] = _mm512_add_epi64(t[0], carry);
            t[K - 1] =
                _mm512_madd52hi_epu64(_mm512_madd52hi_epu64(zero, ai, b[K - 1]), u, mv[K - 1]);
        }
        for j in 0..K - 1 {
            let c = _mm512_srli_epi64(t[j], 52);
            t[j] = _mm512_and_si512(t[j], m52);
            t[j + 1] = _mm512_add_epi64(t[j + 1], c);
        }
        t
    }

    #[target_feature(enable = "avx512f,avx512ifma")]
    fn consts<const K: usize>(f: &Field<K>) -> ([V; K], V) {
        (std::array::from_fn(|k| splat(f.m[k])), splat(f.n0))
    }

    /// Eight plain residues (below m) into Montgomery form (almost reduced).
    #[target_feature(enable = "avx512f,avx512ifma")]
    pub(super) fn enter<const K: usize>(f: &Field<K>, x: &[[u64; K]; LANES]) -> [[u64; K]; LANES] {
        let (mv, n0) = consts(f);
        let r2: [V; K] = std::array::from_fn(|k| splat(f.r2[k]));
        store(&mul(&mv, n0, &load(x), &r2))
    }

    /// Π over windows of the lanes' gathered entries, or `None` where every digit is zero.
    #[inline]
    #[target_feature(enable = "avx512f,avx512ifma")]
    fn pow<const K: usize>(
        t: &Table<K>,
        mv: &[V; K],
        n0: V,
        which: [usize; LANES],
        e: [&[u8]; LANES],
        mut acc: Option<[V; K]>,
    ) -> Option<[V; K]> {
        let per = 1usize << t.window;
        let k_step = splat(1);
        for i in 0..t.windows {
            let d: [usize; LANES] = std::array::from_fn(|l| digit(e[l], i * t.window, t.window));
            if d.iter().all(|&x| x == 0) {
                continue; // times one in every lane
            }
            let idx: [u64; LANES] =
                std::array::from_fn(|l| (which[l] * t.per_table + (i * per + d[l]) * K) as u64);
            // SAFETY: `idx` is 8 u64
            let mut off: V = unsafe { _mm512_loadu_si512(idx.as_ptr().cast()) };
            let mut entry = [_mm512_setzero_si512(); K];
            for k in 0..K {
                // SAFETY: every offset + k < entries.len(): which < tables, i < windows,
                // d < 2^window, k < K
                entry[k] = unsafe { _mm512_i64gather_epi64::<8>(off, t.entries.as_ptr().cast()) };
                off = _mm512_add_epi64(off, k_step);
            }
            acc = Some(match acc {
                None => entry,
                Some(a) => mul(mv, n0, &a, &entry),
            });
        }
        acc
    }

    /// Window of [`pow_ct`], in bits.
    const W_CT: usize = 5;

    #[target_feature(enable = "avx512f,avx512ifma")]
    pub(super) fn mul_plain<const K: usize>(
        f: &Field<K>,
        a: &[[u64; K]; LANES],
        b: &[[u64; K]; LANES],
    ) -> [[u64; K]; LANES] {
        let (mv, n0) = consts(f);
        let r2: [V; K] = std::array::from_fn(|k| splat(f.r2[k]));
        // (a·b·R^(-1))·R²·R^(-1) = a·b
        let ab = mul(&mv, n0, &load(a), &load(b));
        store(&mul(&mv, n0, &ab, &r2))
    }

    #[target_feature(enable = "avx512f,avx512ifma")]
    pub(super) fn pow_ct<const K: usize>(
        f: &Field<K>,
        x: &[[u64; K]; LANES],
        e: &crypto_bigint::U256,
    ) -> [[u64; K]; LANES] {
        let (mv, n0) = consts(f);
        let r2: [V; K] = std::array::from_fn(|k| splat(f.r2[k]));
        let mut one_plain = [_mm512_setzero_si512(); K];
        one_plain[0] = splat(1);
        let base = mul(&mv, n0, &load(x), &r2); // x·R
        let one = mul(&mv, n0, &one_plain, &r2); // R
        let mut table = [one; 1 << W_CT];
        for k in 1..table.len() {
            table[k] = mul(&mv, n0, &table[k - 1], &base);
        }
        let words = e.as_words();
        let windows = (e.bits() as usize).div_ceil(W_CT);
        let mut acc = one;
        for i in (0..windows).rev() {
            for _ in 0..W_CT {
                acc = mul(&mv, n0, &acc, &acc);
            }
            let at = i * W_CT;
            let (w, s) = (at / 64, at % 64);
            let mut d = words[w] >> s;
            if s + W_CT > 64 && w + 1 < words.len() {
                d |= words[w + 1] << (64 - s);
            }
            let d = d & ((1 << W_CT) - 1);
            let mut pick = [_mm512_setzero_si512(); K];
            for (k, entry) in table.iter().enumerate() {
                let y = k as u64 ^ d;
                // all ones iff k == d, without a branch on d
                let mask = splat(((y | y.wrapping_neg()) >> 63).wrapping_sub(1));
                for j in 0..K {
                    pick[j] = _mm512_or_si512(pick[j], _mm512_and_si512(entry[j], mask));
                }
            }
            acc = mul(&mv, n0, &acc, &pick);
        }
        // (x^e·R)·1·R^(-1): plain
        store(&mul(&mv, n0, &acc, &one_plain))
    }

    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f,avx512ifma")]
    pub(super) fn pow2_times<const K: usize>(
        t: &Table<K>,
        u: &Table<K>,
        f: &Field<K>,
        which: [usize; LANES],
        e: [&[u8]; LANES],
        e_other: [&[u8]; LANES],
        times: &[[u64; K]; LANES],
    ) -> [[u64; K]; LANES] {
        let (mv, n0) = consts(f);
        let x = load(times);
        let a = pow(t, &mv, n0, which, e, None);
        match pow(u, &mv, n0, [0; LANES], e_other, a) {
            Some(a) => store(&mul(&mv, n0, &a, &x)),
            None => *times,
        }
    }

    #[target_feature(enable = "avx512f,avx512ifma")]
    pub(super) fn mul_const<const K: usize>(
        f: &Field<K>,
        a: &[[u64; K]; LANES],
        c: &[u64; K],
    ) -> [[u64; K]; LANES] {
        let (mv, n0) = consts(f);
        let c: [V; K] = std::array::from_fn(|k| splat(c[k]));
        store(&mul(&mv, n0, &load(a), &c))
    }

    #[target_feature(enable = "avx512f,avx512ifma")]
    pub(super) fn histogram8<const K: usize>(
        f: &Field<K>,
        rows: &[[u64; K]],
        one: &[u64; K],
        n_bins: usize,
        steps: usize,
        at: impl Fn(usize) -> ([usize; LANES], [usize; LANES]),
    ) -> Vec<[[u64; K]; LANES]> {
        let (mv, n0) = consts(f);
        // acc[(bin·K + k)·LANES + lane]: a lane's limb k of every bin is one gather away,
        // and the eight lanes of one (bin, limb) are one vector for the final conversion
        let mut acc = vec![0u64; n_bins * K * LANES];
        for (i, a) in acc.iter_mut().enumerate() {
            *a = one[(i / LANES) % K];
        }
        let lane_ids: [u64; LANES] = std::array::from_fn(|l| l as u64);
        // SAFETY: `lane_ids` is 8 u64
        let lane_v: V = unsafe { _mm512_loadu_si512(lane_ids.as_ptr().cast()) };
        let k_row = splat(1);
        let k_acc = splat(LANES as u64);
        let base_rows: *const u64 = rows.as_ptr().cast();
        let base_acc: *mut u64 = acc.as_mut_ptr();
        for step in 0..steps {
            let (row, bin) = at(step);
            for l in 0..LANES {
                assert!(
                    row[l] < rows.len() && bin[l] < n_bins,
                    "histogram lane out of range"
                );
            }
            let r_idx: [u64; LANES] = std::array::from_fn(|l| (row[l] * K) as u64);
            let a_idx: [u64; LANES] = std::array::from_fn(|l| (bin[l] * K * LANES) as u64);
            // SAFETY: both are 8 u64
            let mut r_off: V = unsafe { _mm512_loadu_si512(r_idx.as_ptr().cast()) };
            let mut a_off: V =
                _mm512_add_epi64(unsafe { _mm512_loadu_si512(a_idx.as_ptr().cast()) }, lane_v);
            let a_start = a_off;
            let mut c = [_mm512_setzero_si512(); K];
            let mut a = [_mm512_setzero_si512(); K];
            // lanes of one node share their row: a broadcast is cheaper than a gather
            let shared = row.iter().all(|&r| r == row[0]);
            for k in 0..K {
                // SAFETY: row < rows.len() and k < K index inside `rows`; bin < n_bins,
                // k < K and lane < LANES inside `acc` (checked above)
                unsafe {
                    c[k] = if shared {
                        splat(rows[row[0]][k])
                    } else {
                        _mm512_i64gather_epi64::<8>(r_off, base_rows.cast())
                    };
                    a[k] = _mm512_i64gather_epi64::<8>(a_off, base_acc.cast_const().cast());
                }
                r_off = _mm512_add_epi64(r_off, k_row);
                a_off = _mm512_add_epi64(a_off, k_acc);
            }
            let p = mul(&mv, n0, &a, &c);
            // lanes write distinct addresses (the lane is part of every offset)
            let mut a_off = a_start;
            for k in 0..K {
                // SAFETY: the same offsets as the gathers
                unsafe { _mm512_i64scatter_epi64::<8>(base_acc.cast(), a_off, p[k]) };
                a_off = _mm512_add_epi64(a_off, k_acc);
            }
        }
        let mut one_plain = [_mm512_setzero_si512(); K];
        one_plain[0] = splat(1);
        (0..n_bins)
            .map(|b| {
                let v: [V; K] = std::array::from_fn(|k| {
                    // SAFETY: (b·K + k)·LANES + 8 <= acc.len()
                    unsafe { _mm512_loadu_si512(acc[(b * K + k) * LANES..].as_ptr().cast()) }
                });
                // (x·R)·1·R^(-1): plain
                store(&mul(&mv, n0, &v, &one_plain))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    //! The lanes' Montgomery product against plain big-integer arithmetic at the edges of
    //! its bound argument, for every K the key sizes use (N_K = 40 mod n, P2_K = 27 mod p²,
    //! Q_K = 14 mod q): moduli at R/4 - 1 (the largest `Field::new` takes) and at the
    //! smallest of K limbs, operands at 2m - 1 and with every limb all ones.
    use super::*;
    use crypto_bigint::NonZero;
    use proptest::prelude::*;

    /// Checks `mul_const` for eight operands `a` and one `c` (each below `R`): limbs carried
    /// (each below 2^52), T·R ≡ a·c mod m, and T below `bound` (W = 2L words hold the
    /// products).
    fn check<const K: usize, const L: usize, const W: usize>(
        m: &Uint<L>,
        a: &[Uint<L>; LANES],
        c: &Uint<L>,
        bound: &Uint<L>,
    ) {
        let f = Field::<K>::new(m).expect("odd and below R/4");
        let lanes: [[u64; K]; LANES] = std::array::from_fn(|l| to_limbs(&a[l]));
        let out = mul_const(&f, &lanes, &to_limbs(c));
        let mw = NonZero::new(m.resize::<W>()).unwrap();
        for l in 0..LANES {
            assert!(
                out[l].iter().all(|&x| x <= M52),
                "lane {l}: limbs not carried"
            );
            let t: Uint<L> = from_limbs(&out[l]);
            assert!(t < *bound, "lane {l}: {t} not below the bound");
            let tr = t.resize::<W>().shl_vartime(52 * K as u32).rem(&mw);
            let ac = a[l].resize::<W>().wrapping_mul(&c.resize::<W>()).rem(&mw);
            assert_eq!(tr, ac, "lane {l}: T·R ≢ a·c mod m");
        }
    }

    /// R - 1 (every limb all ones), R/4 - 1 and 2^(52(K-1)) + 1 as L-word numbers.
    fn edges<const K: usize, const L: usize>() -> (Uint<L>, Uint<L>, Uint<L>) {
        let r_minus_1 = Uint::<L>::MAX.shr_vartime(64 * L as u32 - 52 * K as u32);
        let top = r_minus_1.shr_vartime(2);
        let low = Uint::<L>::ONE
            .shl_vartime(52 * (K as u32 - 1))
            .wrapping_add(&Uint::ONE);
        (r_minus_1, top, low)
    }

    fn edge_cases<const K: usize, const L: usize, const W: usize>() {
        if !available() {
            return;
        }
        let (all_ones, top, low) = edges::<K, L>();
        for m in [top, low] {
            let two_m = m.shl_vartime(1);
            let below = two_m.wrapping_sub(&Uint::ONE);
            let a = [
                Uint::ZERO,
                Uint::ONE,
                m.wrapping_sub(&Uint::ONE),
                m,
                m.wrapping_add(&Uint::ONE),
                below,
                below.wrapping_sub(&Uint::ONE),
                m.shr_vartime(1),
            ];
            // operands below 2m: almost reduced out (below 2m)
            for c in [Uint::ZERO, Uint::ONE, m, below] {
                check::<K, L, W>(&m, &a, &c, &two_m);
            }
            // one operand with every limb all ones (a histogram row entered by a shift may
            // be that large): T < a + m < 3m, still carried into valid limbs
            let three_m = two_m.wrapping_add(&m);
            check::<K, L, W>(&m, &a, &all_ones, &three_m);
        }
    }

    #[test]
    fn mul_at_the_edges_k40() {
        edge_cases::<40, 33, 66>();
    }

    #[test]
    fn mul_at_the_edges_k27() {
        edge_cases::<27, 22, 44>();
    }

    #[test]
    fn mul_at_the_edges_k14() {
        edge_cases::<14, 12, 24>();
    }

    /// An odd modulus of K limbs below R/4 (its top bits all set half the time) and eight
    /// operands and a constant below 2m, from raw words.
    fn random_case<const K: usize, const L: usize>(
        words: &[u64],
        full: bool,
    ) -> (Uint<L>, [Uint<L>; LANES], Uint<L>) {
        let (_, top, _) = edges::<K, L>();
        let word = |i: usize| Uint::<L>::from_words(std::array::from_fn(|j| words[i * L + j]));
        let mut m = word(0).bitand(&top).bitor(&Uint::ONE);
        if full {
            m = m.bitor(&top.shr_vartime(8).not().bitand(&top));
        }
        let two_m = NonZero::new(m.shl_vartime(1)).unwrap();
        let a = std::array::from_fn(|l| word(l + 1).rem(&two_m));
        (m, a, word(LANES + 1).rem(&two_m))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(16))]

        #[test]
        fn mul_matches_plain_arithmetic(
            words in proptest::collection::vec(any::<u64>(), 33 * (LANES + 2)),
            full in any::<bool>(),
        ) {
            if !available() {
                return Ok(());
            }
            let (m, a, c) = random_case::<40, 33>(&words, full);
            check::<40, 33, 66>(&m, &a, &c, &m.shl_vartime(1));
            let (m, a, c) = random_case::<27, 22>(&words, full);
            check::<27, 22, 44>(&m, &a, &c, &m.shl_vartime(1));
            let (m, a, c) = random_case::<14, 12>(&words, full);
            check::<14, 12, 24>(&m, &a, &c, &m.shl_vartime(1));
        }
    }
}
