//! Property-based fuzzing of the core's decoders of bytes that come from a peer: group
//! elements (ristretto255, SM2, X25519 u-coordinates), OU ciphertexts and public keys, SM2
//! signatures and keys, and the batch layout the Python layer passes in. Each input is
//! accepted or refused with a `CoreError`, never a panic, and what is accepted round-trips.
//!
//! Inputs are arbitrary bytes and mutations (flips, overwrites, truncations, extensions) of
//! valid encodings. `cargo test` runs a few thousand cases per decoder; `make fuzz-rust` sets
//! `RAINBRIDGE_FUZZ_CASES` (cases per decoder; OU decryption runs a hundredth of it and OU
//! public keys a thousandth: each key accepted costs milliseconds of precomputation).

use std::sync::OnceLock;

use _core::error::CoreError;
use _core::items::{elements, Items};
use _core::ou::{PublicKey, SecretKey, CT_BYTES};
use _core::sm2 as sm2_dsa;
use _core::{ristretto, sm2_ecdh, x25519};
use curve25519_dalek::ristretto::CompressedRistretto;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

/// Cases per decoder: `RAINBRIDGE_FUZZ_CASES`, else a small default for the test suite.
fn cases(divisor: u32) -> u32 {
    let n = std::env::var("RAINBRIDGE_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
        .unwrap_or(4000);
    (n / divisor).max(200)
}

fn run<S: Strategy>(divisor: u32, strategy: S, test: impl Fn(S::Value))
where
    S::Value: std::fmt::Debug,
{
    let config = Config {
        cases: cases(divisor),
        failure_persistence: None,
        ..Config::default()
    };
    let n = config.cases;
    TestRunner::new(config)
        .run(&strategy, |v| {
            test(v);
            Ok(())
        })
        .unwrap();
    eprintln!("fuzz cases: {n}");
}

/// A valid encoding with a few bytes flipped or overwritten, cut short or extended.
fn mutated(seeds: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    let n = seeds.len();
    (
        0..n,
        prop::collection::vec(
            (any::<prop::sample::Index>(), any::<u8>(), any::<bool>()),
            0..4,
        ),
        prop_oneof![4 => Just(None), 1 => any::<prop::sample::Index>().prop_map(Some)],
        prop::collection::vec(any::<u8>(), 0..3),
    )
        .prop_map(move |(i, edits, cut, tail)| {
            let mut v = seeds[i].clone();
            for (at, byte, flip) in edits {
                if v.is_empty() {
                    break;
                }
                let j = at.index(v.len());
                if flip {
                    v[j] ^= 1 << (byte % 8);
                } else {
                    v[j] = byte;
                }
            }
            if let Some(at) = cut {
                v.truncate(at.index(v.len() + 1));
                v.extend_from_slice(&tail);
            }
            v
        })
}

fn bytes_or_mutated(max: usize, seeds: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        1 => prop::collection::vec(any::<u8>(), 0..=max),
        3 => mutated(seeds),
    ]
}

// -- group elements -----------------------------------------------------------------------

fn ristretto_seeds() -> Vec<Vec<u8>> {
    let k = [7u8; 32];
    let g = ristretto::base_mul(&k).unwrap().to_vec();
    let mut two = g.clone();
    two.extend_from_slice(&ristretto::base_mul(&[9u8; 32]).unwrap());
    vec![g, two, vec![0u8; 32]]
}

#[test]
fn ristretto_elements_decode_or_are_refused() {
    run(1, bytes_or_mutated(100, ristretto_seeds()), |buf| {
        let got = ristretto::validate_batch(&buf);
        if buf.len() % 32 != 0 {
            assert!(matches!(got, Err(CoreError::Shape(_))));
            return;
        }
        let mut first_bad = None;
        for (i, chunk) in buf.chunks_exact(32).enumerate() {
            let arr: [u8; 32] = chunk.try_into().unwrap();
            match ristretto::decode(&arr, i) {
                // canonical encodings only: what decodes re-encodes to the same bytes
                Ok(p) => assert_eq!(p.compress().to_bytes(), arr),
                Err(CoreError::InvalidElement { index, .. }) => {
                    assert_eq!(index, i);
                    assert!(CompressedRistretto(arr).decompress().is_none() || arr == [0u8; 32]);
                    first_bad.get_or_insert(i);
                }
                Err(e) => panic!("unexpected {e:?}"),
            }
        }
        match (got, first_bad) {
            (Ok(()), None) => {}
            (Err(CoreError::InvalidElement { index, .. }), Some(i)) => assert_eq!(index, i),
            (got, want) => panic!("validate_batch gave {got:?}, the first bad element is {want:?}"),
        }
    });
}

fn sm2_seeds() -> Vec<Vec<u8>> {
    let items = [b"alice".as_slice(), b"bob"];
    let data: Vec<u8> = items.concat();
    let offsets = [0i64, 5, 8];
    let it = Items::new(&data, &offsets).unwrap();
    let mut out = vec![0u8; 2 * sm2_ecdh::ELEMENT];
    sm2_ecdh::hash_mul_batch_into(&[3u8; 32], &it, &mut out).unwrap();
    vec![out[..33].to_vec(), out[33..].to_vec()]
}

#[test]
fn sm2_points_decode_or_are_refused() {
    use ::sm2::elliptic_curve::sec1::ToEncodedPoint;

    run(1, bytes_or_mutated(40, sm2_seeds()), |buf| {
        match sm2_ecdh::decode(&buf, 4) {
            Ok(p) => {
                assert_eq!(buf.len(), sm2_ecdh::ELEMENT);
                assert_eq!(p.to_affine().to_encoded_point(true).as_bytes(), &buf[..]);
            }
            Err(CoreError::InvalidElement { index: 4, .. }) => {}
            Err(e) => panic!("unexpected {e:?}"),
        }
        // a batch multiplies iff every element decodes (one in eight inputs: a
        // multiplication costs far more than a decoding)
        if buf.len() % sm2_ecdh::ELEMENT == 0 && buf.last().is_none_or(|b| b % 8 == 0) {
            let mut out = vec![0u8; buf.len()];
            let got = sm2_ecdh::mul_batch_into(&[5u8; 32], &buf, &mut out);
            let all_decode = buf
                .chunks_exact(sm2_ecdh::ELEMENT)
                .enumerate()
                .all(|(i, c)| sm2_ecdh::decode(c, i).is_ok());
            assert_eq!(got.is_ok(), all_decode, "{got:?}");
        }
    });
}

fn low_order_seeds() -> Vec<Vec<u8>> {
    // u = 0, 1, and the order-8 points of Curve25519 (their products are all zero)
    let mut out = vec![vec![0u8; 32], {
        let mut one = vec![0u8; 32];
        one[0] = 1;
        one
    }];
    for hex in [
        "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
        "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    ] {
        out.push(hex::decode(hex).unwrap());
    }
    out.push(x25519::base(&[11u8; 32]).to_vec());
    out
}

#[test]
fn x25519_points_multiply_or_are_refused() {
    let k = [13u8; 32];
    let backend = x25519::detect();
    run(
        1,
        bytes_or_mutated(70, low_order_seeds()),
        |buf| match x25519::mul_batch(backend, &k, &buf) {
            Ok(out) => {
                assert_eq!(out.len(), buf.len());
                assert!(out.chunks_exact(32).all(|r| r.iter().any(|&b| b != 0)));
            }
            Err(CoreError::Shape(_)) => assert!(buf.len() % 32 != 0),
            Err(CoreError::InvalidElement { index, .. }) => {
                let u: [u8; 32] = buf[32 * index..32 * index + 32].try_into().unwrap();
                assert_eq!(x25519::x25519(&k, &u), [0u8; 32]);
                for c in buf[..32 * index].chunks_exact(32) {
                    let u: [u8; 32] = c.try_into().unwrap();
                    assert_ne!(x25519::x25519(&k, &u), [0u8; 32]);
                }
            }
            Err(e) => panic!("unexpected {e:?}"),
        },
    );
}

// -- Okamoto–Uchiyama -------------------------------------------------------------------------

fn ou_key() -> &'static SecretKey {
    static KEY: OnceLock<SecretKey> = OnceLock::new();
    KEY.get_or_init(|| SecretKey::generate(1024).expect("keygen"))
}

#[test]
fn ou_ciphertexts_parse_or_are_refused() {
    let sk = ou_key();
    let pk = sk.public();
    let one = pk.encrypt_packed(&[-42], 1, 64).unwrap();
    let n = pk.to_bytes()[..CT_BYTES].to_vec();
    let seeds = vec![one.clone(), [one.clone(), one].concat(), n.clone()];
    run(1, bytes_or_mutated(2 * CT_BYTES + 3, seeds), |buf| {
        match pk.parse(&buf) {
            Ok(cts) => {
                assert_eq!(cts.len() * CT_BYTES, buf.len());
                // in range: below n (compared as little-endian integers) and not zero
                for c in buf.chunks_exact(CT_BYTES) {
                    assert!(c.iter().any(|&b| b != 0));
                    assert!(c.iter().rev().lt(n.iter().rev()));
                }
            }
            Err(CoreError::Shape(_)) => assert!(buf.len() % CT_BYTES != 0),
            Err(CoreError::InvalidElement { index, .. }) => {
                let c = &buf[index * CT_BYTES..(index + 1) * CT_BYTES];
                assert!(c.iter().all(|&b| b == 0) || c.iter().rev().ge(n.iter().rev()));
            }
            Err(e) => panic!("unexpected {e:?}"),
        }
    });
}

#[test]
fn ou_ciphertexts_decrypt_or_are_refused() {
    // what the key holder does with the sums a peer returns: any in-range ciphertext
    // decrypts (raw) to some value, and to slots only when its top slot fits; none panics
    let sk = ou_key();
    let pk = sk.public();
    let seeds = vec![
        pk.encrypt_packed(&[-42], 1, 64).unwrap(),
        pk.encrypt_packed(&[i64::MAX], 1, 64).unwrap(),
    ];
    run(100, mutated(seeds), |buf| {
        let a = sk.decrypt_i64(&buf);
        let b = sk.decrypt_packed(&buf, 2, 60, 8);
        assert_eq!(pk.parse(&buf).is_ok(), sk.decrypt_raw(&buf).is_ok());
        match b {
            Ok(_) => assert!(pk.parse(&buf).is_ok()),
            Err(CoreError::InvalidElement { reason, .. }) if pk.parse(&buf).is_ok() => {
                assert!(reason.contains("top slot"), "{reason}")
            }
            Err(e) => assert!(pk.parse(&buf).is_err(), "{e:?}"),
        }
        if let Err(e) = a {
            assert!(matches!(
                e,
                CoreError::Shape(_) | CoreError::InvalidElement { .. }
            ));
        }
    });
}

#[test]
fn ou_public_keys_load_or_are_refused() {
    let pk = ou_key().public().to_bytes();
    run(
        1000,
        bytes_or_mutated(800, vec![pk]),
        |buf| match PublicKey::from_bytes(&buf) {
            Ok(k) => assert_eq!(k.to_bytes(), buf),
            Err(CoreError::InvalidKey(_)) => {}
            Err(e) => panic!("unexpected {e:?}"),
        },
    );
}

// -- SM2 signatures ---------------------------------------------------------------------------

#[test]
fn sm2_signatures_verify_or_are_refused() {
    let sk = [0x2au8; 32];
    let pk = sm2_dsa::public_key(&sk).unwrap();
    let sig = sm2_dsa::sign(&sk, sm2_dsa::DEFAULT_DISTID, b"ledger entry").unwrap();
    let keys = bytes_or_mutated(70, vec![pk]);
    let sigs = bytes_or_mutated(70, vec![sig.clone()]);
    run(1, (keys, sigs), |(key, s)| {
        match sm2_dsa::verify(&key, sm2_dsa::DEFAULT_DISTID, b"ledger entry", &s) {
            // a changed signature never verifies (the message is fixed)
            Ok(ok) => assert!(!ok || s == sig),
            Err(CoreError::InvalidKey(_)) => {}
            Err(e) => panic!("unexpected {e:?}"),
        }
    });
}

// -- the batch layout ---------------------------------------------------------------------------

#[test]
fn item_offsets_validate_or_are_refused() {
    let strategy = (
        prop::collection::vec(any::<u8>(), 0..64),
        prop::collection::vec(prop_oneof![0i64..70, any::<i64>()], 0..8),
    );
    run(1, strategy, |(data, offsets)| {
        match Items::new(&data, &offsets) {
            Ok(items) => {
                let total: usize = (0..items.len()).map(|i| items.get(i).len()).sum();
                assert_eq!(total as i64, offsets[offsets.len() - 1] - offsets[0]);
            }
            Err(CoreError::Shape(_)) => {}
            Err(e) => panic!("unexpected {e:?}"),
        }
        match elements(&data) {
            Ok(e) => assert_eq!(e.len() * 32, data.len()),
            Err(_) => assert!(data.len() % 32 != 0),
        }
    });
}
