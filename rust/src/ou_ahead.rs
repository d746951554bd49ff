//! Encryption randomness made ahead of use by the key owner.
//!
//! Of a key owner's encryption G^m · H^r (by CRT, [`Crt`]), the nonce part H^r mod p² and
//! H^r mod q is about three fifths of the work (224- and 288-bit exponents against the
//! plaintext's ~150 bits for two 72-bit slots) and does not depend on the data. A party that
//! knows it will encrypt soon — the SecureBoost label party while a feature party sums its
//! histograms — computes nonces in its idle time ([`SecretKey::nonces`], on the calling
//! thread only, so that a low-priority thread can run it) and then encrypts with them
//! ([`SecretKey::encrypt_packed_ahead`]): only G^m and one product per part remain.
//!
//! Security: each nonce is H^r for a fresh r drawn exactly as [`PublicKey::encrypt_packed`]
//! draws it, so the ciphertexts are the very numbers the ordinary path gives for that r
//! (tested byte for byte). A nonce used twice would reveal the quotient G^(m1 - m2) of two
//! ciphertexts, so a [`Nonces`] value is consumed by the encryption that uses it (moved in;
//! the Python class refuses a second use), and it names its key: another key's nonces are
//! refused, never turned into ciphertexts that decrypt to something else. The nonces are as
//! secret as r; they live in this process's memory until used.

use crypto_bigint::{U2048, U384, U704, U768};
use rayon::prelude::*;

use super::{check_rows, ifma, pack, Crt, CrtIfma, SecretKey, CT_BYTES, P2, P2_K, Q_K};
use crate::error::{CoreError, Result};

/// Rows per parallel task of an encryption with nonces.
const BLOCK: usize = 16 * ifma::LANES;

/// Nonces H^r of one key, in the form its encryption path multiplies by: plain residues in
/// the IFMA path, Montgomery forms in the portable one.
pub struct Nonces {
    /// The key's public modulus: nonces of another key are refused.
    n: U2048,
    ifma: bool,
    p2: Vec<P2>,
    q: Vec<U704>,
}

impl Nonces {
    pub fn len(&self) -> usize {
        self.p2.len()
    }

    pub fn is_empty(&self) -> bool {
        self.p2.is_empty()
    }

    /// Several batches (of the same key) as one, in order.
    pub fn concat(parts: Vec<Nonces>) -> Result<Option<Nonces>> {
        let mut it = parts.into_iter();
        let Some(mut all) = it.next() else {
            return Ok(None);
        };
        for part in it {
            if part.n != all.n || part.ifma != all.ifma {
                return Err(CoreError::InvalidKey("nonces of two different OU keys"));
            }
            all.p2.extend(part.p2);
            all.q.extend(part.q);
        }
        Ok(Some(all))
    }
}

impl SecretKey {
    /// `count` nonces for later encryptions, computed on the calling thread alone (no
    /// worker threads: a caller that wants them in idle time runs this at low priority).
    pub fn nonces(&self, count: usize) -> Nonces {
        self.nonces_with(&self.public.draw_rs(count))
    }

    /// The nonces of given randomness values r (tests compare with `encrypt_packed_with`).
    #[doc(hidden)]
    pub fn nonces_with(&self, rs: &[U384]) -> Nonces {
        let crt = &self.crt;
        let mut out = Nonces {
            n: self.public.n,
            ifma: crt.ifma.is_some(),
            p2: Vec::with_capacity(rs.len()),
            q: Vec::with_capacity(rs.len()),
        };
        match &crt.ifma {
            Some(x) => {
                for chunk in rs.chunks(ifma::LANES) {
                    let (p2, q) = crt.nonces8(x, chunk);
                    out.p2.extend_from_slice(&p2[..chunk.len()]);
                    out.q.extend_from_slice(&q[..chunk.len()]);
                }
            }
            None => {
                for r in rs {
                    let rt = r.rem_vartime(&crt.t_384).resize::<4>();
                    out.p2
                        .push(*crt.h_p2.pow(&rt.to_le_bytes()).as_montgomery());
                    out.q.push(*crt.h_q.pow(&r.to_le_bytes()).as_montgomery());
                }
            }
        }
        out
    }

    /// [`encrypt_packed`](Self::encrypt_packed) whose first `ahead.len()` rows take the
    /// given nonces (consumed) and the others fresh ones, as that function draws them: the
    /// same ciphertexts as `encrypt_packed_with` for the same randomness.
    pub fn encrypt_packed_ahead(
        &self,
        values: &[i64],
        slots: usize,
        slot_bits: u32,
        ahead: Nonces,
    ) -> Result<Vec<u8>> {
        let rows = check_rows(values, slots, slot_bits, self.public.plaintext_bits(), None)?;
        if ahead.n != self.public.n || ahead.ifma != self.crt.ifma.is_some() {
            return Err(CoreError::InvalidKey("nonces made for another OU key"));
        }
        let k = ahead.len();
        if k > rows {
            return Err(CoreError::Shape(format!(
                "{k} nonces for {rows} rows: a nonce must not be kept for another encryption"
            )));
        }
        let crt = &self.crt;
        let mut out = vec![0u8; k * CT_BYTES];
        out.par_chunks_mut(BLOCK * CT_BYTES)
            .zip(values[..k * slots].par_chunks(BLOCK * slots))
            .zip(ahead.p2.par_chunks(BLOCK).zip(ahead.q.par_chunks(BLOCK)))
            .for_each(|((o, vals), (np2, nq))| {
                let rows: Vec<(U768, bool)> =
                    vals.chunks(slots).map(|row| pack(row, slot_bits)).collect();
                match &crt.ifma {
                    Some(x) => {
                        for (i, o) in o.chunks_mut(ifma::LANES * CT_BYTES).enumerate() {
                            let at = i * ifma::LANES..((i + 1) * ifma::LANES).min(rows.len());
                            let cts =
                                crt.encrypt8_ahead(x, &rows[at.clone()], &np2[at.clone()], &nq[at]);
                            for (c, o) in cts.iter().zip(o.chunks_mut(CT_BYTES)) {
                                o.copy_from_slice(&c.to_le_bytes());
                            }
                        }
                    }
                    None => {
                        for (((mag, neg), (a, b)), o) in rows
                            .iter()
                            .zip(np2.iter().zip(nq))
                            .zip(o.chunks_mut(CT_BYTES))
                        {
                            let c = crt.encrypt_ahead(mag, *neg, a, b);
                            o.copy_from_slice(&c.to_le_bytes());
                        }
                    }
                }
            });
        if k < rows {
            out.extend(self.encrypt_packed(&values[k * slots..], slots, slot_bits)?);
        }
        Ok(out)
    }
}

impl Crt {
    /// Eight rows' nonces (H^(r mod t) mod p², H^r mod q) as plain residues; padding lanes
    /// (past `rs`) compute H^0 and are dropped by the caller.
    fn nonces8(&self, x: &CrtIfma, rs: &[U384]) -> ([P2; ifma::LANES], [U704; ifma::LANES]) {
        const L: usize = ifma::LANES;
        let r = |l: usize| rs.get(l).copied().unwrap_or(U384::ZERO);
        let rt: [[u8; 32]; L] =
            std::array::from_fn(|l| r(l).rem_vartime(&self.t_384).resize::<4>().to_le_bytes());
        let rq: [[u8; 48]; L] = std::array::from_fn(|l| r(l).to_le_bytes());
        let none = [0u8; 1];
        let one_p2 = [ifma::to_limbs::<{ super::P2_LIMBS }, P2_K>(&P2::ONE); L];
        let one_q = [ifma::to_limbs::<{ super::Q_LIMBS }, Q_K>(&U704::ONE); L];
        let p2 = x.h_p2.pow2_times(
            &x.h_p2,
            &x.fp2,
            [0; L],
            std::array::from_fn(|l| &rt[l][..]),
            [&none[..]; L],
            &one_p2,
        );
        let q = x.h_q.pow2_times(
            &x.h_q,
            &x.fq,
            [0; L],
            std::array::from_fn(|l| &rq[l][..]),
            [&none[..]; L],
            &one_q,
        );
        (
            std::array::from_fn(|l| x.fp2.reduce(&p2[l])),
            std::array::from_fn(|l| x.fq.reduce(&q[l])),
        )
    }

    /// [`encrypt8`](Crt::encrypt8) with the nonces given (plain residues): G₂^(m mod t) ·
    /// G₁^m · N mod p² and G^(±m) · N mod q, recombined.
    fn encrypt8_ahead(
        &self,
        x: &CrtIfma,
        rows: &[(U768, bool)],
        np2: &[P2],
        nq: &[U704],
    ) -> Vec<U2048> {
        const L: usize = ifma::LANES;
        let pad = (U768::ZERO, false);
        let row = |l: usize| rows.get(l).unwrap_or(&pad);
        let parts: [(crypto_bigint::U256, P2); L] = std::array::from_fn(|l| {
            let (mag, neg) = row(l);
            let (mt, _, g1m) = self.p2_parts(mag, *neg, &U384::ZERO);
            (mt, g1m)
        });
        let mt: [[u8; 32]; L] = std::array::from_fn(|l| parts[l].0.to_le_bytes());
        let g1m: [[u64; P2_K]; L] = std::array::from_fn(|l| ifma::to_limbs(&parts[l].1));
        let n_p2: [[u64; P2_K]; L] =
            std::array::from_fn(|l| ifma::to_limbs(np2.get(l).unwrap_or(&P2::ONE)));
        let none = [0u8; 1];
        // (G₁^m · N) first: the product of two plain residues, then G₂^mt times it
        // (almost reduced: below 2p², which the products take as it is)
        let times = ifma::mul_plain(&x.fp2, &g1m, &n_p2);
        let cp = x.g2.pow2_times(
            &x.g2,
            &x.fp2,
            [0; L],
            std::array::from_fn(|l| &mt[l][..]),
            [&none[..]; L],
            &times,
        );
        let mag: [[u8; 96]; L] = std::array::from_fn(|l| row(l).0.to_le_bytes());
        let n_q: [[u64; Q_K]; L] =
            std::array::from_fn(|l| ifma::to_limbs(nq.get(l).unwrap_or(&U704::ONE)));
        let cq = x.g_q.pow2_times(
            &x.g_q,
            &x.fq,
            std::array::from_fn(|l| row(l).1 as usize),
            std::array::from_fn(|l| &mag[l][..]),
            [&none[..]; L],
            &n_q,
        );
        (0..rows.len())
            .map(|l| self.recombine(&x.fp2.reduce(&cp[l]), &x.fq.reduce(&cq[l])))
            .collect()
    }

    /// The portable [`encrypt`](Crt::encrypt) with the nonces given (Montgomery forms).
    fn encrypt_ahead(&self, mag: &U768, negative: bool, np2: &P2, nq: &U704) -> U2048 {
        let (mt, _, g1m) = self.p2_parts(mag, negative, &U384::ZERO);
        let (mp2, mq) = (&self.g2.modulus, &self.g_q.modulus);
        // (G₂^mt·R)·(N·R)·R^(-1) times g1m (plain): the plain product
        let cp = mp2.mul(
            &mp2.mul(self.g2.pow(&mt.to_le_bytes()).as_montgomery(), np2),
            &g1m,
        );
        let base = if negative { &self.g_inv_q } else { &self.g_q };
        let cq = mq.leave(&mq.mul(base.pow(&mag.to_le_bytes()).as_montgomery(), nq));
        self.recombine(&cp, &cq)
    }
}

/// Nonces per batch of a [`NonceMaker`]: a few tens of milliseconds of one core, so that a
/// taken reserve wastes at most one batch.
const MAKER_BATCH: usize = 2048;

/// A reserve of nonces filled by a background thread at the lowest CPU priority
/// (`SCHED_IDLE` on Linux: it runs only on a core nothing else wants), so that idle time —
/// waiting for a peer — pays for the next encryption's randomness and nothing is slowed.
pub struct NonceMaker {
    key: std::sync::Arc<SecretKey>,
    state: std::sync::Arc<std::sync::Mutex<Reserve>>,
}

#[derive(Default)]
struct Reserve {
    /// Bumped by every fill and take: a thread of an older fill stops, and drops the batch
    /// it was making (a nonce is never handed out twice, so a late batch is discarded).
    generation: u64,
    ready: Vec<Nonces>,
    count: usize,
}

impl NonceMaker {
    pub fn new(key: std::sync::Arc<SecretKey>) -> Self {
        NonceMaker {
            key,
            state: Default::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Reserve> {
        // a poisoned reserve only lost a batch: its nonces are still unused and valid
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts filling the reserve, in the background, up to `target` nonces (those already
    /// ready count); returns at once.
    pub fn fill(&self, target: usize) {
        let generation = {
            let mut s = self.lock();
            s.generation += 1;
            s.generation
        };
        let (key, state) = (self.key.clone(), self.state.clone());
        std::thread::spawn(move || {
            lowest_priority();
            loop {
                let want = {
                    let s = state.lock().unwrap_or_else(|e| e.into_inner());
                    if s.generation != generation || s.count >= target {
                        return;
                    }
                    (target - s.count).min(MAKER_BATCH)
                };
                let batch = key.nonces(want);
                let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
                if s.generation != generation {
                    return;
                }
                s.count += batch.len();
                s.ready.push(batch);
            }
        });
    }

    /// The nonces ready now, at most `at_most` (in order), and stops the filling; the rest
    /// of the reserve is discarded.
    pub fn take(&self, at_most: usize) -> Result<Option<Nonces>> {
        let ready = {
            let mut s = self.lock();
            s.generation += 1;
            s.count = 0;
            std::mem::take(&mut s.ready)
        };
        let mut all = Nonces::concat(ready)?;
        if let Some(n) = all.as_mut() {
            n.p2.truncate(at_most);
            n.q.truncate(at_most);
        }
        Ok(all)
    }

    /// Nonces ready now.
    pub fn ready(&self) -> usize {
        self.lock().count
    }
}

impl Drop for NonceMaker {
    fn drop(&mut self) {
        // the filling thread stops after its batch
        self.lock().generation += 1;
    }
}

/// Puts the calling thread at the lowest scheduling priority the OS offers it, where it can.
fn lowest_priority() {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: plain system calls on the calling thread (pid 0), with a valid parameter
        unsafe {
            if libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) != 0 {
                // not allowed (a container's policy, say): the lowest nice value instead
                libc::setpriority(libc::PRIO_PROCESS, 0, 19);
            }
        }
    }
}
