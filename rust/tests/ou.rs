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
        let got = unpack(x, vals.len(), 100).expect("every slot fits");
        assert_eq!(got, vals.iter().map(|&v| v as i128).collect::<Vec<_>>());
    }
}

#[test]
fn a_top_slot_past_its_bits_is_refused_not_truncated() {
    // 1 + 5·2^100 read as one 100-bit slot, and -(2^130) + 7: neither fits, and their low
    // 128 bits would read as something else
    for vals in [vec![1i64, 5], vec![7, -(1i64 << 30)]] {
        let (mag, neg) = pack(&vals, 100);
        let x = if neg { mag.wrapping_neg() } else { mag };
        assert_eq!(unpack(x, 1, 100), None);
        assert!(unpack(x, 2, 100).is_some());
    }
    // the extremes of a signed slot still fit
    for v in [(1i64 << 62) - 1 + (1i64 << 62), i64::MIN + 1] {
        let (mag, neg) = pack(&[v], 64);
        let x = if neg { mag.wrapping_neg() } else { mag };
        assert_eq!(unpack(x, 1, 64), Some(vec![v as i128]));
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

    use _core::ou::{PublicKey, SecretKey, CT_BYTES};
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
    fn ifma_and_portable_paths_give_the_public_keys_ciphertexts() {
        let sk = key();
        let pk = sk.public();
        let bytes = sk.to_bytes();
        let portable = SecretKey::from_bytes_with(&bytes, false).unwrap();
        assert!(!portable.uses_ifma());
        let fast = SecretKey::from_bytes_with(&bytes, true).unwrap();
        #[cfg(target_arch = "x86_64")]
        if std::env::var_os("RAINBRIDGE_DISABLE_IFMA").is_none() {
            assert_eq!(
                fast.uses_ifma(),
                std::arch::is_x86_feature_detected!("avx512ifma")
                    && std::arch::is_x86_feature_detected!("avx512f")
            );
        }
        // rows in several blocks, a partial vector at the end, both signs, both extremes
        let rows = 141usize;
        let vals: Vec<i64> = (0..rows as i64)
            .flat_map(|i| match i % 4 {
                0 => [i64::MAX, -i],
                1 => [i64::MIN + 1, i],
                2 => [0, 0],
                _ => [-(i * 1_000_003), i * 7],
            })
            .collect();
        let mut r = nonces(rows, 224);
        r[3] = U384::ZERO;
        r[4] = U384::MAX.shr_vartime(384 - 224);
        let want = pk.encrypt_packed_with(&vals, 2, 64, Some(&r)).unwrap();
        assert_eq!(
            portable
                .encrypt_packed_with(&vals, 2, 64, Some(&r))
                .unwrap(),
            want
        );
        assert_eq!(
            fast.encrypt_packed_with(&vals, 2, 64, Some(&r)).unwrap(),
            want
        );
        // the public key's portable path gives the same numbers as its IFMA path
        let slow = PublicKey::from_bytes(&pk.to_bytes())
            .unwrap()
            .without_ifma();
        assert_eq!(
            slow.encrypt_packed_with(&vals, 2, 64, Some(&r)).unwrap(),
            want
        );
        let half = &want[..70 * CT_BYTES];
        let other = &want[71 * CT_BYTES..];
        assert_eq!(pk.add(half, other).unwrap(), slow.add(half, other).unwrap());
        // (packed 64-bit slots overflow in these sums: the check is that both paths and a
        // re-randomisation keep the same plaintext, whatever it reads as)
        let sum = pk.add(half, other).unwrap();
        let plain_sum = portable.decrypt_packed(&sum, 2, 64, 0).unwrap();
        assert_eq!(fast.decrypt_packed(&sum, 2, 64, 0).unwrap(), plain_sum);
        for key in [pk, &slow] {
            let re = key.rerandomize(&sum).unwrap();
            assert!(re
                .chunks(CT_BYTES)
                .zip(sum.chunks(CT_BYTES))
                .all(|(a, b)| a != b));
            assert_eq!(portable.decrypt_packed(&re, 2, 64, 0).unwrap(), plain_sum);
        }
        // decryption: both paths agree on every in-range residue, encryption or not
        let mut buf = want.clone();
        for (k, c) in buf.chunks_mut(CT_BYTES).take(20).enumerate() {
            // forged but in range: the low 100 bytes changed (a residue below 2^800 < n)
            for (i, b) in c.iter_mut().take(100).enumerate() {
                *b ^= ((i + k) * 131 % 251) as u8;
            }
        }
        assert!(pk.parse(&buf).is_ok());
        assert_eq!(
            portable.decrypt_raw(&buf).unwrap(),
            fast.decrypt_raw(&buf).unwrap()
        );
        let plain: Vec<f64> = vals.iter().map(|&v| v as f64).collect();
        assert_eq!(fast.decrypt_packed(&want, 2, 64, 0).unwrap(), plain);
        assert_eq!(portable.decrypt_packed(&want, 2, 64, 0).unwrap(), plain);
        let wide: Vec<i64> = (0..3 * 9).map(|i| (i - 13) * (1 << 50)).collect();
        let r = nonces(9, 224);
        assert_eq!(
            fast.encrypt_packed_with(&wide, 3, 113, Some(&r)).unwrap(),
            pk.encrypt_packed_with(&wide, 3, 113, Some(&r)).unwrap()
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

    /// A histogram request: ciphertexts (Montgomery form), bins, features, node ids, nodes,
    /// n_bins and the plain values.
    type Request = (Vec<u8>, usize, Vec<i32>, Vec<i32>, usize, Vec<i64>);

    fn request() -> impl Strategy<Value = Request> {
        (0usize..40, 1usize..5, 1usize..=256).prop_flat_map(|(rows, features, n_bins)| {
            (
                proptest::collection::vec(0..n_bins, rows * features)
                    .prop_map(move |b| b.into_iter().map(|x| (x % n_bins) as u8).collect()),
                Just(features),
                // -1 and 7 are in no listed node
                proptest::collection::vec(prop_oneof![Just(-1i32), 0i32..4, Just(7)], rows),
                // distinct nodes, some of them empty
                proptest::sample::subsequence(vec![0i32, 1, 2, 3, 5, 6], 0..=6).prop_shuffle(),
                Just(n_bins),
                proptest::collection::vec(-(1i64 << 40)..(1i64 << 40), rows),
            )
        })
    }

    /// The plain per-cell sums the histogram must decrypt to.
    fn plain_sums(
        vals: &[i64],
        bins: &[u8],
        features: usize,
        node_of_row: &[i32],
        nodes: &[i32],
        n_bins: usize,
    ) -> Vec<i64> {
        let mut want = vec![0i64; nodes.len() * features * n_bins];
        for (r, &v) in vals.iter().enumerate() {
            if let Some(k) = nodes.iter().position(|&n| n == node_of_row[r]) {
                for f in 0..features {
                    want[(k * features + f) * n_bins + bins[r * features + f] as usize] += v;
                }
            }
        }
        want
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(16))]

        /// The lanes' sums are the portable path's, byte for byte, and both decrypt to the
        /// plain sums (re-randomised or not).
        #[test]
        fn histogram_lanes_match_the_portable_sums(
            (bins, features, node_of_row, nodes, n_bins, vals) in request()
        ) {
            let sk = key();
            let pk = sk.public();
            let slow = PublicKey::from_bytes(&pk.to_bytes()).unwrap().without_ifma();
            let cts = pk.parse(&pk.encrypt_packed(&vals, 1, 64).unwrap()).unwrap();
            let want = plain_sums(&vals, &bins, features, &node_of_row, &nodes, n_bins);
            let fast_sums = pk
                .histogram_sums(&cts, &bins, features, &node_of_row, &nodes, n_bins)
                .unwrap();
            let slow_sums = slow
                .histogram_sums(&cts, &bins, features, &node_of_row, &nodes, n_bins)
                .unwrap();
            prop_assert_eq!(&fast_sums, &slow_sums);
            prop_assert_eq!(sk.decrypt_i64(&fast_sums).unwrap(), want.clone());
            let fast = pk.histogram(&cts, &bins, features, &node_of_row, &nodes, n_bins).unwrap();
            let slow_h = slow.histogram(&cts, &bins, features, &node_of_row, &nodes, n_bins).unwrap();
            prop_assert_eq!(sk.decrypt_i64(&fast).unwrap(), want.clone());
            prop_assert_eq!(sk.decrypt_i64(&slow_h).unwrap(), want);
        }

        /// Both paths refuse the same malformed requests.
        #[test]
        fn histogram_paths_refuse_alike(
            (bins, features, node_of_row, nodes, n_bins, vals) in request(),
            cut in 0usize..3,
        ) {
            let pk = key().public();
            let slow = PublicKey::from_bytes(&pk.to_bytes()).unwrap().without_ifma();
            let cts = pk.parse(&pk.encrypt_packed(&vals, 1, 64).unwrap()).unwrap();
            let mut bins = bins;
            let mut nob = node_of_row;
            let mut n_bins = n_bins;
            match cut {
                0 => { bins.push(0); }
                1 => { nob.push(0); }
                _ => {
                    if bins.is_empty() { n_bins = 0 } else { bins[0] = 255; n_bins = n_bins.min(255); }
                }
            }
            let a = pk.histogram_sums(&cts, &bins, features, &nob, &nodes, n_bins);
            let b = slow.histogram_sums(&cts, &bins, features, &nob, &nodes, n_bins);
            prop_assert!(a.is_err() && b.is_err());
        }
    }

    #[test]
    fn histogram_lanes_match_the_portable_sums_at_2048_bits() {
        // the full-width modulus fills the lanes' top limbs; many rows, 30 features, nodes
        // of unequal sizes (vectors mix nodes)
        let sk = SecretKey::generate(2048).expect("keygen");
        let pk = sk.public();
        let slow = PublicKey::from_bytes(&pk.to_bytes())
            .unwrap()
            .without_ifma();
        let (rows, features, n_bins) = (101usize, 30usize, 16usize);
        let vals: Vec<i64> = (0..rows as i64)
            .map(|i| i * 1_000_003 - 50_000_000)
            .collect();
        let cts = pk.parse(&pk.encrypt_packed(&vals, 1, 64).unwrap()).unwrap();
        let bins: Vec<u8> = (0..rows * features)
            .map(|i| ((i * 31 + i / 7) % n_bins) as u8)
            .collect();
        let node_of_row: Vec<i32> = (0..rows as i32)
            .map(|i| [0, 1, 1, 2, 2, 2, -1][i as usize % 7])
            .collect();
        let nodes = [2i32, 0, 1, 4];
        let a = pk
            .histogram_sums(&cts, &bins, features, &node_of_row, &nodes, n_bins)
            .unwrap();
        let b = slow
            .histogram_sums(&cts, &bins, features, &node_of_row, &nodes, n_bins)
            .unwrap();
        assert_eq!(a, b);
        assert_eq!(
            sk.decrypt_i64(&a).unwrap(),
            plain_sums(&vals, &bins, features, &node_of_row, &nodes, n_bins)
        );
    }
}
