// Unit tests: a failed unwrap is the test failing.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use super::*;

const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

fn at(secs: i64) -> Timestamp {
    Timestamp::from_unix_millis(secs * 1000)
}

fn signing_json(alg: &str) -> String {
    format!(r#"{{"format":"gatehouse-signing-keys-v1","alg":"{alg}","initial_seed":"{A}"}}"#)
}

fn ring(json: &str) -> KeyRing {
    KeyRing::new(Some(json), None, None).unwrap()
}

fn signer_kid(doc: &signing::Document, now: Timestamp) -> String {
    ring(&doc.to_json()).signer(now).unwrap().public.kid.clone()
}

#[test]
fn the_same_seed_derives_the_same_keys_and_each_algorithm_its_own() {
    let es = ring(&signing_json("ES256"));
    let es_again = ring(&signing_json("ES256"));
    let ed = ring(&signing_json("EdDSA"));
    assert_eq!(es.public_keys(), es_again.public_keys());
    assert_eq!(es.public_keys()[0].key.alg(), Alg::Es256);
    assert_eq!(ed.public_keys()[0].key.alg(), Alg::EdDsa);
    assert_ne!(es.public_keys()[0].kid, ed.public_keys()[0].kid);
}

/// `kid` is the SHA-256 of the key's required members in RFC 7638's canonical form.
#[test]
fn kid_is_the_rfc_7638_thumbprint() {
    let key = ring(&signing_json("ES256")).public_keys()[0].clone();
    let jwk = key.jwk();
    let canonical = format!(
        r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
        jwk.x,
        jwk.y.clone().unwrap()
    );
    assert_eq!(
        jwk.kid,
        URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
    );
    assert_eq!((jwk.kty.as_str(), jwk.crv.as_str()), ("EC", "P-256"));
    assert_eq!(jwk.x.len(), 43);
}

#[test]
fn a_published_jwk_round_trips_and_a_renamed_one_is_refused() {
    for alg in ["ES256", "EdDSA"] {
        let key = ring(&signing_json(alg)).public_keys()[0].clone();
        assert_eq!(PublicKey::from_jwk(&key.jwk()).unwrap(), key);
        let mut renamed = key.jwk();
        renamed.kid = "someone-else".into();
        assert!(PublicKey::from_jwk(&renamed).is_err(), "{alg}");
        let mut wrong_alg = key.jwk();
        wrong_alg.alg = if alg == "ES256" { "EdDSA" } else { "ES256" }.into();
        assert!(PublicKey::from_jwk(&wrong_alg).is_err(), "{alg}");
    }
}

#[test]
fn a_rotation_adds_a_key_that_signs_after_the_publish_delay() {
    let doc = signing::Document::parse(&signing_json("ES256")).unwrap();
    let now = at(1_000_000);
    let rotated = doc.rotated(now);
    assert_eq!(rotated.keys.len(), 2);
    let old = signer_kid(&doc, now);
    assert_eq!(
        signer_kid(&rotated, now),
        old,
        "the new key does not sign yet"
    );
    let almost = now.plus(signing::PUBLISH_DELAY - Duration::from_secs(1));
    assert_eq!(signer_kid(&rotated, almost), old);
    let then = now.plus(signing::PUBLISH_DELAY);
    assert_ne!(signer_kid(&rotated, then), old);
    // Both are published from the rotation on.
    assert_eq!(ring(&rotated.to_json()).public_keys().len(), 2);
}

#[test]
fn a_retired_key_stays_until_its_tokens_expired_then_goes() {
    let doc = signing::Document::parse(&signing_json("ES256")).unwrap();
    let t0 = at(1_000_000);
    let first = doc.rotated(t0);
    let old = signer_kid(&doc, t0);
    // The second key starts to sign at t0 + 15 min; the old one is needed 16 min more.
    let successor_starts = t0.plus(signing::PUBLISH_DELAY);
    let just_before = successor_starts.plus(signing::RETIRED_KEY_GRACE - Duration::from_secs(1));
    let kids = |d: &signing::Document| -> Vec<String> {
        ring(&d.to_json())
            .public_keys()
            .iter()
            .map(|k| k.kid.clone())
            .collect()
    };
    assert!(kids(&first.rotated(just_before)).contains(&old));
    let after = successor_starts.plus(signing::RETIRED_KEY_GRACE);
    let pruned = first.rotated(after);
    assert!(!kids(&pruned).contains(&old));
    assert_eq!(pruned.keys.len(), 2, "the signing key and the new one");
}

#[test]
fn retiring_the_signing_key_hands_over_to_the_published_next_key_at_once() {
    let doc = signing::Document::parse(&signing_json("ES256")).unwrap();
    let now = at(2_000_000);
    let rotated = doc.rotated(now);
    let (leaked, next) = {
        let r = ring(&rotated.to_json());
        let leaked = r.signer(now).unwrap().public.kid.clone();
        let next = r
            .public_keys()
            .iter()
            .find(|k| k.kid != leaked)
            .unwrap()
            .kid
            .clone();
        (leaked, next)
    };
    let later = now.plus(Duration::from_secs(60));
    let retired = rotated.without(&leaked, later).unwrap().unwrap();
    let r = ring(&retired.to_json());
    assert!(r.verifier(&leaked).is_none());
    assert_eq!(r.signer(later).unwrap().public.kid, next);
    // Without a next key, a new one signs at once.
    let alone = doc.without(&signer_kid(&doc, now), now).unwrap().unwrap();
    let r = ring(&alone.to_json());
    assert_eq!(r.public_keys().len(), 1);
    assert_ne!(r.signer(now).unwrap().public.kid, leaked);
    assert!(doc.without("no-such-kid", now).unwrap().is_none());
}

#[test]
fn weak_foreign_or_empty_material_is_refused() {
    let short = r#"{"format":"gatehouse-signing-keys-v1","initial_seed":"short"}"#;
    assert!(matches!(
        KeyRing::new(Some(short), None, None),
        Err(KeyError::WeakSeed)
    ));
    for bad in [
        r#"{"format":"gatehouse-signing-keys-v1"}"#,
        r#"{"format":"gatehouse-keys-v1","master_seed":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}"#,
        r#"{"format":"gatehouse-signing-keys-v1","alg":"RS256","initial_seed":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}"#,
        "not json",
    ] {
        assert!(
            matches!(KeyRing::new(Some(bad), None, None), Err(KeyError::Format)),
            "{bad}"
        );
    }
    assert!(matches!(
        KeyRing::new(None, None, Some(r#"{"format":"v0","master_seed":"x"}"#)),
        Err(KeyError::Format)
    ));
}

#[test]
fn a_ring_without_data_keys_says_so() {
    let r = ring(&signing_json("ES256"));
    assert!(matches!(r.data(), Err(KeyError::Missing(_))));
}

/// A seed of the single secret before the split keeps its data-key id, so sealed TOTP seeds
/// and recovery codes stored then still find their key.
#[test]
fn data_keys_of_the_legacy_format_keep_their_ids() {
    let legacy = format!(r#"{{"format":"gatehouse-keys-v1","master_seed":"{A}"}}"#);
    let new = format!(r#"{{"format":"gatehouse-data-keys-v1","master_seed":"{A}"}}"#);
    let a = KeyRing::new(None, None, Some(&legacy)).unwrap();
    let b = KeyRing::new(None, None, Some(&new)).unwrap();
    let (ida, ka) = a.data().unwrap().aes();
    let (idb, kb) = b.data().unwrap().aes();
    assert_eq!((ida, ka), (idb, kb));
    // The id is the old Ed25519 kid: SHA-256 of the public key, 16 bytes, base64url.
    let ed = ring(&signing_json("EdDSA"));
    let VerifyingKey::EdDsa(pk) = &ed.public_keys()[0].key else {
        unreachable!()
    };
    assert_eq!(
        ida,
        URL_SAFE_NO_PAD.encode(&Sha256::digest(pk.as_bytes())[..16])
    );
}

#[test]
fn data_rotation_keeps_old_keys_by_id_until_pruned() {
    let doc = data::Document::generate();
    let old = doc.keys().unwrap().aes().0.to_owned();
    let rotated = doc.rotated();
    let keys = rotated.keys().unwrap();
    assert_ne!(keys.aes().0, old);
    assert!(keys.aes_by_id(&old).is_some() && keys.pepper_by_id(&old).is_some());
    let pruned = rotated.pruned(|_| false).unwrap();
    assert!(pruned.keys().unwrap().aes_by_id(&old).is_none());
    let kept = rotated.pruned(|id| id == old).unwrap();
    assert!(kept.keys().unwrap().aes_by_id(&old).is_some());
}

#[test]
fn signing_and_data_keys_differ() {
    let r = KeyRing::generate(Alg::EdDsa);
    let VerifyingKey::EdDsa(pk) = &r.public_keys()[0].key else {
        unreachable!()
    };
    assert_ne!(r.data().unwrap().aes().1, pk.as_bytes());
}

/// p256 signs, ring verifies: a signature verifies only over its own input, only in the
/// 64-byte form, and not when R or S is altered or zero.
#[test]
fn signatures_verify_only_as_made() {
    for alg in ["ES256", "EdDSA"] {
        let r = ring(&signing_json(alg));
        let key = r.signer(at(0)).unwrap();
        let sig = key.private.sign(b"input");
        assert!(key.public.key.verify(b"input", &sig), "{alg}");
        assert!(!key.public.key.verify(b"inpuT", &sig), "{alg}");
        for i in [0, 31, 32, 63] {
            let mut bad = sig.clone();
            bad[i] ^= 1;
            assert!(!key.public.key.verify(b"input", &bad), "{alg} byte {i}");
        }
        assert!(!key.public.key.verify(b"input", &sig[..63]), "{alg}");
        assert!(
            !key.public
                .key
                .verify(b"input", &[sig.clone(), vec![0]].concat()),
            "{alg}"
        );
        assert!(!key.public.key.verify(b"input", &[0u8; 64]), "{alg}");
    }
}
