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

/// A deterministic stream of 32-byte values (SHA-512 in counter mode).
struct Stream([u8; 64]);

impl Stream {
    fn next32(&mut self) -> [u8; 32] {
        self.0 = Sha512::digest(self.0).into();
        self.0[..32].try_into().unwrap()
    }
}

fn le32(x: &[u64; 4]) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (i, w) in x.iter().enumerate() {
        out[8 * i..8 * i + 8].copy_from_slice(&w.to_le_bytes());
    }
    out
}

/// u-coordinates where ladders go wrong: 0, 1, the low-order points, p - 1, p, p + 1,
/// 2^255 - 1 (non-canonical), and each with the ignored top bit set.
fn edge_us() -> Vec<[u8; 32]> {
    let p = [u64::MAX - 18, u64::MAX, u64::MAX, u64::MAX >> 1];
    let mut v = vec![
        [0u8; 32],
        le32(&[1, 0, 0, 0]),
        le32(&[2, 0, 0, 0]),
        le32(&[9, 0, 0, 0]),
        le32(&[p[0] - 1, p[1], p[2], p[3]]),
        le32(&p),
        le32(&[p[0] + 1, p[1], p[2], p[3]]),
        le32(&[p[0] + 18, p[1], p[2], p[3]]),
        le32(&[u64::MAX, u64::MAX, u64::MAX, u64::MAX >> 1]),
        le32(&[(1 << 52) - 1, 0, 0, 0]),
        le32(&[u64::MAX, u64::MAX, u64::MAX, 0]),
        h32("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
        h32("5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157"),
    ];
    let with_top: Vec<[u8; 32]> = v
        .iter()
        .map(|u| {
            let mut t = *u;
            t[31] |= 0x80;
            t
        })
        .collect();
    v.extend(with_top);
    v
}

#[test]
fn ifma_equals_portable_on_random_and_edge_inputs() {
    if !x25519_ifma::available() {
        return;
    }
    let mut rng = Stream([7u8; 64]);
    let edges = edge_us();
    let mut lanes_checked = 0;
    // Eight different scalars per call: every lane independent of the others.
    for round in 0..1000 {
        let ks: [[u8; 32]; 8] = std::array::from_fn(|_| x25519::clamp(&rng.next32()));
        let us: [[u8; 32]; 8] = std::array::from_fn(|lane| {
            let mut u = rng.next32();
            match (round + lane) % 4 {
                0 => u[31] |= 0x80,                               // top bit set: ignored
                1 => u = edges[(round * 8 + lane) % edges.len()], // edge cases
                2 => u[31] = 0xff,                                // often >= p: reduced
                _ => {}
            }
            u
        });
        let got = x25519_ifma::ladder_lanes(&ks, &us);
        for lane in 0..8 {
            assert_eq!(
                got[lane],
                x25519::x25519(&ks[lane], &us[lane]),
                "round {round} lane {lane}"
            );
            lanes_checked += 1;
        }
    }
    assert_eq!(lanes_checked, 8000);
    // Whole batches with ragged tails, one scalar: the same bytes and the same errors.
    for round in 0..40 {
        let k = rng.next32();
        let n = 1 + (round * 37) % 300;
        let mut pts = Vec::with_capacity(n * 32);
        for i in 0..n {
            let mut u = rng.next32();
            if i % 3 == 0 {
                u[31] |= 0x80;
            }
            pts.extend_from_slice(&u);
        }
        if round % 4 == 3 {
            // a low-order point somewhere: both back ends must name the same index
            let at = (round * 13) % n;
            pts[32 * at..32 * at + 32].copy_from_slice(&edges[1]);
        }
        let a = x25519::mul_batch(Backend::Portable, &k, &pts);
        let b = x25519::mul_batch(Backend::Ifma, &k, &pts);
        assert_eq!(a, b, "round {round}");
    }
}

#[test]
fn portable_ladder_equals_curve25519_dalek() {
    use curve25519_dalek::montgomery::MontgomeryPoint;
    let mut rng = Stream([5u8; 64]);
    let edges = edge_us();
    for i in 0..5000 {
        let k = rng.next32();
        let mut u = rng.next32();
        match i % 4 {
            0 => u[31] |= 0x80,
            1 => u = edges[i % edges.len()],
            2 => u[31] = 0xff,
            _ => {}
        }
        let want = MontgomeryPoint(u).mul_clamped(k).to_bytes();
        assert_eq!(x25519::x25519(&k, &u), want, "case {i}");
    }
}

#[test]
fn batch_equals_one_at_a_time_and_first_bad_index_is_named() {
    let mut rng = Stream([9u8; 64]);
    let k = rng.next32();
    let n = 2000;
    let mut pts: Vec<u8> = (0..n).flat_map(|_| rng.next32()).collect();
    for be in backends() {
        let out = x25519::mul_batch(be, &k, &pts).unwrap();
        for i in (0..n).step_by(97) {
            let u: [u8; 32] = pts[32 * i..32 * i + 32].try_into().unwrap();
            assert_eq!(
                out[32 * i..32 * i + 32],
                x25519::x25519(&k, &u),
                "{be:?} {i}"
            );
        }
    }
    // low-order inputs at 1500 and 700 (in different rayon chunks): 700 is named
    for at in [1500, 700] {
        pts[32 * at..32 * at + 32].copy_from_slice(&[0u8; 32]);
    }
    for be in backends() {
        match x25519::mul_batch(be, &k, &pts) {
            Err(CoreError::InvalidElement { index, .. }) => assert_eq!(index, 700, "{be:?}"),
            other => panic!("{be:?}: {other:?}"),
        }
    }
    // the same for ristretto255
    let s = ristretto::random_scalar();
    let mut rp: Vec<u8> = (0..n as u64)
        .flat_map(|i| {
            (RISTRETTO_BASEPOINT_POINT * Scalar::from(i + 1))
                .compress()
                .to_bytes()
        })
        .collect();
    let out = ristretto::mul_batch(&s, &rp).unwrap();
    let sc = Scalar::from_canonical_bytes(s).unwrap();
    for i in (0..n).step_by(101) {
        let want = RISTRETTO_BASEPOINT_POINT * Scalar::from(i as u64 + 1) * sc;
        assert_eq!(out[32 * i..32 * i + 32], want.compress().to_bytes());
    }
    rp[32 * 1800] ^= 1; // most likely invalid; the identity below certainly is
    rp[32 * 900..32 * 900 + 32].copy_from_slice(&[0u8; 32]);
    for r in [
        ristretto::mul_batch(&s, &rp).map(|_| ()),
        ristretto::validate_batch(&rp),
    ] {
        match r {
            Err(CoreError::InvalidElement { index, .. }) => assert_eq!(index, 900),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn x25519_base_is_mul_by_nine() {
    let mut rng = Stream([3u8; 64]);
    let mut nine = [0u8; 32];
    nine[0] = 9;
    for _ in 0..50 {
        let k = rng.next32();
        assert_eq!(x25519::base(&k), x25519::x25519(&k, &nine));
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
    // an output buffer of the wrong size is refused, never overrun
    let mut short = [0u8; 32];
    assert!(matches!(
        x25519::mul_batch_into(Backend::Portable, &k, &[9u8; 64], &mut short),
        Err(CoreError::Shape(_))
    ));
    let pts = RISTRETTO_BASEPOINT_POINT.compress().to_bytes();
    let mut long = [0u8; 64];
    assert!(matches!(
        ristretto::mul_batch_into(&Scalar::ONE.to_bytes(), &pts, &mut long),
        Err(CoreError::Shape(_))
    ));
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
    // RFC 9380 Appendix K.3: five messages, 32- and 128-byte outputs.
    let v = load("expand_message_xmd_SHA512_38.json");
    assert_eq!(v["hash"], "SHA512");
    let dst = v["DST"].as_str().unwrap().as_bytes();
    let tests = v["tests"].as_array().unwrap();
    assert_eq!(tests.len(), 10);
    for case in tests {
        let msg = case["msg"].as_str().unwrap().as_bytes();
        let len = usize::from_str_radix(
            case["len_in_bytes"]
                .as_str()
                .unwrap()
                .trim_start_matches("0x"),
            16,
        )
        .unwrap();
        let want = case["uniform_bytes"].as_str().unwrap();
        assert_eq!(
            hex::encode(expand_message_xmd_sha512_vec(msg, dst, len)),
            want
        );
        if len == 32 {
            assert_eq!(hex::encode(expand_message_xmd_sha512::<32>(msg, dst)), want);
        }
    }
    // the fixed-size and general forms agree at 64 bytes (what hash-to-ristretto255 uses)
    assert_eq!(
        expand_message_xmd_sha512::<64>(b"x", b"DST").to_vec(),
        expand_message_xmd_sha512_vec(b"x", b"DST", 64)
    );
}

/// RFC 9497 Appendix A.1 (ristretto255-SHA512): BlindedElement = Blind * HashToGroup(Input)
/// with the suite's groupDST, EvaluationElement = skSm * BlindedElement (modes 0 and 1),
/// pkSm = skSm * B. This pins our hash_to_group to RFC 9497's HashToGroup exactly.
#[test]
fn rfc9497_ristretto255_blind_and_evaluate() {
    let v = load("rfc9497_ristretto255.json");
    let mut checked = 0;
    for suite in v["suites"].as_array().unwrap() {
        let mode = suite["mode"].as_u64().unwrap();
        let dst = hex::decode(suite["groupDST"].as_str().unwrap()).unwrap();
        let sk = h32(suite["skSm"].as_str().unwrap());
        if let Some(pk) = suite["pkSm"].as_str() {
            assert_eq!(hex::encode(ristretto::base_mul(&sk).unwrap()), pk);
        }
        for vector in suite["vectors"].as_array().unwrap() {
            let field = |k: &str| -> Vec<String> {
                vector[k]
                    .as_str()
                    .unwrap()
                    .split(',')
                    .map(str::to_owned)
                    .collect()
            };
            let (inputs, blinds) = (field("Input"), field("Blind"));
            let (blinded, evaluated) = (field("BlindedElement"), field("EvaluationElement"));
            for i in 0..inputs.len() {
                let input = hex::decode(&inputs[i]).unwrap();
                let offsets = [0i64, input.len() as i64];
                let items = Items::new(&input, &offsets).unwrap();
                let out = ristretto::hash_mul_batch(&h32(&blinds[i]), &items, &dst).unwrap();
                assert_eq!(hex::encode(&out), blinded[i], "mode {mode}");
                if mode != 2 {
                    // POPRF evaluates with a tweaked key; modes 0 and 1 with skSm itself
                    let ev = ristretto::mul_batch(&sk, &out).unwrap();
                    assert_eq!(hex::encode(ev), evaluated[i], "mode {mode}");
                }
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 10);
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

/// Arithmetic mod p = 2^255 - 19 on little-endian u64 words, straight from the definitions:
/// the reference the 8-lane IFMA field operations are checked against.
mod reference {
    pub fn reduce(x: &[u64]) -> [u64; 4] {
        let mut x = x.to_vec();
        loop {
            // x = lo + 2^255 * hi = lo + 19 * hi (mod p)
            let mut hi: Vec<u64> = (0..x.len())
                .map(|i| (x[i] >> 63) | (x.get(i + 1).copied().unwrap_or(0) << 1))
                .skip(3)
                .collect();
            while hi.last() == Some(&0) {
                hi.pop();
            }
            if hi.is_empty() {
                break;
            }
            x.truncate(4);
            x.resize(4, 0);
            x[3] &= u64::MAX >> 1;
            let mut carry = 0u128;
            for i in 0..hi.len().max(4) + 1 {
                if i >= x.len() {
                    x.push(0);
                }
                let t = x[i] as u128 + 19 * hi.get(i).copied().unwrap_or(0) as u128 + carry;
                x[i] = t as u64;
                carry = t >> 64;
            }
        }
        x.resize(4, 0);
        let p = [u64::MAX - 18, u64::MAX, u64::MAX, u64::MAX >> 1];
        let ge = (0..4)
            .rev()
            .find(|&i| x[i] != p[i])
            .is_none_or(|i| x[i] > p[i]);
        if ge {
            let mut borrow = 0i128;
            for i in 0..4 {
                let t = x[i] as i128 - p[i] as i128 - borrow;
                x[i] = t as u64;
                borrow = (t < 0) as i128;
            }
        }
        [x[0], x[1], x[2], x[3]]
    }

    pub fn from_limbs(l: &[u64; 5]) -> [u64; 4] {
        // value < 2^261: five words, then reduce
        let mut w = [0u64; 5];
        for (i, &limb) in l.iter().enumerate() {
            let (bit, word) = (52 * i % 64, 52 * i / 64);
            w[word] |= limb << bit;
            if bit > 12 && word + 1 < 5 {
                w[word + 1] |= limb >> (64 - bit);
            }
        }
        reduce(&w)
    }

    pub fn mul(a: &[u64; 4], b: &[u64; 4]) -> [u64; 4] {
        let mut z = [0u64; 8];
        for i in 0..4 {
            let mut carry = 0u128;
            for j in 0..4 {
                let t = z[i + j] as u128 + a[i] as u128 * b[j] as u128 + carry;
                z[i + j] = t as u64;
                carry = t >> 64;
            }
            z[i + 4] = carry as u64;
        }
        reduce(&z)
    }

    pub fn add(a: &[u64; 4], b: &[u64; 4]) -> [u64; 4] {
        let mut z = [0u64; 5];
        let mut carry = 0u128;
        for i in 0..4 {
            let t = a[i] as u128 + b[i] as u128 + carry;
            z[i] = t as u64;
            carry = t >> 64;
        }
        z[4] = carry as u64;
        reduce(&z)
    }

    pub fn neg(a: &[u64; 4]) -> [u64; 4] {
        // p - a for a canonical a (0 maps to p, which reduces to 0)
        let p = [u64::MAX - 18, u64::MAX, u64::MAX, u64::MAX >> 1];
        let mut z = [0u64; 4];
        let mut borrow = 0i128;
        for i in 0..4 {
            let t = p[i] as i128 - a[i] as i128 - borrow;
            z[i] = t as u64;
            borrow = (t < 0) as i128;
        }
        reduce(&z)
    }

    pub fn invert(a: &[u64; 4]) -> [u64; 4] {
        // a^(p - 2), bit by bit from the top
        let e = [u64::MAX - 20, u64::MAX, u64::MAX, u64::MAX >> 1];
        let mut r = [1, 0, 0, 0];
        for i in (0..255).rev() {
            r = mul(&r, &r);
            if (e[i / 64] >> (i % 64)) & 1 == 1 {
                r = mul(&r, a);
            }
        }
        r
    }

    pub fn bytes(x: &[u64; 4]) -> [u8; 32] {
        let mut out = [0u8; 32];
        for i in 0..4 {
            out[8 * i..8 * i + 8].copy_from_slice(&x[i].to_le_bytes());
        }
        out
    }
}

#[test]
fn ifma_field_ops_at_their_limb_bounds() {
    use x25519::FieldOp;
    if !x25519_ifma::available() {
        return;
    }
    const M52: u64 = (1 << 52) - 1;
    const TOP: u64 = (1 << 47) + (1 << 12) - 1; // the largest top limb the bounds allow
    let mut rng = Stream([11u8; 64]);
    let mut limb = |i: usize| -> u64 {
        let r = u64::from_le_bytes(rng.next32()[..8].try_into().unwrap());
        let top = i == 4;
        match r % 8 {
            0 => 0,
            1 => 1,
            2 | 3 => {
                if top {
                    TOP
                } else {
                    M52
                }
            }
            4 => {
                if top {
                    (1 << 47) - 1
                } else {
                    1 << 51
                }
            }
            5 if top => 1 << 47,
            _ => (r >> 12) % if top { TOP + 1 } else { M52 + 1 },
        }
    };
    let mut checked = 0;
    for round in 0..600 {
        let a: [[u64; 5]; 8] = std::array::from_fn(|_| std::array::from_fn(&mut limb));
        let b: [[u64; 5]; 8] = std::array::from_fn(|_| std::array::from_fn(&mut limb));
        let ops: &[FieldOp] = if round % 20 == 0 {
            &[FieldOp::Invert]
        } else {
            &[
                FieldOp::Add,
                FieldOp::Sub,
                FieldOp::Mul,
                FieldOp::Sqr,
                FieldOp::MulA24,
            ]
        };
        for &op in ops {
            let got = x25519_ifma::field_op_lanes(op, &a, &b);
            for lane in 0..8 {
                let (x, y) = (
                    reference::from_limbs(&a[lane]),
                    reference::from_limbs(&b[lane]),
                );
                let want = match op {
                    FieldOp::Add => reference::add(&x, &y),
                    FieldOp::Sub => reference::add(&x, &reference::neg(&y)),
                    FieldOp::Mul => reference::mul(&x, &y),
                    FieldOp::Sqr => reference::mul(&x, &x),
                    FieldOp::MulA24 => reference::mul(&x, &[121665, 0, 0, 0]),
                    FieldOp::Invert => reference::invert(&x),
                };
                assert_eq!(
                    got[lane],
                    reference::bytes(&want),
                    "{op:?} round {round} lane {lane}: {:?} {:?}",
                    a[lane],
                    b[lane]
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 20_000);
}

#[test]
fn portable_field_ops_at_their_word_bounds() {
    use _core::x25519_u64;
    use x25519::FieldOp;
    let mut rng = Stream([13u8; 64]);
    // values where folds and borrows happen: near 0, near p, 2p, 2^255 and 2^256
    let specials: Vec<[u64; 4]> = vec![
        [0, 0, 0, 0],
        [1, 0, 0, 0],
        [37, 0, 0, 0],
        [38, 0, 0, 0],
        [u64::MAX - 18, u64::MAX, u64::MAX, u64::MAX >> 1], // p
        [u64::MAX - 17, u64::MAX, u64::MAX, u64::MAX >> 1], // p + 1
        [u64::MAX, u64::MAX, u64::MAX, u64::MAX >> 1],      // 2^255 - 1
        [0, 0, 0, 1 << 63],                                 // 2^255
        [u64::MAX - 37, u64::MAX, u64::MAX, u64::MAX],      // 2p
        [u64::MAX - 38, u64::MAX, u64::MAX, u64::MAX],
        [u64::MAX, u64::MAX, u64::MAX, u64::MAX], // 2^256 - 1
        [u64::MAX, 0, u64::MAX, 0],
        [0, u64::MAX, 0, u64::MAX],
    ];
    let mut pick = |i: usize| -> [u64; 4] {
        let r = rng.next32();
        if i.is_multiple_of(3) {
            let w = |j: usize| u64::from_le_bytes(r[8 * j..8 * j + 8].try_into().unwrap());
            [w(0), w(1), w(2), w(3)]
        } else {
            specials[r[0] as usize % specials.len()]
        }
    };
    let mut checked = 0;
    for i in 0..3000 {
        let (a, b) = (pick(i), pick(i + 1));
        let (x, y) = (reference::reduce(&a), reference::reduce(&b));
        let ops: &[FieldOp] = if i % 30 == 0 {
            &[FieldOp::Invert]
        } else {
            &[
                FieldOp::Add,
                FieldOp::Sub,
                FieldOp::Mul,
                FieldOp::Sqr,
                FieldOp::MulA24,
            ]
        };
        for &op in ops {
            let want = match op {
                FieldOp::Add => reference::add(&x, &y),
                FieldOp::Sub => reference::add(&x, &reference::neg(&y)),
                FieldOp::Mul => reference::mul(&x, &y),
                FieldOp::Sqr => reference::mul(&x, &x),
                FieldOp::MulA24 => reference::mul(&x, &[121665, 0, 0, 0]),
                FieldOp::Invert => reference::invert(&x),
            };
            assert_eq!(
                x25519_u64::field_op(op, &a, &b),
                reference::bytes(&want),
                "{op:?} {a:?} {b:?}"
            );
            checked += 1;
        }
    }
    assert!(checked > 14_000);
}
