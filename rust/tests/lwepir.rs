//! The lattice PIR kernels against naive triple loops, every SIMD build against the portable
//! one, and the error paths.

use _core::lwepir::{self, Backend, MatrixA, DELTA, N, TAIL};
use proptest::prelude::*;

fn a_rows(seed: &[u8], m: usize) -> Vec<u32> {
    let mut a = vec![0u32; m * N];
    MatrixA::new(seed).unwrap().rows(0, &mut a);
    a
}

fn naive_hint(db: &[u8], l: usize, m: usize, a: &[u32]) -> Vec<u32> {
    let mut h = vec![0u32; l * N];
    for i in 0..l {
        for k in 0..m {
            let d = (db[i * m + k] as i32 - 128) as u32;
            for j in 0..N {
                h[i * N + j] = h[i * N + j].wrapping_add(d.wrapping_mul(a[k * N + j]));
            }
        }
    }
    h
}

fn naive_answer(db: &[u8], l: usize, m: usize, qs: &[u32]) -> Vec<u32> {
    let b = qs.len() / m;
    let mut out = vec![0u32; b * l];
    for q in 0..b {
        for i in 0..l {
            out[q * l + i] = (0..m).fold(0u32, |acc, k| {
                acc.wrapping_add(((db[i * m + k] as i32 - 128) as u32).wrapping_mul(qs[q * m + k]))
            });
        }
    }
    out
}

fn db_strategy() -> impl Strategy<Value = (usize, usize, Vec<u8>)> {
    (1usize..24, 1usize..300).prop_flat_map(|(l, m)| {
        // extreme bytes over-represented
        let byte = prop_oneof![Just(0u8), Just(255u8), any::<u8>()];
        (Just(l), Just(m), proptest::collection::vec(byte, l * m))
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn hint_and_answer_match_naive((l, m, db) in db_strategy(), seed in any::<[u8; 16]>(), b in 1usize..5) {
        let a = a_rows(&seed, m);
        let want = naive_hint(&db, l, m, &a);
        let qs: Vec<u32> = (0..b * m).map(|i| (i as u32).wrapping_mul(0x9e37_79b9) ^ seed[i % 16] as u32).collect();
        let want_ans = naive_answer(&db, l, m, &qs);
        for be in Backend::available() {
            prop_assert_eq!(&lwepir::hint_with(be, &db, l, m, &seed).unwrap(), &want, "{}", be.name());
            prop_assert_eq!(&lwepir::answer_with(be, &db, l, m, &qs).unwrap(), &want_ans, "{}", be.name());
        }
    }

    #[test]
    fn query_answer_decode_returns_the_column((l, m, db) in db_strategy(), seed in any::<[u8; 16]>(), picks in proptest::collection::vec(any::<u32>(), 1..4)) {
        let cols: Vec<u32> = picks.iter().map(|p| p % m as u32).collect();
        let hint = lwepir::hint(&db, l, m, &seed).unwrap();
        let (qs, s) = lwepir::query(&seed, m, &cols).unwrap();
        let ans = lwepir::answer(&db, l, m, &qs).unwrap();
        for be in Backend::available() {
            let (bytes, noise) = lwepir::decode_with(be, &hint, l, &s, &ans).unwrap();
            for (q, &c) in cols.iter().enumerate() {
                let col: Vec<u8> = (0..l).map(|i| db[i * m + c as usize]).collect();
                prop_assert_eq!(&bytes[q * l..(q + 1) * l], &col[..]);
                prop_assert!(noise[q] <= (TAIL as u32) * 128 * m as u32);
            }
        }
        // the query is A·s + e + Δ·u_j with |e| ≤ TAIL
        let a = a_rows(&seed, m);
        for (q, &c) in cols.iter().enumerate() {
            for k in 0..m {
                let dot = (0..N).fold(0u32, |acc, j| acc.wrapping_add(a[k * N + j].wrapping_mul(s[q * N + j])));
                let mut e = qs[q * m + k].wrapping_sub(dot);
                if k == c as usize { e = e.wrapping_sub(DELTA); }
                prop_assert!((e as i32).abs() <= TAIL);
            }
        }
    }

    #[test]
    fn patch_equals_recomputed_hint((l, m, db) in db_strategy(), seed in any::<[u8; 16]>(), edits in proptest::collection::vec((any::<u32>(), any::<u32>(), any::<u8>()), 0..20)) {
        let mut hint = lwepir::hint(&db, l, m, &seed).unwrap();
        let mut new = db.clone();
        let (mut rows, mut cols, mut deltas) = (vec![], vec![], vec![]);
        for (r, c, v) in edits {
            let (r, c) = (r as usize % l, c as usize % m);
            rows.push(r as u32);
            cols.push(c as u32);
            deltas.push(v as i32 - new[r * m + c] as i32);
            new[r * m + c] = v;
        }
        lwepir::hint_patch(&mut hint, &seed, m, &rows, &cols, &deltas).unwrap();
        prop_assert_eq!(hint, lwepir::hint(&new, l, m, &seed).unwrap());
    }
}

#[test]
fn matrix_a_is_aes_ctr() {
    // AES-128(key 0, block 0) = 66e94bd4ef8a2c3b884cfa59ca342b2e (FIPS-197 style known answer)
    let mut row = vec![0u32; N];
    MatrixA::new(&[0u8; 16]).unwrap().rows(0, &mut row);
    assert_eq!(row[0], u32::from_le_bytes([0x66, 0xe9, 0x4b, 0xd4]));
    assert_eq!(row[3], u32::from_le_bytes([0xca, 0x34, 0x2b, 0x2e]));
    // row k starts at keystream block k·N/4
    let mut two = vec![0u32; 2 * N];
    MatrixA::new(&[7u8; 16]).unwrap().rows(0, &mut two);
    let mut second = vec![0u32; N];
    MatrixA::new(&[7u8; 16]).unwrap().rows(1, &mut second);
    assert_eq!(&two[N..], &second[..]);
}

#[test]
fn queries_look_uniform() {
    let m = 20_000;
    let (qs, _) = lwepir::query(&[3u8; 16], m, &[5]).unwrap();
    let mut counts = [0f64; 256];
    for w in &qs {
        for b in w.to_le_bytes() {
            counts[b as usize] += 1.0;
        }
    }
    let expected = (4 * m) as f64 / 256.0;
    let chi2: f64 = counts
        .iter()
        .map(|c| (c - expected).powi(2) / expected)
        .sum();
    assert!(chi2 < 400.0, "chi2 {chi2}");
}

#[test]
fn bad_shapes_are_errors_not_panics() {
    let s = [0u8; 16];
    assert!(lwepir::hint(&[0; 10], 3, 4, &s).is_err());
    assert!(lwepir::hint(&[0; 12], 3, 4, &s[..15]).is_err());
    assert!(lwepir::hint(&[], 0, 0, &s).is_err());
    assert!(lwepir::answer(&[0; 12], 3, 4, &[0; 5]).is_err());
    assert!(lwepir::answer(&[0; 12], 3, 4, &[]).is_err());
    assert!(lwepir::query(&s, 4, &[4]).is_err());
    assert!(lwepir::query(&s, 4, &[]).is_err());
    assert!(lwepir::query(&s, 0, &[0]).is_err());
    assert!(lwepir::decode(&[0; N], 2, &[0; N], &[0; 2]).is_err());
    assert!(lwepir::decode(&[0; N], 1, &[0; N + 1], &[0; 1]).is_err());
    assert!(lwepir::decode(&[0; N], 1, &[0; N], &[0; 2]).is_err());
    let mut h = vec![0u32; N];
    assert!(lwepir::hint_patch(&mut h, &s, 4, &[1], &[0], &[1]).is_err());
    assert!(lwepir::hint_patch(&mut h, &s, 4, &[0], &[4], &[1]).is_err());
    assert!(lwepir::hint_patch(&mut h, &s, 4, &[0], &[], &[1]).is_err());
    assert!(lwepir::hint_patch(&mut [0u32; 5], &s, 4, &[], &[], &[]).is_err());
    assert_eq!(h, vec![0u32; N]);
}

/// Timings of each SIMD build on a 10^6-row-sized matrix (not a check; run by hand):
/// `cargo test --release --locked --test lwepir -- --ignored --nocapture backend_timings`.
#[test]
#[ignore]
fn backend_timings() {
    use std::time::Instant;
    let (l, m) = (4048usize, 24704usize);
    let db: Vec<u8> = (0..l * m)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 7) as u8)
        .collect();
    let seed = [1u8; 16];
    let (q, _) = lwepir::query(&seed, m, &[3, 9]).unwrap();
    let median = |mut v: Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    for be in Backend::available() {
        let answer = median(
            (0..7)
                .map(|_| {
                    let t = Instant::now();
                    std::hint::black_box(lwepir::answer_with(be, &db, l, m, &q).unwrap());
                    t.elapsed().as_secs_f64() * 1e3
                })
                .collect(),
        );
        let t = Instant::now();
        std::hint::black_box(lwepir::hint_with(be, &db, l, m, &seed).unwrap());
        let hint = t.elapsed().as_secs_f64();
        println!(
            "{}: answer (2 vectors) {answer:.1} ms, hint {hint:.2} s",
            be.name()
        );
    }
}
