//! Encryption with nonces made ahead of use: the same ciphertexts as the ordinary path for
//! the same randomness, in both SIMD paths, and every misuse refused.

use std::sync::OnceLock;

use _core::ou::{Nonces, SecretKey, CT_BYTES};
use crypto_bigint::{RandomBits, U384};
use proptest::prelude::*;
use rand_core::OsRng;

/// (portable, IFMA where the CPU has it) views of one 1024-bit key
fn keys() -> &'static (SecretKey, SecretKey) {
    static KEYS: OnceLock<(SecretKey, SecretKey)> = OnceLock::new();
    KEYS.get_or_init(|| {
        let bytes = SecretKey::generate(1024).expect("keygen").to_bytes();
        (
            SecretKey::from_bytes_with(&bytes, false).unwrap(),
            SecretKey::from_bytes_with(&bytes, true).unwrap(),
        )
    })
}

/// randomness as `encrypt_packed` draws it for a 1024-bit key: |t| + 64 = 224 bits
fn rs(n: usize) -> Vec<U384> {
    (0..n).map(|_| U384::random_bits(&mut OsRng, 224)).collect()
}

fn signed(bits: u32) -> impl Strategy<Value = i64> {
    let hi = (1i64 << (bits - 1)) - 1;
    prop_oneof![Just(0i64), Just(hi), Just(-hi), Just(1), Just(-1), -hi..=hi]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn same_ciphertexts_as_the_given_randomness(
        rows in 0usize..40,
        ahead in 0usize..40,
        bits in prop_oneof![Just(8u32), Just(64u32), 2u32..64],
        seed in proptest::collection::vec(signed(64), 80),
    ) {
        let ahead = ahead.min(rows);
        let vals: Vec<i64> = (0..2 * rows)
            // the top bits of a 64-bit value, off the one value a signed slot cannot hold
            .map(|i| (seed[i % seed.len()] >> (64 - bits)).max((1 - (1i128 << (bits - 1))) as i64))
            .collect();
        let r = rs(rows);
        for sk in [&keys().0, &keys().1] {
            let want = sk.encrypt_packed_with(&vals, 2, bits, Some(&r)).unwrap();
            // all rows with nonces: byte for byte the ordinary path's ciphertexts
            let all = sk.encrypt_packed_ahead(&vals, 2, bits, sk.nonces_with(&r)).unwrap();
            prop_assert_eq!(&all, &want);
            // the first rows with nonces, the rest fresh: the head is the same numbers,
            // the whole decrypts to the values
            let part = sk
                .encrypt_packed_ahead(&vals, 2, bits, sk.nonces_with(&r[..ahead]))
                .unwrap();
            prop_assert_eq!(part.len(), rows * CT_BYTES);
            prop_assert_eq!(&part[..ahead * CT_BYTES], &want[..ahead * CT_BYTES]);
            let got = sk.decrypt_packed(&part, 2, bits, 0).unwrap();
            let plain: Vec<f64> = vals.iter().map(|&v| v as f64).collect();
            prop_assert_eq!(got, plain);
        }
    }
}

#[test]
fn fresh_nonces_decrypt_and_differ() {
    let (_, sk) = keys();
    let vals: Vec<i64> = (0..34).map(|i| (i - 17) * 1_000_000_007).collect();
    let a = sk
        .encrypt_packed_ahead(&vals, 2, 64, sk.nonces(17))
        .unwrap();
    let b = sk
        .encrypt_packed_ahead(&vals, 2, 64, sk.nonces(17))
        .unwrap();
    assert_ne!(
        a, b,
        "two encryptions of the same rows must not share randomness"
    );
    let plain: Vec<f64> = vals.iter().map(|&v| v as f64).collect();
    assert_eq!(sk.decrypt_packed(&a, 2, 64, 0).unwrap(), plain);
    assert_eq!(sk.decrypt_packed(&b, 2, 64, 0).unwrap(), plain);
}

#[test]
fn batches_join_in_order() {
    let (_, sk) = keys();
    let r = rs(20);
    let parts = vec![sk.nonces_with(&r[..7]), sk.nonces_with(&r[7..])];
    let joined = Nonces::concat(parts).unwrap().unwrap();
    assert_eq!(joined.len(), 20);
    let vals: Vec<i64> = (0..20).collect();
    assert_eq!(
        sk.encrypt_packed_ahead(&vals, 1, 64, joined).unwrap(),
        sk.encrypt_packed_with(&vals, 1, 64, Some(&r)).unwrap()
    );
    assert!(Nonces::concat(Vec::new()).unwrap().is_none());
}

#[test]
fn refuses_more_nonces_than_rows_and_another_keys_nonces() {
    let (portable, sk) = keys();
    let vals = [1i64, 2, 3];
    assert!(sk.encrypt_packed_ahead(&vals, 1, 64, sk.nonces(4)).is_err());
    let other = SecretKey::generate(1024).unwrap();
    assert!(sk
        .encrypt_packed_ahead(&vals, 1, 64, other.nonces(3))
        .is_err());
    let mixed = vec![sk.nonces(1), other.nonces(1)];
    assert!(Nonces::concat(mixed).is_err());
    // the same key's two paths keep their nonces in different forms: refused, not mixed
    if sk.uses_ifma() {
        assert!(sk
            .encrypt_packed_ahead(&vals, 1, 64, portable.nonces(3))
            .is_err());
    }
    // the layout's checks still hold
    assert!(sk
        .encrypt_packed_ahead(&[1i64 << 20], 1, 8, sk.nonces(1))
        .is_err());
}
