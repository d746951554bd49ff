//! Okamoto–Uchiyama in the core: packed signed slots, the homomorphism, key serialisation,
//! encrypted histograms against plain sums, and refusal of out-of-range input.

use _core::ou::{pack, unpack, PublicKey, SecretKey, CT_BYTES};

fn key() -> SecretKey {
    SecretKey::generate(1024).expect("keygen")
}

#[test]
fn pack_unpack_round_trip() {
    for vals in [
        vec![0i64, 0],
        vec![5, -3],
        vec![-7, 9, -1],
        vec![i64::MIN + 1, i64::MAX],
    ] {
        let (mag, neg) = pack(&vals, 100);
        let x = if neg { mag.wrapping_neg() } else { mag };
        let got = unpack(x, vals.len(), 100);
        assert_eq!(got, vals.iter().map(|&v| v as i128).collect::<Vec<_>>());
    }
}

#[test]
fn encrypt_add_decrypt_signed_slots() {
    let sk = key();
    let pk = sk.public();
    let a = [3i64, -5, 1 << 40, -(1 << 50)];
    let b = [-10i64, 7, 1 << 40, -(1 << 50)];
    let ca = pk.encrypt_packed(&a, 2, 80).unwrap();
    let cb = pk.encrypt_packed(&b, 2, 80).unwrap();
    assert_ne!(
        ca,
        pk.encrypt_packed(&a, 2, 80).unwrap(),
        "encryption is randomised"
    );
    let sum = pk.add(&ca, &cb).unwrap();
    let got = sk.decrypt_packed(&sum, 2, 80, 0).unwrap();
    let want: Vec<f64> = a.iter().zip(&b).map(|(x, y)| (x + y) as f64).collect();
    assert_eq!(got, want);
    let re = pk.rerandomize(&sum).unwrap();
    assert_ne!(re, sum);
    assert_eq!(sk.decrypt_packed(&re, 2, 80, 0).unwrap(), want);
}

#[test]
fn keys_round_trip_through_bytes() {
    let sk = key();
    let sk2 = SecretKey::from_bytes(&sk.to_bytes()).unwrap();
    let pk2 = PublicKey::from_bytes(&sk.public().to_bytes()).unwrap();
    let c = pk2.encrypt_packed(&[-42], 1, 64).unwrap();
    assert_eq!(sk2.decrypt_i64(&c).unwrap(), vec![-42]);
    assert!(PublicKey::from_bytes(&[0u8; 767]).is_err());
    let mut bad = sk.to_bytes();
    bad[0] ^= 2; // p no longer matches n's G
    assert!(
        SecretKey::from_bytes(&bad).is_err() || {
            let sk3 = SecretKey::from_bytes(&bad).unwrap();
            sk3.decrypt_i64(&c).map(|v| v != vec![-42]).unwrap_or(true)
        }
    );
}

#[test]
fn histogram_matches_plain_sums() {
    let sk = key();
    let pk = sk.public();
    let rows = 40usize;
    let features = 3usize;
    let vals: Vec<i64> = (0..rows as i64).flat_map(|i| [i - 20, 2 * i]).collect();
    let cts = pk.parse(&pk.encrypt_packed(&vals, 2, 64).unwrap()).unwrap();
    let bins: Vec<u8> = (0..rows * features).map(|i| ((i * 7) % 5) as u8).collect();
    let node_of_row: Vec<i32> = (0..rows as i32)
        .map(|i| if i % 4 == 3 { -1 } else { i % 3 })
        .collect();
    let nodes = [2i32, 0];
    let out = pk
        .histogram(&cts, &bins, features, &node_of_row, &nodes, 5)
        .unwrap();
    let got = sk.decrypt_packed(&out, 2, 64, 0).unwrap();
    for (k, &node) in nodes.iter().enumerate() {
        for f in 0..features {
            for b in 0..5 {
                let mut want = [0i64; 2];
                for r in 0..rows {
                    if node_of_row[r] == node && bins[r * features + f] as usize == b {
                        want[0] += vals[2 * r];
                        want[1] += vals[2 * r + 1];
                    }
                }
                let cell = ((k * features + f) * 5 + b) * 2;
                assert_eq!(got[cell..cell + 2], [want[0] as f64, want[1] as f64]);
            }
        }
    }
    assert!(pk
        .histogram(&cts, &bins, features, &node_of_row, &nodes, 4)
        .is_err());
}

#[test]
fn block_histogram_sums_add_up_to_the_whole() {
    // a party's row blocks: each block's un-randomised sums, added and re-randomised once,
    // decrypt to the histogram of all the rows
    let sk = key();
    let pk = sk.public();
    let rows = 30usize;
    let features = 2usize;
    let vals: Vec<i64> = (0..rows as i64).flat_map(|i| [3 * i - 40, i + 1]).collect();
    let bytes = pk.encrypt_packed(&vals, 2, 64).unwrap();
    let bins: Vec<u8> = (0..rows * features).map(|i| ((i * 5) % 4) as u8).collect();
    let node_of_row: Vec<i32> = (0..rows as i32).map(|i| i % 2).collect();
    let nodes = [1i32, 0];
    let whole = pk
        .histogram(
            &pk.parse(&bytes).unwrap(),
            &bins,
            features,
            &node_of_row,
            &nodes,
            4,
        )
        .unwrap();
    let cut = 11usize;
    let part = |lo: usize, hi: usize| {
        pk.histogram_sums(
            &pk.parse(&bytes[lo * CT_BYTES..hi * CT_BYTES]).unwrap(),
            &bins[lo * features..hi * features],
            features,
            &node_of_row[lo..hi],
            &nodes,
            4,
        )
        .unwrap()
    };
    let (a, b) = (part(0, cut), part(cut, rows));
    let sum = pk.rerandomize(&pk.add(&a, &b).unwrap()).unwrap();
    assert_eq!(
        sk.decrypt_packed(&sum, 2, 64, 0).unwrap(),
        sk.decrypt_packed(&whole, 2, 64, 0).unwrap()
    );
    // an empty bin of a block is the trivial encryption 1 of zero; re-randomised it is not
    let empty = pk
        .histogram_sums(
            &pk.parse(&bytes[..CT_BYTES]).unwrap(),
            &bins[..features],
            features,
            &node_of_row[..1],
            &[5],
            4,
        )
        .unwrap();
    let mut one = [0u8; CT_BYTES];
    one[0] = 1;
    assert!(empty.chunks(CT_BYTES).all(|c| c == one));
    assert!(pk
        .rerandomize(&empty)
        .unwrap()
        .chunks(CT_BYTES)
        .all(|c| c != one));
    assert!(sk
        .decrypt_packed(&empty, 2, 64, 0)
        .unwrap()
        .iter()
        .all(|&v| v == 0.0));
}

#[test]
fn rejects_out_of_range_ciphertexts_and_layouts() {
    let sk = key();
    let pk = sk.public();
    assert!(pk.parse(&[0u8; CT_BYTES]).is_err());
    assert!(pk.parse(&[0xffu8; CT_BYTES]).is_err());
    assert!(pk.parse(&[1u8; CT_BYTES - 1]).is_err());
    assert!(pk.encrypt_packed(&[1, 2, 3], 2, 64).is_err());
    assert!(
        pk.encrypt_packed(&[1; 8], 8, 126).is_err(),
        "exceeds the plaintext space"
    );
}

// -- encryption by the key owner (CRT) --------------------------------------------------------

mod key_owner {
    use std::sync::OnceLock;

    use _core::ou::{SecretKey, CT_BYTES};
    use crypto_bigint::{RandomBits, U384};
    use proptest::prelude::*;
    use rand_core::OsRng;

    fn key() -> &'static SecretKey {
        static KEY: OnceLock<SecretKey> = OnceLock::new();
        KEY.get_or_init(|| SecretKey::generate(1024).expect("keygen"))
    }

    fn nonces(rows: usize, bits: u32) -> Vec<U384> {
        (0..rows)
            .map(|_| U384::random_bits(&mut OsRng, bits))
            .collect()
    }

    /// A slot value drawn mostly from the edges of a `slot_bits`-bit signed range.
    fn slot_value(slot_bits: u32) -> impl Strategy<Value = i64> {
        let hi = if slot_bits >= 64 {
            i64::MAX
        } else {
            (1i64 << (slot_bits - 1)) - 1
        };
        prop_oneof![Just(0i64), Just(hi), Just(-hi), Just(1), Just(-1), -hi..=hi,]
    }

    fn layout() -> impl Strategy<Value = (usize, u32, Vec<i64>)> {
        // a 1024-bit key holds 339-bit plaintexts
        (1usize..=5, 2u32..=64)
            .prop_filter("fits the plaintext", |(s, b)| *s as u32 * *b <= 339)
            .prop_flat_map(|(slots, bits)| {
                let row = proptest::collection::vec(slot_value(bits), slots);
                (
                    Just(slots),
                    Just(bits),
                    proptest::collection::vec(row, 1..4)
                        .prop_map(|rows| rows.into_iter().flatten().collect()),
                )
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        #[test]
        fn same_ciphertext_as_the_public_key_and_decrypts((slots, bits, vals) in layout()) {
            let sk = key();
            let pk = sk.public();
            let r = nonces(vals.len() / slots, 160 + 64);
            let ours = sk.encrypt_packed_with(&vals, slots, bits, Some(&r)).unwrap();
            let public = pk.encrypt_packed_with(&vals, slots, bits, Some(&r)).unwrap();
            prop_assert_eq!(&ours, &public);
            let fresh = sk.encrypt_packed(&vals, slots, bits).unwrap();
            let want: Vec<f64> = vals.iter().map(|&v| v as f64).collect();
            prop_assert_eq!(sk.decrypt_packed(&fresh, slots, bits, 0).unwrap(), want);
        }
    }

    #[test]
    fn extremes_and_zero_randomness_match_the_public_key() {
        let sk = key();
        let pk = sk.public();
        let t_bits = 160;
        for r in [
            U384::ZERO,
            U384::ONE,
            U384::MAX.shr_vartime(384 - t_bits - 64),
        ] {
            for vals in [
                vec![0i64],
                vec![i64::MAX],
                vec![i64::MIN + 1],
                vec![-1],
                vec![1],
            ] {
                let a = sk.encrypt_packed_with(&vals, 1, 64, Some(&[r])).unwrap();
                let b = pk.encrypt_packed_with(&vals, 1, 64, Some(&[r])).unwrap();
                assert_eq!(a, b, "{vals:?} r={r}");
                assert_eq!(sk.decrypt_i64(&a).unwrap(), vals);
            }
        }
        // several parallel blocks of rows, each with its own randomness
        let rows = 300usize;
        let vals: Vec<i64> = (0..2 * rows as i64).map(|i| i * 7919 - 1_000_000).collect();
        let r = nonces(rows, 224);
        let a = sk.encrypt_packed_with(&vals, 2, 64, Some(&r)).unwrap();
        assert_eq!(a, pk.encrypt_packed_with(&vals, 2, 64, Some(&r)).unwrap());
        let fresh = sk.encrypt_packed(&vals, 2, 64).unwrap();
        let distinct: std::collections::HashSet<&[u8]> = fresh.chunks(CT_BYTES).collect();
        assert_eq!(distinct.len(), rows, "every row has its own randomness");
        let want: Vec<f64> = vals.iter().map(|&v| v as f64).collect();
        assert_eq!(sk.decrypt_packed(&fresh, 2, 64, 0).unwrap(), want);
        assert_eq!(
            sk.decrypt_packed(&pk.encrypt_packed(&vals, 2, 64).unwrap(), 2, 64, 0)
                .unwrap(),
            want
        );
        // the largest plaintext magnitude: 339 bits in 3 slots of 113 bits
        let vals = [i64::MAX, i64::MIN + 1, -(1 << 62)];
        let r = nonces(1, 224);
        assert_eq!(
            sk.encrypt_packed_with(&vals, 3, 113, Some(&r)).unwrap(),
            pk.encrypt_packed_with(&vals, 3, 113, Some(&r)).unwrap()
        );
    }

    #[test]
    fn mixes_with_public_key_ciphertexts() {
        let sk = key();
        let pk = sk.public();
        let a = [5i64, -7, i64::MAX / 4, -(1 << 40)];
        let b = [-9i64, 11, i64::MAX / 4, 3];
        let ca = sk.encrypt_packed(&a, 2, 80).unwrap();
        let cb = pk.encrypt_packed(&b, 2, 80).unwrap();
        assert_eq!(ca.len(), 2 * CT_BYTES);
        assert!(pk.parse(&ca).is_ok(), "a public key accepts them");
        assert_ne!(ca, sk.encrypt_packed(&a, 2, 80).unwrap(), "randomised");
        let sum = pk.add(&ca, &cb).unwrap();
        let want: Vec<f64> = a.iter().zip(&b).map(|(x, y)| (x + y) as f64).collect();
        assert_eq!(sk.decrypt_packed(&sum, 2, 80, 0).unwrap(), want);
        let re = pk.rerandomize(&ca).unwrap();
        let want_a: Vec<f64> = a.iter().map(|&x| x as f64).collect();
        assert_eq!(sk.decrypt_packed(&re, 2, 80, 0).unwrap(), want_a);
    }

    #[test]
    fn refuses_what_the_public_key_refuses() {
        let sk = key();
        let pk = sk.public();
        for (vals, slots, bits) in [
            (vec![1i64, 2, 3], 2usize, 64u32),
            (vec![1; 8], 8, 126),
            (vec![1], 0, 64),
            (vec![1], 1, 1),
            (vec![1], 1, 127),
        ] {
            assert!(pk.encrypt_packed(&vals, slots, bits).is_err());
            assert!(sk.encrypt_packed(&vals, slots, bits).is_err());
        }
        // a value outside its signed slot would carry into the next one: refused
        for (vals, bits) in [
            (vec![1i64 << 9, 0], 10u32),
            (vec![0, -(1i64 << 9)], 10),
            (vec![i64::MIN, 0], 64),
        ] {
            assert!(pk.encrypt_packed(&vals, 2, bits).is_err(), "{vals:?}");
            assert!(sk.encrypt_packed(&vals, 2, bits).is_err(), "{vals:?}");
        }
        let edge = [(1i64 << 9) - 1, -((1i64 << 9) - 1)];
        let c = sk.encrypt_packed(&edge, 2, 10).unwrap();
        assert_eq!(
            sk.decrypt_packed(&c, 2, 10, 0).unwrap(),
            vec![511.0, -511.0]
        );
        assert!(sk.encrypt_packed(&[i64::MIN, i64::MAX], 2, 65).is_ok());
        assert!(sk.encrypt_packed(&[], 2, 64).unwrap().is_empty());
        let r = nonces(1, 224);
        assert!(sk.encrypt_packed_with(&[1, 2], 1, 64, Some(&r)).is_err());
    }

    #[test]
    fn refuses_a_key_whose_generators_have_the_wrong_order() {
        let sk = key();
        let mut bytes = sk.to_bytes();
        // H ← H·2 mod n: 2 has (overwhelmingly likely) an order not dividing t mod p²
        let h = crypto_bigint::U2048::from_le_slice(&bytes[480..736]);
        let n = crypto_bigint::U2048::from_le_slice(&sk.public().to_bytes()[..CT_BYTES]);
        let h2 = h.add_mod(&h, &n);
        bytes[480..736].copy_from_slice(&h2.to_le_bytes());
        assert!(SecretKey::from_bytes(&bytes).is_err());
    }
}
