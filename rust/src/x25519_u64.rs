//! One X25519 Montgomery ladder in radix 2^64: the portable back end.
//!
//! A field element is four 64-bit words holding any value below 2^256 (reduced mod
//! p = 2^255 - 19 only when encoded), so additions and products fold their overflow with
//! 2^256 = 38 (mod p) instead of carrying through a fifth limb. Products are 4x4 schoolbook
//! over u128 (`mul`/`adc` on x86-64).
//!
//! Constant time: the conditional swap is a mask, carries are added as values, never tested;
//! there is no secret-dependent branch or memory index.

type Fe = [u64; 4];

#[inline(always)]
fn adc(a: u64, b: u64, carry: u64) -> (u64, u64) {
    let t = a as u128 + b as u128 + carry as u128;
    (t as u64, (t >> 64) as u64)
}

#[inline(always)]
fn sbb(a: u64, b: u64, borrow: u64) -> (u64, u64) {
    let t = (a as u128).wrapping_sub(b as u128 + borrow as u128);
    (t as u64, (t >> 127) as u64)
}

/// `x + 38 * c` for a word carry `c` out of the top, folded twice (the second fold cannot
/// carry again: after a carry the low words are small).
#[inline(always)]
fn fold_carry(mut x: Fe, c: u64) -> Fe {
    let mut carry;
    (x[0], carry) = adc(x[0], c * 38, 0);
    (x[1], carry) = adc(x[1], 0, carry);
    (x[2], carry) = adc(x[2], 0, carry);
    (x[3], carry) = adc(x[3], 0, carry);
    x[0] = x[0].wrapping_add(carry * 38);
    x
}

#[inline(always)]
fn add(a: &Fe, b: &Fe) -> Fe {
    let mut r = [0u64; 4];
    let mut c = 0;
    for i in 0..4 {
        (r[i], c) = adc(a[i], b[i], c);
    }
    fold_carry(r, c)
}

#[inline(always)]
fn sub(a: &Fe, b: &Fe) -> Fe {
    let mut r = [0u64; 4];
    let mut borrow = 0;
    for i in 0..4 {
        (r[i], borrow) = sbb(a[i], b[i], borrow);
    }
    // a - b + 2^256 was computed; subtract 2^256 = 38 (mod p) back, twice at most.
    let mut bw;
    (r[0], bw) = sbb(r[0], borrow * 38, 0);
    (r[1], bw) = sbb(r[1], 0, bw);
    (r[2], bw) = sbb(r[2], 0, bw);
    (r[3], bw) = sbb(r[3], 0, bw);
    r[0] = r[0].wrapping_sub(bw * 38);
    r
}

/// Eight words (a 512-bit product) reduced below 2^256 with 2^256 = 38.
#[inline(always)]
fn reduce_wide(z: &[u64; 8]) -> Fe {
    let mut r = [0u64; 4];
    let mut hi = 0u64; // high word of lo + 38 * hi, column by column
    for i in 0..4 {
        let t = z[i] as u128 + 38u128 * z[i + 4] as u128 + hi as u128;
        r[i] = t as u64;
        hi = (t >> 64) as u64;
    }
    fold_carry(r, hi)
}

#[inline(always)]
fn mul(a: &Fe, b: &Fe) -> Fe {
    let mut z = [0u64; 8];
    for i in 0..4 {
        let mut carry = 0u64;
        for j in 0..4 {
            let t = z[i + j] as u128 + a[i] as u128 * b[j] as u128 + carry as u128;
            z[i + j] = t as u64;
            carry = (t >> 64) as u64;
        }
        z[i + 4] = carry;
    }
    reduce_wide(&z)
}

#[inline(always)]
fn sqr(a: &Fe) -> Fe {
    // cross products once, doubled, plus the squares on the diagonal
    let mut z = [0u64; 8];
    for i in 0..3 {
        let mut carry = 0u64;
        for j in i + 1..4 {
            let t = z[i + j] as u128 + a[i] as u128 * a[j] as u128 + carry as u128;
            z[i + j] = t as u64;
            carry = (t >> 64) as u64;
        }
        z[i + 4] = carry;
    }
    let mut top = 0u64;
    for w in z.iter_mut() {
        let nt = *w >> 63;
        *w = (*w << 1) | top;
        top = nt;
    }
    let mut carry = 0u64;
    for i in 0..4 {
        let sq = a[i] as u128 * a[i] as u128;
        let c;
        (z[2 * i], c) = adc(z[2 * i], sq as u64, carry);
        (z[2 * i + 1], carry) = adc(z[2 * i + 1], (sq >> 64) as u64, c);
    }
    reduce_wide(&z)
}

#[inline(always)]
fn mul_small(a: &Fe, k: u64) -> Fe {
    let mut r = [0u64; 4];
    let mut carry = 0u64;
    for i in 0..4 {
        let t = a[i] as u128 * k as u128 + carry as u128;
        r[i] = t as u64;
        carry = (t >> 64) as u64;
    }
    fold_carry(r, carry)
}

#[inline(always)]
fn sqr_n(a: &Fe, n: usize) -> Fe {
    let mut r = *a;
    for _ in 0..n {
        r = sqr(&r);
    }
    r
}

/// z^(p - 2), the classic addition chain (254 squarings, 11 multiplications).
fn invert(z: &Fe) -> Fe {
    let z2 = sqr(z);
    let z9 = mul(&sqr_n(&z2, 2), z);
    let z11 = mul(&z9, &z2);
    let z_5_0 = mul(&sqr(&z11), &z9);
    let z_10_0 = mul(&sqr_n(&z_5_0, 5), &z_5_0);
    let z_20_0 = mul(&sqr_n(&z_10_0, 10), &z_10_0);
    let z_40_0 = mul(&sqr_n(&z_20_0, 20), &z_20_0);
    let z_50_0 = mul(&sqr_n(&z_40_0, 10), &z_10_0);
    let z_100_0 = mul(&sqr_n(&z_50_0, 50), &z_50_0);
    let z_200_0 = mul(&sqr_n(&z_100_0, 100), &z_100_0);
    let z_250_0 = mul(&sqr_n(&z_200_0, 50), &z_50_0);
    mul(&sqr_n(&z_250_0, 5), &z11)
}

/// The canonical (fully reduced) little-endian encoding.
fn encode(a: &Fe) -> [u8; 32] {
    // below 2^256 -> fold bit 255: below 2^255 + 19 * 2 < 2p
    let mut r = *a;
    let top = r[3] >> 63;
    r[3] &= u64::MAX >> 1;
    let mut c;
    (r[0], c) = adc(r[0], top * 19, 0);
    (r[1], c) = adc(r[1], 0, c);
    (r[2], c) = adc(r[2], 0, c);
    r[3] += c;
    // r < 2p: subtract p when r + 19 reaches 2^255 (mask, no branch)
    let mut t = [0u64; 4];
    (t[0], c) = adc(r[0], 19, 0);
    (t[1], c) = adc(r[1], 0, c);
    (t[2], c) = adc(r[2], 0, c);
    t[3] = r[3] + c;
    // black_box: otherwise the compiler turns this select into a branch on the result
    let ge_p = std::hint::black_box((t[3] >> 63).wrapping_neg());
    t[3] &= u64::MAX >> 1;
    let mut out = [0u8; 32];
    for i in 0..4 {
        let w = (t[i] & ge_p) | (r[i] & !ge_p);
        out[8 * i..8 * i + 8].copy_from_slice(&w.to_le_bytes());
    }
    out
}

/// Applies `op` to two elements given as any four words (values below 2^256, the range the
/// arithmetic keeps) and returns the canonical encoding. For stress tests.
#[doc(hidden)]
pub fn field_op(op: crate::x25519::FieldOp, a: &Fe, b: &Fe) -> [u8; 32] {
    use crate::x25519::FieldOp;
    encode(&match op {
        FieldOp::Add => add(a, b),
        FieldOp::Sub => sub(a, b),
        FieldOp::Mul => mul(a, b),
        FieldOp::Sqr => sqr(a),
        FieldOp::MulA24 => mul_small(a, 121665),
        FieldOp::Invert => invert(a),
    })
}

#[inline(always)]
fn cswap(mask: u64, a: &mut Fe, b: &mut Fe) {
    for i in 0..4 {
        let t = mask & (a[i] ^ b[i]);
        a[i] ^= t;
        b[i] ^= t;
    }
}

/// X25519(k, u) (RFC 7748 §5): `k` is clamped here, the top bit of `u` ignored, u >= p
/// accepted (the arithmetic takes any value below 2^256).
pub fn x25519(k: &[u8; 32], u: &[u8; 32]) -> [u8; 32] {
    let k = crate::x25519::clamp(k);
    let mut x1 = [0u64; 4];
    for (i, w) in x1.iter_mut().enumerate() {
        *w = u64::from_le_bytes(u[8 * i..8 * i + 8].try_into().expect("8 bytes"));
    }
    x1[3] &= u64::MAX >> 1;
    let (mut x2, mut z2, mut x3, mut z3) = ([1, 0, 0, 0], [0u64; 4], x1, [1, 0, 0, 0]);
    let mut swap = 0u64;
    for t in (0..255).rev() {
        let bit = ((k[t >> 3] >> (t & 7)) & 1) as u64;
        swap ^= bit;
        let mask = std::hint::black_box(swap.wrapping_neg());
        cswap(mask, &mut x2, &mut x3);
        cswap(mask, &mut z2, &mut z3);
        swap = bit;
        let a = add(&x2, &z2);
        let aa = sqr(&a);
        let b = sub(&x2, &z2);
        let bb = sqr(&b);
        let e = sub(&aa, &bb);
        let c = add(&x3, &z3);
        let d = sub(&x3, &z3);
        let da = mul(&d, &a);
        let cb = mul(&c, &b);
        x3 = sqr(&add(&da, &cb));
        z3 = mul(&x1, &sqr(&sub(&da, &cb)));
        x2 = mul(&aa, &bb);
        z2 = mul(&e, &add(&aa, &mul_small(&e, 121665)));
    }
    let mask = swap.wrapping_neg();
    cswap(mask, &mut x2, &mut x3);
    cswap(mask, &mut z2, &mut z3);
    encode(&mul(&x2, &invert(&z2)))
}
