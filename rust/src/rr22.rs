//! RR22 PSI (Raghuraman and Rindal, "Blazing Fast PSI from Improved OKVS and Subfield VOLE",
//! CCS 2022), semi-honest: a VOLE-based OPRF over an OKVS, and the two message-driven roles.
//!
//! The receiver holds the set `X`, the sender `Y`. A VOLE of length `m` gives the receiver
//! `A, C` and the sender `Δ, B` with `C = B + A·Δ` (GF(2^128)). The receiver encodes the OKVS
//! `P` with `Decode(P, x) = H(x)` for every `x ∈ X` and sends `Q = P + A` (`A` is
//! pseudorandom, so `Q` hides `P`). The sender sets `K = B + Δ·Q = C + Δ·P`; its PRF is
//! `F(y) = H'(Decode(K, y) + Δ·H(y))` and the receiver's value for its own `x` is
//! `H'(Decode(C, x))`, equal exactly when `y = x ∈ X` (for `y ∉ X`, `Decode(P, y) + H(y)` is
//! a random non-zero field element, so `Δ` masks it). The sender sends `F(y)` for its set in
//! a random order; the receiver looks its own values up among them.
//!
//! The VOLE is silent: IKNP correlated OTs (from 128 Chou–Orlandi base OTs) seed regular
//! sparse VOLE from GGM trees, which the dual expand-convolute code (`exconv`: 256 noisy
//! positions) compresses.
//!
//! Messages, in order: R→S base-OT setup (32 bytes); S→R base-OT choices (128·32); R→S the
//! IKNP matrix (128·M/8); S→R the tree sums and corrections; R→S the masked OKVS (4-byte
//! retry counter and `m` blocks); S→R the PRF values (by the caller, truncated).

pub mod lookup;

use rayon::prelude::*;
use sha2::{Digest, Sha256};

use crate::block::{derive, from_bytes, gf_mul, random_block, to_bytes, Block, Cipher, Tmmo};
use crate::error::{CoreError, Result};
use crate::items::Items;
use crate::{baseot, exconv, iknp, okvs, pprf};

/// The sizes every message follows from, fixed by the receiver's set size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// OKVS columns, and so the length of the VOLE.
    pub m: usize,
    /// GGM trees (noisy positions) and their depth.
    pub trees: usize,
    pub depth: usize,
    /// Correlated OTs: 128 per tree for the base VOLE, then one per tree and level.
    pub cots: usize,
}

impl Layout {
    pub fn new(n_receiver: usize) -> Self {
        let m = okvs::size(n_receiver);
        // N = trees·2^depth >= 2m, with at least MIN_NOISE trees.
        let target = 2 * m;
        let mut depth = 1usize;
        while (target >> (depth + 1)) >= exconv::MIN_NOISE {
            depth += 1;
        }
        let trees = target.div_ceil(1 << depth).max(exconv::MIN_NOISE);
        let cots = iknp::rounded(trees * 128 + trees * depth);
        Layout {
            m,
            trees,
            depth,
            cots,
        }
    }

    pub fn noise_len(&self) -> usize {
        self.trees << self.depth
    }

    fn ggm_first(&self) -> usize {
        self.trees * 128
    }

    /// Bytes of the sender's tree message: two blocks per tree and level, one per tree.
    pub fn tree_msg_len(&self) -> usize {
        16 * (2 * self.trees * self.depth + self.trees)
    }
}

/// A 128-bit digest per item: SHA-256 over the session seed and the item.
pub fn digests(seed: &[u8], items: &Items<'_>) -> Vec<Block> {
    (0..items.len())
        .into_par_iter()
        .with_min_len(4096)
        .map(|i| {
            let mut h = Sha256::new();
            h.update(b"rainbridge/rr22/item");
            h.update(seed);
            h.update(items.get(i));
            u128::from_le_bytes(h.finalize()[..16].try_into().expect("16 bytes"))
        })
        .collect()
}

fn values(seed: &[u8], d: &[Block]) -> Vec<Block> {
    let c = Cipher::new(derive(seed, "rr22/value", 0));
    let mut v = d.to_vec();
    v.par_chunks_mut(4096).for_each(|p| c.encrypt(p));
    v
}

/// The public seed of the VOLE's code.
fn code_seed(seed: &[u8]) -> Block {
    derive(seed, "rr22/exconv", 0)
}

fn okvs_rows(seed: &[u8], retry: u32, m: usize, d: &[Block]) -> Vec<okvs::Row> {
    okvs::Rows::new(derive(seed, "rr22/okvs", retry as u64), m).rows(d)
}

fn finish(mut o: Vec<Block>) -> Vec<u8> {
    let h = Tmmo::new();
    o.par_chunks_mut(4096).for_each(|p| h.hash_same(p, 0));
    to_bytes(&o)
}

/// The payload variant's per-item tag and key from PRF values `v` (16 bytes each):
/// `tag = H(v, 1)` is what the sender sends in the clear and the receiver looks up,
/// `key = H(v, 2)` encrypts the item's payload record. For an item the receiver does not
/// hold, `v` is pseudorandom to it, and so are both.
pub fn payload_keys(values: &[u8]) -> Result<(Vec<u8>, Vec<u8>)> {
    if !values.len().is_multiple_of(16) {
        return Err(shape("RR22: PRF values must be 16 bytes each"));
    }
    let v = from_bytes(values);
    let h = Tmmo::new();
    let mut tags = v.clone();
    let mut keys = v;
    tags.par_chunks_mut(4096).for_each(|p| h.hash_same(p, 1));
    keys.par_chunks_mut(4096).for_each(|p| h.hash_same(p, 2));
    Ok((to_bytes(&tags), to_bytes(&keys)))
}

/// XORs row `i` of `data` (rows of `width` bytes) with AES-128 in counter mode under
/// `keys[i]`, the counter block starting at `nonce · 2^64`: encrypts and decrypts payload
/// and label records. A (key, nonce) pair must seal one record only: a record sealed again
/// under the same key (a changed label) takes a new nonce.
pub fn xor_rows(keys: &[u8], data: &mut [u8], width: usize, nonce: u64) -> Result<()> {
    if width == 0 || !keys.len().is_multiple_of(16) || data.len() != keys.len() / 16 * width {
        return Err(CoreError::Shape(format!(
            "RR22: {} bytes of records do not match {} keys of width {width}",
            data.len(),
            keys.len() / 16
        )));
    }
    let blocks = width.div_ceil(16);
    data.par_chunks_mut(width)
        .zip(keys.par_chunks_exact(16))
        .with_min_len(1024)
        .for_each_init(
            || vec![0u128; blocks],
            |stream, (row, key)| {
                let c = Cipher::new(u128::from_le_bytes(key.try_into().expect("16 bytes")));
                c.fill((nonce as u128) << 64, stream);
                for (chunk, s) in row.chunks_mut(16).zip(stream.iter()) {
                    for (d, k) in chunk.iter_mut().zip(s.to_le_bytes()) {
                        *d ^= k;
                    }
                }
            },
        );
    Ok(())
}

/// A uniformly random permutation of `0..n`, secret to this party.
fn secret_permutation(n: usize) -> Vec<u32> {
    let mut p: Vec<u32> = (0..n as u32).collect();
    let prg = Cipher::new(random_block());
    let mut pool = vec![0u128; 1024];
    let (mut used, mut counter) = (2 * pool.len(), 0u128);
    for i in (1..n).rev() {
        if used == 2 * pool.len() {
            prg.fill(counter, &mut pool);
            counter += pool.len() as u128;
            used = 0;
        }
        let r = (pool[used / 2] >> (64 * (used % 2))) as u64;
        used += 1;
        let j = ((r as u128 * (i as u128 + 1)) >> 64) as usize;
        p.swap(i, j);
    }
    p
}

fn x_pow(k: usize) -> Block {
    1u128 << k
}

fn shape(msg: &str) -> CoreError {
    CoreError::Shape(msg.into())
}

/// The masked store's plaintext: the OKVS `P`, its retry counter and the rows it used
/// (binned for decoding).
type Encoded = (Vec<Block>, u32, Vec<okvs::Entry>);

/// The receiver (holds `X`, learns the PRF values of its own items).
pub struct Receiver {
    seed: Vec<u8>,
    layout: Layout,
    /// The OKVS of `X`, encoded on its own thread from the start: it needs no message, and
    /// its elimination (one core) overlaps the base OTs and the VOLE (the other).
    encoder: Option<std::thread::JoinHandle<Result<Encoded>>>,
    base_secret: [u8; 32],
    choices: Vec<u8>,
    t: Vec<Block>,
    alphas: Vec<u32>,
    betas: Vec<Block>,
    c: Vec<Block>,
    rows: Vec<okvs::Entry>,
}

impl Receiver {
    /// Starts a session; returns the role and its first message.
    pub fn new(seed: &[u8], digests: Vec<Block>) -> Result<(Self, Vec<u8>)> {
        let layout = Layout::new(digests.len());
        let (secret, msg) = baseot::sender_setup()?;
        let s = seed.to_vec();
        let encoder = std::thread::Builder::new()
            .name("rr22-okvs".into())
            .spawn(move || encode_set(&s, layout.m, &digests))
            .map_err(|e| CoreError::Shape(format!("RR22: could not start the encoder: {e}")))?;
        let r = Receiver {
            seed: seed.to_vec(),
            layout,
            encoder: Some(encoder),
            base_secret: secret,
            choices: Vec::new(),
            t: Vec::new(),
            alphas: Vec::new(),
            betas: Vec::new(),
            c: Vec::new(),
            rows: Vec::new(),
        };
        Ok((r, msg.to_vec()))
    }

    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// Base OTs done: returns the IKNP matrix.
    pub fn on_base(&mut self, msgs: &[u8]) -> Result<Vec<u8>> {
        if msgs.len() != 32 * iknp::BASE {
            return Err(shape("RR22: the base OT message must hold 128 points"));
        }
        let (k0, k1) = baseot::sender_keys(&self.base_secret, msgs)?;
        let l = self.layout;
        let mut choices = vec![0u8; l.cots / 8];
        let mut set = |j: usize, bit: usize| choices[j / 8] |= (bit as u8) << (j % 8);
        // Noise values β (random, non-zero), then the complement of α's bits (MSB first).
        self.betas = (0..l.trees)
            .map(|_| loop {
                let b = random_block();
                if b != 0 {
                    break b;
                }
            })
            .collect();
        for (i, b) in self.betas.iter().enumerate() {
            for k in 0..128 {
                set(i * 128 + k, ((b >> k) & 1) as usize);
            }
        }
        let mask = (1u64 << l.depth) - 1;
        self.alphas = (0..l.trees)
            .map(|_| (random_block() as u64 & mask) as u32)
            .collect();
        for (i, &a) in self.alphas.iter().enumerate() {
            for level in 0..l.depth {
                let bit = (a as usize >> (l.depth - 1 - level)) & 1;
                set(l.ggm_first() + i * l.depth + level, 1 - bit);
            }
        }
        let (u, t) = iknp::receiver(&from_bytes(&k0), &from_bytes(&k1), &choices, l.cots)?;
        self.choices = choices;
        self.t = t;
        Ok(u)
    }

    /// Tree sums and corrections received: builds the VOLE, encodes the OKVS and returns the
    /// masked store (retry counter, then `m` blocks).
    pub fn on_trees(&mut self, msg: &[u8]) -> Result<Vec<u8>> {
        let l = self.layout;
        if self.t.is_empty() {
            return Err(shape("RR22: tree message before the base OTs"));
        }
        if msg.len() != l.tree_msg_len() {
            return Err(CoreError::Shape(format!(
                "RR22: tree message holds {} bytes, expected {}",
                msg.len(),
                l.tree_msg_len()
            )));
        }
        let blocks = from_bytes(msg);
        let (pairs, corr) = blocks.split_at(2 * l.trees * l.depth);
        // Unmask the sum that each OT chose.
        let first = l.ggm_first();
        let mut known: Vec<Block> = (0..l.trees * l.depth).map(|j| self.t[first + j]).collect();
        Tmmo::new().hash(&mut known, first as u128);
        for (j, k) in known.iter_mut().enumerate() {
            let c = (self.choices[(first + j) / 8] >> ((first + j) % 8)) & 1;
            *k ^= pairs[2 * j + c as usize];
        }
        let mut c = pprf::receiver(&self.alphas, &known, l.depth);
        let per = 1usize << l.depth;
        for i in 0..l.trees {
            // γ' = Σ_k x^k t_{i,k}: the base VOLE γ' = γ + β·Δ.
            let gamma: Block =
                (0..128).fold(0, |acc, k| acc ^ gf_mul(self.t[i * 128 + k], x_pow(k)));
            let tree = &mut c[i * per..(i + 1) * per];
            let rest = tree.iter().fold(0u128, |a, b| a ^ b); // the punctured leaf holds 0
            tree[self.alphas[i] as usize] = corr[i] ^ rest ^ gamma;
        }
        self.t = Vec::new();
        // C = code(c); A = code(e), the noise e being β_i at i·2^d + α_i: encoded from its
        // entries, its parity part in c's once c is encoded (no second vector of N blocks)
        let seed = code_seed(&self.seed);
        exconv::dual_encode(&mut c, l.m, seed);
        let entries: Vec<(usize, Block)> = (0..l.trees)
            .map(|i| ((i << l.depth) + self.alphas[i] as usize, self.betas[i]))
            .collect();
        let aa = exconv::dual_encode_sparse(l.noise_len(), l.m, seed, &entries, &mut c[l.m..]);
        c.truncate(l.m);
        c.shrink_to_fit();
        let cc = c;
        let encoder = self
            .encoder
            .take()
            .ok_or_else(|| shape("RR22: the OKVS was used already"))?;
        let (p, retry, rows) = encoder
            .join()
            .map_err(|_| shape("RR22: the OKVS encoder failed"))??;
        // kept for `outputs`: the same rows decode the receiver's own values
        self.rows = rows;
        self.c = cc;
        let mut out = Vec::with_capacity(4 + 16 * l.m);
        out.extend_from_slice(&retry.to_le_bytes());
        for (x, y) in p.iter().zip(&aa) {
            out.extend_from_slice(&(x ^ y).to_le_bytes());
        }
        Ok(out)
    }

    /// The PRF value (16 bytes) of every item, in input order.
    pub fn outputs(&self) -> Result<Vec<u8>> {
        if self.c.is_empty() {
            return Err(shape("RR22: outputs before the VOLE"));
        }
        Ok(finish(okvs::decode_binned(&self.c, &self.rows, |_, d| d)))
    }
}

/// Encodes the OKVS of the receiver's set: `Decode(P, x) = H(x)`, free columns random;
/// retried under the next OKVS key while the band matrix is singular (8 tries).
fn encode_set(seed: &[u8], m: usize, digests: &[Block]) -> Result<Encoded> {
    let vals = values(seed, digests);
    let mut fill = |b: &mut [Block]| {
        let c = Cipher::new(random_block());
        c.fill(0, b);
    };
    let mut retry = 0u32;
    loop {
        let rows = okvs_rows(seed, retry, m, digests);
        match okvs::encode(&rows, &vals, m, &mut fill) {
            Ok(p) => return Ok((p, retry, okvs::bin(&rows, None))),
            Err(okvs::Singular) if retry < 7 => retry += 1,
            Err(_) => return Err(shape("RR22: the OKVS could not be encoded (8 tries)")),
        }
    }
}

/// The sender (holds `Y` and the PRF key `Δ`).
pub struct Sender {
    seed: Vec<u8>,
    layout: Layout,
    digests: Vec<Block>,
    delta: Block,
    keys: Vec<Block>,
    b: Vec<Block>,
    /// What [`Sender::prepare`] computed ahead of the masked store.
    pre: Option<Prepared>,
}

/// The sender's work that needs the VOLE but not the masked store: the code applied to `B`,
/// and the OKVS rows (for retry 0, almost always the one used) of its items, binned by
/// where they read the store, each with its item's value `H(y)`.
struct Prepared {
    bb: Vec<Block>,
    entries: Vec<okvs::Entry>,
}

impl Sender {
    pub fn new(seed: &[u8], digests: Vec<Block>, n_receiver: usize) -> Self {
        Sender {
            seed: seed.to_vec(),
            layout: Layout::new(n_receiver),
            digests,
            delta: random_block(),
            keys: Vec::new(),
            b: Vec::new(),
            pre: None,
        }
    }

    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// The receiver's base-OT setup: returns this side's 128 base-OT messages (choices `Δ`).
    pub fn on_setup(&mut self, a: &[u8]) -> Result<Vec<u8>> {
        let a: [u8; 32] = a
            .try_into()
            .map_err(|_| shape("RR22: the base OT setup must be 32 bytes"))?;
        let choices: Vec<u8> = (0..iknp::BASE)
            .map(|i| ((self.delta >> i) & 1) as u8)
            .collect();
        let (msgs, keys) = baseot::receiver(&a, &choices)?;
        self.keys = from_bytes(&keys);
        Ok(msgs)
    }

    /// The IKNP matrix: returns the tree sums (masked by the OTs) and corrections.
    pub fn on_matrix(&mut self, u: &[u8]) -> Result<Vec<u8>> {
        if self.keys.is_empty() {
            return Err(shape("RR22: IKNP matrix before the base OTs"));
        }
        let l = self.layout;
        let q = iknp::sender(&self.keys, self.delta, u, l.cots)?;
        let roots: Vec<Block> = (0..l.trees).map(|_| random_block()).collect();
        let (leaves, sums) = pprf::sender(&roots, l.depth);
        let first = l.ggm_first();
        let h = Tmmo::new();
        let mut k0: Vec<Block> = q[first..first + l.trees * l.depth].to_vec();
        let mut k1: Vec<Block> = k0.iter().map(|x| x ^ self.delta).collect();
        h.hash(&mut k0, first as u128);
        h.hash(&mut k1, first as u128);
        let mut out = Vec::with_capacity(l.tree_msg_len());
        for (j, s) in sums.iter().enumerate() {
            out.extend_from_slice(&(s[0] ^ k0[j]).to_le_bytes());
            out.extend_from_slice(&(s[1] ^ k1[j]).to_le_bytes());
        }
        let per = 1usize << l.depth;
        for i in 0..l.trees {
            let gamma: Block = (0..128).fold(0, |acc, k| acc ^ gf_mul(q[i * 128 + k], x_pow(k)));
            let total = leaves[i * per..(i + 1) * per]
                .iter()
                .fold(0u128, |a, b| a ^ b);
            out.extend_from_slice(&(total ^ gamma).to_le_bytes());
        }
        self.b = leaves;
        Ok(out)
    }

    /// Does the work of [`Sender::on_store`] that does not need the masked store, so that
    /// it runs while the receiver encodes its OKVS (whose elimination uses one core).
    /// Optional: `on_store` does what is left undone.
    pub fn prepare(&mut self) -> Result<()> {
        if self.pre.is_some() {
            return Ok(());
        }
        if self.b.is_empty() {
            return Err(shape("RR22: prepare before the VOLE"));
        }
        let l = self.layout;
        let mut bb = std::mem::take(&mut self.b);
        exconv::dual_encode(&mut bb, l.m, code_seed(&self.seed));
        bb.truncate(l.m);
        bb.shrink_to_fit();
        self.pre = Some(Prepared {
            bb,
            entries: okvs::bin(
                &okvs_rows(&self.seed, 0, l.m, &self.digests),
                Some(&values(&self.seed, &self.digests)),
            ),
        });
        Ok(())
    }

    /// [`Sender::on_store`], then the values in a secret random order, each cut to its first
    /// `width` bytes: returns `(values, order)` where value `k` is that of item `order[k]`
    /// (`order` as little-endian u32). The order comes from AES in counter mode under a fresh
    /// random key (Fisher–Yates with multiply-shift draws, bias below 2^-40).
    pub fn on_store_shuffled(&mut self, msg: &[u8], width: usize) -> Result<(Vec<u8>, Vec<u8>)> {
        if !(1..=16).contains(&width) {
            return Err(shape("RR22: values are cut to 1 to 16 bytes"));
        }
        let n = self.digests.len();
        if n > u32::MAX as usize {
            return Err(shape("RR22: at most 2^32 items per bucket"));
        }
        let vals = self.on_store(msg)?;
        let order = secret_permutation(n);
        let mut out = vec![0u8; n * width];
        out.par_chunks_mut(width)
            .zip(order.par_iter())
            .with_min_len(4096)
            .for_each(|(o, &i)| o.copy_from_slice(&vals[16 * i as usize..16 * i as usize + width]));
        let order = order.iter().flat_map(|i| i.to_le_bytes()).collect();
        Ok((out, order))
    }

    /// The masked OKVS: returns the PRF value (16 bytes) of every own item, in input order.
    pub fn on_store(&mut self, msg: &[u8]) -> Result<Vec<u8>> {
        let l = self.layout;
        if self.b.is_empty() && self.pre.is_none() {
            return Err(shape("RR22: masked store before the VOLE"));
        }
        if msg.len() != 4 + 16 * l.m {
            return Err(CoreError::Shape(format!(
                "RR22: masked store holds {} bytes, expected {}",
                msg.len(),
                4 + 16 * l.m
            )));
        }
        let retry = u32::from_le_bytes(msg[..4].try_into().expect("4 bytes"));
        if retry >= 8 {
            return Err(shape("RR22: OKVS retry counter out of range"));
        }
        self.prepare()?;
        let Prepared { bb, entries } = self.pre.take().expect("prepared");
        let delta = self.delta;
        let k: Vec<Block> = msg[4..]
            .par_chunks_exact(16)
            .zip(bb.par_iter())
            .with_min_len(4096)
            .map(|(q, b)| b ^ gf_mul(delta, u128::from_le_bytes(q.try_into().expect("16 bytes"))))
            .collect();
        drop(bb);
        let entries = if retry == 0 {
            entries
        } else {
            drop(entries);
            okvs::bin(
                &okvs_rows(&self.seed, retry, l.m, &self.digests),
                Some(&values(&self.seed, &self.digests)),
            )
        };
        let o = okvs::decode_binned(&k, &entries, |e, d| d ^ gf_mul(delta, e.val()));
        Ok(finish(o))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(x: &[Block], y: &[Block]) -> (Vec<u8>, Vec<u8>) {
        let seed = b"session";
        let (mut r, m0) = Receiver::new(seed, x.to_vec()).unwrap();
        let mut s = Sender::new(seed, y.to_vec(), x.len());
        let m1 = s.on_setup(&m0).unwrap();
        let m2 = r.on_base(&m1).unwrap();
        let m3 = s.on_matrix(&m2).unwrap();
        let m4 = r.on_trees(&m3).unwrap();
        let sy = s.on_store(&m4).unwrap();
        (r.outputs().unwrap(), sy)
    }

    #[test]
    fn prepared_and_shuffled_values_are_the_same_prf() {
        let x: Vec<Block> = (0..3000u128).map(|i| i * 7 + 1).collect();
        let y: Vec<Block> = (0..2000u128)
            .map(|i| if i < 700 { i * 7 + 1 } else { !i })
            .collect();
        let seed = b"session";
        let (mut r, m0) = Receiver::new(seed, x.clone()).unwrap();
        let mut s = Sender::new(seed, y.clone(), x.len());
        assert!(s.prepare().is_err()); // before the VOLE
        let m1 = s.on_setup(&m0).unwrap();
        let m2 = r.on_base(&m1).unwrap();
        let m3 = s.on_matrix(&m2).unwrap();
        s.prepare().unwrap();
        s.prepare().unwrap(); // twice is once
        let m4 = r.on_trees(&m3).unwrap();
        assert!(s.on_store_shuffled(&m4, 17).is_err());
        let (vals, order) = s.on_store_shuffled(&m4, 11).unwrap();
        let rx = r.outputs().unwrap();
        let order: Vec<usize> = order
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes(c.try_into().unwrap()) as usize)
            .collect();
        let mut seen = order.clone();
        seen.sort_unstable();
        assert_eq!(seen, (0..y.len()).collect::<Vec<_>>());
        assert_ne!(
            order, seen,
            "a random order (2000! orders: the identity never comes)"
        );
        let mut hits = 0;
        for (k, &i) in order.iter().enumerate() {
            let v = &vals[11 * k..11 * k + 11];
            if i < 700 {
                // y[i] = x[i]: the receiver's value of the same item
                assert_eq!(v, &rx[16 * i..16 * i + 11]);
                hits += 1;
            } else {
                assert!(rx.chunks_exact(16).all(|o| &o[..11] != v));
            }
        }
        assert_eq!(hits, 700);
    }

    #[test]
    fn prf_values_agree_exactly_on_common_items() {
        for (nx, ny, common) in [
            (1usize, 1usize, 1usize),
            (10, 3, 2),
            (3000, 5000, 1500),
            (0, 4, 0),
        ] {
            let x: Vec<Block> = (0..nx).map(|i| i as u128 * 7 + 1).collect();
            let y: Vec<Block> = (0..ny)
                .map(|i| {
                    if i < common {
                        i as u128 * 7 + 1
                    } else {
                        (i as u128) << 80
                    }
                })
                .collect();
            let (rx, sy) = run(&x, &y);
            let rx: Vec<&[u8]> = rx.chunks(16).collect();
            let sy: Vec<&[u8]> = sy.chunks(16).collect();
            let hits = rx.iter().filter(|v| sy.contains(v)).count();
            assert_eq!(hits, common, "sizes {nx} {ny}");
            for i in 0..common {
                assert_eq!(rx[i], sy[i]);
            }
        }
    }

    #[test]
    fn the_masked_store_does_not_decode_to_the_receivers_values() {
        // If the VOLE's A were zero (or sparse), Q = P + A would reveal P: Decode(Q, x) = H(x).
        let x: Vec<Block> = (0..2000u128).map(|i| i * 3 + 5).collect();
        let seed = b"mask";
        let (mut r, m0) = Receiver::new(seed, x.clone()).unwrap();
        let mut s = Sender::new(seed, vec![1], x.len());
        let m2 = r.on_base(&s.on_setup(&m0).unwrap()).unwrap();
        let m4 = r.on_trees(&s.on_matrix(&m2).unwrap()).unwrap();
        let q = from_bytes(&m4[4..]);
        let rows = okvs_rows(seed, 0, r.layout().m, &x);
        let vals = values(seed, &x);
        let same = rows
            .iter()
            .zip(&vals)
            .filter(|(row, v)| okvs::decode1(&q, **row) == **v)
            .count();
        assert_eq!(same, 0);
        let zeros = q.iter().filter(|b| **b == 0).count();
        assert!(zeros < 2, "the mask is dense");
    }

    #[test]
    fn malformed_messages_are_refused() {
        let (mut r, m0) = Receiver::new(b"s", vec![1, 2, 3]).unwrap();
        let mut s = Sender::new(b"s", vec![1], 3);
        assert!(s.on_matrix(&[0; 16]).is_err());
        assert!(s.on_setup(&m0[..31]).is_err());
        let m1 = s.on_setup(&m0).unwrap();
        assert!(r.on_trees(&[0; 32]).is_err());
        assert!(r.on_base(&m1[..64]).is_err());
        let m2 = r.on_base(&m1).unwrap();
        assert!(s.on_matrix(&m2[1..]).is_err());
        let m3 = s.on_matrix(&m2).unwrap();
        assert!(r.on_trees(&m3[16..]).is_err());
        let m4 = r.on_trees(&m3).unwrap();
        assert!(s.on_store(&m4[..m4.len() - 1]).is_err());
        let mut bad = m4.clone();
        bad[0] = 9;
        assert!(s.on_store(&bad).is_err());
    }
    #[test]
    fn payload_keys_split_and_rows_round_trip() {
        let v: Vec<u8> = (0..48u8).collect();
        let (tags, keys) = payload_keys(&v).unwrap();
        assert_eq!((tags.len(), keys.len()), (48, 48));
        assert_ne!(tags, keys);
        assert_ne!(&tags[..16], &v[..16]);
        let (t2, k2) = payload_keys(&v[16..32]).unwrap();
        assert_eq!((&t2[..], &k2[..]), (&tags[16..32], &keys[16..32]));
        assert!(payload_keys(&v[..15]).is_err());
        let plain: Vec<u8> = (0..3 * 37).map(|i| (i % 251) as u8).collect();
        let mut data = plain.clone();
        xor_rows(&keys, &mut data, 37, 0).unwrap();
        assert_ne!(data, plain);
        // each row under its own key: the same plaintext row encrypts differently
        let mut same = [plain[..37].to_vec(), plain[..37].to_vec()].concat();
        xor_rows(&keys[..32], &mut same, 37, 0).unwrap();
        assert_ne!(same[..37], same[37..]);
        xor_rows(&keys, &mut data, 37, 0).unwrap();
        assert_eq!(data, plain);
        assert!(xor_rows(&keys, &mut data, 36, 0).is_err());
        assert!(xor_rows(&keys, &mut data[..0], 0, 0).is_err());
        // another nonce, another keystream
        let mut other = plain.clone();
        xor_rows(&keys, &mut other, 37, 1).unwrap();
        xor_rows(&keys, &mut data, 37, 0).unwrap();
        assert_ne!(other, data);
    }
}
