//! Known-answer tests: RFC 7748, Wycheproof x25519, RFC 9496, RFC 9380 expand_message_xmd;
//! and the IFMA back end against the portable one.

use _core::hash::{expand_message_xmd_sha512, expand_message_xmd_sha512_vec};
use _core::items::Items;
use _core::x25519::{self, Backend};
use _core::{ristretto, x25519_ifma, CoreError};
use curve25519_dalek::constants::RISTRETTO_BASEPOINT_POINT;
use curve25519_dalek::ristretto::RistrettoPoint;
use curve25519_dalek::scalar::Scalar;
use serde_json::Value;
use sha2::{Digest, Sha512};

fn load(name: &str) -> Value {
    let path = format!("{}/tests/vectors/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn h32(s: &str) -> [u8; 32] {
    hex::decode(s).unwrap().try_into().unwrap()
}

fn backends() -> Vec<Backend> {
    let mut v = vec![Backend::Portable];
    if x25519_ifma::available() {
        v.push(Backend::Ifma);
    }
    v
}

#[test]
fn rfc7748_scalar_mult_and_dh() {
    let v = load("rfc7748.json");
    for be in backends() {
        for case in v["scalar_mult"].as_array().unwrap() {
            let k = h32(case["scalar"].as_str().unwrap());
            let u = h32(case["u"].as_str().unwrap());
            let out = x25519::mul_batch(be, &k, &u).unwrap();
            assert_eq!(hex::encode(out), case["out"].as_str().unwrap(), "{be:?}");
        }
        let dh = &v["dh"];
        let mut nine = [0u8; 32];
        nine[0] = 9;
        let a = h32(dh["alice_private"].as_str().unwrap());
        let b = h32(dh["bob_private"].as_str().unwrap());
        let pa = x25519::mul_batch(be, &a, &nine).unwrap();
        let pb = x25519::mul_batch(be, &b, &nine).unwrap();
        assert_eq!(hex::encode(&pa), dh["alice_public"].as_str().unwrap());
        assert_eq!(hex::encode(&pb), dh["bob_public"].as_str().unwrap());
        let s1 = x25519::mul_batch(be, &a, &pb).unwrap();
        let s2 = x25519::mul_batch(be, &b, &pa).unwrap();
        assert_eq!(s1, s2);
        assert_eq!(hex::encode(s1), dh["shared"].as_str().unwrap());
    }
}

fn iterate(be: Backend, rounds: usize) -> [u8; 32] {
    let mut k = [0u8; 32];
    k[0] = 9;
    let mut u = k;
    for _ in 0..rounds {
        let out: [u8; 32] = x25519::mul_batch(be, &k, &u).unwrap().try_into().unwrap();
        u = k;
        k = out;
    }
    k
}

#[test]
fn rfc7748_iterated() {
    let v = load("rfc7748.json");
    for be in backends() {
        assert_eq!(
            hex::encode(iterate(be, 1)),
            v["iterated"]["1"].as_str().unwrap()
        );
        assert_eq!(
            hex::encode(iterate(be, 1000)),
            v["iterated"]["1000"].as_str().unwrap()
        );
    }
}

#[test]
#[ignore = "a million ladders: run with --ignored"]
fn rfc7748_iterated_million() {
    let v = load("rfc7748.json");
    assert_eq!(
        hex::encode(iterate(x25519::detect(), 1_000_000)),
        v["iterated"]["1000000"].as_str().unwrap()
    );
}

#[test]
fn wycheproof_x25519() {
    let v = load("wycheproof_x25519_test.json");
    let mut checked = 0;
    for be in backends() {
        for group in v["testGroups"].as_array().unwrap() {
            for t in group["tests"].as_array().unwrap() {
                let k = h32(t["private"].as_str().unwrap());
                let u = h32(t["public"].as_str().unwrap());
                let shared = t["shared"].as_str().unwrap();
                let r = x25519::mul_batch(be, &k, &u);
                if shared.bytes().all(|c| c == b'0') {
                    // A low-order public key: we refuse rather than return zeros.
                    assert!(
                        matches!(r, Err(CoreError::InvalidElement { index: 0, .. })),
                        "tcId {} {be:?}",
                        t["tcId"]
                    );
                } else {
                    assert_eq!(hex::encode(r.unwrap()), shared, "tcId {} {be:?}", t["tcId"]);
                }
                checked += 1;
            }
        }
    }
    assert!(checked >= 518);
}

#[test]
fn ifma_equals_portable_on_random_batches() {
    if !x25519_ifma::available() {
        return;
    }
    let mut seed = [7u8; 64];
    for round in 0..40 {
        seed = Sha512::digest(seed).into();
        let k: [u8; 32] = seed[..32].try_into().unwrap();
        let n = 1 + (round * 37) % 300; // ragged tails included
        let mut pts = Vec::with_capacity(n * 32);
        let mut s = seed;
        for i in 0..n {
            s = Sha512::digest(s).into();
            let mut u: [u8; 32] = s[..32].try_into().unwrap();
            match i % 5 {
                0 => u[31] |= 0x80,  // top bit set: must be ignored
                1 => u = [0xff; 32], // non-canonical, >= p
                2 => {
                    u = [0xff; 32];
                    u[0] = 0xed;
                    u[31] = 0x7f
                } // exactly p
                _ => {}
            }
            if u.iter().all(|&b| b == 0xff) || i % 5 == 2 {
                // u = p or 2^256-1 reduce to 0 or 18 and may be low order; keep it valid
                u[1] ^= 0x55;
            }
            pts.extend_from_slice(&u);
        }
        let a = x25519::mul_batch(Backend::Portable, &k, &pts);
        let b = x25519::mul_batch(Backend::Ifma, &k, &pts);
        assert_eq!(a, b, "round {round}");
    }
}

#[test]
fn hash_mul_is_hash_then_mul_and_commutes() {
    let data = b"alicebobcarol\xe5\xae\xa2\xe6\x88\xb7".to_vec();
    let offsets = [0i64, 5, 8, 13, 19];
    let items = Items::new(&data, &offsets).unwrap();
    let (a, b) = (x25519::random_scalar(), x25519::random_scalar());
    for be in backends() {
        let ha = x25519::hash_mul_batch(be, &a, &items).unwrap();
        let hashed = x25519::hash_batch(&items);
        assert_eq!(ha, x25519::mul_batch(be, &a, &hashed).unwrap());
        let hab = x25519::mul_batch(be, &b, &ha).unwrap();
        let hb = x25519::hash_mul_batch(be, &b, &items).unwrap();
        assert_eq!(hab, x25519::mul_batch(be, &a, &hb).unwrap());
    }
    assert_eq!(
        &x25519::hash_batch(&items)[..32],
        &sha2::Sha256::digest(b"alice")[..]
    );
}

#[test]
fn bad_shapes_are_errors_not_panics() {
    let k = [1u8; 32];
    assert!(matches!(
        x25519::mul_batch(Backend::Portable, &k, &[0u8; 33]),
        Err(CoreError::Shape(_))
    ));
    assert!(Items::new(b"abc", &[]).is_err());
    assert!(Items::new(b"abc", &[0, 4]).is_err());
    assert!(Items::new(b"abc", &[2, 1]).is_err());
    assert!(Items::new(b"abc", &[-1, 1]).is_err());
    assert!(Items::new(b"abc", &[0, 3]).is_ok());
    assert!(x25519::mul_batch(Backend::Portable, &k, &[])
        .unwrap()
        .is_empty());
}

#[test]
fn rfc9496_small_multiples_round_trip() {
    let v = load("rfc9496.json");
    let mut p = RistrettoPoint::default();
    for (i, enc) in v["small_multiples"].as_array().unwrap().iter().enumerate() {
        let enc = enc.as_str().unwrap();
        assert_eq!(hex::encode(p.compress().as_bytes()), enc, "{i}B");
        if i > 0 {
            let bytes = h32(enc);
            let decoded = ristretto::decode(&bytes, 0).unwrap();
            assert_eq!(decoded.compress().to_bytes(), bytes);
            // k * (i*B) through the batch API equals (k*i) * B
            let k = Scalar::from(3u64);
            let out = ristretto::mul_batch(&k.to_bytes(), &bytes).unwrap();
            assert_eq!(out, (p * k).compress().to_bytes());
        } else {
            // 0*B is the identity: refused as an input
            assert!(ristretto::decode(&h32(enc), 0).is_err());
        }
        p += RISTRETTO_BASEPOINT_POINT;
    }
}

#[test]
fn rfc9496_bad_encodings_rejected() {
    let v = load("rfc9496.json");
    let bad = v["bad_encodings"].as_array().unwrap();
    assert_eq!(bad.len(), 29);
    for (i, enc) in bad.iter().enumerate() {
        let bytes = h32(enc.as_str().unwrap());
        assert!(ristretto::decode(&bytes, i).is_err(), "#{i} accepted");
        let mut batch = RISTRETTO_BASEPOINT_POINT.compress().to_bytes().to_vec();
        batch.extend_from_slice(&bytes);
        match ristretto::mul_batch(&Scalar::ONE.to_bytes(), &batch) {
            Err(CoreError::InvalidElement { index, .. }) => assert_eq!(index, 1),
            other => panic!("#{i}: {other:?}"),
        }
    }
}

#[test]
fn rfc9496_from_uniform_bytes() {
    let v = load("rfc9496.json");
    for case in v["from_uniform_bytes_sha512"].as_array().unwrap() {
        let h = Sha512::digest(case["input"].as_str().unwrap().as_bytes());
        let out = ristretto::from_uniform_bytes_batch(&h).unwrap();
        assert_eq!(hex::encode(out), case["element"].as_str().unwrap());
    }
    let eq = &v["equivalent_uniform_bytes"];
    for input in eq["inputs"].as_array().unwrap() {
        let out =
            ristretto::from_uniform_bytes_batch(&hex::decode(input.as_str().unwrap()).unwrap())
                .unwrap();
        assert_eq!(hex::encode(out), eq["element"].as_str().unwrap());
    }
}

#[test]
fn scalars_must_be_canonical_and_nonzero() {
    let p = RISTRETTO_BASEPOINT_POINT.compress().to_bytes();
    assert!(matches!(
        ristretto::mul_batch(&[0u8; 32], &p),
        Err(CoreError::InvalidScalar(_))
    ));
    assert!(matches!(
        ristretto::mul_batch(&[0xff; 32], &p),
        Err(CoreError::InvalidScalar(_))
    ));
    assert!(ristretto::mul_batch(&ristretto::random_scalar(), &p).is_ok());
}

#[test]
fn expand_message_xmd_vectors() {
    let v = load("expand_message_xmd_sha512.json");
    let dst = v["dst"].as_str().unwrap().as_bytes();
    for case in v["cases"].as_array().unwrap() {
        let msg = case["msg"].as_str().unwrap().as_bytes();
        let want = case["out"].as_str().unwrap();
        assert_eq!(hex::encode(expand_message_xmd_sha512::<32>(msg, dst)), want);
        assert_eq!(
            hex::encode(expand_message_xmd_sha512_vec(msg, dst, 32)),
            want
        );
    }
    // the fixed-size and general forms agree at 64 bytes
    assert_eq!(
        expand_message_xmd_sha512::<64>(b"x", b"DST").to_vec(),
        expand_message_xmd_sha512_vec(b"x", b"DST", 64)
    );
}

#[test]
fn ristretto_hash_mul_commutes() {
    let data = b"onetwothree".to_vec();
    let offsets = [0i64, 3, 6, 11];
    let items = Items::new(&data, &offsets).unwrap();
    let dst = b"rainbridge-test";
    let (a, b) = (ristretto::random_scalar(), ristretto::random_scalar());
    let ha = ristretto::hash_mul_batch(&a, &items, dst).unwrap();
    let hb = ristretto::hash_mul_batch(&b, &items, dst).unwrap();
    assert_eq!(
        ristretto::mul_batch(&b, &ha).unwrap(),
        ristretto::mul_batch(&a, &hb).unwrap()
    );
    let h = ristretto::hash_to_group_batch(&items, dst).unwrap();
    assert_eq!(ristretto::mul_batch(&a, &h).unwrap(), ha);
}
