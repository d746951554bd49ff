//! Bit-matrix transposition for OT extension: the 128 rows an IKNP party expands (one per
//! base OT, a bit per extended OT) become one 128-bit row per extended OT.

use crate::error::{CoreError, Result};

/// Transposes a 64×64 bit matrix in place: bit `c` of `a[r]` moves to bit `r` of `a[c]`
/// (bit 0 is the least significant). Block swaps of 32, 16, … 1 (Hacker's Delight, 7-3).
fn transpose64(a: &mut [u64; 64]) {
    let mut j: usize = 32;
    let mut m: u64 = 0x0000_0000_FFFF_FFFF;
    while j != 0 {
        let mut k: usize = 0;
        while k < 64 {
            let t = ((a[k] >> j) ^ a[k | j]) & m;
            a[k] ^= t << j;
            a[k | j] ^= t;
            k = ((k | j) + 1) & !j;
        }
        j >>= 1;
        m ^= m << j;
    }
}

/// `mat`: 128 rows of `nbytes` bytes (row-major; bit `i % 8` of byte `i / 8` is column `i`).
/// Returns `m` rows of 16 bytes: row `i` holds column `i` (bit `r` = row `r`).
pub fn transpose_128(mat: &[u8], nbytes: usize, m: usize) -> Result<Vec<u8>> {
    if mat.len() != 128 * nbytes || m > 8 * nbytes {
        return Err(CoreError::Shape(format!(
            "a 128-row bit matrix of {nbytes} bytes per row holds at most {} columns; got \
             {} bytes for {m}",
            8 * nbytes,
            mat.len()
        )));
    }
    let mut out = vec![0u8; 16 * m];
    let mut block = [0u64; 64];
    for c in 0..m.div_ceil(64) {
        for h in 0..2 {
            for (r, word) in block.iter_mut().enumerate() {
                let row = &mat[(64 * h + r) * nbytes..(64 * h + r + 1) * nbytes];
                let start = 8 * c;
                let mut buf = [0u8; 8];
                let end = (start + 8).min(nbytes);
                buf[..end - start].copy_from_slice(&row[start..end]);
                *word = u64::from_le_bytes(buf);
            }
            transpose64(&mut block);
            for (i, word) in block.iter().enumerate() {
                let col = 64 * c + i;
                if col >= m {
                    break;
                }
                out[16 * col + 8 * h..16 * col + 8 * h + 8].copy_from_slice(&word.to_le_bytes());
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bit(buf: &[u8], i: usize) -> bool {
        buf[i / 8] >> (i % 8) & 1 == 1
    }

    #[test]
    fn matches_the_naive_transposition() {
        for m in [1usize, 63, 64, 65, 200, 1000] {
            let nbytes = m.div_ceil(8) + 3; // spare bytes at the end of each row
            let mut state = 0x9E37_79B9_7F4A_7C15u64 ^ m as u64;
            let mat: Vec<u8> = (0..128 * nbytes)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                })
                .collect();
            let out = transpose_128(&mat, nbytes, m).unwrap();
            for i in 0..m {
                for r in 0..128 {
                    assert_eq!(
                        bit(&out[16 * i..16 * i + 16], r),
                        bit(&mat[r * nbytes..], i)
                    );
                }
            }
        }
    }

    #[test]
    fn wrong_shapes_are_refused() {
        assert!(transpose_128(&[0u8; 127], 1, 8).is_err());
        assert!(transpose_128(&[0u8; 128], 1, 9).is_err());
    }
}
