//! SM2 (GB/T 32918.2) against the standard's worked example on the recommended curve
//! (the same values as OpenSSL's `test/sm2_internal_test.c`).

use _core::sm2;

fn h(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap()
}

const D: &str = "3945208F7B2144B13F36E38AC6D39F95889393692860B51A42FB81EF4DF7C5B8";
const K: &str = "59276E27D506861A16680F3AD9C02DCCEF3CC1FA3CDBE4CE6D54B80DEAC1BC21";
const R: &str = "F5A03B0648D2C4630EEAC513E1BB81A15944DA3827D5B74143AC7EACEEE720B3";
const S: &str = "B1B6AA29DF212FD8763182BC0D421CA1BB9038FD1F7F42D4840B69C485BBC1AA";
const ID: &[u8] = b"1234567812345678";
const MSG: &[u8] = b"message digest";

#[test]
fn public_key_and_za_match_the_standard() {
    let pk = sm2::public_key(&h(D)).unwrap();
    assert_eq!(
        hex::encode(&pk),
        "0409f9df311e5421a150dd7d161e4bc5c672179fad1833fc076bb08ff356f35020\
         ccea490ce26775a52dc6ea718cc1aa600aed05fbf35e084a6632f6072da9ad13"
    );
    assert_eq!(
        hex::encode(sm2::za(&pk, ID).unwrap()),
        "b2e14c5c79c6df5b85f4fe7ed8db7a262b9da7e07ccb0ea9f4747b8ccda8a4f3"
    );
}

#[test]
fn the_fixed_nonce_signature_matches_and_verifies() {
    let sig = sm2::sign_with_nonce(&h(D), ID, MSG, &h(K)).unwrap();
    assert_eq!(hex::encode_upper(&sig), format!("{R}{S}"));
    let pk = sm2::public_key(&h(D)).unwrap();
    assert!(sm2::verify(&pk, ID, MSG, &sig).unwrap());
}

#[test]
fn any_one_bit_change_is_rejected() {
    let pk = sm2::public_key(&h(D)).unwrap();
    let sig = h(&format!("{R}{S}"));
    for i in 0..64 {
        let mut bad = sig.clone();
        bad[i] ^= 1;
        assert!(!sm2::verify(&pk, ID, MSG, &bad).unwrap(), "byte {i}");
    }
    assert!(!sm2::verify(&pk, ID, b"message digesT", &sig).unwrap());
    assert!(!sm2::verify(&pk, b"1234567812345679", MSG, &sig).unwrap());
    let mut d2 = h(D);
    d2[31] ^= 1;
    let other = sm2::public_key(&d2).unwrap();
    assert!(!sm2::verify(&other, ID, MSG, &sig).unwrap());
    let mut off_curve = pk.clone();
    off_curve[64] ^= 1;
    assert!(sm2::verify(&off_curve, ID, MSG, &sig).is_err());
}

#[test]
fn out_of_range_scalars_are_rejected() {
    let pk = sm2::public_key(&h(D)).unwrap();
    let n = h("FFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123");
    let s = h(S);
    let r = h(R);
    for (rr, ss) in [
        (vec![0u8; 32], s.clone()),
        (r.clone(), vec![0u8; 32]),
        (n.clone(), s.clone()),
        (r.clone(), n.clone()),
    ] {
        let sig = [rr, ss].concat();
        assert!(!sm2::verify(&pk, ID, MSG, &sig).unwrap());
    }
    assert!(sm2::public_key(&[0u8; 32]).is_err());
    assert!(sm2::public_key(&n).is_err());
    assert!(sm2::sign_with_nonce(&h(D), ID, MSG, &[0u8; 32]).is_err());
}

#[test]
fn hedged_signatures_verify_and_differ() {
    let d = sm2::random_private_key();
    let pk = sm2::public_key(&d).unwrap();
    let a = sm2::sign(&d, ID, MSG).unwrap();
    let b = sm2::sign(&d, ID, MSG).unwrap();
    assert_ne!(a, b);
    assert!(sm2::verify(&pk, ID, MSG, &a).unwrap());
    assert!(sm2::verify(&pk, ID, MSG, &b).unwrap());
}
