//! Access-token verification refuses every token it did not sign for this audience now.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use gatehouse_tests::{StoreKind, TestApp};
use serde_json::{Value, json};

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

fn parts(token: &str) -> (Value, Value, String) {
    let mut it = token.split('.');
    let h = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(it.next().unwrap()).unwrap()).unwrap();
    let c = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(it.next().unwrap()).unwrap()).unwrap();
    (h, c, it.next().unwrap().to_owned())
}

async fn signed_in() -> (TestApp, String) {
    let a = TestApp::new(StoreKind::Memory).await;
    a.signup("o@example.com").await;
    let (at, _, _) = a.login_ok("o@example.com").await;
    (a, at)
}

#[tokio::test]
async fn a_genuine_token_has_the_documented_header_and_claims() {
    let (a, at) = signed_in().await;
    let (h, c, _) = parts(&at);
    assert_eq!(h["alg"], "ES256", "ES256 by default");
    assert_eq!(h["typ"], "at+jwt");
    let jwks = a
        .request(http::Method::GET, "/.well-known/jwks.json", None, None)
        .await;
    assert_eq!(h["kid"], jwks.body["keys"][0]["kid"]);
    for claim in [
        "iss", "aud", "sub", "org", "role", "sid", "amr", "iat", "exp",
    ] {
        assert!(!c[claim].is_null(), "missing {claim}");
    }
    assert_eq!(c["amr"], json!(["pwd"]));
    assert!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap() <= 900);
}

#[tokio::test]
async fn alg_none_is_refused() {
    let (a, at) = signed_in().await;
    let (mut h, c, _) = parts(&at);
    h["alg"] = json!("none");
    for forged in [
        format!("{}.{}.", b64(&h), b64(&c)),
        format!("{}.{}", b64(&h), b64(&c)),
    ] {
        a.get("/v1/me", &forged)
            .await
            .assert_problem(401, "unauthenticated");
    }
}

#[tokio::test]
async fn hs256_signed_with_the_public_key_is_refused() {
    use hmac_sha256::hmac;
    let (a, at) = signed_in().await;
    let (mut h, c, _) = parts(&at);
    let jwks = a
        .request(http::Method::GET, "/.well-known/jwks.json", None, None)
        .await;
    let public = URL_SAFE_NO_PAD
        .decode(jwks.body["keys"][0]["x"].as_str().unwrap())
        .unwrap();
    h["alg"] = json!("HS256");
    let input = format!("{}.{}", b64(&h), b64(&c));
    let sig = URL_SAFE_NO_PAD.encode(hmac(&public, input.as_bytes()));
    a.get("/v1/me", &format!("{input}.{sig}"))
        .await
        .assert_problem(401, "unauthenticated");
}

mod hmac_sha256 {
    //! HMAC-SHA256 (RFC 2104), enough to forge the classic algorithm-confusion token.
    use sha2::{Digest, Sha256};
    pub fn hmac(key: &[u8], msg: &[u8]) -> Vec<u8> {
        let mut k = [0u8; 64];
        if key.len() > 64 {
            k[..32].copy_from_slice(&Sha256::digest(key));
        } else {
            k[..key.len()].copy_from_slice(key);
        }
        let ipad: Vec<u8> = k.iter().map(|b| b ^ 0x36).collect();
        let opad: Vec<u8> = k.iter().map(|b| b ^ 0x5c).collect();
        let inner = Sha256::new()
            .chain_update(&ipad)
            .chain_update(msg)
            .finalize();
        Sha256::new()
            .chain_update(&opad)
            .chain_update(inner)
            .finalize()
            .to_vec()
    }
}

#[tokio::test]
async fn an_unknown_kid_is_refused_even_with_a_valid_signature() {
    let (a, _) = signed_in().await;
    // A token signed by a key ring the server does not hold.
    let other = gatehouse::keys::KeyRing::generate(gatehouse::keys::Alg::Es256);
    let now = a.clock_now();
    let claims = gatehouse::jwt::AccessClaims {
        iss: "gatehouse".into(),
        aud: "gatehouse-api".into(),
        sub: gatehouse::domain::UserId::new(),
        org: gatehouse::domain::OrgId::new(),
        role: gatehouse::domain::Role::Owner,
        sid: gatehouse::domain::SessionId::new(),
        amr: vec!["pwd".into()],
        scope: None,
        iat: now,
        exp: now + 600,
        jti: "x".into(),
    };
    let forged = gatehouse::jwt::sign(&other, &claims, a.state.clock.now()).unwrap();
    a.get("/v1/me", &forged)
        .await
        .assert_problem(401, "unauthenticated");
}

#[tokio::test]
async fn a_tampered_claim_breaks_the_signature() {
    let (a, at) = signed_in().await;
    let (h, mut c, sig) = parts(&at);
    c["role"] = json!("admin");
    a.get("/v1/me", &format!("{}.{}.{sig}", b64(&h), b64(&c)))
        .await
        .assert_problem(401, "unauthenticated");
}

#[tokio::test]
async fn a_wrong_audience_or_issuer_is_refused() {
    let (a, at) = signed_in().await;
    let ring = a.state.keys.current();
    let (_, c, _) = parts(&at);
    let mut claims: gatehouse::jwt::AccessClaims = serde_json::from_value(c).unwrap();
    claims.aud = "another-api".into();
    a.get(
        "/v1/me",
        &gatehouse::jwt::sign(&ring, &claims, a.state.clock.now()).unwrap(),
    )
    .await
    .assert_problem(401, "unauthenticated");
    claims.aud = "gatehouse-api".into();
    claims.iss = "someone-else".into();
    a.get(
        "/v1/me",
        &gatehouse::jwt::sign(&ring, &claims, a.state.clock.now()).unwrap(),
    )
    .await
    .assert_problem(401, "unauthenticated");
    claims.iss = "gatehouse".into();
    assert_eq!(
        a.get(
            "/v1/me",
            &gatehouse::jwt::sign(&ring, &claims, a.state.clock.now()).unwrap()
        )
        .await
        .status,
        200
    );
}

#[tokio::test]
async fn an_expired_token_is_refused() {
    let (a, at) = signed_in().await;
    a.clock.advance(Duration::from_secs(599));
    assert_eq!(a.get("/v1/me", &at).await.status, 200);
    a.clock.advance(Duration::from_secs(2));
    a.get("/v1/me", &at)
        .await
        .assert_problem(401, "unauthenticated");
}

#[tokio::test]
async fn a_wrong_typ_is_refused() {
    let (a, at) = signed_in().await;
    let ring = a.state.keys.current();
    let (_, c, _) = parts(&at);
    let key = ring.signer(a.state.clock.now()).unwrap();
    let h = json!({"alg": "ES256", "typ": "JWT", "kid": key.public.kid});
    let input = format!("{}.{}", b64(&h), b64(&c));
    let sig = URL_SAFE_NO_PAD.encode(key.private.sign(input.as_bytes()));
    a.get("/v1/me", &format!("{input}.{sig}"))
        .await
        .assert_problem(401, "unauthenticated");
}

/// The key decides the algorithm: a token whose header names another algorithm than its
/// `kid`'s key has is refused, though the signature is that key's own.
#[tokio::test]
async fn an_algorithm_other_than_the_keys_own_is_refused() {
    let (a, at) = signed_in().await;
    let (h, c, _) = parts(&at);
    let ring = a.state.keys.current();
    let key = ring.signer(a.state.clock.now()).unwrap();
    for alg in ["EdDSA", "ES384", "RS256", "es256"] {
        let mut h = h.clone();
        h["alg"] = json!(alg);
        let input = format!("{}.{}", b64(&h), b64(&c));
        let sig = URL_SAFE_NO_PAD.encode(key.private.sign(input.as_bytes()));
        a.get("/v1/me", &format!("{input}.{sig}"))
            .await
            .assert_problem(401, "unauthenticated");
    }
    // An ES256 signature must be exactly R and S: a DER-encoded one is refused.
    let input = format!("{}.{}", b64(&h), b64(&c));
    let raw = key.private.sign(input.as_bytes());
    let mut der = vec![0x30, 68, 0x02, 32];
    der.extend_from_slice(&raw[..32]);
    der.extend_from_slice(&[0x02, 32]);
    der.extend_from_slice(&raw[32..]);
    a.get(
        "/v1/me",
        &format!("{input}.{}", URL_SAFE_NO_PAD.encode(der)),
    )
    .await
    .assert_problem(401, "unauthenticated");
    assert_eq!(
        a.get(
            "/v1/me",
            &format!("{input}.{}", URL_SAFE_NO_PAD.encode(raw))
        )
        .await
        .status,
        200
    );
}

/// EdDSA stays selectable: a ring of Ed25519 keys signs EdDSA tokens, lists an OKP key, and
/// its tokens work; an ES256 key's tokens then no longer do.
#[tokio::test]
async fn eddsa_signing_is_selectable() {
    let (a, es256_token) = signed_in().await;
    a.state.keys.replace(gatehouse::keys::KeyRing::generate(
        gatehouse::keys::Alg::EdDsa,
    ));
    let (at, _, _) = a.login_ok("o@example.com").await;
    let (h, _, _) = parts(&at);
    assert_eq!(h["alg"], "EdDSA");
    let jwks = a
        .request(http::Method::GET, "/.well-known/jwks.json", None, None)
        .await;
    assert_eq!(jwks.body["keys"][0]["kty"], "OKP");
    assert_eq!(jwks.body["keys"][0]["crv"], "Ed25519");
    assert_eq!(jwks.body["keys"][0]["alg"], "EdDSA");
    assert_eq!(h["kid"], jwks.body["keys"][0]["kid"]);
    assert_eq!(a.get("/v1/me", &at).await.status, 200);
    a.get("/v1/me", &es256_token)
        .await
        .assert_problem(401, "unauthenticated");
}
