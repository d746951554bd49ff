//! Okamoto–Uchiyama additively homomorphic encryption, with the subgroup acceleration of
//! Coron, Naccache and Paillier ("Accelerating Okamoto-Uchiyama's public-key cryptosystem",
//! Electronics Letters 35(4), 1999): the scheme SecureBoost-style training uses to let a
//! feature party add up a label party's encrypted gradients.
//!
//! Keys: primes p, q of about |n|/3 bits, with p - 1 = 2·t·u for a prime t of 2·λ bits
//! (224 for a 2048-bit n, λ = 112); n = p²q. G = g^(2u) mod n has order p·t modulo p² and
//! H = g'^(2u·n) mod n has order dividing t, so c^t mod p² strips the randomness of
//! c = G^m · H^r and decryption needs a 224-bit exponent instead of a 683-bit one.
//! Plaintexts live in Z_p; a signed m is read back from its residue (|m| < p/2), and
//! several signed fixed-width slots may be packed into one plaintext ([`pack`]).
//!
//! Security: IND-CPA under the p-subgroup assumption restricted to the order-t subgroup,
//! as in the paper; not IND-CCA (ciphertexts are malleable by design). The randomness r has
//! |t| + 64 bits. Exponentiations use fixed-base tables with variable-time lookups: the
//! exponents are the encryptor's plaintexts and nonces, so this code assumes no co-resident
//! cache-timing adversary on the encrypting host; decryption (the secret-key operation)
//! is constant-time in the secret exponent.
//!
//! Speed: Montgomery products are our own CIOS loop ([`cios`]) on crypto-bigint's numbers;
//! exponentiations use fixed-base tables (one product per window of the exponent). The key
//! owner encrypts by CRT ([`Crt`]: mod p² with 224-bit exponents and mod q, 22- and 11-word
//! numbers) and, where the CPU has AVX-512 IFMA, both encrypts and decrypts eight rows at a
//! time in vector lanes (ou_ifma.rs; `RAINBRIDGE_DISABLE_IFMA=1` keeps the portable path).
//!
//! Ciphertexts travel as [`CT_BYTES`] little-endian bytes of a residue below n (at most
//! 2048 bits); every received ciphertext is checked to be below n and non-zero.

use crypto_bigint::modular::{MontyForm, MontyParams};
use crypto_bigint::{NonZero, Odd, RandomBits, RandomMod, Uint, U2048, U256, U384, U704, U768};
use crypto_primes::{generate_prime_with_rng, is_prime_with_rng};
use rand_core::{OsRng, RngCore};
use rayon::prelude::*;

use crate::error::{CoreError, Result};

#[path = "ou_ifma.rs"]
mod ifma;

#[path = "ou_ahead.rs"]
mod ahead;
pub use ahead::{NonceMaker, Nonces};

/// Bytes of one ciphertext on the wire.
pub const CT_BYTES: usize = 256;
const LIMBS: usize = 32;
/// Windows of the fixed-base tables, in bits: each table holds ⌈bits/w⌉·(2^w - 1) residues
/// and an exponentiation costs ⌈bits/w⌉ products. Public key (256-byte residues): G and G^-1
/// over 680-bit plaintexts at 8 bits (5.5 MB each), H over 288-bit nonces at 10 bits
/// (7.6 MB). Key owner (CRT): mod p² (176-byte residues) the two 224-bit exponents at 11
/// bits (7.6 MB each); mod q (88 bytes) G, G^-1 at 10 bits (6 MB each), H at 11 (4.9 MB).
/// With IFMA the key owner keeps the same windows in radix-2^52 form instead (216- and
/// 112-byte residues, digit 0 included): 18.6 MB mod p², 21.8 MB mod q.
const W_PUBLIC_G: usize = 8;
const W_PUBLIC_H: usize = 10;
const W_P2: usize = 11;
const W_Q_G: usize = 10;
const W_Q_H: usize = 11;
/// Rows per parallel task of encryption, each drawing its randomness in one read.
const NONCE_BLOCK: usize = 128;
/// Extra bits of the randomness r beyond |t|, so that r mod t is statistically uniform.
const R_SLACK: u32 = 64;

type Mont = MontyForm<LIMBS>;

/// Bit lengths of (p, q, t) for a modulus of `n_bits`.
fn sizes(n_bits: u32) -> Result<(u32, u32, u32)> {
    let t_bits = match n_bits {
        1024 => 160,
        2048 => 224,
        3072 => 256,
        _ => {
            return Err(CoreError::InvalidKey(
                "OU modulus must be 1024, 2048 or 3072 bits",
            ))
        }
    };
    if n_bits > 2048 {
        return Err(CoreError::InvalidKey(
            "this build supports OU moduli up to 2048 bits",
        ));
    }
    let p_bits = n_bits / 3;
    Ok((p_bits, n_bits - 2 * p_bits, t_bits))
}

/// Montgomery multiplication (CIOS, Koç–Acar–Kaliski 1996) on crypto-bigint's Montgomery
/// representation (R = 2^(word bits·L)), so tables and parameters stay crypto-bigint's;
/// one interleaved pass instead of a full double-width product then a reduction roughly
/// halves the time of the hot loops. Constant-time: no branch or index depends on the
/// operands (the final subtraction is a masked select).
mod cios {
    use crypto_bigint::modular::MontyParams;
    use crypto_bigint::{Uint, WideWord, Word};

    /// A modulus with -m^(-1) mod 2^word, for [`mul`].
    #[derive(Clone, Copy)]
    pub(super) struct Modulus<const L: usize> {
        m: [Word; L],
        neg_inv: Word,
        /// R² mod m: x ↦ mul(x, R²) = x·R enters Montgomery form
        r2: Uint<L>,
    }

    impl<const L: usize> Modulus<L> {
        pub(super) fn new(params: &MontyParams<L>) -> Self {
            let m = *params.modulus().as_ref().as_words();
            // Newton's iteration doubles the correct low bits of m^(-1) each step
            let mut inv: Word = 1;
            for _ in 0..7 {
                inv = inv.wrapping_mul((2 as Word).wrapping_sub(m[0].wrapping_mul(inv)));
            }
            let one = crypto_bigint::modular::MontyForm::one(*params);
            let r2 = *crypto_bigint::modular::MontyForm::new(one.as_montgomery(), *params)
                .as_montgomery();
            Modulus {
                m,
                neg_inv: inv.wrapping_neg(),
                r2,
            }
        }

        /// x·R mod m (Montgomery form) for any x < R.
        #[inline]
        pub(super) fn enter(&self, x: &Uint<L>) -> Uint<L> {
            self.mul(x, &self.r2)
        }

        /// x·R^(-1) mod m (leaves Montgomery form) for any x < R.
        #[inline]
        pub(super) fn leave(&self, x: &Uint<L>) -> Uint<L> {
            self.mul(x, &Uint::ONE)
        }

        /// a·b·R^(-1) mod m, for a·b < m·R (a below R and b below m, say): the sum before
        /// the last subtraction stays below 2m.
        #[inline]
        pub(super) fn mul(&self, a: &Uint<L>, b: &Uint<L>) -> Uint<L> {
            const BITS: u32 = Word::BITS;
            let (a, b, n) = (a.as_words(), b.as_words(), &self.m);
            let mut t = [0 as Word; L];
            let mut top: Word = 0;
            for &ai in a.iter() {
                let ai = ai as WideWord;
                let mut c: WideWord = 0;
                for j in 0..L {
                    let s = t[j] as WideWord + ai * b[j] as WideWord + c;
                    t[j] = s as Word;
                    c = s >> BITS;
                }
                let s = top as WideWord + c;
                top = s as Word;
                let top2 = (s >> BITS) as Word;
                let u = t[0].wrapping_mul(self.neg_inv) as WideWord;
                let s = t[0] as WideWord + u * n[0] as WideWord;
                let mut c = s >> BITS;
                for j in 1..L {
                    let s = t[j] as WideWord + u * n[j] as WideWord + c;
                    t[j - 1] = s as Word;
                    c = s >> BITS;
                }
                let s = top as WideWord + c;
                t[L - 1] = s as Word;
                top = top2 + (s >> BITS) as Word;
            }
            // t + top·R < 2m: subtract m once unless that borrows
            let mut r = [0 as Word; L];
            let mut borrow: Word = 0;
            for j in 0..L {
                let (d, b1) = t[j].overflowing_sub(n[j]);
                let (d, b2) = d.overflowing_sub(borrow);
                r[j] = d;
                borrow = (b1 | b2) as Word;
            }
            let keep_r = (top | (borrow ^ 1)).wrapping_neg(); // all ones iff t + top·R >= m
            for j in 0..L {
                r[j] = (r[j] & keep_r) | (t[j] & !keep_r);
            }
            Uint::from_words(r)
        }
    }
}

/// `base^e` for exponents of up to `windows·window` bits, by one table lookup and at most
/// one multiplication per `window`-bit digit of the exponent (no squarings); generic in the
/// modulus' limbs so that the key owner's CRT path (mod p², mod q) uses the same tables on
/// smaller numbers. Memory: `windows·(2^window - 1)` residues.
struct FixedBase<const L: usize> {
    params: MontyParams<L>,
    modulus: cios::Modulus<L>,
    window: usize,
    windows: usize,
    /// `table[i·(2^window - 1) + j - 1] = base^(j·2^(window·i))` in Montgomery form.
    table: Vec<Uint<L>>,
}

impl<const L: usize> FixedBase<L> {
    fn new(base: MontyForm<L>, bits: usize, window: usize) -> Self {
        debug_assert!((1..=16).contains(&window));
        let modulus = cios::Modulus::new(base.params());
        let windows = bits.div_ceil(window);
        let per = (1usize << window) - 1;
        let mut table = Vec::with_capacity(windows * per);
        let mut b = *base.as_montgomery(); // base^(2^(window·i))
        for _ in 0..windows {
            let mut acc = b;
            for _ in 0..per {
                table.push(acc);
                acc = modulus.mul(&acc, &b);
            }
            b = acc; // base^(2^window · 2^(window·i))
        }
        FixedBase {
            params: *base.params(),
            modulus,
            window,
            windows,
            table,
        }
    }

    /// `base^e`, `e` given as little-endian bytes; its bits past `windows·window` must be
    /// zero (the callers' exponents are bounded by the layout checks and the key's sizes).
    fn pow(&self, e: &[u8]) -> MontyForm<L> {
        let per = (1usize << self.window) - 1;
        let mut acc: Option<Uint<L>> = None;
        for i in 0..self.windows {
            let d = digit(e, i * self.window, self.window);
            if d != 0 {
                let entry = &self.table[i * per + d - 1];
                acc = Some(match acc {
                    None => *entry,
                    Some(a) => self.modulus.mul(&a, entry),
                });
            }
        }
        debug_assert!(
            e.len() * 8 <= self.windows * self.window
                || (self.windows * self.window..e.len() * 8).all(|b| e[b / 8] >> (b % 8) & 1 == 0)
        );
        match acc {
            None => MontyForm::one(self.params),
            Some(a) => MontyForm::from_montgomery(a, self.params),
        }
    }
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

/// The public key: what a party needs to encrypt, add and re-randomise.
pub struct PublicKey {
    n: U2048,
    n_bits: u32,
    t_bits: u32,
    params: MontyParams<LIMBS>,
    g_raw: U2048,
    h_raw: U2048,
    g_inv_raw: U2048,
    g: FixedBase<LIMBS>,
    g_inv: FixedBase<LIMBS>,
    h: FixedBase<LIMBS>,
    /// The same tables in AVX-512 IFMA form, built on first use where the CPU has it (a key
    /// parsed only to check ciphertexts never pays for them).
    ifma: std::sync::OnceLock<Option<PkIfma>>,
}

/// Radix-2^52 limbs of residues mod n (2,048 bits at most).
const N_K: usize = 40;

struct PkIfma {
    f: ifma::Field<N_K>,
    /// G and G^-1 (tables 0 and 1: a lane picks by its plaintext's sign)
    g: ifma::Table<N_K>,
    h: ifma::Table<N_K>,
    /// 2^(2·52·N_K − 2048) mod n: a product with it takes a residue in the portable
    /// Montgomery form (R = 2^2048, as `parse` returns ciphertexts) to the lanes' (R = 2^(52·N_K))
    from_portable: [u64; N_K],
    /// Whether histogram rows may enter the lanes by a shift instead of that product: see
    /// [`PublicKey::histogram_lanes`]
    shift_rows: bool,
    /// R = 2^(52·N_K) mod n: the lanes' Montgomery one
    one: [u64; N_K],
}

impl PublicKey {
    fn build(n: U2048, g_raw: U2048, h_raw: U2048) -> Result<Self> {
        let n_bits = n.bits();
        let n_class = [1024u32, 2048]
            .into_iter()
            .find(|&b| n_bits <= b && n_bits + 8 > b);
        let n_class = n_class.ok_or(CoreError::InvalidKey("OU modulus of unsupported size"))?;
        let (_, _, t_bits) = sizes(n_class)?;
        let odd = Option::<Odd<U2048>>::from(Odd::new(n))
            .ok_or(CoreError::InvalidKey("OU modulus must be odd"))?;
        if g_raw >= n || h_raw >= n || g_raw == U2048::ZERO || h_raw == U2048::ZERO {
            return Err(CoreError::InvalidKey(
                "OU generators must be non-zero residues mod n",
            ));
        }
        let params = MontyParams::new_vartime(odd);
        let g = Mont::new(&g_raw, params);
        let g_inv = Option::<Mont>::from(g.inv()).ok_or(CoreError::InvalidKey(
            "OU generator G is not invertible mod n",
        ))?;
        let h = Mont::new(&h_raw, params);
        let pt_bits = Self::plaintext_bits_for(n_class) as usize;
        Ok(PublicKey {
            n,
            n_bits: n_class,
            t_bits,
            params,
            g_raw,
            h_raw,
            g_inv_raw: g_inv.retrieve(),
            ifma: std::sync::OnceLock::new(),
            g: FixedBase::new(g, pt_bits, W_PUBLIC_G),
            g_inv: FixedBase::new(g_inv, pt_bits, W_PUBLIC_G),
            h: FixedBase::new(h, (t_bits + R_SLACK) as usize, W_PUBLIC_H),
        })
    }

    fn plaintext_bits_for(n_bits: u32) -> u32 {
        // m must stay below p/2 (signed read-back) and p has n_bits/3 bits
        n_bits / 3 - 2
    }

    /// Largest bit length of a plaintext's magnitude.
    pub fn plaintext_bits(&self) -> u32 {
        Self::plaintext_bits_for(self.n_bits)
    }

    /// Nominal modulus size (1024 or 2048).
    pub fn n_bits(&self) -> u32 {
        self.n_bits
    }

    /// n ‖ G ‖ H, each [`CT_BYTES`] little-endian.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(3 * CT_BYTES);
        out.extend_from_slice(&self.n.to_le_bytes());
        out.extend_from_slice(&self.g_raw.to_le_bytes());
        out.extend_from_slice(&self.h_raw.to_le_bytes());
        out
    }

    pub fn from_bytes(b: &[u8]) -> Result<Self> {
        if b.len() != 3 * CT_BYTES {
            return Err(CoreError::InvalidKey("an OU public key is 768 bytes"));
        }
        let part = |i: usize| U2048::from_le_slice(&b[i * CT_BYTES..(i + 1) * CT_BYTES]);
        Self::build(part(0), part(1), part(2))
    }

    /// A fresh encryption randomness r, uniform below 2^(|t| + R_SLACK).
    fn draw_r(&self) -> U384 {
        U384::random_bits(&mut OsRng, self.t_bits + R_SLACK)
    }

    fn nonce(&self) -> Mont {
        self.h.pow(&self.draw_r().to_le_bytes())
    }

    /// G^m · H^r for a signed plaintext given as magnitude (little-endian bytes) and sign.
    fn encrypt_mag(&self, mag: &[u8], negative: bool, r: &U384) -> Mont {
        let base = if negative { &self.g_inv } else { &self.g };
        self.mul(&base.pow(mag), &self.h.pow(&r.to_le_bytes()))
    }

    fn to_wire(&self, c: &Mont, out: &mut [u8]) {
        let raw = self.h.modulus.leave(c.as_montgomery());
        out.copy_from_slice(&raw.to_le_bytes());
    }

    /// Parses and checks received ciphertexts into Montgomery form.
    pub fn parse(&self, data: &[u8]) -> Result<Vec<U2048>> {
        let mut cts = self.check(data)?;
        cts.par_iter_mut()
            .for_each(|c| *c = self.h.modulus.enter(c));
        Ok(cts)
    }

    /// Parses and checks received ciphertexts, as residues below n.
    fn check(&self, data: &[u8]) -> Result<Vec<U2048>> {
        if !data.len().is_multiple_of(CT_BYTES) {
            return Err(CoreError::Shape(format!(
                "ciphertext buffer of {} bytes is not a multiple of {CT_BYTES}",
                data.len()
            )));
        }
        data.par_chunks(CT_BYTES)
            .enumerate()
            .map(|(i, chunk)| {
                let v = U2048::from_le_slice(chunk);
                if v >= self.n || v == U2048::ZERO {
                    return Err(CoreError::InvalidElement {
                        index: i,
                        reason: "ciphertext out of range for this key",
                    });
                }
                Ok(v)
            })
            .collect()
    }

    fn mont(&self, raw: &U2048) -> Mont {
        Mont::from_montgomery(*raw, self.params)
    }

    /// a·b mod n by [`cios`] (the tables' modulus is n).
    fn mul(&self, a: &Mont, b: &Mont) -> Mont {
        self.mont(&self.h.modulus.mul(a.as_montgomery(), b.as_montgomery()))
    }

    /// Encrypts `values` (row-major, `slots` signed integers per ciphertext) packed into
    /// slots of `slot_bits` bits each; see [`pack`].
    pub fn encrypt_packed(&self, values: &[i64], slots: usize, slot_bits: u32) -> Result<Vec<u8>> {
        self.encrypt_packed_with(values, slots, slot_bits, None)
    }

    /// [`encrypt_packed`](Self::encrypt_packed) with the randomness r of every row given:
    /// for tests that compare the key owner's CRT path with this one value for value.
    #[doc(hidden)]
    pub fn encrypt_packed_with(
        &self,
        values: &[i64],
        slots: usize,
        slot_bits: u32,
        nonces: Option<&[U384]>,
    ) -> Result<Vec<u8>> {
        check_rows(values, slots, slot_bits, self.plaintext_bits(), nonces)?;
        let x = self.ifma();
        Ok(
            self.encrypt_rows(values, slots, slot_bits, nonces, |rows, out| {
                if let Some(x) = x {
                    for (rows, out) in rows
                        .chunks(ifma::LANES)
                        .zip(out.chunks_mut(ifma::LANES * CT_BYTES))
                    {
                        for (c, o) in self.pow8(x, rows, &[]).iter().zip(out.chunks_mut(CT_BYTES)) {
                            o.copy_from_slice(&c.to_le_bytes());
                        }
                    }
                    return;
                }
                for ((mag, neg, r), o) in rows.iter().zip(out.chunks_mut(CT_BYTES)) {
                    self.to_wire(&self.encrypt_mag(&mag.to_le_bytes(), *neg, r), o)
                }
            }),
        )
    }

    /// One ciphertext per row of `slots` checked values, rows in parallel blocks of
    /// [`NONCE_BLOCK`]; each block draws its rows' randomness with one call to the system's
    /// generator (or takes the given `nonces`). `encrypt(rows, out)` writes a block's
    /// ciphertexts, each row given as (|m|, m < 0, r).
    fn encrypt_rows(
        &self,
        values: &[i64],
        slots: usize,
        slot_bits: u32,
        nonces: Option<&[U384]>,
        encrypt: impl Fn(&[(U768, bool, U384)], &mut [u8]) + Sync,
    ) -> Vec<u8> {
        let rows = values.len() / slots;
        let mut out = vec![0u8; rows * CT_BYTES];
        out.par_chunks_mut(CT_BYTES * NONCE_BLOCK)
            .zip(values.par_chunks(slots * NONCE_BLOCK))
            .enumerate()
            .for_each(|(block, (o, vals))| {
                let n = vals.len() / slots;
                let r = match nonces {
                    Some(all) => all[block * NONCE_BLOCK..block * NONCE_BLOCK + n].to_vec(),
                    None => self.draw_rs(n),
                };
                let rows: Vec<(U768, bool, U384)> = vals
                    .chunks(slots)
                    .zip(r)
                    .map(|(row, r)| {
                        let (mag, neg) = pack(row, slot_bits);
                        (mag, neg, r)
                    })
                    .collect();
                encrypt(&rows, o);
            });
        out
    }

    /// `n` fresh randomness values r, each uniform below 2^(|t| + R_SLACK) as [`draw_r`]'s,
    /// from one read of the system's generator.
    ///
    /// [`draw_r`]: Self::draw_r
    fn draw_rs(&self, n: usize) -> Vec<U384> {
        const W: usize = U384::BYTES;
        let mut buf = vec![0u8; n * W];
        OsRng.fill_bytes(&mut buf);
        let mask = U384::MAX.shr_vartime(U384::BITS - (self.t_bits + R_SLACK));
        buf.chunks_exact(W)
            .map(|b| U384::from_le_slice(b).bitand(&mask))
            .collect()
    }

    /// Element-wise homomorphic sum of two equally long ciphertext buffers.
    pub fn add(&self, a: &[u8], b: &[u8]) -> Result<Vec<u8>> {
        if a.len() != b.len() {
            return Err(CoreError::Shape(
                "ciphertext buffers differ in length".into(),
            ));
        }
        let (a, b) = (self.check(a)?, self.check(b)?);
        let m = &self.h.modulus;
        let mut out = vec![0u8; a.len() * CT_BYTES];
        if let Some(x) = self.ifma() {
            const L: usize = ifma::LANES;
            out.par_chunks_mut(CT_BYTES * L)
                .zip(a.par_chunks(L).zip(b.par_chunks(L)))
                .for_each(|(o, (a, b))| {
                    let limbs = |v: &[U2048]| -> [[u64; N_K]; L] {
                        std::array::from_fn(|l| ifma::to_limbs(v.get(l).unwrap_or(&U2048::ONE)))
                    };
                    let c = ifma::mul_plain(&x.f, &limbs(a), &limbs(b));
                    for (c, o) in c.iter().zip(o.chunks_mut(CT_BYTES)) {
                        o.copy_from_slice(&x.f.reduce::<LIMBS>(c).to_le_bytes());
                    }
                });
            return Ok(out);
        }
        // (a·b·R^(-1))·R²·R^(-1) = a·b: two products, no conversion in or out
        out.par_chunks_mut(CT_BYTES)
            .zip(a.par_iter().zip(b.par_iter()))
            .for_each(|(o, (x, y))| {
                o.copy_from_slice(&m.enter(&m.mul(x, y)).to_le_bytes());
            });
        Ok(out)
    }

    /// This key on the portable path even where the CPU has AVX-512 IFMA (tests compare).
    #[doc(hidden)]
    pub fn without_ifma(mut self) -> Self {
        self.ifma = std::sync::OnceLock::from(None);
        self
    }

    /// The IFMA tables, built on first call where the CPU has AVX-512 IFMA.
    fn ifma(&self) -> Option<&PkIfma> {
        self.ifma
            .get_or_init(|| {
                if !ifma::available() {
                    return None;
                }
                let f = ifma::Field::new(&self.n)?;
                let m = &self.h.modulus;
                let mul = |a: &U2048, b: &U2048| m.mul(&m.enter(a), b);
                let g_bits = self.g.windows * self.g.window;
                let h_bits = self.h.windows * self.h.window;
                Some(PkIfma {
                    g: ifma::Table::new(&f, &[self.g_raw, self.g_inv_raw], g_bits, W_PUBLIC_G, mul),
                    h: ifma::Table::new(&f, &[self.h_raw], h_bits, W_PUBLIC_H, mul),
                    from_portable: ifma::pow2_mod(&self.n, 2 * 52 * N_K - 64 * LIMBS),
                    one: ifma::pow2_mod(&self.n, 52 * N_K),
                    shift_rows: shift_bound_holds(&self.n),
                    f,
                })
            })
            .as_ref()
    }

    /// Up to eight rows' `G^(±mag)·H^r·times` (plain residues below n) in IFMA lanes.
    fn pow8(&self, x: &PkIfma, rows: &[(U768, bool, U384)], times: &[U2048]) -> Vec<U2048> {
        const L: usize = ifma::LANES;
        let pad = (U768::ZERO, false, U384::ZERO);
        let row = |l: usize| rows.get(l).unwrap_or(&pad);
        let mag: [[u8; 96]; L] = std::array::from_fn(|l| row(l).0.to_le_bytes());
        let r: [[u8; 48]; L] = std::array::from_fn(|l| row(l).2.to_le_bytes());
        let times: [[u64; N_K]; L] =
            std::array::from_fn(|l| ifma::to_limbs(times.get(l).unwrap_or(&U2048::ONE)));
        let c = x.g.pow2_times(
            &x.h,
            &x.f,
            std::array::from_fn(|l| row(l).1 as usize),
            std::array::from_fn(|l| &mag[l][..]),
            std::array::from_fn(|l| &r[l][..]),
            &times,
        );
        (0..rows.len()).map(|l| x.f.reduce(&c[l])).collect()
    }

    /// Multiplies every ciphertext by a fresh encryption of zero.
    pub fn rerandomize(&self, a: &[u8]) -> Result<Vec<u8>> {
        if let Some(x) = self.ifma() {
            let a = self.check(a)?;
            let mut out = vec![0u8; a.len() * CT_BYTES];
            out.par_chunks_mut(CT_BYTES * NONCE_BLOCK)
                .zip(a.par_chunks(NONCE_BLOCK))
                .for_each(|(o, a)| {
                    let r = self.draw_rs(a.len());
                    for ((o, a), r) in o
                        .chunks_mut(CT_BYTES * ifma::LANES)
                        .zip(a.chunks(ifma::LANES))
                        .zip(r.chunks(ifma::LANES))
                    {
                        let rows: Vec<(U768, bool, U384)> =
                            r.iter().map(|r| (U768::ZERO, false, *r)).collect();
                        for (c, o) in self.pow8(x, &rows, a).iter().zip(o.chunks_mut(CT_BYTES)) {
                            o.copy_from_slice(&c.to_le_bytes());
                        }
                    }
                });
            return Ok(out);
        }
        let a = self.parse(a)?;
        let mut out = vec![0u8; a.len() * CT_BYTES];
        out.par_chunks_mut(CT_BYTES)
            .zip(a.par_iter())
            .for_each(|(o, x)| self.to_wire(&self.mul(&self.mont(x), &self.nonce()), o));
        Ok(out)
    }

    /// Encrypted histograms: for each node in `nodes` and each feature f, the homomorphic
    /// sum of the ciphertexts of the rows with `node_of_row == node`, split by the row's bin
    /// `bins[row·features + f]` (< `n_bins`). Returns nodes × features × n_bins ciphertexts,
    /// each re-randomised so that the sum does not reveal which received ciphertexts it
    /// holds (an empty bin is a fresh encryption of zero).
    pub fn histogram(
        &self,
        cts: &[U2048],
        bins: &[u8],
        features: usize,
        node_of_row: &[i32],
        nodes: &[i32],
        n_bins: usize,
    ) -> Result<Vec<u8>> {
        self.histogram_with(cts, bins, features, node_of_row, nodes, n_bins, true)
    }

    /// [`histogram`](Self::histogram) without the re-randomisation (an empty bin is the
    /// trivial encryption 1 of zero): the partial histogram of one block of rows, which
    /// the party adds to its other blocks' and re-randomises once ([`rerandomize`]) before
    /// the sum leaves it. Saves one nonce per cell per block.
    ///
    /// [`rerandomize`]: Self::rerandomize
    pub fn histogram_sums(
        &self,
        cts: &[U2048],
        bins: &[u8],
        features: usize,
        node_of_row: &[i32],
        nodes: &[i32],
        n_bins: usize,
    ) -> Result<Vec<u8>> {
        self.histogram_with(cts, bins, features, node_of_row, nodes, n_bins, false)
    }

    #[allow(clippy::too_many_arguments)]
    fn histogram_with(
        &self,
        cts: &[U2048],
        bins: &[u8],
        features: usize,
        node_of_row: &[i32],
        nodes: &[i32],
        n_bins: usize,
        rerandomize: bool,
    ) -> Result<Vec<u8>> {
        let rows = cts.len();
        if node_of_row.len() != rows || bins.len() != rows * features {
            return Err(CoreError::Shape(format!(
                "histogram over {rows} ciphertexts needs {rows} node ids and {rows}×{features} bins"
            )));
        }
        if n_bins == 0 || n_bins > 256 {
            return Err(CoreError::Shape("n_bins must be in 1..=256".into()));
        }
        if let Some(i) = bins.iter().position(|&b| b as usize >= n_bins) {
            return Err(CoreError::Shape(format!(
                "bin {} at index {i} >= n_bins",
                bins[i]
            )));
        }
        let slot = |node: i32| nodes.iter().position(|&k| k == node);
        let mut members: Vec<Vec<u32>> = vec![Vec::new(); nodes.len()];
        for (r, &node) in node_of_row.iter().enumerate() {
            if node >= 0 {
                if let Some(k) = slot(node) {
                    members[k].push(r as u32);
                }
            }
        }
        if let Some(x) = self.ifma() {
            let shift = x.shift_rows;
            let out = self.histogram_lanes(x, cts, bins, features, &members, n_bins, shift);
            return if rerandomize {
                self.rerandomize(&out)
            } else {
                Ok(out)
            };
        }
        let cell_bytes = n_bins * CT_BYTES;
        let mut out = vec![0u8; nodes.len() * features * cell_bytes];
        out.par_chunks_mut(cell_bytes)
            .enumerate()
            .for_each(|(task, o)| {
                let (k, f) = (task / features, task % features);
                let mut acc = vec![Mont::one(self.params); n_bins];
                for &r in &members[k] {
                    let r = r as usize;
                    let b = bins[r * features + f] as usize;
                    acc[b] = self.mul(&acc[b], &self.mont(&cts[r]));
                }
                for (b, a) in acc.iter().enumerate() {
                    let c = if rerandomize {
                        self.mul(a, &self.nonce())
                    } else {
                        *a
                    };
                    self.to_wire(&c, &mut o[b * CT_BYTES..(b + 1) * CT_BYTES]);
                }
            });
        Ok(out)
    }
}

impl PublicKey {
    /// [`histogram_sums`](Self::histogram_sums) in IFMA lanes: every lane sums one (node,
    /// feature) task. Each member row's ciphertext enters the lanes' Montgomery form once
    /// (not once per feature); tasks are sorted by their node's size so that the eight in a
    /// vector mostly run out together (a lane that has run out multiplies by one). The sums
    /// are exact products mod n, so the bytes are those of the portable path.
    ///
    /// With `shift`, a row enters as y = x·2^(52·N_K − 2048) where x = c·2^2048 mod n is
    /// its portable Montgomery form: a shift of the limbs, no product, and acc·y·2^(−52·N_K)
    /// = acc·c keeps the accumulator in the lanes' Montgomery form. y is not reduced
    /// (below 2^32·n), so each product is below λ·acc + n with λ = n/2^2048, and by
    /// induction every accumulator stays below B = n/(1 − λ). The limbs hold it as long as
    /// B < 2^(52·N_K), which [`shift_bound_holds`] checks once per key; otherwise every row
    /// takes one product by `from_portable`.
    #[allow(clippy::too_many_arguments)]
    fn histogram_lanes(
        &self,
        x: &PkIfma,
        cts: &[U2048],
        bins: &[u8],
        features: usize,
        members: &[Vec<u32>],
        n_bins: usize,
        shift: bool,
    ) -> Vec<u8> {
        const L: usize = ifma::LANES;
        // member rows laid node after node; the last row is the one that pads idle lanes
        let ids: Vec<u32> = members.iter().flatten().copied().collect();
        let mut start = Vec::with_capacity(members.len());
        let mut at = 0usize;
        for m in members {
            start.push(at);
            at += m.len();
        }
        let mut rows = vec![[0u64; N_K]; ids.len() + 1];
        rows.par_chunks_mut(L)
            .zip(ids.par_chunks(L))
            .for_each(|(o, ids)| {
                if shift {
                    for (o, &r) in o.iter_mut().zip(ids) {
                        *o = shifted_limbs(&cts[r as usize]);
                    }
                    return;
                }
                let lanes: [[u64; N_K]; L] = std::array::from_fn(|l| {
                    ids.get(l)
                        .map_or([0u64; N_K], |&r| ifma::to_limbs(&cts[r as usize]))
                });
                let c = ifma::mul_const(&x.f, &lanes, &x.from_portable);
                for (o, c) in o.iter_mut().zip(c.iter()) {
                    *o = *c;
                }
            });
        let pad = ids.len();
        // the one, as a row enters: R mod n, or the portable one (2^2048 mod n) shifted
        rows[pad] = if shift {
            shifted_limbs(Mont::one(self.params).as_montgomery())
        } else {
            x.one
        };
        let mut tasks: Vec<(usize, usize)> = (0..members.len())
            .flat_map(|k| (0..features).map(move |f| (k, f)))
            .collect();
        tasks.sort_by_key(|&(k, _)| std::cmp::Reverse(members[k].len()));
        let sums: Vec<Vec<[[u64; N_K]; L]>> = tasks
            .par_chunks(L)
            .map(|group| {
                let task = |l: usize| group.get(l).copied();
                let steps = group.iter().map(|&(k, _)| members[k].len()).max();
                ifma::histogram8(&x.f, &rows, &x.one, n_bins, steps.unwrap_or(0), |step| {
                    let mut row = [pad; L];
                    let mut bin = [0usize; L];
                    for l in 0..L {
                        if let Some((k, f)) = task(l) {
                            if step < members[k].len() {
                                row[l] = start[k] + step;
                                bin[l] = bins[ids[row[l]] as usize * features + f] as usize;
                            }
                        }
                    }
                    (row, bin)
                })
            })
            .collect();
        let cell_bytes = n_bins * CT_BYTES;
        let mut out = vec![0u8; members.len() * features * cell_bytes];
        for (group, sums) in tasks.chunks(L).zip(&sums) {
            for (l, &(k, f)) in group.iter().enumerate() {
                let o = &mut out[(k * features + f) * cell_bytes..][..cell_bytes];
                for (b, s) in sums.iter().enumerate() {
                    let c: U2048 = x.f.reduce(&s[l]);
                    o[b * CT_BYTES..(b + 1) * CT_BYTES].copy_from_slice(&c.to_le_bytes());
                }
            }
        }
        out
    }
}

/// Radix-2^52 limbs of x·2^(52·N_K − 2048) (x below 2^2048: the product fits the limbs).
fn shifted_limbs(x: &U2048) -> [u64; N_K] {
    const SHIFT: usize = 52 * N_K - 64 * LIMBS;
    let w = x.as_words();
    let mut wide = [0u64; LIMBS + 1];
    for (i, &v) in w.iter().enumerate() {
        wide[i] |= v << SHIFT;
        wide[i + 1] = v >> (64 - SHIFT);
    }
    ifma::to_limbs(&crypto_bigint::Uint::<{ LIMBS + 1 }>::from_words(wide))
}

/// Whether n/(1 − n/2^2048) < 2^(52·N_K), the bound on the accumulators of rows entered by
/// [`shifted_limbs`]: it holds when n < 2^2048 − 2^2017 (then 1 − λ > 2^−31 and the bound is
/// below 2^31·n < 2^2079), that is unless n's top 31 bits are all ones.
fn shift_bound_holds(n: &U2048) -> bool {
    const _: () = assert!(52 * N_K - 64 * LIMBS == 32);
    let top = n.as_words()[LIMBS - 1] >> 33;
    top != (1u64 << 31) - 1
}

fn check_layout(len: usize, slots: usize, slot_bits: u32, pt_bits: u32) -> Result<()> {
    if slots == 0 || !len.is_multiple_of(slots) {
        return Err(CoreError::Shape(format!(
            "{len} values do not fill rows of {slots} slots"
        )));
    }
    if !(2..=126).contains(&slot_bits) {
        return Err(CoreError::Shape("slot_bits must be in 2..=126".into()));
    }
    if slots as u64 * slot_bits as u64 > pt_bits as u64 {
        return Err(CoreError::Shape(format!(
            "{slots} slots of {slot_bits} bits exceed the key's {pt_bits}-bit plaintexts"
        )));
    }
    Ok(())
}

/// Checks a layout, that every value fits its signed slot (else the sum of the packed
/// plaintext would carry into the next slot and decrypt to other numbers), and the optional
/// per-row randomness; returns the number of rows.
fn check_rows(
    values: &[i64],
    slots: usize,
    slot_bits: u32,
    pt_bits: u32,
    nonces: Option<&[U384]>,
) -> Result<usize> {
    check_layout(values.len(), slots, slot_bits, pt_bits)?;
    if slot_bits <= 64 {
        let limit = 1u64 << (slot_bits - 1);
        if let Some(i) = values.iter().position(|v| v.unsigned_abs() >= limit) {
            return Err(CoreError::Shape(format!(
                "value {} at index {i} does not fit a signed {slot_bits}-bit slot",
                values[i]
            )));
        }
    }
    let rows = values.len() / slots;
    if nonces.is_some_and(|n| n.len() != rows) {
        return Err(CoreError::Shape(format!("{rows} rows need {rows} nonces")));
    }
    Ok(rows)
}

/// Packs signed slot values into one plaintext m = Σ v_j · 2^(j·slot_bits), returned as
/// magnitude and sign. Sums of packed plaintexts unpack slot by slot ([`unpack`]) as long as
/// every slot's sum stays within ±2^(slot_bits-1).
pub fn pack(values: &[i64], slot_bits: u32) -> (U768, bool) {
    let (mut pos, mut neg) = (U768::ZERO, U768::ZERO);
    for (j, &v) in values.iter().enumerate() {
        let term = U768::from_u64(v.unsigned_abs()).shl_vartime(j as u32 * slot_bits);
        if v >= 0 {
            pos = pos.wrapping_add(&term);
        } else {
            neg = neg.wrapping_add(&term);
        }
    }
    if pos >= neg {
        (pos.wrapping_sub(&neg), false)
    } else {
        (neg.wrapping_sub(&pos), true)
    }
}

/// Inverse of [`pack`] on a signed plaintext (two's complement in 768 bits): the slots'
/// signed values, lowest first; `None` when the top slot, which takes the rest of the
/// plaintext, does not fit a signed `slot_bits`-bit value (an overflowed sum or a forged
/// ciphertext: the lower slots are always in range, so only the top one can lie).
pub fn unpack(mut x: U768, slots: usize, slot_bits: u32) -> Option<Vec<i128>> {
    let half = 1i128 << (slot_bits - 1);
    let mask = (1u128 << slot_bits) - 1;
    let mut out = Vec::with_capacity(slots);
    for j in 0..slots {
        let bytes = x.to_le_bytes();
        let low = u128::from_le_bytes(bytes[..16].try_into().expect("16 bytes"));
        let negative_x = x.bit_vartime(767);
        if j + 1 == slots {
            // the top slot takes the rest: a signed number of at most slot_bits bits,
            // checked on all 768 bits (reading only the low 128 would turn 2^130 + 5 into 5)
            let mag = if negative_x { x.wrapping_neg() } else { x };
            let half_mag = U768::ONE.shl_vartime(slot_bits - 1);
            let fits = if negative_x {
                mag <= half_mag
            } else {
                mag < half_mag
            };
            if !fits {
                return None;
            }
            let m = mag.resize::<2>().to_le_bytes_u128();
            out.push(if negative_x {
                (m as i128).wrapping_neg()
            } else {
                m as i128
            });
            break;
        }
        let mut s = (low & mask) as i128;
        if s >= half {
            s -= 1i128 << slot_bits;
        }
        out.push(s);
        // x = (x - s) >> slot_bits, arithmetically
        let sub = U768::from_u128(s.unsigned_abs());
        x = if s >= 0 {
            x.wrapping_sub(&sub)
        } else {
            x.wrapping_add(&sub)
        };
        let sign = x.bit_vartime(767);
        x = x.shr_vartime(slot_bits);
        if sign {
            let fill = U768::MAX.shl_vartime(768 - slot_bits);
            x = x.wrapping_add(&fill); // set the vacated top bits (they are zero after the shift)
        }
    }
    Some(out)
}

trait LowU128 {
    fn to_le_bytes_u128(&self) -> u128;
}

impl LowU128 for crypto_bigint::Uint<2> {
    fn to_le_bytes_u128(&self) -> u128 {
        u128::from_le_bytes(self.to_le_bytes())
    }
}

/// Limbs of the key owner's residues mod p² (p² has at most 1,366 bits for a 2048-bit n).
const P2_LIMBS: usize = 22;
/// Limbs of the key owner's residues mod q (q has at most 684 bits for a 2048-bit n).
const Q_LIMBS: usize = 11;
type P2 = Uint<P2_LIMBS>;

/// Encryption by the key owner: the same G^m · H^r mod n as [`PublicKey::encrypt_packed`],
/// computed mod p² and mod q and recombined by CRT (about three times fewer word operations).
///
/// Mod p², G splits into G₁ = G / G^p of order p and G₂ = G^p of order dividing t (p ≡ 1
/// mod t, so these are its p- and t-parts); G₁^m = 1 + (m·L(G₁) mod p)·p costs one product,
/// G₂^m = G₂^(m mod t) and H^r = H^(r mod t) (H has order dividing t mod p²) take 224-bit
/// exponents. Mod q nothing is known of the orders, so m and r are used whole.
///
/// Security: the result is not merely distributed like a public-key encryption, it is the
/// same number: r is drawn exactly as there (uniform below 2^(|t| + R_SLACK)), and every
/// exponent is reduced only by an order that [`Crt::new`] checked holds for this key, so a
/// ciphertext reveals nothing about which path made it, and both kinds add together.
struct Crt {
    p: U768,
    p_mod: cios::Modulus<12>,
    p2_params: MontyParams<P2_LIMBS>,
    q: U704,
    t_768: NonZero<U768>,
    t_384: NonZero<U384>,
    t: U256,
    /// L(G₁) mod p in Montgomery form mod p: G₁^m = 1 + (m·l1 mod p)·p mod p².
    l1: MontyForm<12>,
    /// q^(-1) mod p², Montgomery form.
    q_inv: MontyForm<P2_LIMBS>,
    g2: FixedBase<P2_LIMBS>,
    h_p2: FixedBase<P2_LIMBS>,
    g_q: FixedBase<Q_LIMBS>,
    g_inv_q: FixedBase<Q_LIMBS>,
    h_q: FixedBase<Q_LIMBS>,
    /// The same tables in AVX-512 IFMA form, eight rows at a time, where the CPU has it.
    ifma: Option<CrtIfma>,
}

/// Radix-2^52 limbs of residues mod p² (1,366 bits at most) and mod q (684).
const P2_K: usize = 27;
const Q_K: usize = 14;

struct CrtIfma {
    fp2: ifma::Field<P2_K>,
    fq: ifma::Field<Q_K>,
    g2: ifma::Table<P2_K>,
    h_p2: ifma::Table<P2_K>,
    /// G and G^-1 mod q (tables 0 and 1: a lane picks by its plaintext's sign)
    g_q: ifma::Table<Q_K>,
    h_q: ifma::Table<Q_K>,
}

impl Crt {
    fn new(
        p: &U768,
        q: &U768,
        t: &U256,
        g_raw: &U2048,
        h_raw: &U2048,
        pt_bits: u32,
        use_ifma: bool,
    ) -> Result<Self> {
        const BAD_ORDER: &str = "OU generators G, H do not have the orders p·t, t mod p²";
        if 2 * p.bits() > P2::BITS || q.bits() > U704::BITS {
            return Err(CoreError::InvalidKey(
                "OU primes too large for this build (2048-bit n at most)",
            ));
        }
        let t_bits = t.bits();
        let p_wide = p.resize::<P2_LIMBS>();
        let p2 = p_wide.wrapping_mul(&p_wide);
        let p2_params = MontyParams::new_vartime(Option::from(Odd::new(p2)).expect("p² is odd"));
        let q_odd = Option::<Odd<U704>>::from(Odd::new(q.resize::<Q_LIMBS>()))
            .ok_or(CoreError::InvalidKey("OU prime q must be odd"))?;
        let q_params = MontyParams::new_vartime(q_odd);
        let p2_nz = Option::from(NonZero::new(p2.resize::<LIMBS>())).expect("p² is non-zero");
        let q_nz = Option::from(NonZero::new(q.resize::<LIMBS>())).expect("q is odd");
        let mod_p2 = |x: &U2048| MontyForm::new(&x.rem(&p2_nz).resize::<P2_LIMBS>(), p2_params);
        let mod_q = |x: &U2048| MontyForm::new(&x.rem(&q_nz).resize::<Q_LIMBS>(), q_params);
        let one_p2 = MontyForm::one(p2_params);

        let g = mod_p2(g_raw);
        let g2 = g.pow_bounded_exp(p, p.bits());
        if g2.pow_bounded_exp(t, t_bits) != one_p2 {
            return Err(CoreError::InvalidKey(BAD_ORDER));
        }
        let g1 = g
            .mul(&g2.pow_bounded_exp(&t.wrapping_sub(&U256::ONE), t_bits))
            .retrieve();
        let (l1, rem) = g1
            .wrapping_sub(&P2::ONE)
            .div_rem(&Option::from(NonZero::new(p_wide)).expect("p is non-zero"));
        if rem != P2::ZERO {
            return Err(CoreError::InvalidKey(BAD_ORDER));
        }
        let h = mod_p2(h_raw);
        if h.pow_bounded_exp(t, t_bits) != one_p2 {
            return Err(CoreError::InvalidKey(BAD_ORDER));
        }
        let p_params = MontyParams::new_vartime(Option::from(Odd::new(*p)).expect("p is odd"));

        // q^(-1) = q^(φ(p²) - 1) mod p², φ(p²) = p² - p
        let q_inv = MontyForm::new(&q.resize::<P2_LIMBS>(), p2_params)
            .pow_bounded_exp(&p2.wrapping_sub(&p_wide).wrapping_sub(&P2::ONE), P2::BITS);
        let gq = mod_q(g_raw);
        let q_less_2 = q.resize::<Q_LIMBS>().wrapping_sub(&U704::from_u8(2));
        let gq_inv = gq.pow_bounded_exp(&q_less_2, U704::BITS);
        let hq = mod_q(h_raw);
        let r_bits = (t_bits + R_SLACK) as usize;
        let mut crt = Crt {
            p: *p,
            p_mod: cios::Modulus::new(&p_params),
            p2_params,
            q: q.resize::<Q_LIMBS>(),
            t_768: Option::from(NonZero::new(t.resize::<12>())).expect("t is non-zero"),
            t_384: Option::from(NonZero::new(t.resize::<6>())).expect("t is non-zero"),
            t: *t,
            l1: MontyForm::new(&l1.resize::<12>(), p_params),
            q_inv,
            g2: FixedBase::new(g2, t_bits as usize, W_P2),
            h_p2: FixedBase::new(h, t_bits as usize, W_P2),
            g_q: FixedBase::new(gq, pt_bits as usize, W_Q_G),
            g_inv_q: FixedBase::new(gq_inv, pt_bits as usize, W_Q_G),
            h_q: FixedBase::new(hq, r_bits, W_Q_H),
            ifma: None,
        };
        // (asked for and there: the instructions exist on this CPU)
        if use_ifma && ifma::available() {
            crt.ifma = crt.build_ifma(&p2, &q.resize::<Q_LIMBS>(), [&g2, &h], [&gq, &gq_inv, &hq]);
            if crt.ifma.is_some() {
                // the portable tables served to build these; only their moduli stay in use
                for t in [&mut crt.g2, &mut crt.h_p2] {
                    t.table = Vec::new();
                }
                for t in [&mut crt.g_q, &mut crt.g_inv_q, &mut crt.h_q] {
                    t.table = Vec::new();
                }
            }
        }
        Ok(crt)
    }

    /// The IFMA tables from the same bases (Montgomery forms of crypto-bigint's), or `None`
    /// where a modulus does not fit the limbs.
    fn build_ifma(
        &self,
        p2: &P2,
        q: &U704,
        [g2, h]: [&MontyForm<P2_LIMBS>; 2],
        [gq, gq_inv, hq]: [&MontyForm<Q_LIMBS>; 3],
    ) -> Option<CrtIfma> {
        let fp2 = ifma::Field::new(p2)?;
        let fq = ifma::Field::new(q)?;
        let (mp2, mq) = (&self.g2.modulus, &self.g_q.modulus);
        // plain products for the tables: (a·R)·b·R^(-1) = a·b
        let mul_p2 = |a: &P2, b: &P2| mp2.mul(&mp2.enter(a), b);
        let mul_q = |a: &U704, b: &U704| mq.mul(&mq.enter(a), b);
        let plain_p2 = |x: &MontyForm<P2_LIMBS>| x.retrieve();
        let plain_q = |x: &MontyForm<Q_LIMBS>| x.retrieve();
        let t_bits = self.t.bits() as usize;
        let pt_bits = self.g_q.windows * self.g_q.window;
        let r_bits = self.h_q.windows * self.h_q.window;
        Some(CrtIfma {
            g2: ifma::Table::new(&fp2, &[plain_p2(g2)], t_bits, W_P2, mul_p2),
            h_p2: ifma::Table::new(&fp2, &[plain_p2(h)], t_bits, W_P2, mul_p2),
            g_q: ifma::Table::new(&fq, &[plain_q(gq), plain_q(gq_inv)], pt_bits, W_Q_G, mul_q),
            h_q: ifma::Table::new(&fq, &[plain_q(hq)], r_bits, W_Q_H, mul_q),
            fp2,
            fq,
        })
    }

    /// The per-row scalars of the mod-p² part: (m mod t, r mod t, G₁^m mod p²) for the
    /// signed plaintext ±mag (G₁^m = 1 + (m·l1 mod p)·p, one product mod p).
    fn p2_parts(&self, mag: &U768, negative: bool, r: &U384) -> (U256, U256, P2) {
        // Knuth's division, variable-time only in the divisor (this key's t, whose length is
        // public), constant-time in the dividend; the bit-serial `rem` took microseconds a row
        let mut mt = mag.rem_vartime(&self.t_768).resize::<4>();
        // mag < p and l1 in Montgomery form: one product gives mag·l1 mod p
        let mut k = self.p_mod.mul(mag, self.l1.as_montgomery());
        if negative {
            // G^(-m): the same parts with -m mod t and -m·l1 mod p (zero stays zero)
            if mt != U256::ZERO {
                mt = self.t.wrapping_sub(&mt);
            }
            if k != U768::ZERO {
                k = self.p.wrapping_sub(&k);
            }
        }
        let rt = r.rem_vartime(&self.t_384).resize::<4>();
        let g1m = k
            .resize::<P2_LIMBS>()
            .wrapping_mul(&self.p.resize::<P2_LIMBS>())
            .wrapping_add(&P2::ONE);
        (mt, rt, g1m)
    }

    /// c = cq + q·((cp - cq)·q^(-1) mod p²): the residue below q·p² = n that is cp mod p²
    /// and cq mod q (both plain, below their moduli).
    fn recombine(&self, cp: &P2, cq: &U704) -> U2048 {
        let mp2 = &self.g2.modulus;
        let diff = MontyForm::from_montgomery(mp2.enter(cp), self.p2_params).sub(
            &MontyForm::from_montgomery(mp2.enter(&cq.resize::<P2_LIMBS>()), self.p2_params),
        );
        // (cp - cq)·R times q^(-1)·R, then out of Montgomery form
        let d = mp2.leave(&mp2.mul(diff.as_montgomery(), self.q_inv.as_montgomery()));
        self.q
            .resize::<LIMBS>()
            .wrapping_mul(&d.resize::<LIMBS>())
            .wrapping_add(&cq.resize::<LIMBS>())
    }

    /// G^(±mag) · H^r mod n, as the residue below n.
    fn encrypt(&self, mag: &U768, negative: bool, r: &U384) -> U2048 {
        debug_assert!(
            self.ifma.is_none(),
            "the portable tables were dropped for IFMA's"
        );
        // mod p²: the exponents of the order-t parts reduced mod t, G₁'s power in one product
        let (mt, rt, g1m) = self.p2_parts(mag, negative, r);
        let (mp2, mq) = (&self.g2.modulus, &self.g_q.modulus);
        // (G₂^mt·R)·(H^rt·R)·R^(-1) times g1m (plain): the plain product
        let cp = mp2.mul(
            &mp2.mul(
                self.g2.pow(&mt.to_le_bytes()).as_montgomery(),
                self.h_p2.pow(&rt.to_le_bytes()).as_montgomery(),
            ),
            &g1m,
        );
        // mod q: whole exponents
        let base = if negative { &self.g_inv_q } else { &self.g_q };
        let cq = mq.leave(&mq.mul(
            base.pow(&mag.to_le_bytes()).as_montgomery(),
            self.h_q.pow(&r.to_le_bytes()).as_montgomery(),
        ));
        self.recombine(&cp, &cq)
    }

    /// [`encrypt`](Self::encrypt) of up to eight rows at once in IFMA lanes: the same
    /// numbers (padding lanes encrypt zero and are dropped).
    fn encrypt8(&self, x: &CrtIfma, rows: &[(U768, bool, U384)]) -> Vec<U2048> {
        const L: usize = ifma::LANES;
        let pad = (U768::ZERO, false, U384::ZERO);
        let row = |l: usize| rows.get(l).unwrap_or(&pad);
        let parts: [(U256, U256, P2); L] = std::array::from_fn(|l| {
            let (mag, neg, r) = row(l);
            self.p2_parts(mag, *neg, r)
        });
        let mt: [[u8; 32]; L] = std::array::from_fn(|l| parts[l].0.to_le_bytes());
        let rt: [[u8; 32]; L] = std::array::from_fn(|l| parts[l].1.to_le_bytes());
        let g1m: [[u64; P2_K]; L] = std::array::from_fn(|l| ifma::to_limbs(&parts[l].2));
        let cp = x.g2.pow2_times(
            &x.h_p2,
            &x.fp2,
            [0; L],
            std::array::from_fn(|l| &mt[l][..]),
            std::array::from_fn(|l| &rt[l][..]),
            &g1m,
        );
        let mag: [[u8; 96]; L] = std::array::from_fn(|l| row(l).0.to_le_bytes());
        let r: [[u8; 48]; L] = std::array::from_fn(|l| row(l).2.to_le_bytes());
        let one = [ifma::to_limbs::<Q_LIMBS, Q_K>(&U704::ONE); L];
        let cq = x.g_q.pow2_times(
            &x.h_q,
            &x.fq,
            std::array::from_fn(|l| row(l).1 as usize),
            std::array::from_fn(|l| &mag[l][..]),
            std::array::from_fn(|l| &r[l][..]),
            &one,
        );
        (0..rows.len())
            .map(|l| self.recombine(&x.fp2.reduce(&cp[l]), &x.fq.reduce(&cq[l])))
            .collect()
    }
}

/// The secret key: p, q, t and what decryption and encryption precompute from them.
pub struct SecretKey {
    public: PublicKey,
    p: U768,
    q: U768,
    t: U256,
    p2: NonZero<U2048>,
    p2_mod: cios::Modulus<P2_LIMBS>,
    /// p^(-1) mod 2^768: L(y) = (y - 1)/p is an exact division, so a product by this
    p_inv_2k: U768,
    /// L(G^t mod p²)^(-1) mod p, in Montgomery form mod p
    l_inv: MontyForm<12>,
    half_p: U768,
    crt: Crt,
}

impl SecretKey {
    /// A fresh key with an `n_bits` modulus (1024 for tests, 2048 for use).
    pub fn generate(n_bits: u32) -> Result<Self> {
        let (p_bits, q_bits, t_bits) = sizes(n_bits)?;
        let rng = &mut OsRng;
        let t: U256 = generate_prime_with_rng(rng, t_bits);
        let t768 = t.resize::<12>();
        let p = loop {
            let mut u = U768::random_bits(rng, p_bits - t_bits - 1);
            u = u.bitor(&U768::ONE.shl_vartime(p_bits - t_bits - 2));
            let p = t768
                .wrapping_mul(&u)
                .shl_vartime(1)
                .wrapping_add(&U768::ONE);
            if p.bits() == p_bits && is_prime_with_rng(rng, &p) {
                break p;
            }
        };
        let q = loop {
            let q: U768 = generate_prime_with_rng(rng, q_bits);
            if q != p {
                break q;
            }
        };
        let (_, n) = modulus(&p, &q);
        let params = MontyParams::new_vartime(Option::from(Odd::new(n)).expect("n is odd"));
        let nz = Option::from(NonZero::new(n)).expect("n is non-zero");
        // 2u = (p - 1)/t: G = g^(2u) has order dividing p·t mod p², H = (g'^(2u))^n order t
        let (u2, _) = p
            .wrapping_sub(&U768::ONE)
            .div_rem(&Option::from(NonZero::new(t768)).expect("t is non-zero"));
        let u2 = u2.resize::<LIMBS>();
        let mut draw =
            || Mont::new(&U2048::random_mod(rng, &nz), params).pow_bounded_exp(&u2, p_bits);
        let g_raw = draw().retrieve();
        let h_raw = draw().pow(&n).retrieve();
        // L(G^t) = 0 has probability 1/p; from_parts rejects it rather than loop here
        Self::from_parts(p, q, t, g_raw, h_raw, ifma::available())
    }

    pub fn public(&self) -> &PublicKey {
        &self.public
    }

    /// p ‖ q ‖ t (96, 96, 32 bytes) ‖ G ‖ H (256 each).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(96 * 2 + 32 + 2 * CT_BYTES);
        out.extend_from_slice(&self.p.to_le_bytes());
        out.extend_from_slice(&self.q.to_le_bytes());
        out.extend_from_slice(&self.t.to_le_bytes());
        out.extend_from_slice(&self.public.g_raw.to_le_bytes());
        out.extend_from_slice(&self.public.h_raw.to_le_bytes());
        out
    }

    pub fn from_bytes(b: &[u8]) -> Result<Self> {
        if b.len() != 96 * 2 + 32 + 2 * CT_BYTES {
            return Err(CoreError::InvalidKey("an OU secret key is 736 bytes"));
        }
        let p = U768::from_le_slice(&b[..96]);
        let q = U768::from_le_slice(&b[96..192]);
        let t = U256::from_le_slice(&b[192..224]);
        let g_raw = U2048::from_le_slice(&b[224..480]);
        let h_raw = U2048::from_le_slice(&b[480..736]);
        Self::from_parts(p, q, t, g_raw, h_raw, ifma::available())
    }

    /// [`from_bytes`](Self::from_bytes) choosing the key owner's encryption path: with
    /// `ifma` false the portable one even where the CPU has AVX-512 IFMA (tests compare them);
    /// with `ifma` true the IFMA one only where the CPU has it.
    #[doc(hidden)]
    pub fn from_bytes_with(b: &[u8], ifma: bool) -> Result<Self> {
        let sk = Self::from_bytes(b)?;
        if ifma == sk.crt.ifma.is_some() {
            return Ok(sk);
        }
        Self::from_parts(sk.p, sk.q, sk.t, sk.public.g_raw, sk.public.h_raw, ifma)
    }

    /// Whether the key owner's encryption runs in AVX-512 IFMA lanes.
    pub fn uses_ifma(&self) -> bool {
        self.crt.ifma.is_some()
    }

    fn from_parts(
        p: U768,
        q: U768,
        t: U256,
        g_raw: U2048,
        h_raw: U2048,
        ifma: bool,
    ) -> Result<Self> {
        if p.bits() < 300 || q.bits() < 300 || t.bits() < 128 || !p.bit_vartime(0) {
            return Err(CoreError::InvalidKey(
                "OU secret key parameters out of range",
            ));
        }
        let (p2, n) = modulus(&p, &q);
        let public = PublicKey::build(n, g_raw, h_raw)?;
        let p_params = MontyParams::new_vartime(Option::from(Odd::new(p)).expect("p is odd"));
        let crt = Crt::new(&p, &q, &t, &g_raw, &h_raw, public.plaintext_bits(), ifma)?;
        let p_inv_2k = Option::from(p.inv_mod2k(U768::BITS)).expect("p is odd");
        let mut sk = SecretKey {
            public,
            p,
            q,
            t,
            p2: Option::from(NonZero::new(p2)).expect("p²"),
            p2_mod: cios::Modulus::new(&crt.p2_params),
            p_inv_2k,
            l_inv: MontyForm::one(p_params),
            half_p: p.shr_vartime(1),
            crt,
        };
        let l = sk.l_raw(&g_raw);
        if l == U768::ZERO {
            return Err(CoreError::InvalidKey("OU generator G does not match p"));
        }
        sk.l_inv = Option::<MontyForm<12>>::from(MontyForm::new(&l, p_params).inv())
            .ok_or(CoreError::InvalidKey("L(G^t) is not invertible mod p"))?;
        Ok(sk)
    }

    /// L(c^t mod p²) for a residue c mod n: the one exponentiation of decryption, by a
    /// fixed-window ladder that is constant-time in the secret t ([`pow_ct`]).
    fn l_raw(&self, c: &U2048) -> U768 {
        let m = &self.p2_mod;
        // variable-time only in the divisor p² (of a fixed, public length), as decrypt_many
        let x = m.enter(&c.rem_vartime(&self.p2).resize::<P2_LIMBS>());
        let one = MontyForm::one(self.crt.p2_params);
        self.l_of(&m.leave(&pow_ct(m, one.as_montgomery(), &x, &self.t)))
    }

    /// L(y) = (y - 1)/p for y = c^t mod p².
    fn l_of(&self, y: &P2) -> U768 {
        // y ≡ 1 mod p for an encryption (y = G^(m·t)): (y - 1)/p = (y - 1)·p^(-1) mod 2^768,
        // exact since the quotient is below p. Anything else decrypts to some residue too.
        y.wrapping_sub(&P2::ONE)
            .resize::<12>()
            .wrapping_mul(&self.p_inv_2k)
    }

    /// The signed plaintexts of `cts` (two's complement in 768 bits): eight at a time in
    /// AVX-512 IFMA lanes where the key owner's tables are, else one by one.
    fn decrypt_many(&self, cts: &[U2048]) -> Vec<U768> {
        const L: usize = ifma::LANES;
        let Some(x) = &self.crt.ifma else {
            return cts.iter().map(|c| self.decrypt_one(c)).collect();
        };
        let mut out = Vec::with_capacity(cts.len());
        for chunk in cts.chunks(L) {
            let bases: [[u64; P2_K]; L] = std::array::from_fn(|l| match chunk.get(l) {
                // Knuth's division: constant-time in the ciphertext, variable only in the
                // divisor's length (p², fixed and public); the bit-serial `rem` of 2048 bits
                // cost as much as the exponentiation
                Some(c) => ifma::to_limbs(&c.rem_vartime(&self.p2).resize::<P2_LIMBS>()),
                None => ifma::to_limbs(&P2::ONE),
            });
            let y = ifma::pow_ct(&x.fp2, &bases, &self.t);
            for y in y.iter().take(chunk.len()) {
                out.push(self.signed(&self.l_of(&x.fp2.reduce(y))));
            }
        }
        out
    }

    /// The signed plaintext of `c` as two's complement in 768 bits.
    fn decrypt_one(&self, c: &U2048) -> U768 {
        self.signed(&self.l_raw(c))
    }

    /// m = L(c^t)·L(G^t)^(-1) mod p, read as a signed number (two's complement in 768 bits).
    fn signed(&self, l: &U768) -> U768 {
        // l < 2^768 = R and l_inv in Montgomery form: one product gives l·l_inv mod p
        let m = self.crt.p_mod.mul(l, self.l_inv.as_montgomery());
        if m > self.half_p {
            m.wrapping_sub(&self.p) // m - p < 0, two's complement
        } else {
            m
        }
    }

    /// Encrypts like [`PublicKey::encrypt_packed`] (same layout, same wire format, the same
    /// ciphertext for the same randomness) by the key owner's CRT shortcut ([`Crt`]).
    pub fn encrypt_packed(&self, values: &[i64], slots: usize, slot_bits: u32) -> Result<Vec<u8>> {
        self.encrypt_packed_with(values, slots, slot_bits, None)
    }

    /// [`encrypt_packed`](Self::encrypt_packed) with every row's randomness given (tests).
    #[doc(hidden)]
    pub fn encrypt_packed_with(
        &self,
        values: &[i64],
        slots: usize,
        slot_bits: u32,
        nonces: Option<&[U384]>,
    ) -> Result<Vec<u8>> {
        let pk = &self.public;
        check_rows(values, slots, slot_bits, pk.plaintext_bits(), nonces)?;
        Ok(
            pk.encrypt_rows(values, slots, slot_bits, nonces, |rows, out| {
                let crt = &self.crt;
                match &crt.ifma {
                    Some(x) => {
                        for (rows, out) in rows
                            .chunks(ifma::LANES)
                            .zip(out.chunks_mut(ifma::LANES * CT_BYTES))
                        {
                            for (c, o) in crt.encrypt8(x, rows).iter().zip(out.chunks_mut(CT_BYTES))
                            {
                                o.copy_from_slice(&c.to_le_bytes());
                            }
                        }
                    }
                    None => {
                        for ((mag, neg, r), o) in rows.iter().zip(out.chunks_mut(CT_BYTES)) {
                            o.copy_from_slice(&crt.encrypt(mag, *neg, r).to_le_bytes());
                        }
                    }
                }
            }),
        )
    }

    /// Checks and decrypts a buffer of ciphertexts, blocks of rows in parallel.
    fn decrypt_all(&self, data: &[u8]) -> Result<Vec<U768>> {
        let cts = self.public.check(data)?;
        Ok(cts
            .par_chunks(8 * ifma::LANES)
            .flat_map_iter(|block| self.decrypt_many(block))
            .collect())
    }

    /// The raw plaintexts (little-endian, 96 bytes each) of checked ciphertexts: for tests
    /// that compare the decryption paths on any residue, in range of a layout or not.
    #[doc(hidden)]
    pub fn decrypt_raw(&self, data: &[u8]) -> Result<Vec<Vec<u8>>> {
        Ok(self
            .decrypt_all(data)?
            .into_iter()
            .map(|x| x.to_le_bytes().to_vec())
            .collect())
    }

    /// Decrypts packed ciphertexts and returns every slot scaled by 2^-frac_bits.
    pub fn decrypt_packed(
        &self,
        data: &[u8],
        slots: usize,
        slot_bits: u32,
        frac_bits: u32,
    ) -> Result<Vec<f64>> {
        check_layout(slots, slots, slot_bits, self.public.plaintext_bits())?;
        let scale = (-(frac_bits as f64)).exp2();
        let rows = self
            .decrypt_all(data)?
            .into_iter()
            .enumerate()
            .map(|(i, x)| {
                unpack(x, slots, slot_bits)
                    .map(|vs| vs.into_iter().map(|v| v as f64 * scale).collect::<Vec<_>>())
                    .ok_or(CoreError::InvalidElement {
                        index: i,
                        reason: "plaintext's top slot does not fit its slot bits",
                    })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(rows.into_iter().flatten().collect())
    }

    /// Decrypts to signed 64-bit integers (one slot per ciphertext); errors on overflow.
    pub fn decrypt_i64(&self, data: &[u8]) -> Result<Vec<i64>> {
        self.decrypt_all(data)?
            .into_iter()
            .enumerate()
            .map(|(i, x)| {
                // on the whole 768-bit plaintext: `unpack` keeps only its low 128 bits, so
                // 2^130 + 5 would read as 5
                let neg = x.bit_vartime(767);
                let mag = if neg { x.wrapping_neg() } else { x };
                let limit = if neg { 64 } else { 63 };
                let v = unpack(x, 1, 126).map(|v| v[0]);
                match v.map(i64::try_from) {
                    Some(Ok(v)) if mag.bits_vartime() <= limit => Ok(v),
                    _ => Err(CoreError::InvalidElement {
                        index: i,
                        reason: "plaintext does not fit 64 bits",
                    }),
                }
            })
            .collect()
    }
}

/// Window of [`pow_ct`], in bits.
const W_CT: usize = 5;

/// `base^e` (Montgomery forms mod `m`; `one` is 1's) for a secret `e`: fixed windows of
/// [`W_CT`] bits from the top, every table entry read for every window (a masked select),
/// the same squarings and products whatever `e` is; only |t|, the bit length, shows.
fn pow_ct<const L: usize>(
    m: &cios::Modulus<L>,
    one: &Uint<L>,
    base: &Uint<L>,
    e: &U256,
) -> Uint<L> {
    let mut table = [*one; 1 << W_CT];
    for k in 1..table.len() {
        table[k] = m.mul(&table[k - 1], base);
    }
    let words = e.as_words();
    let windows = (e.bits() as usize).div_ceil(W_CT);
    let mut acc = *one;
    for i in (0..windows).rev() {
        for _ in 0..W_CT {
            acc = m.mul(&acc, &acc);
        }
        let at = i * W_CT;
        let (w, s) = (at / 64, at % 64);
        let mut d = words[w] >> s;
        if s + W_CT > 64 && w + 1 < words.len() {
            d |= words[w + 1] << (64 - s);
        }
        let d = d & ((1 << W_CT) - 1);
        let mut pick = [0 as crypto_bigint::Word; L];
        for (k, entry) in table.iter().enumerate() {
            let x = k as u64 ^ d;
            // all ones iff k == d, without a branch on d
            let mask = ((x | x.wrapping_neg()) >> 63).wrapping_sub(1);
            for (p, &v) in pick.iter_mut().zip(entry.as_words()) {
                *p |= v & mask;
            }
        }
        acc = m.mul(&acc, &Uint::from_words(pick));
    }
    acc
}

/// (p², p²q) for primes p, q.
fn modulus(p: &U768, q: &U768) -> (U2048, U2048) {
    let p = p.resize::<LIMBS>();
    let p2 = p.wrapping_mul(&p);
    (p2, p2.wrapping_mul(&q.resize::<LIMBS>()))
}

#[cfg(test)]
mod prof {
    use super::*;
    use std::time::Instant;

    #[test]
    #[ignore]
    fn profile() {
        // the portable tables (an IFMA key drops them): where a row's time goes without IFMA
        let sk = SecretKey::generate(2048).unwrap();
        let sk = SecretKey::from_bytes_with(&sk.to_bytes(), false).unwrap();
        let pk = &sk.public;
        let n = 2000;
        let (mag, _) = pack(&[1 << 40, -(1 << 39)], 100);
        let mb = mag.to_le_bytes();
        let r = pk.draw_r();
        let time = |name: &str, f: &dyn Fn()| {
            let t = Instant::now();
            for _ in 0..n {
                f();
            }
            println!(
                "{name}: {:.2} us",
                t.elapsed().as_secs_f64() * 1e6 / n as f64
            );
        };
        time("draw_r", &|| {
            std::hint::black_box(pk.draw_r());
        });
        time("pk g^m", &|| {
            std::hint::black_box(pk.g.pow(&mb));
        });
        time("pk h^r", &|| {
            std::hint::black_box(pk.h.pow(&r.to_le_bytes()));
        });
        let c = &sk.crt;
        time("crt full", &|| {
            std::hint::black_box(c.encrypt(&mag, false, &r));
        });
        time("crt rem t", &|| {
            std::hint::black_box(mag.rem_vartime(&c.t_768));
        });
        let mt = mag.rem_vartime(&c.t_768).resize::<4>();
        time("crt g2^mt", &|| {
            std::hint::black_box(c.g2.pow(&mt.to_le_bytes()));
        });
        time("crt gq^m", &|| {
            std::hint::black_box(c.g_q.pow(&mb));
        });
        time("crt hq^r", &|| {
            std::hint::black_box(c.h_q.pow(&r.to_le_bytes()));
        });
        let x = MontyForm::<P2_LIMBS>::one(c.p2_params);
        time("mul22 x100", &|| {
            let mut a = x;
            for _ in 0..100 {
                a = a.mul(&x);
            }
            std::hint::black_box(a);
        });
        let m22 = cios::Modulus::new(&c.p2_params);
        let x22 = *x.as_montgomery();
        time("cios22 x100", &|| {
            let mut a = x22;
            for _ in 0..100 {
                a = m22.mul(&a, &x22);
            }
            std::hint::black_box(a);
        });
        let y = Mont::one(pk.params);
        time("mul32 x100", &|| {
            let mut a = y;
            for _ in 0..100 {
                a = a.mul(&y);
            }
            std::hint::black_box(a);
        });
        let cts = pk.encrypt_packed(&[1 << 40, -(1 << 39)], 2, 100).unwrap();
        let cc = pk.parse(&cts).unwrap()[0];
        time("decrypt", &|| {
            std::hint::black_box(sk.decrypt_one(&pk.mont(&cc).retrieve()));
        });
        time("l_raw", &|| {
            std::hint::black_box(sk.l_raw(&cc));
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// An odd modulus of L words (its top bits as drawn, sometimes all set) and two
    /// residues below it.
    fn case<const L: usize>() -> impl Strategy<Value = (Uint<L>, Uint<L>, Uint<L>)> {
        (
            proptest::collection::vec(any::<u64>(), L),
            proptest::collection::vec(any::<u64>(), L),
            proptest::collection::vec(any::<u64>(), L),
            any::<bool>(),
        )
            .prop_map(|(m, a, b, full)| {
                let word = |v: &[u64]| Uint::<L>::from_words(v.try_into().expect("L words"));
                let mut m = word(&m).bitor(&Uint::ONE);
                if full {
                    m = m.bitor(&Uint::ONE.shl_vartime(Uint::<L>::BITS - 1));
                }
                let nz = NonZero::new(m).expect("odd");
                (m, word(&a).rem(&nz), word(&b).rem(&nz))
            })
    }

    fn agrees<const L: usize>(m: Uint<L>, a: Uint<L>, b: Uint<L>) -> bool {
        let params = MontyParams::new_vartime(Odd::new(m).expect("odd"));
        let (x, y) = (MontyForm::new(&a, params), MontyForm::new(&b, params));
        cios::Modulus::new(&params).mul(x.as_montgomery(), y.as_montgomery())
            == *x.mul(&y).as_montgomery()
    }

    proptest! {
        #[test]
        fn cios_matches_crypto_bigint_1((m, a, b) in case::<1>()) {
            prop_assert!(agrees(m, a, b));
        }

        #[test]
        fn cios_matches_crypto_bigint_11((m, a, b) in case::<11>()) {
            prop_assert!(agrees(m, a, b));
        }

        #[test]
        fn cios_matches_crypto_bigint_22((m, a, b) in case::<22>()) {
            prop_assert!(agrees(m, a, b));
        }

        #[test]
        fn cios_matches_crypto_bigint_32((m, a, b) in case::<32>()) {
            prop_assert!(agrees(m, a, b));
        }

        #[test]
        fn pow_ct_matches_crypto_bigint((m, a, _) in case::<4>(), e in any::<[u64; 4]>()) {
            let e = U256::from_words(e);
            let params = MontyParams::new_vartime(Odd::new(m).expect("odd"));
            let x = MontyForm::new(&a, params);
            let got = pow_ct(
                &cios::Modulus::new(&params),
                MontyForm::one(params).as_montgomery(),
                x.as_montgomery(),
                &e,
            );
            prop_assert_eq!(got, *x.pow(&e).as_montgomery());
        }

        #[test]
        fn fixed_base_matches_crypto_bigint(
            (m, a, _) in case::<4>(),
            e in any::<[u8; 24]>(),
            window in 1usize..=12,
        ) {
            let params = MontyParams::new_vartime(Odd::new(m).expect("odd"));
            let x = MontyForm::new(&a, params);
            let got = FixedBase::new(x, 192, window).pow(&e);
            prop_assert_eq!(got, x.pow(&U256::from_le_slice(&[&e[..], &[0u8; 8]].concat())));
        }
    }

    /// A 2048-bit odd modulus whose top bits are all ones but for bit 2017 + `gap` (the
    /// closest to 2^2048 that [`shift_bound_holds`] lets the shifted rows run under).
    fn near_top(words: Vec<u64>, gap: u32) -> U2048 {
        let n = U2048::from_words(words.try_into().expect("32 words")).bitor(&U2048::ONE);
        let top = U2048::MAX.shl_vartime(2017);
        n.bitor(&top).bitxor(&U2048::ONE.shl_vartime(2017 + gap))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// Rows entered by a shift (unreduced, below 2^32·n) keep the lanes' accumulators
        /// exact for moduli up to the bound, pads and many steps per bin included.
        #[test]
        fn shifted_rows_accumulate_exactly(
            words in proptest::collection::vec(any::<u64>(), 32),
            gap in 0u32..31,
            raw in proptest::collection::vec(proptest::collection::vec(any::<u64>(), 32), 1..12),
            picks in proptest::collection::vec((0usize..16, 0usize..3), 0..200),
        ) {
            if !ifma::available() {
                return Ok(());
            }
            let n = near_top(words, gap);
            prop_assert!(shift_bound_holds(&n));
            let params = MontyParams::new_vartime(Odd::new(n).unwrap());
            let f = ifma::Field::<N_K>::new(&n).unwrap();
            // portable Montgomery forms below n, then one pad row (the portable one)
            let xs: Vec<U2048> = raw
                .iter()
                .map(|w| U2048::from_words(w.clone().try_into().unwrap()).rem_vartime(&n.to_nz().unwrap()))
                .collect();
            let mut rows: Vec<[u64; N_K]> = xs.iter().map(shifted_limbs).collect();
            rows.push(shifted_limbs(Mont::one(params).as_montgomery()));
            let pad = xs.len();
            let one = ifma::pow2_mod(&n, 52 * N_K);
            let steps = picks.len().div_ceil(ifma::LANES);
            let at = |step: usize| {
                let mut row = [pad; ifma::LANES];
                let mut bin = [0usize; ifma::LANES];
                for l in 0..ifma::LANES {
                    if let Some(&(r, b)) = picks.get(step * ifma::LANES + l) {
                        if r < pad {
                            (row[l], bin[l]) = (r, b);
                        }
                    }
                }
                (row, bin)
            };
            let got = ifma::histogram8(&f, &rows, &one, 3, steps, at);
            let mut want = vec![[Mont::one(params); ifma::LANES]; 3];
            for step in 0..steps {
                let (row, bin) = at(step);
                for l in 0..ifma::LANES {
                    if row[l] < pad {
                        want[bin[l]][l] *= Mont::from_montgomery(xs[row[l]], params);
                    }
                }
            }
            for b in 0..3 {
                for l in 0..ifma::LANES {
                    let g: U2048 = f.reduce(&got[b][l]);
                    prop_assert_eq!(g, want[b][l].retrieve());
                }
            }
        }
    }

    #[test]
    fn shift_bound_refuses_moduli_with_the_top_31_bits_set() {
        assert!(!shift_bound_holds(&U2048::MAX));
        assert!(!shift_bound_holds(&U2048::MAX.shl_vartime(2017)));
        assert!(shift_bound_holds(
            &U2048::MAX.bitxor(&U2048::ONE.shl_vartime(2017))
        ));
        assert!(shift_bound_holds(&U2048::MAX.shr_vartime(1)));
    }

    /// Knuth's division (`rem_vartime`) in the key owner's reductions, at the edges: m mod t
    /// and r mod t as the bit-serial reduction gives them for m = 0, t - 1, t, t + 1, 2t,
    /// p - 1 and r = 0, t - 1, t, t + 1, 2^(|t| + 64) - 1; the public key's ciphertexts on
    /// both paths; and c mod p² in decryption for c = 0, 1, p² - 1, p², p² + 1, n - 1.
    #[test]
    fn knuth_reductions_match_the_bit_serial_ones_at_the_edges() {
        let bytes = SecretKey::generate(1024).unwrap().to_bytes();
        let portable = SecretKey::from_bytes_with(&bytes, false).unwrap();
        let fast = SecretKey::from_bytes_with(&bytes, true).unwrap();
        let pk = portable.public();
        let crt = &portable.crt;
        let t = portable.t.resize::<12>();
        let p = portable.p;
        let top = U768::MAX.shr_vartime(768 - pk.plaintext_bits());
        let r_max = U384::MAX.shr_vartime(384 - (pk.t_bits + R_SLACK));
        let t_r = t.resize::<6>();
        let rs = [
            U384::ZERO,
            t_r.wrapping_sub(&U384::ONE),
            t_r,
            t_r.wrapping_add(&U384::ONE),
            r_max,
        ];
        let mags = [
            U768::ZERO,
            U768::ONE,
            t.wrapping_sub(&U768::ONE),
            t,
            t.wrapping_add(&U768::ONE),
            t.shl_vartime(1),
            top,
            p.wrapping_sub(&U768::ONE),
        ];
        for mag in mags {
            for negative in [false, true] {
                for r in rs {
                    let (mt, rt, _) = crt.p2_parts(&mag, negative, &r);
                    let m = mag.rem(&crt.t_768).resize::<4>();
                    let want_mt = if negative && m != U256::ZERO {
                        portable.t.wrapping_sub(&m)
                    } else {
                        m
                    };
                    assert_eq!(mt, want_mt, "m mod t, m = {mag}");
                    assert_eq!(rt, r.rem(&crt.t_384).resize::<4>(), "r mod t, r = {r}");
                    if mag > top {
                        continue; // past the plaintexts the public key encrypts
                    }
                    let want = pk.h.modulus.leave(
                        pk.encrypt_mag(&mag.to_le_bytes(), negative, &r)
                            .as_montgomery(),
                    );
                    assert_eq!(crt.encrypt(&mag, negative, &r), want, "m = {mag}, r = {r}");
                    if let Some(x) = &fast.crt.ifma {
                        let got = fast.crt.encrypt8(x, &[(mag, negative, r)]);
                        assert_eq!(got[0], want, "lanes: m = {mag}, r = {r}");
                    }
                }
            }
        }
        // decryption's c mod p², against the bit-serial reduction
        let p2 = portable.p2.get();
        let n = pk.n;
        let cs = [
            U2048::ZERO,
            U2048::ONE,
            p2.wrapping_sub(&U2048::ONE),
            p2,
            p2.wrapping_add(&U2048::ONE),
            n.wrapping_sub(&U2048::ONE),
        ];
        let m = &portable.p2_mod;
        let one = MontyForm::one(crt.p2_params);
        let want: Vec<U768> = cs
            .iter()
            .map(|c| {
                let x = m.enter(&c.rem(&portable.p2).resize::<P2_LIMBS>());
                let y = m.leave(&pow_ct(m, one.as_montgomery(), &x, &portable.t));
                portable.signed(&portable.l_of(&y))
            })
            .collect();
        let got: Vec<U768> = cs.iter().map(|c| portable.decrypt_one(c)).collect();
        assert_eq!(got, want);
        assert_eq!(fast.decrypt_many(&cs), want);
    }

    /// Both ways into the lanes (shift, or one product per row) give the portable bytes.
    #[test]
    fn histogram_lanes_by_shift_or_product_match_the_portable_path() {
        let sk = SecretKey::generate(1024).unwrap();
        let pk = sk.public();
        let Some(x) = pk.ifma() else { return };
        let rows = 53usize;
        let features = 5usize;
        let vals: Vec<i64> = (0..rows as i64).map(|i| i * 977 - 20_000).collect();
        let cts = pk.parse(&pk.encrypt_packed(&vals, 1, 64).unwrap()).unwrap();
        let bins: Vec<u8> = (0..rows * features).map(|i| ((i * 13) % 7) as u8).collect();
        let node_of_row: Vec<i32> = (0..rows as i32)
            .map(|i| [0, 1, 1, -1, 2][i as usize % 5])
            .collect();
        let nodes = [1i32, 2, 0, 3];
        let want = PublicKey::from_bytes(&pk.to_bytes())
            .unwrap()
            .without_ifma()
            .histogram_sums(&cts, &bins, features, &node_of_row, &nodes, 7)
            .unwrap();
        let members: Vec<Vec<u32>> = nodes
            .iter()
            .map(|&k| {
                (0..rows as u32)
                    .filter(|&r| node_of_row[r as usize] == k)
                    .collect()
            })
            .collect();
        for shift in [true, false] {
            assert_eq!(
                pk.histogram_lanes(x, &cts, &bins, features, &members, 7, shift),
                want
            );
        }
    }
}
