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
