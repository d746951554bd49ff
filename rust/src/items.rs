//! Batches of variable-length items in Arrow layout: one data buffer, n + 1 offsets.

use crate::error::{CoreError, Result};

/// A validated view of `n` items: `data[offsets[i]..offsets[i + 1]]`.
pub struct Items<'a> {
    data: &'a [u8],
    offsets: &'a [i64],
}

impl<'a> Items<'a> {
    /// Checks that offsets are non-decreasing, non-negative and within `data`.
    pub fn new(data: &'a [u8], offsets: &'a [i64]) -> Result<Self> {
        if offsets.is_empty() {
            return Err(CoreError::Shape(
                "offsets must hold n + 1 entries (got 0)".into(),
            ));
        }
        let mut prev = offsets[0];
        if prev < 0 {
            return Err(CoreError::Shape("offsets must be non-negative".into()));
        }
        for &o in &offsets[1..] {
            if o < prev {
                return Err(CoreError::Shape("offsets must be non-decreasing".into()));
            }
            prev = o;
        }
        if prev as u64 > data.len() as u64 {
            return Err(CoreError::Shape(format!(
                "offsets reach byte {prev} but the data buffer holds {}",
                data.len()
            )));
        }
        Ok(Items { data, offsets })
    }

    pub fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn get(&self, i: usize) -> &'a [u8] {
        &self.data[self.offsets[i] as usize..self.offsets[i + 1] as usize]
    }
}

/// Splits a flat buffer of 32-byte elements, refusing a ragged length.
pub fn elements(buf: &[u8]) -> Result<&[[u8; 32]]> {
    if !buf.len().is_multiple_of(32) {
        return Err(CoreError::Shape(format!(
            "element buffer of {} bytes is not a multiple of 32",
            buf.len()
        )));
    }
    let (chunks, rest) = buf.as_chunks::<32>();
    debug_assert!(rest.is_empty());
    Ok(chunks)
}

/// Checks that an output buffer holds exactly `n` 32-byte elements.
pub fn check_out(out: &[u8], n: usize) -> Result<()> {
    if out.len() != 32 * n {
        return Err(CoreError::Shape(format!(
            "output buffer of {} bytes does not hold {n} elements of 32 bytes",
            out.len()
        )));
    }
    Ok(())
}

/// A 64-bit SipHash of every item, for finding duplicates by sorting (callers confirm equal
/// hashes by comparing the items themselves, so a collision can never merge two items).
pub fn hash64_batch(items: &Items<'_>) -> Vec<u64> {
    use rayon::prelude::*;
    use std::hash::Hasher;
    (0..items.len())
        .into_par_iter()
        .with_min_len(4096)
        .map(|i| {
            // DefaultHasher::new() is SipHash-1-3 with fixed keys: the same in every process.
            let mut h = std::hash::DefaultHasher::new();
            h.write(items.get(i));
            h.finish()
        })
        .collect()
}
