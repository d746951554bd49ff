//! 128-bit blocks, the unit of the OT-based protocols: GF(2^128) arithmetic, AES-based
//! pseudo-random generators and the fixed-key correlation-robust hash.
//!
//! A block is a `u128` (its little-endian bytes on the wire). As field elements, bit `i` is the
//! coefficient of `x^i` modulo `x^128 + x^7 + x^2 + x + 1`. AES runs on AES-NI where the CPU
//! has it (the `aes` crate detects it at run time) and on a constant-time bitsliced fallback
//! otherwise.

use aes::cipher::{BlockEncrypt, KeyInit};
use aes::Aes128;
use sha2::{Digest, Sha256};

pub type Block = u128;

/// Carry-less product of two 64-bit polynomials.
#[inline]
fn clmul64(a: u64, b: u64) -> u128 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("pclmulqdq") {
            // SAFETY: the CPU has PCLMULQDQ (checked just above; the check is cached).
            return unsafe { clmul64_x86(a, b) };
        }
    }
    clmul64_portable(a, b)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "pclmulqdq,sse2")]
unsafe fn clmul64_x86(a: u64, b: u64) -> u128 {
    use std::arch::x86_64::*;
    let r = _mm_clmulepi64_si128(
        _mm_set_epi64x(0, a as i64),
        _mm_set_epi64x(0, b as i64),
        0x00,
    );
    let mut out = [0u64; 2];
    _mm_storeu_si128(out.as_mut_ptr() as *mut __m128i, r);
    (out[0] as u128) | ((out[1] as u128) << 64)
}

fn clmul64_portable(a: u64, b: u64) -> u128 {
    // Data-independent: every bit of `b` selects through a mask, never a branch.
    let mut r = 0u128;
    for i in 0..64 {
        let mask = 0u128.wrapping_sub(((b >> i) & 1) as u128);
        r ^= ((a as u128) << i) & mask;
    }
    r
}

/// The product of `a` and `b` in GF(2^128).
#[inline]
pub fn gf_mul(a: Block, b: Block) -> Block {
    let (a0, a1) = (a as u64, (a >> 64) as u64);
    let (b0, b1) = (b as u64, (b >> 64) as u64);
    let lo = clmul64(a0, b0);
    let hi = clmul64(a1, b1);
    let mid = clmul64(a0, b1) ^ clmul64(a1, b0);
    let low = lo ^ (mid << 64);
    let high = hi ^ (mid >> 64);
    reduce(low, high)
}

/// `high * x^128 + low` modulo `x^128 + x^7 + x^2 + x + 1`.
#[inline]
fn reduce(low: u128, high: u128) -> u128 {
    // x^128 = x^7 + x^2 + x + 1: fold the high half in, then the (< 7-bit) spill once more.
    let t = high ^ (high << 1) ^ (high << 2) ^ (high << 7);
    let spill = (high >> 127) ^ (high >> 126) ^ (high >> 121);
    low ^ t ^ spill ^ (spill << 1) ^ (spill << 2) ^ (spill << 7)
}

pub fn to_bytes(blocks: &[Block]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 * blocks.len());
    for b in blocks {
        out.extend_from_slice(&b.to_le_bytes());
    }
    out
}

/// Blocks from bytes (a multiple of 16 long; callers check the length first).
pub fn from_bytes(buf: &[u8]) -> Vec<Block> {
    buf.chunks_exact(16)
        .map(|c| u128::from_le_bytes(c.try_into().expect("16-byte chunk")))
        .collect()
}

/// A 128-bit key derived from a session seed, a label and an index (SHA-256, truncated).
pub fn derive(seed: &[u8], label: &str, index: u64) -> Block {
    let mut h = Sha256::new();
    h.update(b"rainbridge/block/v1");
    h.update((label.len() as u64).to_le_bytes());
    h.update(label.as_bytes());
    h.update(index.to_le_bytes());
    h.update(seed);
    let d = h.finalize();
    u128::from_le_bytes(d[..16].try_into().expect("16 bytes"))
}

/// A zeroed vector of `n` blocks (calloc: the pages are mapped lazily, not written twice).
pub fn zeroed(n: usize) -> Vec<Block> {
    vec![0u128; n]
}

/// Asks the CPU to bring the block at `p` into the caches ahead of a read (a hint only).
#[inline(always)]
pub fn prefetch(p: &Block) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is only a hint; the address comes from a live reference.
    unsafe {
        std::arch::x86_64::_mm_prefetch(
            p as *const Block as *const i8,
            std::arch::x86_64::_MM_HINT_T0,
        );
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Random block from the operating system.
pub fn random_block() -> Block {
    let mut b = [0u8; 16];
    getrandom::getrandom(&mut b).expect("operating system randomness");
    u128::from_le_bytes(b)
}

/// AES-128 with a key, applied to blocks in batches (AES-NI pipelines eight at a time).
#[derive(Clone)]
pub struct Cipher(Aes128);

impl Cipher {
    pub fn new(key: Block) -> Self {
        Cipher(Aes128::new(&key.to_le_bytes().into()))
    }

    /// Encrypts every block of `data` in place.
    pub fn encrypt(&self, data: &mut [Block]) {
        const CHUNK: usize = 64;
        let mut buf = [aes::Block::default(); CHUNK];
        for part in data.chunks_mut(CHUNK) {
            for (dst, src) in buf.iter_mut().zip(part.iter()) {
                dst.copy_from_slice(&src.to_le_bytes());
            }
            self.0.encrypt_blocks(&mut buf[..part.len()]);
            for (src, dst) in buf.iter().zip(part.iter_mut()) {
                *dst = u128::from_le_bytes((*src).into());
            }
        }
    }

    pub fn encrypt1(&self, x: Block) -> Block {
        let mut b = [x];
        self.encrypt(&mut b);
        b[0]
    }

    /// Counter mode: blocks `AES(start), AES(start + 1), …` into `out`.
    pub fn fill(&self, start: u128, out: &mut [Block]) {
        for (i, o) in out.iter_mut().enumerate() {
            *o = start.wrapping_add(i as u128);
        }
        self.encrypt(out);
    }
}

/// The tweakable correlation-robust hash `H(x, i) = π(π(x) ⊕ i) ⊕ π(x)` of Guo, Katz, Wang
/// and Yu (S&P 2020), with π fixed-key AES: safe on inputs that share a secret offset (the
/// `q` and `q ⊕ Δ` of correlated OT) and as the OPRF's output hash, as in the reference
/// implementations of the protocols that use it.
pub struct Tmmo {
    pi: Cipher,
}

impl Default for Tmmo {
    fn default() -> Self {
        Self::new()
    }
}

impl Tmmo {
    pub fn new() -> Self {
        // Any fixed, public key: the digits of pi, as a "nothing up my sleeve" constant.
        Tmmo {
            pi: Cipher::new(0x3141_5926_5358_9793_2384_6264_3383_2795),
        }
    }

    /// `H(x_j, tweak + j)` for every `j`, in place.
    pub fn hash(&self, data: &mut [Block], tweak: u128) {
        const CHUNK: usize = 256;
        let mut first = [0u128; CHUNK];
        for (c, part) in data.chunks_mut(CHUNK).enumerate() {
            let n = part.len();
            self.pi.encrypt(part);
            first[..n].copy_from_slice(part);
            let base = tweak.wrapping_add((c * CHUNK) as u128);
            for (j, p) in part.iter_mut().enumerate() {
                *p ^= base.wrapping_add(j as u128);
            }
            self.pi.encrypt(part);
            for (p, f) in part.iter_mut().zip(first.iter()) {
                *p ^= f;
            }
        }
    }

    /// `H(x, tweak)` for every block with the same tweak.
    pub fn hash_same(&self, data: &mut [Block], tweak: u128) {
        const CHUNK: usize = 256;
        let mut first = [0u128; CHUNK];
        for part in data.chunks_mut(CHUNK) {
            let n = part.len();
            self.pi.encrypt(part);
            first[..n].copy_from_slice(part);
            for p in part.iter_mut() {
                *p ^= tweak;
            }
            self.pi.encrypt(part);
            for (p, f) in part.iter_mut().zip(first.iter()) {
                *p ^= f;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mul_reference(a: u128, b: u128) -> u128 {
        // Shift-and-add with reduction at every step: slow, obviously right.
        let mut r = 0u128;
        let mut a = a;
        for i in 0..128 {
            if (b >> i) & 1 == 1 {
                r ^= a;
            }
            let carry = a >> 127;
            a <<= 1;
            if carry == 1 {
                a ^= 0x87;
            }
        }
        r
    }

    #[test]
    fn field_multiplication_matches_the_reference() {
        let mut x = 0x0123_4567_89ab_cdef_fedc_ba98_7654_3210u128;
        for _ in 0..200 {
            let y = x.rotate_left(37) ^ 0x9e37_79b9_7f4a_7c15;
            assert_eq!(gf_mul(x, y), mul_reference(x, y));
            assert_eq!(gf_mul(x, y), gf_mul(y, x));
            x = x.wrapping_mul(0x2545_f491_4f6c_dd1d).wrapping_add(1);
        }
        assert_eq!(gf_mul(x, 1), x);
        assert_eq!(
            gf_mul(u128::MAX, u128::MAX),
            mul_reference(u128::MAX, u128::MAX)
        );
    }

    #[test]
    fn portable_clmul_matches_the_instruction() {
        let pairs = [
            (u64::MAX, u64::MAX),
            (0x8000_0000_0000_0001, 3),
            (12345, 67890),
        ];
        for (a, b) in pairs {
            assert_eq!(clmul64(a, b), clmul64_portable(a, b));
        }
    }

    #[test]
    fn aes_matches_fips_197() {
        // FIPS-197 Appendix C.1 (AES-128).
        let key = u128::from_le_bytes(hex16("000102030405060708090a0b0c0d0e0f"));
        let pt = u128::from_le_bytes(hex16("00112233445566778899aabbccddeeff"));
        let ct = Cipher::new(key).encrypt1(pt);
        assert_eq!(ct.to_le_bytes(), hex16("69c4e0d86a7b0430d8cdb78070b4c55a"));
    }

    fn hex16(s: &str) -> [u8; 16] {
        let mut out = [0u8; 16];
        for (i, o) in out.iter_mut().enumerate() {
            *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap();
        }
        out
    }
}
