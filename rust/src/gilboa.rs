//! Batch kernels of dealer-free MPC (`rainbridge.protocols.mpc.ot`): the IKNP extension's
//! expansion and transposition, the tweakable correlation-robust hash, and Gilboa's products
//! over the resulting correlated OTs (arithmetic modulo 2^64, or GF(2) for bitwise ANDs).
//!
//! Security model: semi-honest, two parties. These functions only compute; the protocol (who
//! sends what, the checks of every peer message's length) stays in Python. Every output is
//! byte-identical to the numpy reference in `ot.py` on the same inputs, so both parties may
//! run either implementation. Inputs whose lengths do not fit are refused with
//! `CoreError::Shape`, never a panic.
//!
//! Layouts (all little-endian): a row of the OT matrix is 16 bytes (two 64-bit words, low
//! first); the 128 expansion rows are `nbytes = ceil(m / 8)` bytes each, bit `i % 8` of byte
//! `i / 8` for OT `i`; OT `i * bits + k` carries bit `k` of value `i`.

use aes::cipher::{BlockEncrypt, KeyInit};
use aes::Aes128;
use rayon::prelude::*;
use sha2::{Digest, Sha256};

use crate::bits::transpose_128_into;
use crate::error::{CoreError, Result};

/// Base OTs, and so rows of the expansion.
pub const KAPPA: usize = 128;

/// Values per unit of work in the Gilboa kernels: their hash outputs (up to 64 rows × words
/// each, twice) stay in the L1/L2 cache between the hashing and the sums.
const VALUES_PER_CHUNK: usize = 32;

/// Below this many OTs a batch runs on the calling thread: rayon's hand-off would cost more
/// than it saves, and in the benchmark both parties share the machine's cores anyway.
const PARALLEL_OTS: usize = 1 << 16;

fn shape(msg: String) -> CoreError {
    CoreError::Shape(msg)
}

/// Bytes of each expansion row per unit of work: 8192 OTs, so that a tile of the 128 rows
/// (128 KiB) stays in the L2 cache between its expansion and its transposition, and the
/// transposition's row reads stay within the first-level TLB's reach.
const TILE: usize = 1024;

/// `out.len()` bytes of the AES-CTR key stream of `cipher` from byte `start` on: blocks
/// `AES(⌊start/16⌋), AES(⌊start/16⌋ + 1), …`, the counter a 16-byte big-endian integer
/// (what OpenSSL's CTR mode gives from a zero IV).
fn keystream(cipher: &Aes128, start: u64, out: &mut [u8]) {
    let mut block = u128::from(start / 16);
    let skip = (start % 16) as usize;
    let mut out = out;
    if skip > 0 {
        // a read that began inside a block: the rest of that block
        let mut b: aes::Block = block.to_be_bytes().into();
        cipher.encrypt_block(&mut b);
        let take = (16 - skip).min(out.len());
        out[..take].copy_from_slice(&b[skip..skip + take]);
        out = &mut out[take..];
        block += 1;
    }
    let whole = out.len() / 16;
    let (body, tail) = out.split_at_mut(16 * whole);
    for (i, c) in body.chunks_exact_mut(16).enumerate() {
        c.copy_from_slice(&(block + i as u128).to_be_bytes());
    }
    // SAFETY: `aes::Block` is a `GenericArray<u8, U16>`: 16 bytes, alignment 1, any bit
    // pattern valid, so `whole` of them may alias the `16 * whole` bytes of `body`
    // (encrypted in place, AES-NI pipelining the batch).
    let blocks =
        unsafe { std::slice::from_raw_parts_mut(body.as_mut_ptr() as *mut aes::Block, whole) };
    cipher.encrypt_blocks(blocks);
    if !tail.is_empty() {
        let mut b: aes::Block = (block + whole as u128).to_be_bytes().into();
        cipher.encrypt_block(&mut b);
        let n = tail.len();
        tail.copy_from_slice(&b[..n]);
    }
}

/// 128 AES-128 counter-mode key streams read in lockstep: stream `j` is
/// `AES_{k_j}(0) ‖ AES_{k_j}(1) ‖ …` (see [`keystream`]), read from the current byte on.
pub struct Streams {
    ciphers: Vec<Aes128>,
    pos: u64,
}

impl Streams {
    /// `keys`: 128 AES keys of 16 bytes.
    pub fn new(keys: &[u8]) -> Result<Self> {
        if keys.len() != 16 * KAPPA {
            return Err(shape(format!(
                "an OT extension needs 128 keys of 16 bytes, got {} bytes",
                keys.len()
            )));
        }
        let ciphers = keys
            .chunks_exact(16)
            .map(|k| Aes128::new(k.into()))
            .collect();
        Ok(Streams { ciphers, pos: 0 })
    }

    /// Bytes `[col, col + width)` of the next read of every stream into `out`: 128 rows of
    /// `width`, row-major. Does not move the streams on (see [`Streams::advance`]).
    fn tile(&self, col: usize, width: usize, out: &mut [u8]) {
        for (cipher, row) in self.ciphers.iter().zip(out.chunks_exact_mut(width)) {
            keystream(cipher, self.pos + col as u64, row);
        }
    }

    fn advance(&mut self, nbytes: usize) {
        self.pos += nbytes as u64;
    }

    /// The next `nbytes` of every stream: 128 rows of `nbytes`, row-major.
    pub fn read(&mut self, nbytes: usize) -> Vec<u8> {
        let mut out = vec![0u8; KAPPA * nbytes];
        if nbytes > 0 {
            self.tile(0, nbytes, &mut out);
        }
        self.advance(nbytes);
        out
    }
}

/// Runs `work(first byte column, width, output rows)` for the tiles of `nbytes` columns of
/// the expansion, each with the 16-byte rows its columns transpose to (of `rows`), in
/// parallel when there are several (a batch of more than 8192 OTs); their results in order.
fn by_tiles<T, F>(nbytes: usize, rows: &mut [u8], work: F) -> Result<Vec<T>>
where
    T: Send,
    F: Fn(usize, usize, &mut [u8]) -> Result<T> + Sync,
{
    let one = |(t, out): (usize, &mut [u8])| work(t * TILE, TILE.min(nbytes - t * TILE), out);
    // the tiles and the chunks of rows pair up: ceil(m / 8 / TILE) of each
    if nbytes > TILE {
        rows.par_chunks_mut(16 * 8 * TILE)
            .enumerate()
            .map(one)
            .collect()
    } else {
        rows.chunks_mut(16 * 8 * TILE)
            .enumerate()
            .map(one)
            .collect()
    }
}

/// The IKNP receiver's two streams (`G(k0_j)`, `G(k1_j)`): it is the base OTs' sender.
pub struct IknpReceiver {
    g0: Streams,
    g1: Streams,
}

impl IknpReceiver {
    pub fn new(k0: &[u8], k1: &[u8]) -> Result<Self> {
        Ok(IknpReceiver {
            g0: Streams::new(k0)?,
            g1: Streams::new(k1)?,
        })
    }

    /// For `m` OTs with packed choice bits `r` (`ceil(m / 8)` bytes): the message
    /// `u_j = G(k0_j) ⊕ G(k1_j) ⊕ r` (128 rows of `ceil(m / 8)` bytes) into `u`, and the
    /// receiver's rows `t_i` (16 bytes each, the columns of `G(k0)`) into `rows`.
    pub fn choose_into(
        &mut self,
        choice: &[u8],
        m: usize,
        u: &mut [u8],
        rows: &mut [u8],
    ) -> Result<()> {
        let nbytes = m.div_ceil(8);
        if choice.len() != nbytes || u.len() != KAPPA * nbytes || rows.len() != 16 * m {
            return Err(shape(format!(
                "{m} OTs take {nbytes} bytes of choice bits, got {}",
                choice.len()
            )));
        }
        // u row by row, then t tile by tile (G(k0) is expanded twice: AES-NI costs less
        // than carrying a batch-sized copy of it from one layout to the other)
        let (g0, g1) = (&self.g0, &self.g1);
        let pos = g0.pos;
        debug_assert_eq!(pos, g1.pos, "the two streams are read in lockstep");
        let one_row = |((c0, c1), urow): ((&Aes128, &Aes128), &mut [u8])| {
            keystream(c0, pos, urow);
            let mut buf = [0u8; 4096];
            for (k, (part, r)) in urow.chunks_mut(4096).zip(choice.chunks(4096)).enumerate() {
                let g = &mut buf[..part.len()];
                keystream(c1, pos + (4096 * k) as u64, g);
                for ((a, b), x) in part.iter_mut().zip(g.iter()).zip(r) {
                    *a ^= b ^ x;
                }
            }
        };
        if nbytes > 0 {
            let pairs = g0.ciphers.iter().zip(g1.ciphers.iter());
            if nbytes > TILE {
                g0.ciphers
                    .par_iter()
                    .zip(g1.ciphers.par_iter())
                    .zip(u.par_chunks_exact_mut(nbytes))
                    .for_each(one_row);
            } else {
                pairs.zip(u.chunks_exact_mut(nbytes)).for_each(one_row);
            }
        }
        by_tiles(nbytes, rows, |c, w, out| {
            let mut t = vec![0u8; KAPPA * w];
            g0.tile(c, w, &mut t);
            transpose_128_into(&t, w, (m - 8 * c).min(8 * w), out)
        })?;
        self.g0.advance(nbytes);
        self.g1.advance(nbytes);
        Ok(())
    }

    /// [`IknpReceiver::choose_into`] into new buffers: (u, rows).
    pub fn choose(&mut self, choice: &[u8], m: usize) -> Result<(Vec<u8>, Vec<u8>)> {
        let mut u = vec![0u8; KAPPA * m.div_ceil(8)];
        let mut rows = vec![0u8; 16 * m];
        self.choose_into(choice, m, &mut u, &mut rows)?;
        Ok((u, rows))
    }
}

/// The IKNP sender's streams `G(k_{s_j})` and its choices `s` (= `Δ`, bit `j` for row `j`).
pub struct IknpSender {
    g: Streams,
    delta: u128,
}

impl IknpSender {
    /// `keys`: the 128 chosen base-OT keys; `delta`: the 128 choice bits, 16 bytes.
    pub fn new(keys: &[u8], delta: &[u8]) -> Result<Self> {
        let delta: [u8; 16] = delta
            .try_into()
            .map_err(|_| shape("Δ is 16 bytes".into()))?;
        Ok(IknpSender {
            g: Streams::new(keys)?,
            delta: u128::from_le_bytes(delta),
        })
    }

    /// The rows `q_i = t_i ⊕ r_i·Δ` (16 bytes each) for the receiver's message `u` (128
    /// rows of `ceil(m / 8)` bytes) into `rows`: the columns of `G(k_s) ⊕ s·u`.
    pub fn rows_into(&mut self, u: &[u8], m: usize, rows: &mut [u8]) -> Result<()> {
        let nbytes = m.div_ceil(8);
        if u.len() != KAPPA * nbytes || rows.len() != 16 * m {
            return Err(shape(format!(
                "the IKNP message for {m} OTs holds {} bytes, got {}",
                KAPPA * nbytes,
                u.len()
            )));
        }
        let (g, delta) = (&self.g, self.delta);
        by_tiles(nbytes, rows, |c, w, out| {
            let mut q = vec![0u8; KAPPA * w];
            g.tile(c, w, &mut q);
            for (j, qrow) in q.chunks_exact_mut(w).enumerate() {
                if (delta >> j) & 1 == 1 {
                    let urow = &u[j * nbytes + c..j * nbytes + c + w];
                    qrow.iter_mut().zip(urow).for_each(|(a, b)| *a ^= b);
                }
            }
            transpose_128_into(&q, w, (m - 8 * c).min(8 * w), out)
        })?;
        self.g.advance(nbytes);
        Ok(())
    }

    /// [`IknpSender::rows_into`] into a new buffer.
    pub fn rows(&mut self, u: &[u8], m: usize) -> Result<Vec<u8>> {
        let mut rows = vec![0u8; 16 * m];
        self.rows_into(u, m, &mut rows)?;
        Ok(rows)
    }
}

/// The tweakable correlation-robust hash `H(i, x) = π(π(x) ⊕ i) ⊕ π(x)` (Guo, Katz, Wang and
/// Yu, S&P 2020), π fixed-key AES-128 with the key `SHA-256("rainbridge/ot/tccr/v1")[..16]`.
/// The tweak of OT `i`'s `j`-th output block is the word pair `(i, j)`.
pub struct Tccr(Aes128);

impl Default for Tccr {
    fn default() -> Self {
        Self::new()
    }
}

impl Tccr {
    pub fn new() -> Self {
        let key = Sha256::digest(b"rainbridge/ot/tccr/v1");
        Tccr(Aes128::new(key[..16].into()))
    }

    /// `words` 64-bit words of `H(first + r, rows[r] ⊕ xor)` for each row `r` (16 bytes
    /// each) into `out` (`words` per row; block `j` of a row gives its words `2j`, `2j + 1`).
    pub fn hash(&self, rows: &[u8], xor: u128, first: u64, words: usize, out: &mut [u64]) {
        debug_assert_eq!(out.len(), rows.len() / 16 * words);
        const CHUNK: usize = 64;
        let mut px = [aes::Block::default(); CHUNK];
        let mut t = [aes::Block::default(); CHUNK];
        for (c, part) in rows.chunks(16 * CHUNK).enumerate() {
            let n = part.len() / 16;
            for (p, x) in px.iter_mut().zip(part.chunks_exact(16)) {
                let x = u128::from_le_bytes(x.try_into().expect("16 bytes"));
                *p = (x ^ xor).to_le_bytes().into();
            }
            self.0.encrypt_blocks(&mut px[..n]);
            for j in 0..words.div_ceil(2) {
                for (i, (ti, p)) in t.iter_mut().zip(&px[..n]).enumerate() {
                    let index = first.wrapping_add((c * CHUNK + i) as u64);
                    let tweak = u128::from(index) | (j as u128) << 64;
                    *ti = (u128::from_le_bytes((*p).into()) ^ tweak)
                        .to_le_bytes()
                        .into();
                }
                self.0.encrypt_blocks(&mut t[..n]);
                for (i, (ti, p)) in t[..n].iter().zip(&px[..n]).enumerate() {
                    let h = u128::from_le_bytes((*ti).into()) ^ u128::from_le_bytes((*p).into());
                    let at = (c * CHUNK + i) * words + 2 * j;
                    out[at] = h as u64;
                    if 2 * j + 1 < words {
                        out[at + 1] = (h >> 64) as u64;
                    }
                }
            }
        }
    }
}

/// Bytes of one word's trimmed corrections for bits `0..bits`: `8 - k / 8` for bit `k` (its
/// low `64 - k` bits, rounded up to bytes).
pub fn trimmed_bytes(bits: usize) -> usize {
    (0..bits).map(|k| 8 - k / 8).sum()
}

/// The packed choice bits of a receiver's values: bit `k` of `x[i]` for OT `i * bits + k`.
pub fn choice_bits(x: &[u64], bits: usize) -> Result<Vec<u8>> {
    check_bits(bits)?;
    let m = x.len() * bits;
    if bits == 64 {
        return Ok(x.iter().flat_map(|v| v.to_le_bytes()).collect());
    }
    let mut out = Vec::with_capacity(m.div_ceil(8));
    let (mut acc, mut held) = (0u128, 0usize);
    let mask = (1u64 << bits) - 1;
    for &v in x {
        acc |= u128::from(v & mask) << held;
        held += bits;
        while held >= 8 {
            out.push(acc as u8);
            acc >>= 8;
            held -= 8;
        }
    }
    if held > 0 {
        out.push(acc as u8);
    }
    Ok(out)
}

fn check_bits(bits: usize) -> Result<()> {
    if !(1..=64).contains(&bits) {
        return Err(shape(format!("a product takes 1 to 64 bits, got {bits}")));
    }
    Ok(())
}

fn rows_of<'a>(buf: &'a [u8], m: usize, what: &str) -> Result<&'a [u8]> {
    if buf.len() != 16 * m {
        return Err(shape(format!(
            "{what}: {m} rows take {} bytes, got {}",
            16 * m,
            buf.len()
        )));
    }
    Ok(buf)
}

/// A GF(2) OT carries one bit per word of `y`, all taken from one hashed word.
fn check_gf2_words(words: usize, gf2: bool) -> Result<()> {
    if gf2 && words > 64 {
        return Err(shape(format!(
            "a GF(2) product carries at most 64 bits per OT, not {words}"
        )));
    }
    Ok(())
}

/// Words of each hash: a GF(2) product uses bits of one word.
fn hashed_words(words: usize, gf2: bool) -> usize {
    if gf2 {
        1
    } else {
        words
    }
}

/// Runs `work(chunk, part)` for every chunk of `VALUES_PER_CHUNK` values, in parallel when
/// the batch has `PARALLEL_OTS` OTs or more.
fn run_chunks<T, F>(ots: usize, parts: Vec<T>, work: F)
where
    T: Send,
    F: Fn(usize, T) + Sync,
{
    if ots >= PARALLEL_OTS {
        parts
            .into_par_iter()
            .enumerate()
            .for_each(|(c, p)| work(c, p));
    } else {
        parts.into_iter().enumerate().for_each(|(c, p)| work(c, p));
    }
}

/// Gilboa's sender for `n` values of the other party: `q` its rows (`n * bits` of them, the
/// first with OT index `first`), `y` its vectors (`n × words`). For OT `(i, k)` its messages
/// are `m0 = H(q)` and `m1 = H(q ⊕ Δ)`; the correction `m0 + y − m1` travels trimmed to its
/// low `64 − k` bits (both shares of bit `k` are scaled by `2^k`), and its share is
/// `−Σ_k m0·2^k`. GF(2) (`gf2`): each OT carries `words` bits (at most 64), bit `w` of
/// the one hashed word for word `w` of `y`; the corrections are the bits
/// `bit_w(m0) ⊕ bit_w(m1) ⊕ bit_k(y_w)` packed in a word per value and word, the share
/// `Σ_k bit_w(m0)·2^k`: one OT gives the ANDs of one chosen bit with `words` bits.
/// Returns (corrections as bytes, shares: `n × words` words).
#[allow(clippy::too_many_arguments)]
pub fn send(
    h: &Tccr,
    q: &[u8],
    delta: &[u8],
    first: u64,
    y: &[u64],
    bits: usize,
    words: usize,
    gf2: bool,
) -> Result<(Vec<u8>, Vec<u64>)> {
    check_bits(bits)?;
    if words == 0 || !y.len().is_multiple_of(words) {
        return Err(shape(format!(
            "{} words are no whole vectors of {words}",
            y.len()
        )));
    }
    check_gf2_words(words, gf2)?;
    let n = y.len() / words;
    let rows = rows_of(q, n * bits, "the sender's rows")?;
    let delta = u128::from_le_bytes(
        delta
            .try_into()
            .map_err(|_| shape("Δ is 16 bytes".into()))?,
    );
    let hw = hashed_words(words, gf2);
    let (d_per, v_per) = if gf2 {
        (8 * words, words)
    } else {
        (words * trimmed_bytes(bits), words)
    };
    let mut d = vec![0u8; n * d_per];
    let mut v = vec![0u64; n * v_per];
    let parts: Vec<(&mut [u8], &mut [u64])> = d
        .chunks_mut(VALUES_PER_CHUNK * d_per)
        .zip(v.chunks_mut(VALUES_PER_CHUNK * v_per))
        .collect();
    run_chunks(n * bits, parts, |c, (dp, vp)| {
        let start = c * VALUES_PER_CHUNK;
        let count = vp.len() / v_per;
        let r0 = start * bits;
        let rs = &rows[16 * r0..16 * (r0 + count * bits)];
        let mut m0 = vec![0u64; count * bits * hw];
        let mut m1 = vec![0u64; count * bits * hw];
        let index = first.wrapping_add(r0 as u64);
        h.hash(rs, 0, index, hw, &mut m0);
        h.hash(rs, delta, index, hw, &mut m1);
        for i in 0..count {
            let yi = &y[(start + i) * words..(start + i + 1) * words];
            if gf2 {
                for (w, &yw) in yi.iter().enumerate() {
                    let (mut di, mut vi) = (0u64, 0u64);
                    for k in 0..bits {
                        let (a, b) = (m0[i * bits + k] >> w & 1, m1[i * bits + k] >> w & 1);
                        di |= (a ^ b ^ (yw >> k & 1)) << k;
                        vi |= a << k;
                    }
                    let at = 8 * (i * words + w);
                    dp[at..at + 8].copy_from_slice(&di.to_le_bytes());
                    vp[i * words + w] = vi;
                }
                continue;
            }
            let out = &mut dp[i * d_per..(i + 1) * d_per];
            let mut at = 0;
            let vi = &mut vp[i * words..(i + 1) * words];
            for k in 0..bits {
                let keep = 8 - k / 8;
                for w in 0..words {
                    let a = m0[(i * bits + k) * words + w];
                    let b = m1[(i * bits + k) * words + w];
                    let corr = a.wrapping_add(yi[w]).wrapping_sub(b);
                    out[at..at + keep].copy_from_slice(&corr.to_le_bytes()[..keep]);
                    at += keep;
                    vi[w] = vi[w].wrapping_sub(a << k);
                }
            }
        }
    });
    Ok((d, v))
}

/// Gilboa's receiver for its `n` values `x`: `t` its rows (`n * bits`, the first with OT index
/// `first`), `d` the sender's corrections as [`send`] lays them out. Its share is
/// `Σ_k (H(t) + x_k·d_k)·2^k` per word; GF(2): `Σ_k (bit_w(H(t)) ⊕ x_k·d_k)·2^k` for word
/// `w`. Returns `n × words` words.
#[allow(clippy::too_many_arguments)]
pub fn receive(
    h: &Tccr,
    t: &[u8],
    first: u64,
    x: &[u64],
    d: &[u8],
    bits: usize,
    words: usize,
    gf2: bool,
) -> Result<Vec<u64>> {
    check_bits(bits)?;
    if words == 0 {
        return Err(shape("a product has at least one word".into()));
    }
    check_gf2_words(words, gf2)?;
    let n = x.len();
    let rows = rows_of(t, n * bits, "the receiver's rows")?;
    let (d_per, v_per) = if gf2 {
        (8 * words, words)
    } else {
        (words * trimmed_bytes(bits), words)
    };
    if d.len() != n * d_per {
        return Err(shape(format!(
            "the corrections for {n} values take {} bytes, got {}",
            n * d_per,
            d.len()
        )));
    }
    let hw = hashed_words(words, gf2);
    let mut u = vec![0u64; n * v_per];
    let parts: Vec<&mut [u64]> = u.chunks_mut(VALUES_PER_CHUNK * v_per).collect();
    run_chunks(n * bits, parts, |c, up| {
        let start = c * VALUES_PER_CHUNK;
        let count = up.len() / v_per;
        let r0 = start * bits;
        let rs = &rows[16 * r0..16 * (r0 + count * bits)];
        let mut mc = vec![0u64; count * bits * hw];
        h.hash(rs, 0, first.wrapping_add(r0 as u64), hw, &mut mc);
        for i in 0..count {
            let xi = x[start + i];
            let di = &d[(start + i) * d_per..(start + i + 1) * d_per];
            if gf2 {
                for (w, dw8) in di.chunks_exact(8).enumerate() {
                    let dw = u64::from_le_bytes(dw8.try_into().expect("8 bytes"));
                    let mut ui = 0u64;
                    for k in 0..bits {
                        ui |= ((mc[i * bits + k] >> w & 1) ^ (xi >> k & dw >> k & 1)) << k;
                    }
                    up[i * words + w] = ui;
                }
                continue;
            }
            let ui = &mut up[i * words..(i + 1) * words];
            let mut at = 0;
            for k in 0..bits {
                let keep = 8 - k / 8;
                let take = 0u64.wrapping_sub(xi >> k & 1); // all ones where bit k is set
                for w in 0..words {
                    let mut b = [0u8; 8];
                    b[..keep].copy_from_slice(&di[at..at + keep]);
                    at += keep;
                    let dk = u64::from_le_bytes(b);
                    ui[w] = ui[w]
                        .wrapping_add(mc[(i * bits + k) * words + w].wrapping_add(dk & take) << k);
                }
            }
        }
    });
    Ok(u)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg(state: &mut u64) -> u64 {
        *state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        *state ^ (*state >> 29)
    }

    #[test]
    fn streams_continue_across_unaligned_reads() {
        let keys: Vec<u8> = (0..16 * KAPPA).map(|i| (i * 7 + 3) as u8).collect();
        let mut whole = Streams::new(&keys).unwrap();
        let all = whole.read(100);
        let mut parts = Streams::new(&keys).unwrap();
        let (a, b, c) = (parts.read(3), parts.read(0), parts.read(97));
        for r in 0..KAPPA {
            let mut joined = a[3 * r..3 * r + 3].to_vec();
            joined.extend_from_slice(&b[..0]);
            joined.extend_from_slice(&c[97 * r..97 * r + 97]);
            assert_eq!(joined, all[100 * r..100 * r + 100]);
        }
        // counter block 0 of stream 0 is AES_k(0)
        let mut blk = aes::Block::default();
        Aes128::new(keys[..16].into()).encrypt_block(&mut blk);
        assert_eq!(&all[..16], &blk[..]);
    }

    #[test]
    fn iknp_gives_correlated_ots() {
        let mut s = 1u64;
        let k0: Vec<u8> = (0..16 * KAPPA).map(|_| lcg(&mut s) as u8).collect();
        let k1: Vec<u8> = (0..16 * KAPPA).map(|_| lcg(&mut s) as u8).collect();
        let delta: Vec<u8> = (0..16).map(|_| lcg(&mut s) as u8).collect();
        let d = u128::from_le_bytes(delta.clone().try_into().unwrap());
        let chosen: Vec<u8> = (0..KAPPA)
            .flat_map(|j| {
                let src = if (d >> j) & 1 == 1 { &k1 } else { &k0 };
                src[16 * j..16 * j + 16].to_vec()
            })
            .collect();
        let mut recv = IknpReceiver::new(&k0, &k1).unwrap();
        let mut send = IknpSender::new(&chosen, &delta).unwrap();
        for m in [0usize, 1, 13, 200, 1001] {
            let choice: Vec<u8> = (0..m.div_ceil(8)).map(|_| lcg(&mut s) as u8).collect();
            let (u, t) = recv.choose(&choice, m).unwrap();
            let q = send.rows(&u, m).unwrap();
            for i in 0..m {
                let bit = (choice[i / 8] >> (i % 8)) & 1 == 1;
                let ti = u128::from_le_bytes(t[16 * i..16 * i + 16].try_into().unwrap());
                let qi = u128::from_le_bytes(q[16 * i..16 * i + 16].try_into().unwrap());
                assert_eq!(ti ^ qi, if bit { d } else { 0 });
            }
            if m > 0 {
                assert!(send.rows(&u[1..], m).is_err());
            }
        }
        assert!(recv.choose(&[0u8; 2], 8).is_err());
    }

    #[test]
    fn products_add_up() {
        let h = Tccr::new();
        let mut s = 7u64;
        for (n, bits, words, gf2) in [
            (0usize, 64usize, 1usize, false),
            (1, 1, 1, false),
            (5, 64, 3, false),
            (33, 17, 2, false),
            (40, 64, 1, true),
            (3, 5, 1, true),
            (9, 32, 2, true),
            (4, 7, 64, true),
        ] {
            let delta = (u128::from(lcg(&mut s)) << 64) | u128::from(lcg(&mut s));
            let x: Vec<u64> = (0..n).map(|_| lcg(&mut s)).collect();
            let y: Vec<u64> = (0..n * words).map(|_| lcg(&mut s)).collect();
            let t: Vec<u128> = (0..n * bits)
                .map(|_| (u128::from(lcg(&mut s)) << 64) | u128::from(lcg(&mut s)))
                .collect();
            let q: Vec<u128> = t
                .iter()
                .enumerate()
                .map(|(r, ti)| {
                    if x[r / bits] >> (r % bits) & 1 == 1 {
                        ti ^ delta
                    } else {
                        *ti
                    }
                })
                .collect();
            let bytes = |v: &[u128]| v.iter().flat_map(|b| b.to_le_bytes()).collect::<Vec<u8>>();
            let (d, v) = send(
                &h,
                &bytes(&q),
                &delta.to_le_bytes(),
                9,
                &y,
                bits,
                words,
                gf2,
            )
            .unwrap();
            let u = receive(&h, &bytes(&t), 9, &x, &d, bits, words, gf2).unwrap();
            let mask = if bits == 64 {
                u64::MAX
            } else {
                (1u64 << bits) - 1
            };
            for i in 0..n {
                if gf2 {
                    for w in 0..words {
                        let want = x[i] & y[i * words + w] & mask;
                        assert_eq!(u[i * words + w] ^ v[i * words + w], want);
                    }
                } else {
                    for w in 0..words {
                        let want = (x[i] & mask).wrapping_mul(y[i * words + w]);
                        assert_eq!(u[i * words + w].wrapping_add(v[i * words + w]), want);
                    }
                }
            }
            assert!(
                receive(
                    &h,
                    &bytes(&t),
                    9,
                    &x,
                    &d[..d.len().saturating_sub(1)],
                    bits,
                    words,
                    gf2
                )
                .is_err()
                    || n == 0
            );
        }
        assert!(send(&h, &[0u8; 16], &[0u8; 16], 0, &[1], 0, 1, false).is_err());
        let y65 = [0u64; 65];
        assert!(send(&h, &[0u8; 16], &[0u8; 16], 0, &y65, 1, 65, true).is_err());
        assert!(receive(&h, &[0u8; 16], 0, &[1], &[0u8; 520], 1, 65, true).is_err());
        assert!(send(&h, &[0u8; 15], &[0u8; 16], 0, &[1], 1, 1, false).is_err());
        assert!(receive(&h, &[0u8; 16], 0, &[1], &[0u8; 8], 65, 1, false).is_err());
    }

    #[test]
    fn choice_bits_pack_each_values_low_bits() {
        let x = [0b1011u64, 0b0110, u64::MAX];
        assert_eq!(choice_bits(&x, 4).unwrap(), vec![0b0110_1011, 0b1111]);
        assert_eq!(choice_bits(&x, 64).unwrap().len(), 24);
        assert_eq!(choice_bits(&x, 1).unwrap(), vec![0b101]);
        assert!(choice_bits(&x, 0).is_err());
    }
}
