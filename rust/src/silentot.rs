//! Silent random correlated OT: subfield VOLE over GF(2) from regular-noise LPN, semi-honest.
//!
//! A batch gives the sender `Δ` (fixed for the session) and `K_i`, the receiver random choice
//! bits `b_i` and `M_i = K_i ⊕ b_i·Δ`, for `i < m`. `t` GGM trees of depth `d` (`pprf`) give
//! the sender a vector `v` of `N = t·2^d` blocks and the receiver `w = v ⊕ e·Δ`, `e` zero but
//! for one 1 per tree (its place `α_i` the receiver's secret); both compress with the dual
//! expand-convolute code (`exconv`), `M = C(w)`, `K = C(v)`, `b = C(e)`, so the receiver's
//! outputs are bits. Each tree costs `d + 1` correlated OTs: one per level, masking the
//! level's two sums under the hash of the OT's keys, and one with choice 1 that lets the
//! receiver learn `v_α ⊕ Δ` at the punctured leaf.
//!
//! The choice bits ride in the lowest bit of the blocks: `Δ` has it set and both parties clear
//! it in every leaf, so the lowest bit of `w` is `e` and that of `M` is `b` (the sender's `K`
//! always has it clear; the other 127 bits are the correlation's key, and what uses the OTs
//! hashes `K` and `K ⊕ Δ`, which differ in it). One encoding per side serves both `M` and `b`.
//!
//! Parameters: `N >= 2·(m + RESERVE)` and `t >= 256` trees, the noise weight that the code's
//! estimated minimum distance asks for 128-bit security (see `exconv`). Regular noise (one
//! position per block of `2^d`) is the structure of Boyle et al. (CCS 2019) and of Ferret
//! (Yang, Weng, Lan, Zhang and Wang, CCS 2020). Not re-evaluated here: the algebraic attacks on
//! regular syndrome decoding (Briaud and Øygarden, EUROCRYPT 2023) for these exact sizes.
//!
//! The base correlated OTs of a batch are `RESERVE` outputs of the batch before (Ferret's
//! bootstrapping): the first batch's come from IKNP over 128 Chou–Orlandi base OTs, and no
//! later batch needs more public-key work or IKNP. The receiver turns the reserved random
//! OTs into the chosen ones it needs with one bit each (`flip = b ⊕ choice`, the sender
//! sets `K ⊕= flip·Δ`): the flips are uniform because the reserved bits are.
//!
//! Messages, in order: R→S base-OT setup (32 bytes); S→R base-OT choices (128·32); R→S the
//! IKNP matrix (128·RESERVE/8). Then per batch: R→S the request (`m` as 8 bytes, then one
//! flip bit per base OT the batch uses); S→R the tree sums and corrections
//! (16·(2·t·d + t) bytes). Every length follows from `m` only, never from the receiver's
//! noisy positions. What the transcript reveals: nothing beyond `m` (the flips are masked by
//! the reserved choice bits, the sums by the OTs and the GGM PRG).

use rayon::prelude::*;

use crate::block::{derive, random_block, Block, Tmmo};
use crate::error::{CoreError, Result};
use crate::{baseot, exconv, iknp, pprf};

/// Correlated OTs each batch keeps for the next: enough for any allowed batch (fewer than 512
/// trees of depth at most 15, one OT per level and one per tree), a multiple of 128.
pub const RESERVE: usize = 8192;
/// The most outputs one batch may give (bounds memory: 32·(m + RESERVE) bytes per side).
pub const MAX_BATCH: usize = 1 << 22;

/// The sizes of one batch, fixed by its number of outputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Outputs the caller gets (the batch encodes `m + RESERVE`).
    pub m: usize,
    pub trees: usize,
    pub depth: usize,
}

impl Layout {
    pub fn new(m: usize) -> Result<Self> {
        if m == 0 || m > MAX_BATCH {
            return Err(CoreError::Shape(format!(
                "silent OT: a batch gives 1 to {MAX_BATCH} correlations, not {m}"
            )));
        }
        let target = 2 * (m + RESERVE);
        let mut depth = 1usize;
        while (target >> (depth + 1)) >= exconv::MIN_NOISE {
            depth += 1;
        }
        let trees = target.div_ceil(1 << depth).max(exconv::MIN_NOISE);
        let l = Layout { m, trees, depth };
        debug_assert!(l.base_ots() <= RESERVE);
        Ok(l)
    }

    /// The encoded length: outputs plus the reserve for the next batch.
    pub fn total(&self) -> usize {
        self.m + RESERVE
    }

    pub fn noise_len(&self) -> usize {
        self.trees << self.depth
    }

    /// Base OTs this batch uses: one per tree and level, then one per tree.
    pub fn base_ots(&self) -> usize {
        self.trees * (self.depth + 1)
    }

    pub fn request_len(&self) -> usize {
        8 + self.base_ots().div_ceil(8)
    }

    pub fn tree_msg_len(&self) -> usize {
        16 * (2 * self.trees * self.depth + self.trees)
    }
}

fn shape(msg: &str) -> CoreError {
    CoreError::Shape(msg.into())
}

fn code_seed(batch: u64) -> Block {
    derive(b"rainbridge/silentot/v2", "silentot/exconv", batch)
}

/// Every block but its lowest bit, where the choice bits ride.
const KEY_BITS: Block = !1;

/// The hash tweak of base OT `j` of batch `batch`: unique over the session.
fn tweak(batch: u64) -> u128 {
    (batch as u128) << 64
}

fn bit(bits: &[u8], j: usize) -> u8 {
    (bits[j / 8] >> (j % 8)) & 1
}

/// Bits (0 or 1 per entry) packed little-endian into bytes.
pub fn pack(bits: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; bits.len().div_ceil(8)];
    for (j, &b) in bits.iter().enumerate() {
        out[j / 8] |= (b & 1) << (j % 8);
    }
    out
}

/// The receiver: learns the choice bits and `M`.
pub struct Receiver {
    base_secret: [u8; 32],
    /// Reserved base OTs: choice bits (one per byte) and `M`.
    pool_bits: Vec<u8>,
    pool_m: Vec<Block>,
    batch: u64,
    pending: Option<(Layout, Vec<u32>)>,
    /// The batch's noisy vector, kept between batches so that its pages stay mapped.
    work: Vec<Block>,
}

impl Receiver {
    /// Starts a session; returns the role and its first message (the base-OT setup).
    pub fn new() -> Result<(Self, Vec<u8>)> {
        let (secret, msg) = baseot::sender_setup()?;
        Ok((
            Receiver {
                base_secret: secret,
                pool_bits: Vec::new(),
                pool_m: Vec::new(),
                batch: 0,
                pending: None,
                work: Vec::new(),
            },
            msg.to_vec(),
        ))
    }

    /// The base OTs' replies: returns the IKNP matrix for `RESERVE` random correlated OTs.
    pub fn on_base(&mut self, msgs: &[u8]) -> Result<Vec<u8>> {
        if !self.pool_m.is_empty() {
            return Err(shape("silent OT: the base OTs ran already"));
        }
        if msgs.len() != 32 * iknp::BASE {
            return Err(shape("silent OT: the base OT message must hold 128 points"));
        }
        let (k0, k1) = baseot::sender_keys(&self.base_secret, msgs)?;
        let mut choices = vec![0u8; RESERVE / 8];
        getrandom::getrandom(&mut choices).expect("operating system randomness");
        let (u, t) = iknp::receiver(
            &crate::block::from_bytes(&k0),
            &crate::block::from_bytes(&k1),
            &choices,
            RESERVE,
        )?;
        self.pool_bits = (0..RESERVE).map(|j| bit(&choices, j)).collect();
        self.pool_m = t;
        Ok(u)
    }

    /// Asks for a batch of `m` correlations: returns the request (`m`, then the flips that
    /// turn the reserved OTs into the ones the trees need).
    pub fn request(&mut self, m: usize) -> Result<Vec<u8>> {
        if self.pool_m.is_empty() {
            return Err(shape("silent OT: a batch before the base OTs"));
        }
        if self.pending.is_some() {
            return Err(shape("silent OT: a batch is already under way"));
        }
        let l = Layout::new(m)?;
        let mask = (1u64 << l.depth) - 1;
        let alphas: Vec<u32> = (0..l.trees)
            .map(|_| (random_block() as u64 & mask) as u32)
            .collect();
        let mut flips = vec![0u8; l.base_ots()];
        // The level OTs choose the side off α's path (the sum the receiver may learn).
        for (i, &a) in alphas.iter().enumerate() {
            for level in 0..l.depth {
                let j = i * l.depth + level;
                let choice = 1 - ((a as usize >> (l.depth - 1 - level)) & 1) as u8;
                flips[j] = self.pool_bits[j] ^ choice;
            }
        }
        let first = l.trees * l.depth;
        for i in 0..l.trees {
            flips[first + i] = self.pool_bits[first + i] ^ 1;
        }
        let mut out = Vec::with_capacity(l.request_len());
        out.extend_from_slice(&(m as u64).to_le_bytes());
        out.extend_from_slice(&pack(&flips));
        self.pending = Some((l, alphas));
        Ok(out)
    }

    /// The sender's tree message: returns the batch's `m` choice bits (packed) and `M`.
    pub fn on_trees(&mut self, msg: &[u8]) -> Result<(Vec<u8>, Vec<Block>)> {
        let Some((l, _)) = &self.pending else {
            return Err(shape("silent OT: a tree message without a request"));
        };
        if msg.len() != l.tree_msg_len() {
            return Err(CoreError::Shape(format!(
                "silent OT: the tree message holds {} bytes, expected {}",
                msg.len(),
                l.tree_msg_len()
            )));
        }
        let (l, alphas) = self.pending.take().expect("checked above");
        let blocks = crate::block::from_bytes(msg);
        let (pairs, corr) = blocks.split_at(2 * l.trees * l.depth);
        let levels = l.trees * l.depth;
        // M_j = K'_j ⊕ c_j·Δ, so its hash unmasks the sum the choice c_j selected.
        let mut known: Vec<Block> = self.pool_m[..levels].to_vec();
        Tmmo::new().hash(&mut known, tweak(self.batch));
        for (j, k) in known.iter_mut().enumerate() {
            let c = 1 - ((alphas[j / l.depth] as usize >> (l.depth - 1 - j % l.depth)) & 1);
            *k ^= pairs[2 * j + c];
        }
        let mut w = std::mem::take(&mut self.work);
        pprf::receiver_into(&alphas, &known, l.depth, KEY_BITS, &mut w);
        let per = 1usize << l.depth;
        let pool_m = &self.pool_m;
        w.par_chunks_mut(per).enumerate().for_each(|(i, tree)| {
            let rest = tree.iter().fold(0u128, |a, b| a ^ b); // the punctured leaf holds 0
                                                              // corr = Σ v ⊕ K'; M' = K' ⊕ Δ: the punctured leaf becomes v_α ⊕ Δ, lowest bit 1
            tree[alphas[i] as usize] = corr[i] ^ rest ^ pool_m[levels + i];
        });
        exconv::dual_encode(&mut w, l.total(), code_seed(self.batch));
        let mut packed = vec![0u8; l.m.div_ceil(8)];
        for (j, b) in w[..l.m].iter().enumerate() {
            packed[j / 8] |= ((b & 1) as u8) << (j % 8);
        }
        let out_m = w[..l.m].to_vec();
        self.pool_m = w[l.m..l.total()].to_vec();
        self.pool_bits = self.pool_m.iter().map(|b| (b & 1) as u8).collect();
        self.work = w;
        self.batch += 1;
        Ok((packed, out_m))
    }
}

/// The sender: holds `Δ`, learns `K`.
pub struct Sender {
    delta: Block,
    keys: Vec<Block>,
    pool_k: Vec<Block>,
    batch: u64,
    /// The batch's leaves, kept between batches (as the receiver's `work`).
    work: Vec<Block>,
}

impl Default for Sender {
    fn default() -> Self {
        Self::new()
    }
}

impl Sender {
    pub fn new() -> Self {
        Sender {
            // the lowest bit set: the receiver's choice bits ride there (see the module note)
            delta: random_block() | 1,
            keys: Vec::new(),
            pool_k: Vec::new(),
            batch: 0,
            work: Vec::new(),
        }
    }

    pub fn delta(&self) -> Block {
        self.delta
    }

    /// The receiver's base-OT setup: returns this side's 128 base-OT messages (choices `Δ`).
    pub fn on_setup(&mut self, a: &[u8]) -> Result<Vec<u8>> {
        if !self.keys.is_empty() {
            return Err(shape("silent OT: the base OTs ran already"));
        }
        let a: [u8; 32] = a
            .try_into()
            .map_err(|_| shape("silent OT: the base OT setup must be 32 bytes"))?;
        let choices: Vec<u8> = (0..iknp::BASE)
            .map(|i| ((self.delta >> i) & 1) as u8)
            .collect();
        let (msgs, keys) = baseot::receiver(&a, &choices)?;
        self.keys = crate::block::from_bytes(&keys);
        Ok(msgs)
    }

    /// The IKNP matrix: the first reserve of correlated OTs.
    pub fn on_matrix(&mut self, u: &[u8]) -> Result<()> {
        if self.keys.is_empty() {
            return Err(shape("silent OT: the IKNP matrix before the base OTs"));
        }
        if !self.pool_k.is_empty() {
            return Err(shape("silent OT: the IKNP matrix came twice"));
        }
        self.pool_k = iknp::sender(&self.keys, self.delta, u, RESERVE)?;
        Ok(())
    }

    /// A request: returns the tree message and the batch's `m` keys `K`.
    pub fn on_request(&mut self, msg: &[u8]) -> Result<(Vec<u8>, Vec<Block>)> {
        if self.pool_k.is_empty() {
            return Err(shape("silent OT: a request before the base OTs"));
        }
        if msg.len() < 8 {
            return Err(shape("silent OT: a request holds at least 8 bytes"));
        }
        let m = u64::from_le_bytes(msg[..8].try_into().expect("8 bytes"));
        let l = Layout::new(usize::try_from(m).unwrap_or(usize::MAX))?;
        if msg.len() != l.request_len() {
            return Err(CoreError::Shape(format!(
                "silent OT: a request for {m} holds {} bytes, expected {}",
                msg.len(),
                l.request_len()
            )));
        }
        let flips = &msg[8..];
        let unused = l.base_ots() % 8;
        if unused != 0 && flips[flips.len() - 1] >> unused != 0 {
            return Err(shape("silent OT: a request sets bits past its flips"));
        }
        let delta = self.delta;
        let k: Vec<Block> = (0..l.base_ots())
            .map(|j| self.pool_k[j] ^ (delta & (bit(flips, j) as u128).wrapping_neg()))
            .collect();
        let roots: Vec<Block> = (0..l.trees).map(|_| random_block()).collect();
        let mut leaves = std::mem::take(&mut self.work);
        let sums = pprf::sender_into(&roots, l.depth, KEY_BITS, &mut leaves);
        let levels = l.trees * l.depth;
        let h = Tmmo::new();
        let mut k0: Vec<Block> = k[..levels].to_vec();
        let mut k1: Vec<Block> = k0.iter().map(|x| x ^ delta).collect();
        h.hash(&mut k0, tweak(self.batch));
        h.hash(&mut k1, tweak(self.batch));
        let mut out = Vec::with_capacity(l.tree_msg_len());
        for (j, s) in sums.iter().enumerate() {
            out.extend_from_slice(&(s[0] ^ k0[j]).to_le_bytes());
            out.extend_from_slice(&(s[1] ^ k1[j]).to_le_bytes());
        }
        // a tree's leaves sum to its last level's two sums; the leaves lost their lowest bit
        for i in 0..l.trees {
            let [a, b] = sums[i * l.depth + l.depth - 1];
            out.extend_from_slice(&(((a ^ b) & KEY_BITS) ^ k[levels + i]).to_le_bytes());
        }
        exconv::dual_encode(&mut leaves, l.total(), code_seed(self.batch));
        let out_k = leaves[..l.m].to_vec();
        self.pool_k = leaves[l.m..l.total()].to_vec();
        self.work = leaves;
        self.batch += 1;
        Ok((out, out_k))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn session() -> (Receiver, Sender) {
        let (mut r, m0) = Receiver::new().unwrap();
        let mut s = Sender::new();
        let m1 = s.on_setup(&m0).unwrap();
        let m2 = r.on_base(&m1).unwrap();
        s.on_matrix(&m2).unwrap();
        (r, s)
    }

    fn batch(r: &mut Receiver, s: &mut Sender, m: usize) -> (Vec<u8>, Vec<Block>, Vec<Block>) {
        let q = r.request(m).unwrap();
        let (t, k) = s.on_request(&q).unwrap();
        let (b, mm) = r.on_trees(&t).unwrap();
        (b, mm, k)
    }

    fn check(b: &[u8], mm: &[Block], k: &[Block], delta: Block) {
        assert_eq!(mm.len(), k.len());
        assert_eq!(b.len(), k.len().div_ceil(8));
        for j in 0..k.len() {
            let want = k[j] ^ if bit(b, j) == 1 { delta } else { 0 };
            assert_eq!(mm[j], want, "correlation {j}");
        }
    }

    #[test]
    fn every_output_is_a_correlated_ot_across_bootstrapped_batches() {
        let (mut r, mut s) = session();
        for m in [100_000usize, 1, 4097, 300_000] {
            let (b, mm, k) = batch(&mut r, &mut s, m);
            check(&b, &mm, &k, s.delta());
            // the choice bits are balanced (a binomial within 6 sigma) and keys are distinct
            if m > 1000 {
                let ones: usize = b.iter().map(|x| x.count_ones() as usize).sum();
                let sd = (m as f64 / 4.0).sqrt();
                assert!(
                    (ones as f64 - m as f64 / 2.0).abs() < 6.0 * sd,
                    "{ones} of {m}"
                );
                let mut seen = k.clone();
                seen.sort_unstable();
                seen.dedup();
                assert_eq!(seen.len(), m);
            }
        }
    }

    #[test]
    fn reserve_covers_every_layout() {
        let mut m = 1usize;
        while m <= MAX_BATCH {
            for x in [m, m + 1, m * 3 / 2] {
                if let Ok(l) = Layout::new(x) {
                    assert!(l.base_ots() <= RESERVE, "m {x}: {l:?}");
                    assert!(l.noise_len() >= 2 * l.total());
                    assert!(l.trees >= exconv::MIN_NOISE);
                }
            }
            m *= 2;
        }
        assert!(Layout::new(0).is_err());
        assert!(Layout::new(MAX_BATCH + 1).is_err());
    }

    #[test]
    fn message_shapes_do_not_depend_on_the_noise() {
        // Two receivers (different α, different reserved bits) send requests and get tree
        // messages of the same lengths for the same m.
        let (mut r1, mut s1) = session();
        let (mut r2, mut s2) = session();
        let (q1, q2) = (r1.request(5000).unwrap(), r2.request(5000).unwrap());
        assert_eq!(q1.len(), q2.len());
        assert_ne!(q1, q2);
        let (t1, _) = s1.on_request(&q1).unwrap();
        let (t2, _) = s2.on_request(&q2).unwrap();
        assert_eq!(t1.len(), t2.len());
        assert_eq!(t1.len(), Layout::new(5000).unwrap().tree_msg_len());
    }

    #[test]
    fn malformed_and_out_of_order_messages_are_refused() {
        let (mut r, m0) = Receiver::new().unwrap();
        let mut s = Sender::new();
        assert!(r.request(10).is_err());
        assert!(s.on_request(&[0; 16]).is_err());
        assert!(s.on_matrix(&[0; 16]).is_err());
        assert!(s.on_setup(&m0[..31]).is_err());
        let m1 = s.on_setup(&m0).unwrap();
        assert!(s.on_setup(&m0).is_err());
        assert!(r.on_base(&m1[..64]).is_err());
        let m2 = r.on_base(&m1).unwrap();
        assert!(r.on_base(&m1).is_err());
        assert!(s.on_matrix(&m2[1..]).is_err());
        s.on_matrix(&m2).unwrap();
        assert!(s.on_matrix(&m2).is_err());
        assert!(r.on_trees(&[0; 32]).is_err()); // no request yet
        let q = r.request(3000).unwrap();
        assert!(r.request(3000).is_err());
        assert!(s.on_request(&q[..q.len() - 1]).is_err());
        assert!(s.on_request(&q[..7]).is_err());
        let mut big = q.clone();
        big[..8].copy_from_slice(&(MAX_BATCH as u64 + 1).to_le_bytes());
        assert!(s.on_request(&big).is_err());
        let mut zero = q.clone();
        zero[..8].copy_from_slice(&0u64.to_le_bytes());
        assert!(s.on_request(&zero).is_err());
        let l = Layout::new(3000).unwrap();
        if !l.base_ots().is_multiple_of(8) {
            let mut pad = q.clone();
            *pad.last_mut().unwrap() |= 0x80;
            assert!(s.on_request(&pad).is_err());
        }
        let (t, k) = s.on_request(&q).unwrap();
        assert!(r.on_trees(&t[16..]).is_err());
        // a refused message loses nothing: the batch still completes
        let (b, mm) = r.on_trees(&t).unwrap();
        check(&b, &mm, &k, s.delta());
    }

    #[test]
    fn a_forged_tree_message_breaks_the_correlation_not_the_session_shape() {
        let (mut r, mut s) = session();
        let q = r.request(2000).unwrap();
        let (mut t, k) = s.on_request(&q).unwrap();
        let last = t.len() - 1;
        t[last] ^= 1; // the last tree's correction
        let (b, mm) = r.on_trees(&t).unwrap();
        let bad = (0..k.len())
            .filter(|&j| mm[j] != k[j] ^ if bit(&b, j) == 1 { s.delta() } else { 0 })
            .count();
        assert!(bad > 0);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(8))]
        #[test]
        fn correlation_holds_for_any_size(sizes in proptest::collection::vec(1usize..40_000, 1..3)) {
            let (mut r, mut s) = session();
            for m in sizes {
                let (b, mm, k) = batch(&mut r, &mut s, m);
                check(&b, &mm, &k, s.delta());
            }
        }
    }
}
