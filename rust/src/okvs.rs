//! An oblivious key-value store (OKVS) over GF(2^128): the random-band construction of
//! Bienstock, Patranabis, Yeo and Yung ("Near-Optimal Oblivious Key-Value Stores for
//! Efficient PSI, PSU and Volume-Hiding Multi-Maps", USENIX Security 2023).
//!
//! Every key `k` maps (through AES under a session key) to a start column `s(k)` and a random
//! 128-bit band `b(k)` with its lowest bit set. Encoding `n` pairs `(k, v)` finds a vector `P`
//! of `m` blocks with `sum_{j : bit j of b(k)} P[s(k) + j] = v` for every pair: Gaussian
//! elimination over GF(2) on a band matrix, rows taken in order of their start so that each
//! row's band stays 128 bits wide; unconstrained columns are random. Decoding a key is the
//! same sum over `P`, whether or not the key was encoded (for a key that was not, the result
//! is meaningless). `m = ceil(1.1 n) + 128` columns; encoding fails (and is retried with
//! another key by the caller) only when the random band matrix is singular, which we have
//! not seen once in the tests and benchmarks. Both encoding and decoding are GF(2)-linear in
//! the values, which the OPRF relies on.

use rayon::prelude::*;

use crate::block::{Block, Cipher};

/// Width of a row's band in columns.
pub const BAND: usize = 128;

/// Columns of the store for `n` keys.
pub fn size(n: usize) -> usize {
    n + n.div_ceil(10) + BAND
}

/// Where a key's row lies: its first column and its band (bit 0 always set).
#[derive(Clone, Copy, Debug)]
pub struct Row {
    pub start: u64,
    pub band: u128,
}

/// The rows of a store of `m` columns: a keyed AES permutation of the key digests.
pub struct Rows {
    cipher: Cipher,
    span: u64,
}

impl Rows {
    pub fn new(key: Block, m: usize) -> Self {
        assert!(m >= BAND, "an OKVS holds at least {BAND} columns");
        Rows {
            cipher: Cipher::new(key),
            span: (m - BAND + 1) as u64,
        }
    }

    /// The rows of `keys` (digests of the items), in order.
    pub fn rows(&self, keys: &[Block]) -> Vec<Row> {
        keys.par_chunks(4096)
            .flat_map_iter(|part| {
                let mut a: Vec<Block> = part.to_vec();
                let mut b: Vec<Block> = part.iter().map(|k| k ^ 1u128 << 127).collect();
                self.cipher.encrypt(&mut a);
                self.cipher.encrypt(&mut b);
                a.into_iter().zip(b).map(|(x, y)| Row {
                    // 64 random bits scaled to the span (Lemire's multiply-shift): bias below 2^-40.
                    start: ((x as u64 as u128 * self.span as u128) >> 64) as u64,
                    band: y | 1,
                })
            })
            .collect()
    }
}

/// The encoding failed: the rows are linearly dependent with inconsistent values.
#[derive(Debug)]
pub struct Singular;

/// Solves for `P` (length `m`) with `decode(P, row_i) = values[i]` for all `i`.
///
/// Identical rows with identical values (a duplicated key) are accepted once.
/// `fill` supplies the values of the free columns (random, so that `P` alone says nothing).
pub fn encode(
    rows: &[Row],
    values: &[Block],
    m: usize,
    fill: &mut dyn FnMut(&mut [Block]),
) -> Result<Vec<Block>, Singular> {
    assert_eq!(rows.len(), values.len());
    // Sort the equations themselves (not indices to them), so elimination reads memory in order.
    let mut eqs: Vec<(u64, u128, Block)> = rows
        .par_iter()
        .zip(values.par_iter())
        .map(|(r, &v)| (r.start, r.band, v))
        .collect();
    eqs.par_sort_unstable_by_key(|e| e.0);
    const NONE: u32 = u32::MAX;
    // pivot_of[c]: the index in `pivots` of the reduced row whose leading column is c
    let mut pivot_of = vec![NONE; m];
    let mut pivots: Vec<(u128, Block)> = Vec::with_capacity(rows.len());
    for &(start, band, val) in &eqs {
        let (mut col, mut band, mut val) = (start as usize, band, val);
        loop {
            let tz = band.trailing_zeros() as usize;
            col += tz;
            band >>= tz;
            let p = pivot_of[col];
            if p == NONE {
                pivot_of[col] = pivots.len() as u32;
                pivots.push((band, val));
                break;
            }
            let (pb, pv) = pivots[p as usize];
            band ^= pb;
            val ^= pv;
            if band == 0 {
                if val == 0 {
                    break; // the same equation again
                }
                return Err(Singular);
            }
        }
    }
    drop(eqs);
    let mut p = crate::block::zeroed(m);
    fill(&mut p);
    for col in (0..m).rev() {
        let idx = pivot_of[col];
        if idx == NONE {
            continue;
        }
        let (band, val) = pivots[idx as usize];
        let mut acc = val;
        let mut rest = band & !1;
        while rest != 0 {
            let j = rest.trailing_zeros() as usize;
            acc ^= p[col + j];
            rest &= rest - 1;
        }
        p[col] = acc;
    }
    Ok(p)
}

/// `sum_{j : bit j of band} store[start + j]` for one row.
#[inline]
pub fn decode1(store: &[Block], row: Row) -> Block {
    let window = &store[row.start as usize..row.start as usize + BAND];
    let mut acc = 0u128;
    let mut acc2 = 0u128;
    let (lo, hi) = (row.band as u64, (row.band >> 64) as u64);
    // Two independent accumulators over the two halves of the band (fewer stalls).
    let mut a = lo;
    let mut b = hi;
    while a != 0 {
        acc ^= window[a.trailing_zeros() as usize];
        a &= a - 1;
    }
    while b != 0 {
        acc2 ^= window[64 + b.trailing_zeros() as usize];
        b &= b - 1;
    }
    acc ^ acc2
}

/// Decodes every row (in parallel).
pub fn decode(store: &[Block], rows: &[Row]) -> Vec<Block> {
    decode_map(store, rows, |_, x| x)
}

/// `f(i, decode1(store, rows[i]))` for every row `i`, in parallel.
pub fn decode_map<F>(store: &[Block], rows: &[Row], f: F) -> Vec<Block>
where
    F: Fn(usize, Block) -> Block + Sync,
{
    decode_binned(store, &bin(rows, None), |e, d| f(e.idx as usize, d))
}

/// A row with its index and a value that travels with it (see [`bin`]).
#[derive(Clone, Copy, Debug)]
pub struct Entry {
    band: [u64; 2],
    val: [u64; 2],
    start: u32,
    pub idx: u32,
}

impl Entry {
    pub fn val(&self) -> Block {
        self.val[0] as u128 | (self.val[1] as u128) << 64
    }

    fn row(&self) -> Row {
        Row {
            start: self.start as u64,
            band: self.band[0] as u128 | (self.band[1] as u128) << 64,
        }
    }
}

/// Columns per bin of [`bin`]: a bin's rows read 16·(4096 + 128) bytes of the store, which
/// stay in the core's cache while the bin is decoded.
const BIN_SHIFT: u32 = 12;

/// The rows (each with `vals[i]` when given) grouped by the part of the store they read.
///
/// A row reads a 2 KiB window at a random place in the store: in the rows' own order that
/// costs a trip to memory per row (about 7 times slower here). Grouped in bins of 4096
/// columns (a counting sort: one pass, a thousand or so write streams), the store is read
/// about once, front to back.
pub fn bin(rows: &[Row], vals: Option<&[Block]>) -> Vec<Entry> {
    assert!(rows.len() < u32::MAX as usize, "at most 2^32 - 1 rows");
    assert!(vals.is_none_or(|v| v.len() == rows.len()));
    let bins = rows
        .iter()
        .map(|r| (r.start >> BIN_SHIFT) as usize + 1)
        .max()
        .unwrap_or(0);
    let mut first = vec![0usize; bins + 1];
    for r in rows {
        assert!(r.start < u32::MAX as u64, "at most 2^32 - 1 columns");
        first[(r.start >> BIN_SHIFT) as usize + 1] += 1;
    }
    for b in 0..bins {
        first[b + 1] += first[b];
    }
    let blank = Entry {
        band: [0; 2],
        val: [0; 2],
        start: 0,
        idx: 0,
    };
    let mut out = vec![blank; rows.len()];
    for (i, r) in rows.iter().enumerate() {
        let b = (r.start >> BIN_SHIFT) as usize;
        let v = vals.map_or(0, |v| v[i]);
        out[first[b]] = Entry {
            band: [r.band as u64, (r.band >> 64) as u64],
            val: [v as u64, (v >> 64) as u64],
            start: r.start as u32,
            idx: i as u32,
        };
        first[b] += 1;
    }
    out
}

/// `f(e, decode1(store, e.row))` for every entry, returned in the rows' original order.
pub fn decode_binned<F>(store: &[Block], entries: &[Entry], f: F) -> Vec<Block>
where
    F: Fn(&Entry, Block) -> Block + Sync,
{
    let sorted: Vec<Block> = entries
        .par_iter()
        .with_min_len(4096)
        .map(|e| f(e, decode1(store, e.row())))
        .collect();
    let mut out = crate::block::zeroed(entries.len());
    for (e, v) in entries.iter().zip(sorted) {
        out[e.idx as usize] = v;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::random_block;

    #[test]
    fn decodes_what_was_encoded() {
        for n in [0usize, 1, 2, 10, 1000, 20_000] {
            let m = size(n);
            let keys: Vec<Block> = (0..n).map(|_| random_block()).collect();
            let vals: Vec<Block> = (0..n).map(|_| random_block()).collect();
            let rows = Rows::new(random_block(), m).rows(&keys);
            let p = encode(&rows, &vals, m, &mut |b: &mut [Block]| {
                b.iter_mut().for_each(|x| *x = random_block())
            })
            .expect("encodes");
            assert_eq!(p.len(), m);
            assert_eq!(decode(&p, &rows), vals);
        }
    }

    #[test]
    fn decoding_in_start_order_is_decoding_each_row() {
        let m = size(5000);
        let store: Vec<Block> = (0..m).map(|_| random_block()).collect();
        let keys: Vec<Block> = (0..5000).map(|_| random_block()).collect();
        let rows = Rows::new(random_block(), m).rows(&keys);
        let each: Vec<Block> = rows.iter().map(|&r| decode1(&store, r)).collect();
        assert_eq!(decode(&store, &rows), each);
        let vals: Vec<Block> = (0..5000).map(|_| random_block()).collect();
        let binned = decode_binned(&store, &bin(&rows, Some(&vals)), |e, x| x ^ e.val());
        let want: Vec<Block> = each.iter().zip(&vals).map(|(x, v)| x ^ v).collect();
        assert_eq!(binned, want);
        let mapped = decode_map(&store, &rows, |i, x| x ^ i as u128);
        let want: Vec<Block> = each
            .iter()
            .enumerate()
            .map(|(i, x)| x ^ i as u128)
            .collect();
        assert_eq!(mapped, want);
        assert!(decode(&store, &[]).is_empty());
    }

    #[test]
    fn a_duplicated_key_with_one_value_is_accepted_and_a_conflict_is_not() {
        let m = size(3);
        let k = random_block();
        let rows = Rows::new(7, m).rows(&[k, k, random_block()]);
        let v = random_block();
        let mut zero = |b: &mut [Block]| b.iter_mut().for_each(|x| *x = 0);
        let p = encode(&rows, &[v, v, 5], m, &mut zero).unwrap();
        assert_eq!(decode1(&p, rows[0]), v);
        assert!(encode(&rows, &[v, v ^ 1, 5], m, &mut zero).is_err());
    }
}
