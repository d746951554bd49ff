//! Hash tables over pseudorandom keys for the PSI roles: grouping equal 16-byte digests, and
//! matching the receiver's PRF values against the sender's.
//!
//! The keys are outputs of SHA-256 or of the PRF, so their bytes are uniform and need no
//! further hashing: a multiply spreads 64 of their bits over the table, which is linear
//! probing at load at most 3/4. Equality is always checked on every byte, so two keys that
//! share a slot or their first 8 bytes are never confused.

use rayon::prelude::*;

use crate::error::{CoreError, Result};

/// Slots of a table for `n` keys: a power of two, at least `4n/3`.
fn capacity(n: usize) -> usize {
    (n + n / 3 + 1).next_power_of_two().max(16)
}

#[inline]
fn slot(key: u64, bits: u32) -> usize {
    // The keys are uniform already; the multiply only makes the top bits depend on all 64.
    (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - bits)) as usize
}

#[inline]
fn word(row: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(row[at..at + 8].try_into().expect("8 bytes"))
}

/// `(distinct, group)`: the distinct 16-byte digests of `digests` in order of first
/// occurrence, and for each input digest the index of its value in `distinct`.
pub fn distinct(digests: &[u8]) -> Result<(Vec<u8>, Vec<i64>)> {
    if !digests.len().is_multiple_of(16) {
        return Err(CoreError::Shape("digests must be 16 bytes each".into()));
    }
    let n = digests.len() / 16;
    if n >= u32::MAX as usize {
        return Err(CoreError::Shape("at most 2^32 - 2 digests per call".into()));
    }
    let cap = capacity(n);
    let bits = cap.trailing_zeros();
    // A slot holds the digest's second half and 1 + its index in `uniq` (0: empty). The
    // second half picks the slot: spill buckets are chosen from the first half, so within a
    // bucket the second is the uniform one.
    let mut slots: Vec<(u64, u32)> = vec![(0, 0); cap];
    let mut uniq: Vec<u8> = Vec::with_capacity(digests.len());
    let mut group: Vec<i64> = Vec::with_capacity(n);
    let mask = cap - 1;
    for d in digests.chunks_exact(16) {
        let (lo, hi) = (word(d, 0), word(d, 8));
        let mut s = slot(hi, bits);
        loop {
            let (k, at) = slots[s];
            if at == 0 {
                let g = (uniq.len() / 16) as u32;
                slots[s] = (hi, g + 1);
                uniq.extend_from_slice(d);
                group.push(g as i64);
                break;
            }
            if k == hi {
                let u = (at - 1) as usize;
                if word(&uniq[16 * u..16 * u + 16], 0) == lo {
                    group.push(u as i64);
                    break;
                }
            }
            s = (s + 1) & mask;
        }
    }
    Ok((uniq, group))
}

/// Longest walk along a run of occupied slots. Random keys at load at most 3/4 make runs of
/// this length practically impossible (the chance falls exponentially with the length);
/// keys that repeat, or were chosen to share slots, make them at once and would make the
/// work quadratic. The table's rows come from the peer, so such a table is refused.
const MAX_WALK: usize = 1024;

fn repeated() -> CoreError {
    CoreError::Shape("match: the table's rows repeat or collide far beyond chance".into())
}

/// Pairs `(i, j)` with `probe[i] == table[j]` on their first `width` bytes, `i` ascending.
///
/// `probe` holds rows of `stride >= width` bytes (of which the first `width` count), `table`
/// rows of `width` bytes, `width >= 8`. Every equal pair is reported, so rows that repeat in
/// `table` give one pair each, unless so many repeat that the table is refused (see
/// [`MAX_WALK`]).
pub fn match_rows(
    probe: &[u8],
    stride: usize,
    table: &[u8],
    width: usize,
) -> Result<(Vec<i64>, Vec<i64>)> {
    if width < 8 || stride < width {
        return Err(CoreError::Shape(
            "match needs rows of at least 8 bytes, compared on at most their stride".into(),
        ));
    }
    if !probe.len().is_multiple_of(stride) || !table.len().is_multiple_of(width) {
        return Err(CoreError::Shape("match inputs must be whole rows".into()));
    }
    let n = table.len() / width;
    if n >= u32::MAX as usize {
        return Err(CoreError::Shape(
            "at most 2^32 - 2 table rows per call".into(),
        ));
    }
    if n == 0 || probe.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    let cap = capacity(n);
    let bits = cap.trailing_zeros();
    let mask = cap - 1;
    // (first 8 bytes of the row, 1 + row index); linear probing.
    let mut slots: Vec<(u64, u32)> = vec![(0, 0); cap];
    for (j, row) in table.chunks_exact(width).enumerate() {
        let k = word(row, 0);
        let mut s = slot(k, bits);
        let mut steps = 0;
        while slots[s].1 != 0 {
            s = (s + 1) & mask;
            steps += 1;
            if steps > MAX_WALK {
                return Err(repeated());
            }
        }
        slots[s] = (k, j as u32 + 1);
    }
    let slots = &slots;
    // Chunks of the probe in parallel; concatenated in order, so `i` stays ascending.
    const CHUNK: usize = 1 << 16;
    let parts: Vec<Vec<(i64, i64)>> = probe
        .par_chunks(CHUNK * stride)
        .enumerate()
        .map(|(c, rows)| {
            let mut out = Vec::new();
            for (r, row) in rows.chunks_exact(stride).enumerate() {
                let row = &row[..width];
                let k = word(row, 0);
                let mut s = slot(k, bits);
                for steps in 0.. {
                    if steps > MAX_WALK {
                        return Err(repeated());
                    }
                    let (sk, at) = slots[s];
                    if at == 0 {
                        break;
                    }
                    if sk == k {
                        let j = (at - 1) as usize;
                        if &table[j * width..(j + 1) * width] == row {
                            out.push(((c * CHUNK + r) as i64, j as i64));
                        }
                    }
                    s = (s + 1) & mask;
                }
            }
            Ok(out)
        })
        .collect::<Result<_>>()?;
    let total = parts.iter().map(Vec::len).sum();
    let (mut ii, mut jj) = (Vec::with_capacity(total), Vec::with_capacity(total));
    for (i, j) in parts.into_iter().flatten() {
        ii.push(i);
        jj.push(j);
    }
    Ok((ii, jj))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    proptest! {
        #[test]
        fn distinct_matches_a_plain_map(picks in proptest::collection::vec(0usize..40, 0..300),
                                        pool in proptest::collection::vec(any::<[u8; 16]>(), 40)) {
            let input: Vec<u8> = picks.iter().flat_map(|&p| pool[p]).collect();
            let (uniq, group) = distinct(&input).unwrap();
            let mut first: HashMap<[u8; 16], usize> = HashMap::new();
            let mut order: Vec<[u8; 16]> = Vec::new();
            for &p in &picks {
                first.entry(pool[p]).or_insert_with(|| { order.push(pool[p]); order.len() - 1 });
            }
            prop_assert_eq!(uniq, order.concat());
            let want: Vec<i64> = picks.iter().map(|&p| first[&pool[p]] as i64).collect();
            prop_assert_eq!(group, want);
        }

        #[test]
        fn match_rows_matches_a_plain_join(
            probe in proptest::collection::vec(any::<[u8; 16]>(), 0..200),
            table_picks in proptest::collection::vec(0usize..260, 0..200),
            extra in proptest::collection::vec(any::<[u8; 16]>(), 60),
            width in 8usize..=16,
        ) {
            // table rows: some of the probe's, some fresh, some sharing a probe row's first
            // 8 bytes only
            let mut table: Vec<u8> = Vec::new();
            for &t in &table_picks {
                let row: [u8; 16] = if t < probe.len() {
                    probe[t]
                } else if t < 200 && !probe.is_empty() {
                    let mut r = probe[t % probe.len()];
                    r[width - 1] ^= 1;
                    r
                } else {
                    extra[t % 60]
                };
                table.extend_from_slice(&row[..width]);
            }
            let flat: Vec<u8> = probe.concat();
            let (ii, jj) = match_rows(&flat, 16, &table, width).unwrap();
            let mut got: Vec<(i64, i64)> = ii.into_iter().zip(jj).collect();
            prop_assert!(got.windows(2).all(|w| w[0].0 <= w[1].0));
            let mut want = Vec::new();
            for (i, p) in probe.iter().enumerate() {
                for (j, t) in table.chunks_exact(width).enumerate() {
                    if &p[..width] == t {
                        want.push((i as i64, j as i64));
                    }
                }
            }
            got.sort();
            prop_assert_eq!(got, want);
        }
    }

    #[test]
    fn a_table_of_repeated_rows_is_refused_not_quadratic() {
        let table = vec![7u8; 16 * 5000];
        assert!(match_rows(&[7u8; 16], 16, &table, 16).is_err());
        // a few repeats are fine: each gives its pair
        let (ii, jj) = match_rows(&[7u8; 16], 16, &table[..16 * 3], 16).unwrap();
        assert_eq!((ii, jj), (vec![0, 0, 0], vec![0, 1, 2]));
    }

    #[test]
    fn refuses_bad_shapes() {
        assert!(distinct(&[0u8; 15]).is_err());
        assert!(match_rows(&[0u8; 16], 16, &[0u8; 7], 7).is_err());
        assert!(match_rows(&[0u8; 16], 8, &[0u8; 16], 16).is_err());
        assert!(match_rows(&[0u8; 17], 16, &[0u8; 16], 16).is_err());
        assert!(match_rows(&[0u8; 16], 16, &[0u8; 15], 10).is_err());
        assert_eq!(match_rows(&[], 16, &[0u8; 16], 16).unwrap().0.len(), 0);
    }
}
