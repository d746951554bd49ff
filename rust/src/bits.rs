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
    let mut out = vec![0u8; 16 * m];
    transpose_128_into(mat, nbytes, m, &mut out)?;
    Ok(out)
}

/// [`transpose_128`] into `out` (`16 * m` bytes).
pub fn transpose_128_into(mat: &[u8], nbytes: usize, m: usize, out: &mut [u8]) -> Result<()> {
    if mat.len() != 128 * nbytes || m > 8 * nbytes || out.len() != 16 * m {
        return Err(CoreError::Shape(format!(
            "a 128-row bit matrix of {nbytes} bytes per row holds at most {} columns; got \
             {} bytes for {m}",
            8 * nbytes,
            mat.len()
        )));
    }
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2 (checked just above); the shapes were checked above
            // and the kernel reads and writes in bounds.
            unsafe { transpose_128_avx2(mat, nbytes, m, out) };
        } else {
            // SSE2 is part of x86-64 itself: no run-time check needed.
            // SAFETY: the shapes were checked above; the kernel reads and writes in bounds.
            unsafe { transpose_128_sse2(mat, nbytes, m, out) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    transpose_128_portable(mat, nbytes, m, out);
    Ok(())
}

/// The 64×64 block-swap transposition, for targets without SSE2 (and as a second
/// implementation to test the fast one against).
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
fn transpose_128_portable(mat: &[u8], nbytes: usize, m: usize, out: &mut [u8]) {
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
}

/// Tiles of 16 rows × 16 bytes: a byte transposition in registers (four rounds of unpacks)
/// gives, for each byte column, one register holding that byte of the 16 rows; `movemask`
/// then reads bit 7 of all 16 at once (16 bits of one output row), and a byte-wise doubling
/// brings the next bit up. About four times faster than the 64×64 block swaps, whose
/// data-dependent index arithmetic the compiler cannot vectorise.
///
/// # Safety
/// `mat.len() == 128 * nbytes`, `m <= 8 * nbytes`, `out.len() == 16 * m`.
#[cfg(target_arch = "x86_64")]
unsafe fn transpose_128_sse2(mat: &[u8], nbytes: usize, m: usize, out: &mut [u8]) {
    use std::arch::x86_64::*;
    let used = m.div_ceil(8); // bytes of each row that hold wanted columns
    let mut pad = [[0u8; 16]; 16];
    for c0 in (0..used).step_by(16) {
        let full = c0 + 16 <= nbytes;
        for rb in 0..8 {
            let mut r = [_mm_setzero_si128(); 16];
            for (i, reg) in r.iter_mut().enumerate() {
                let row = &mat[(16 * rb + i) * nbytes..(16 * rb + i + 1) * nbytes];
                *reg = if full {
                    _mm_loadu_si128(row.as_ptr().add(c0) as *const __m128i)
                } else {
                    // the last tile: the row's tail, zero-padded to 16 bytes
                    let tail = &row[c0..];
                    pad[i] = [0u8; 16];
                    pad[i][..tail.len()].copy_from_slice(tail);
                    _mm_loadu_si128(pad[i].as_ptr() as *const __m128i)
                };
            }
            let cols = byte_transpose16(r);
            for (c, col) in cols.iter().enumerate() {
                let mut v = *col;
                let base = 8 * (c0 + c); // output row of bit 0 of this byte column
                for bit in (0..8).rev() {
                    let row = base + bit;
                    let mask = _mm_movemask_epi8(v) as u16;
                    if row < m {
                        let at = 16 * row + 2 * rb;
                        out[at..at + 2].copy_from_slice(&mask.to_le_bytes());
                    }
                    v = _mm_add_epi8(v, v); // bit 6 of every byte becomes bit 7
                }
            }
        }
    }
}

/// [`transpose_128_sse2`] with 32 rows per `movemask`: the two 16-row byte transpositions
/// of a 32-row tile are joined into 256-bit registers, which halves the bit extraction
/// (the larger part of the work).
///
/// # Safety
/// The CPU has AVX2; `mat.len() == 128 * nbytes`, `m <= 8 * nbytes`, `out.len() == 16 * m`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn transpose_128_avx2(mat: &[u8], nbytes: usize, m: usize, out: &mut [u8]) {
    use std::arch::x86_64::*;
    let used = m.div_ceil(8);
    let mut pad = [[0u8; 16]; 32];
    for c0 in (0..used).step_by(16) {
        let full = c0 + 16 <= nbytes;
        for rb in 0..4 {
            let mut halves = [[_mm_setzero_si128(); 16]; 2];
            for (h, half) in halves.iter_mut().enumerate() {
                let mut r = [_mm_setzero_si128(); 16];
                for (i, reg) in r.iter_mut().enumerate() {
                    let at = (32 * rb + 16 * h + i) * nbytes;
                    let row = &mat[at..at + nbytes];
                    *reg = if full {
                        _mm_loadu_si128(row.as_ptr().add(c0) as *const __m128i)
                    } else {
                        let tail = &row[c0..];
                        let p = &mut pad[16 * h + i];
                        *p = [0u8; 16];
                        p[..tail.len()].copy_from_slice(tail);
                        _mm_loadu_si128(p.as_ptr() as *const __m128i)
                    };
                }
                *half = byte_transpose16(r);
            }
            for (c, (lo, hi)) in halves[0].iter().zip(&halves[1]).enumerate() {
                let mut v = _mm256_set_m128i(*hi, *lo);
                let base = 8 * (c0 + c);
                for bit in (0..8).rev() {
                    let row = base + bit;
                    let mask = _mm256_movemask_epi8(v) as u32;
                    if row < m {
                        let at = 16 * row + 4 * rb;
                        out[at..at + 4].copy_from_slice(&mask.to_le_bytes());
                    }
                    v = _mm256_add_epi8(v, v);
                }
            }
        }
    }
}

/// `r[i]` = byte `c` of row `i` at lane `c` → result `[c]` = byte `c` of rows 0..15.
#[cfg(target_arch = "x86_64")]
#[inline]
unsafe fn byte_transpose16(
    r: [std::arch::x86_64::__m128i; 16],
) -> [std::arch::x86_64::__m128i; 16] {
    use std::arch::x86_64::*;
    let z = _mm_setzero_si128();
    // 1: bytes of rows (2p, 2p+1) paired: a[p] columns 0..7, a[8 + p] columns 8..15
    let mut a = [z; 16];
    for p in 0..8 {
        a[p] = _mm_unpacklo_epi8(r[2 * p], r[2 * p + 1]);
        a[8 + p] = _mm_unpackhi_epi8(r[2 * p], r[2 * p + 1]);
    }
    // 2: rows 4q..4q+3 in 32-bit units: b[4h + q] holds columns 4h..4h+3
    let mut b = [z; 16];
    for half in 0..2 {
        for q in 0..4 {
            let (x, y) = (a[8 * half + 2 * q], a[8 * half + 2 * q + 1]);
            b[8 * half + q] = _mm_unpacklo_epi16(x, y);
            b[8 * half + 4 + q] = _mm_unpackhi_epi16(x, y);
        }
    }
    // 3: rows 8h..8h+7 in 64-bit units: for column group g (4g..4g+3),
    //    d[4g + 2h] holds columns 4g, 4g+1 and d[4g + 2h + 1] columns 4g+2, 4g+3
    let mut d = [z; 16];
    for g in 0..4 {
        for h in 0..2 {
            let (x, y) = (b[4 * g + 2 * h], b[4 * g + 2 * h + 1]);
            d[4 * g + 2 * h] = _mm_unpacklo_epi32(x, y);
            d[4 * g + 2 * h + 1] = _mm_unpackhi_epi32(x, y);
        }
    }
    // 4: rows 0..7 with rows 8..15: whole columns
    let mut c = [z; 16];
    for g in 0..4 {
        for pair in 0..2 {
            let (lo, hi) = (d[4 * g + pair], d[4 * g + 2 + pair]);
            c[4 * g + 2 * pair] = _mm_unpacklo_epi64(lo, hi);
            c[4 * g + 2 * pair + 1] = _mm_unpackhi_epi64(lo, hi);
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bit(buf: &[u8], i: usize) -> bool {
        buf[i / 8] >> (i % 8) & 1 == 1
    }

    #[test]
    fn matches_the_naive_transposition() {
        for (m, spare) in [
            (0usize, 0usize),
            (0, 1),
            (1, 0),
            (7, 0),
            (8, 2),
            (63, 0),
            (64, 0),
            (65, 3),
            (127, 0),
            (128, 0),
            (129, 17),
            (200, 3),
            (1000, 0),
            (4099, 5),
        ] {
            let nbytes = m.div_ceil(8) + spare; // spare bytes at the end of each row
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
            let mut portable = vec![0u8; 16 * m];
            transpose_128_portable(&mat, nbytes, m, &mut portable);
            assert_eq!(out, portable, "m = {m}");
            #[cfg(target_arch = "x86_64")]
            {
                let mut sse2 = vec![0u8; 16 * m];
                // SAFETY: x86-64 has SSE2; the shapes are those transpose_128 accepted.
                unsafe { transpose_128_sse2(&mat, nbytes, m, &mut sse2) };
                assert_eq!(sse2, portable, "m = {m}");
            }
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
