//! Single-server lattice PIR over a byte matrix: the kernels of SimplePIR (Henzinger, Hong,
//! Corrigan-Gibbs, Meiklejohn and Vaikuntanathan, "One Server for the Price of Two: Simple and
//! Fast Single-Server Private Information Retrieval", USENIX Security 2023).
//!
//! Parameters are the paper's: LWE dimension `N = 1024`, modulus `q = 2^32` (native wrapping
//! u32 arithmetic), plaintext modulus `p = 2^8` (one byte per matrix entry), `Δ = q / p =
//! 2^24`, error from a discrete Gaussian of standard deviation `σ = 6.4` cut at `|e| ≤ 64`
//! (10σ), sampled by a table of 64-bit cumulative probabilities (values of probability below
//! 2^-64, beyond about 9σ, are never drawn; the mass cut off is below 2^-60 per sample). The paper reports 128-bit security
//! by the lattice estimator for up to 2^20 LWE samples, i.e. up to 2^20 matrix columns; the
//! caller enforces that limit and the correctness bound (these kernels compute for any size).
//!
//! The database `D` is `l × m` bytes, row-major; entry `b` stands for the centred value
//! `b − 128`, which halves the error term. The public matrix `A` (`m × N`) is expanded from a
//! 16-byte seed by AES-128 in counter mode: entry `(k, j)` is the little-endian u32 at u32
//! position `k·N + j` of the keystream `AES(seed, 0) ‖ AES(seed, 1) ‖ …` (counter blocks
//! big-endian, as standard CTR with an all-zero IV).
//!
//! - `hint`: `H = D·A` (`l × N`), the client's one-time download.
//! - `query`: `qu = A·s + e + Δ·u_j` for a fresh uniform `s` per column `j`.
//! - `answer`: `D·qu` for a batch of queries, reading `D` once per batch.
//! - `decode`: `round((ans − H·s) / Δ)`, the column's bytes, with the largest noise seen so
//!   that a caller can tell a decoding failure (a stale hint, a forged answer) from a result.
//!
//! Security: a query is an LWE sample (plus a message), so it hides `j` from the server under
//! the LWE assumption; `s` must never be reused or revealed. The core draws `s` and `e` from
//! the operating system's CSPRNG. Nothing here is constant-time in the database (the server's
//! data is its own); the sampler and the secret-dependent products are data-independent.

use std::sync::OnceLock;

use aes::cipher::{BlockEncrypt, KeyInit};
use aes::Aes128;
use rayon::prelude::*;

use crate::error::{CoreError, Result};

/// LWE dimension (the secret's length, the hint's width).
pub const N: usize = 1024;
/// log2 of the ciphertext modulus.
pub const LOG_Q: u32 = 32;
/// log2 of the plaintext modulus (one byte per entry).
pub const LOG_P: u32 = 8;
/// The scaling of the message, `q / p`.
pub const DELTA: u32 = 1 << (LOG_Q - LOG_P);
/// Standard deviation of the discrete Gaussian error.
pub const SIGMA: f64 = 6.4;
/// The error's support is `[-TAIL, TAIL]` (10σ).
pub const TAIL: i32 = 64;
/// The most columns (LWE samples) the parameters' security holds for.
pub const MAX_COLS: usize = 1 << 20;

/// A-rows generated and multiplied together in `hint` (1 MiB of A: stays in L2).
const K_BLOCK: usize = 256;
/// Hint columns per panel of the hint's micro-kernel (register-blocked).
const JW: usize = 64;
/// D rows per micro-tile of the hint.
const TI: usize = 4;

fn shape(msg: String) -> CoreError {
    CoreError::Shape(msg)
}

/// The SIMD level the kernels are compiled for; every level computes the same bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Portable,
    Avx2,
    Avx512,
}

impl Backend {
    pub fn detect() -> Backend {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512bw")
            {
                return Backend::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                return Backend::Avx2;
            }
        }
        Backend::Portable
    }

    /// Every backend this CPU can run (for tests that compare them).
    pub fn available() -> Vec<Backend> {
        let mut v = vec![Backend::Portable];
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2") {
                v.push(Backend::Avx2);
            }
            if std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512bw")
            {
                v.push(Backend::Avx512);
            }
        }
        v
    }

    /// `self` if this CPU runs it, else an error (the SIMD builds must never run without
    /// their features).
    pub fn checked(self) -> Result<Backend> {
        if Backend::available().contains(&self) {
            Ok(self)
        } else {
            Err(shape(format!(
                "this CPU cannot run the {} kernels",
                self.name()
            )))
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Backend::Portable => "portable",
            Backend::Avx2 => "avx2",
            Backend::Avx512 => "avx512",
        }
    }
}

// The kernels are written once, portable, over fixed-size u32 chunks that the compiler
// vectorises; `multiversion!` compiles each again with AVX2 and with AVX-512 enabled and picks
// one at run time. Wrapping integer arithmetic makes every version compute the same bytes.
macro_rules! multiversion {
    ($(#[$doc:meta])* fn $name:ident($($arg:ident : $ty:ty),*) -> $ret:ty $body:block) => {
        $(#[$doc])*
        fn $name(be: Backend, $($arg: $ty),*) -> $ret {
            // Indexed loops over fixed-size arrays are what the vectoriser handles best.
            #[inline(always)]
            #[allow(clippy::needless_range_loop)]
            fn generic($($arg: $ty),*) -> $ret $body
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2")]
            unsafe fn avx2($($arg: $ty),*) -> $ret { generic($($arg),*) }
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx512f,avx512bw")]
            unsafe fn avx512($($arg: $ty),*) -> $ret { generic($($arg),*) }
            match be {
                // SAFETY: every public entry point passes `detect()` or a backend that
                // `Backend::checked` found on this CPU.
                #[cfg(target_arch = "x86_64")]
                Backend::Avx2 => unsafe { avx2($($arg),*) },
                #[cfg(target_arch = "x86_64")]
                Backend::Avx512 => unsafe { avx512($($arg),*) },
                _ => generic($($arg),*),
            }
        }
    };
}

multiversion! {
    /// `Σ_k d[k]·q[k] mod 2^32`, the bytes taken unsigned (the centring is applied by the
    /// caller through `Σ q`). A plain wrapping reduction: LLVM vectorises and interleaves it.
    fn dot_u8(d: &[u8], q: &[u32]) -> u32 {
        d.iter()
            .zip(q)
            .fold(0u32, |acc, (&x, &y)| acc.wrapping_add((x as u32).wrapping_mul(y)))
    }
}

multiversion! {
    /// `Σ_k d[k]·q_b[k]` for two vectors at once, so `d` is read once for both.
    fn dot_u8_x2(d: &[u8], q0: &[u32], q1: &[u32]) -> (u32, u32) {
        let (mut s0, mut s1) = (0u32, 0u32);
        for ((&x, &y0), &y1) in d.iter().zip(q0).zip(q1) {
            s0 = s0.wrapping_add((x as u32).wrapping_mul(y0));
            s1 = s1.wrapping_add((x as u32).wrapping_mul(y1));
        }
        (s0, s1)
    }
}

multiversion! {
    /// `Σ_j a[j]·s[j] mod 2^32`.
    fn dot_u32(a: &[u32], s: &[u32]) -> u32 {
        a.iter()
            .zip(s)
            .fold(0u32, |acc, (&x, &y)| acc.wrapping_add(x.wrapping_mul(y)))
    }
}

multiversion! {
    /// `h[r][j0..j0+JW] += Σ_k d_r[k]·panel[k][..]` for `TI` rows of the hint: the
    /// accumulators (TI × JW words) stay in registers across the whole block of A.
    fn hint_tile(h: &mut [u32], d: &[&[u8]; TI], panel: &[u32], j0: usize) -> () {
        let kb = panel.len() / JW;
        let mut acc = [[0u32; JW]; TI];
        for k in 0..kb {
            let a: &[u32; JW] = panel[k * JW..(k + 1) * JW].try_into().expect("JW words");
            for r in 0..TI {
                let x = d[r][k] as u32;
                for t in 0..JW {
                    acc[r][t] = acc[r][t].wrapping_add(x.wrapping_mul(a[t]));
                }
            }
        }
        for (r, row) in acc.iter().enumerate() {
            let out = &mut h[r * N + j0..r * N + j0 + JW];
            for (o, v) in out.iter_mut().zip(row) {
                *o = o.wrapping_add(*v);
            }
        }
    }
}

/// The public matrix `A`, expanded on demand from its seed.
pub struct MatrixA(Aes128);

impl MatrixA {
    pub fn new(seed: &[u8]) -> Result<Self> {
        let key: [u8; 16] = seed
            .try_into()
            .map_err(|_| shape(format!("seed must be 16 bytes, got {}", seed.len())))?;
        Ok(MatrixA(Aes128::new(&key.into())))
    }

    /// Rows `start, start + 1, …` of `A` into `out` (a whole number of `N`-word rows).
    pub fn rows(&self, start: usize, out: &mut [u32]) {
        const BLOCKS: usize = 64; // AES-NI pipelines several blocks; 1 KiB at a time
        let mut buf = [aes::Block::default(); BLOCKS];
        let first = start as u128 * (N as u128 / 4);
        for (ci, chunk) in out.chunks_mut(4 * BLOCKS).enumerate() {
            let base = first + (ci * BLOCKS) as u128;
            for (t, b) in buf.iter_mut().enumerate() {
                *b = (base + t as u128).to_be_bytes().into();
            }
            self.0.encrypt_blocks(&mut buf);
            for (w, blk) in chunk.chunks_mut(4).zip(buf.iter()) {
                for (t, x) in w.iter_mut().enumerate() {
                    *x = u32::from_le_bytes(blk[4 * t..4 * t + 4].try_into().expect("4 bytes"));
                }
            }
        }
    }
}

/// Cumulative table of the error distribution: `CDT[i] = ⌊2^64·P(e ≤ i − TAIL)⌋` for
/// `i < TAIL` (the left half; the right half is its mirror image).
fn cdt() -> &'static [u64; TAIL as usize] {
    static T: OnceLock<[u64; TAIL as usize]> = OnceLock::new();
    T.get_or_init(|| {
        let rho = |x: i32| (-(x as f64).powi(2) / (2.0 * SIGMA * SIGMA)).exp();
        let total: f64 = (-TAIL..=TAIL).map(rho).sum();
        let mut t = [0u64; TAIL as usize];
        // Summed from the far tail, so that tiny masses keep their precision.
        let mut cum = 0.0;
        for (i, x) in t.iter_mut().enumerate() {
            cum += rho(i as i32 - TAIL);
            *x = (cum / total * 2f64.powi(64)) as u64;
        }
        t
    })
}

/// Maps a uniform 64-bit word to an error: `−TAIL + #{i : r ≥ CDT[i]} + #{i : r > MAX −
/// CDT[i]}`, so `P(e ≤ −x−1) = P(e ≥ x+1) = CDT[…]/2^64` exactly (the distribution is
/// symmetric, its mean exactly 0). A full scan of the table: data-independent time.
pub fn gaussian_from_uniform(r: u64) -> i32 {
    let t = cdt();
    let mut c = 0i32;
    for &x in t.iter() {
        c += (r >= x) as i32;
        c += (r > u64::MAX - x) as i32;
    }
    c - TAIL
}

fn os_random(buf: &mut [u8]) -> Result<()> {
    getrandom::getrandom(buf).map_err(|e| shape(format!("operating system randomness: {e}")))
}

/// `count` errors drawn from the operating system's CSPRNG.
pub fn gaussian(count: usize) -> Result<Vec<i32>> {
    let mut raw = vec![0u8; 8 * count];
    os_random(&mut raw)?;
    Ok(raw
        .chunks_exact(8)
        .map(|c| gaussian_from_uniform(u64::from_le_bytes(c.try_into().expect("8 bytes"))))
        .collect())
}

fn check_db(db: &[u8], l: usize, m: usize) -> Result<()> {
    if l == 0 || m == 0 {
        return Err(shape(format!(
            "the matrix must be non-empty (l = {l}, m = {m})"
        )));
    }
    if l.checked_mul(m) != Some(db.len()) {
        return Err(shape(format!(
            "db must be l·m = {l}·{m} bytes, got {}",
            db.len()
        )));
    }
    if m > u32::MAX as usize {
        return Err(shape(format!("m = {m} columns exceed the u32 index range")));
    }
    Ok(())
}

/// `H = D·A` (`l × N` words, row-major), D centred.
pub fn hint(db: &[u8], l: usize, m: usize, seed: &[u8]) -> Result<Vec<u32>> {
    hint_with(Backend::detect(), db, l, m, seed)
}

pub fn hint_with(be: Backend, db: &[u8], l: usize, m: usize, seed: &[u8]) -> Result<Vec<u32>> {
    let be = be.checked()?;
    check_db(db, l, m)?;
    let a = MatrixA::new(seed)?;
    let mut h = vec![0u32; l * N];
    let mut colsum = vec![0u32; N];
    let mut rows = vec![0u32; K_BLOCK * N];
    let mut panels = vec![0u32; K_BLOCK * N];
    for k0 in (0..m).step_by(K_BLOCK) {
        let kb = K_BLOCK.min(m - k0);
        let rows = &mut rows[..kb * N];
        rows.par_chunks_mut(16 * N)
            .enumerate()
            .for_each(|(c, part)| a.rows(k0 + 16 * c, part));
        for row in rows.chunks_exact(N) {
            for (s, x) in colsum.iter_mut().zip(row) {
                *s = s.wrapping_add(*x);
            }
        }
        // Panel layout [N / JW][kb][JW]: the micro-kernel then streams A contiguously.
        let panels = &mut panels[..kb * N];
        panels
            .par_chunks_mut(kb * JW)
            .enumerate()
            .for_each(|(p, panel)| {
                for (k, dst) in panel.chunks_exact_mut(JW).enumerate() {
                    dst.copy_from_slice(&rows[k * N + p * JW..k * N + (p + 1) * JW]);
                }
            });
        let panels = &*panels;
        h.par_chunks_mut(TI * N).enumerate().for_each(|(ti, tile)| {
            let r0 = ti * TI;
            let nr = tile.len() / N;
            let empty: &[u8] = &[];
            let mut d = [empty; TI];
            for (r, dr) in d.iter_mut().enumerate() {
                // A short last tile repeats its last row; only the real rows are kept.
                let i = r0 + r.min(nr - 1);
                *dr = &db[i * m + k0..i * m + k0 + kb];
            }
            let run = |target: &mut [u32]| {
                for p in 0..N / JW {
                    hint_tile(
                        be,
                        target,
                        &d,
                        &panels[p * kb * JW..(p + 1) * kb * JW],
                        p * JW,
                    );
                }
            };
            if nr == TI {
                run(tile);
            } else {
                let mut scratch = vec![0u32; TI * N];
                scratch[..nr * N].copy_from_slice(tile);
                run(&mut scratch);
                tile.copy_from_slice(&scratch[..nr * N]);
            }
        });
    }
    // Centring: (D − 128)·A = D·A − 128·(1ᵀA).
    h.par_chunks_mut(N).for_each(|row| {
        for (x, s) in row.iter_mut().zip(&colsum) {
            *x = x.wrapping_sub(s.wrapping_mul(128));
        }
    });
    Ok(h)
}

/// In place `H[r, :] += δ·A[c, :]` for each `(r, c, δ)`: the hint after entries changed by
/// `δ = new − old` (bytes; the centring cancels in a difference).
pub fn hint_patch(
    hint: &mut [u32],
    seed: &[u8],
    m: usize,
    rows: &[u32],
    cols: &[u32],
    deltas: &[i32],
) -> Result<()> {
    let a = MatrixA::new(seed)?;
    if hint.is_empty() || !hint.len().is_multiple_of(N) {
        return Err(shape(format!(
            "hint must be l·{N} words (l ≥ 1), got {}",
            hint.len()
        )));
    }
    let l = hint.len() / N;
    if rows.len() != cols.len() || rows.len() != deltas.len() {
        return Err(shape(format!(
            "rows, cols and deltas must have one length, got {}, {}, {}",
            rows.len(),
            cols.len(),
            deltas.len()
        )));
    }
    if let Some(r) = rows.iter().find(|&&r| r as usize >= l) {
        return Err(shape(format!("row {r} out of range (l = {l})")));
    }
    if let Some(c) = cols.iter().find(|&&c| c as usize >= m) {
        return Err(shape(format!("column {c} out of range (m = {m})")));
    }
    // Group by column so that each row of A is generated once.
    let mut order: Vec<usize> = (0..cols.len()).collect();
    order.sort_unstable_by_key(|&i| cols[i]);
    let mut arow = vec![0u32; N];
    let mut last = None;
    for i in order {
        let c = cols[i] as usize;
        if last != Some(c) {
            a.rows(c, &mut arow);
            last = Some(c);
        }
        let d = deltas[i] as u32;
        let r = rows[i] as usize;
        for (x, y) in hint[r * N..(r + 1) * N].iter_mut().zip(&arow) {
            *x = x.wrapping_add(d.wrapping_mul(*y));
        }
    }
    Ok(())
}

/// `D·qu` for each of the `b = queries.len() / m` queries (`b × l` words), D read once.
pub fn answer(db: &[u8], l: usize, m: usize, queries: &[u32]) -> Result<Vec<u32>> {
    answer_with(Backend::detect(), db, l, m, queries)
}

pub fn answer_with(
    be: Backend,
    db: &[u8],
    l: usize,
    m: usize,
    queries: &[u32],
) -> Result<Vec<u32>> {
    let be = be.checked()?;
    check_db(db, l, m)?;
    if queries.is_empty() || !queries.len().is_multiple_of(m) {
        return Err(shape(format!(
            "queries must be b·m = b·{m} words (b ≥ 1), got {}",
            queries.len()
        )));
    }
    let b = queries.len() / m;
    let qs: Vec<&[u32]> = queries.chunks_exact(m).collect();
    // Centring: Σ (d − 128)·q = Σ d·q − 128·Σ q.
    let corr: Vec<u32> = qs
        .iter()
        .map(|q| {
            q.iter()
                .fold(0u32, |a, &x| a.wrapping_add(x))
                .wrapping_mul(128)
        })
        .collect();
    // Row-major result per row (l × b), transposed at the end.
    let mut by_row = vec![0u32; l * b];
    by_row
        .par_chunks_mut(b)
        .zip(db.par_chunks_exact(m))
        .with_min_len(16)
        .for_each(|(out, drow)| {
            // Pairs of queries share one pass over the row (it stays in L1 in between).
            let mut j = 0;
            while j + 1 < b {
                let (x, y) = dot_u8_x2(be, drow, qs[j], qs[j + 1]);
                out[j] = x.wrapping_sub(corr[j]);
                out[j + 1] = y.wrapping_sub(corr[j + 1]);
                j += 2;
            }
            if j < b {
                out[j] = dot_u8(be, drow, qs[j]).wrapping_sub(corr[j]);
            }
        });
    let mut ans = vec![0u32; b * l];
    for i in 0..l {
        for j in 0..b {
            ans[j * l + i] = by_row[i * b + j];
        }
    }
    Ok(ans)
}

/// Queries for `columns` (`b × m` words) and their secrets (`b × N` words), fresh
/// randomness from the operating system.
pub fn query(seed: &[u8], m: usize, columns: &[u32]) -> Result<(Vec<u32>, Vec<u32>)> {
    // before drawing `b·m` errors: an absurd `m` must not abort the process on allocation
    if m == 0 || m > MAX_COLS {
        return Err(shape(format!(
            "m = {m} must be in 1..2^20 (the LWE parameters' security bound)"
        )));
    }
    let b = columns.len();
    let mut raw = vec![0u8; 4 * b * N];
    os_random(&mut raw)?;
    let secrets: Vec<u32> = raw
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes")))
        .collect();
    let errors = gaussian(b * m)?;
    let q = query_with(Backend::detect(), seed, m, columns, &secrets, &errors)?;
    Ok((q, secrets))
}

/// The queries for given secrets and errors (`b × m` errors): deterministic, for tests.
pub fn query_with(
    be: Backend,
    seed: &[u8],
    m: usize,
    columns: &[u32],
    secrets: &[u32],
    errors: &[i32],
) -> Result<Vec<u32>> {
    let be = be.checked()?;
    let a = MatrixA::new(seed)?;
    let b = columns.len();
    if m == 0 || m > u32::MAX as usize {
        return Err(shape(format!("m = {m} must be in 1..2^32")));
    }
    if b == 0 {
        return Err(shape("at least one column must be asked".into()));
    }
    if let Some(c) = columns.iter().find(|&&c| c as usize >= m) {
        return Err(shape(format!("column {c} out of range (m = {m})")));
    }
    if secrets.len() != b * N || errors.len() != b * m {
        return Err(shape("secrets must be b·N words and errors b·m".into()));
    }
    // by_row[k][q]: each block of A's rows is generated once and used for all the queries.
    const ROWS: usize = 64;
    let mut by_row = vec![0u32; m * b];
    by_row
        .par_chunks_mut(ROWS * b)
        .enumerate()
        .for_each(|(c, out)| {
            let k0 = c * ROWS;
            let nr = out.len() / b;
            let mut arows = vec![0u32; nr * N];
            a.rows(k0, &mut arows);
            for (r, arow) in arows.chunks_exact(N).enumerate() {
                for q in 0..b {
                    out[r * b + q] = dot_u32(be, arow, &secrets[q * N..(q + 1) * N]);
                }
            }
        });
    let mut qs = vec![0u32; b * m];
    for q in 0..b {
        let dst = &mut qs[q * m..(q + 1) * m];
        for (k, x) in dst.iter_mut().enumerate() {
            *x = by_row[k * b + q].wrapping_add(errors[q * m + k] as u32);
        }
        let c = columns[q] as usize;
        dst[c] = dst[c].wrapping_add(DELTA);
    }
    Ok(qs)
}

/// The columns' bytes (`b × l`) and, per query, the largest `|noise|` seen (the distance of
/// `ans − H·s` from the nearest multiple of Δ): far above the expected noise means the hint
/// or the answer was not the one the query was made for.
pub fn decode(
    hint: &[u32],
    l: usize,
    secrets: &[u32],
    answers: &[u32],
) -> Result<(Vec<u8>, Vec<u32>)> {
    decode_with(Backend::detect(), hint, l, secrets, answers)
}

pub fn decode_with(
    be: Backend,
    hint: &[u32],
    l: usize,
    secrets: &[u32],
    answers: &[u32],
) -> Result<(Vec<u8>, Vec<u32>)> {
    let be = be.checked()?;
    if l == 0 || l.checked_mul(N) != Some(hint.len()) {
        return Err(shape(format!(
            "hint must be l·{N} = {l}·{N} words, got {}",
            hint.len()
        )));
    }
    if secrets.is_empty() || !secrets.len().is_multiple_of(N) {
        return Err(shape(format!(
            "secrets must be b·{N} words (b ≥ 1), got {}",
            secrets.len()
        )));
    }
    let b = secrets.len() / N;
    if answers.len() != b * l {
        return Err(shape(format!(
            "answers must be b·l = {b}·{l} words, got {}",
            answers.len()
        )));
    }
    // hs[i][q] = H[i]·s_q
    let mut hs = vec![0u32; l * b];
    hs.par_chunks_mut(b)
        .zip(hint.par_chunks_exact(N))
        .with_min_len(16)
        .for_each(|(out, hrow)| {
            for (q, o) in out.iter_mut().enumerate() {
                *o = dot_u32(be, hrow, &secrets[q * N..(q + 1) * N]);
            }
        });
    let mut bytes = vec![0u8; b * l];
    let mut noise = vec![0u32; b];
    let half = DELTA / 2;
    for q in 0..b {
        let mut worst = 0u32;
        for i in 0..l {
            let d = answers[q * l + i].wrapping_sub(hs[i * b + q]);
            let shifted = d.wrapping_add(half);
            let v = (shifted >> (LOG_Q - LOG_P)) as u8;
            // distance to the nearest multiple of Δ
            let off = (shifted & (DELTA - 1)).abs_diff(half);
            worst = worst.max(off);
            bytes[q * l + i] = v.wrapping_add(128);
        }
        noise[q] = worst;
    }
    Ok((bytes, noise))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cdt_is_symmetric_and_increasing() {
        let t = cdt();
        for w in t.windows(2) {
            assert!(w[0] <= w[1]);
        }
        // the values whose mass rounds to nothing below 2^-64 are never drawn, on either side
        let never = t.iter().filter(|&&x| x == 0).count() as i32;
        assert!(never < 10);
        assert_eq!(gaussian_from_uniform(0), -TAIL + never);
        assert_eq!(gaussian_from_uniform(u64::MAX), TAIL - never);
        assert_eq!(gaussian_from_uniform(1 << 63), 0);
        for r in [1u64, 12345, 1 << 40, 1 << 60, (1 << 63) - 7] {
            assert_eq!(
                gaussian_from_uniform(r),
                -gaussian_from_uniform(u64::MAX - r)
            );
        }
    }

    #[test]
    fn gaussian_mean_and_variance() {
        let e = gaussian(200_000).unwrap();
        let n = e.len() as f64;
        let mean = e.iter().map(|&x| x as f64).sum::<f64>() / n;
        let var = e.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
        // standard errors: σ/√n ≈ 0.014 for the mean, about σ²·√(2/n) ≈ 0.13 for the variance
        assert!(mean.abs() < 0.1, "mean {mean}");
        assert!((var - SIGMA * SIGMA).abs() < 1.0, "variance {var}");
        assert!(e.iter().all(|&x| x.abs() <= TAIL));
    }
}
