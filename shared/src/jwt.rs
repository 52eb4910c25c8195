//! Access tokens: compact JWS (RFC 7515) signed with ES256 (RFC 7518 §3.4) or Ed25519
//! (RFC 8037), header `typ` `at+jwt` (RFC 9068). Verification looks `kid` up only in our key
//! ring and pins the algorithm to that key's own: a token's `alg` must equal the algorithm of
//! the key its `kid` names. It then checks `typ`, `iss`, `aud` and `exp` (RFC 8725 §3.1,
//! §3.11).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::domain::{OrgId, Role, SessionId, UserId};
use crate::keys::KeyRing;

pub const TYP: &str = "at+jwt";
/// Tolerated clock difference between Lambdas for `iat`.
const LEEWAY_SECS: i64 = 30;

#[derive(Debug, Serialize, Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    typ: Option<String>,
    #[serde(default)]
    kid: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    pub aud: String,
    pub sub: UserId,
    pub org: OrgId,
    pub role: Role,
    pub sid: SessionId,
    pub amr: Vec<String>,
    /// `mfa_enroll` when the session may only enroll MFA (the org requires it); absent
    /// otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JwtError {
    #[error("malformed token")]
    Malformed,
    #[error("algorithm not allowed")]
    Algorithm,
    #[error("wrong token type")]
    Type,
    #[error("unknown key")]
    UnknownKey,
    #[error("bad signature")]
    Signature,
    #[error("wrong issuer")]
    Issuer,
    #[error("wrong audience")]
    Audience,
    #[error("expired")]
    Expired,
    #[error("issued in the future")]
    NotYetValid,
    #[error("this function holds no signing key")]
    NoSigningKey,
}

/// Signs `claims` with the key that signs at `now` (docs/keys.md).
pub fn sign(ring: &KeyRing, claims: &AccessClaims, now: Timestamp) -> Result<String, JwtError> {
    let key = ring.signer(now).ok_or(JwtError::NoSigningKey)?;
    let header = Header {
        alg: key.private.alg().as_str().into(),
        typ: Some(TYP.into()),
        kid: Some(key.public.kid.clone()),
    };
    // Serializing plain structs of strings and numbers cannot fail.
    let h = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).unwrap_or_default());
    let c = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap_or_default());
    let input = format!("{h}.{c}");
    let sig = key.private.sign(input.as_bytes());
    Ok(format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig)))
}

pub fn verify(
    ring: &KeyRing,
    token: &str,
    iss: &str,
    aud: &str,
    now: Timestamp,
) -> Result<AccessClaims, JwtError> {
    let mut parts = token.split('.');
    let (Some(h), Some(c), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed);
    };
    let decode = |p: &str| URL_SAFE_NO_PAD.decode(p).map_err(|_| JwtError::Malformed);
    let header: Header = serde_json::from_slice(&decode(h)?).map_err(|_| JwtError::Malformed)?;
    if header.typ.as_deref() != Some(TYP) {
        return Err(JwtError::Type);
    }
    let key = header
        .kid
        .as_deref()
        .and_then(|k| ring.verifier(k))
        .ok_or(JwtError::UnknownKey)?;
    // The key decides the algorithm, never the token (RFC 8725 §3.1).
    if header.alg != key.alg().as_str() {
        return Err(JwtError::Algorithm);
    }
    let input_len = h.len() + 1 + c.len();
    if !key.verify(&token.as_bytes()[..input_len], &decode(s)?) {
        return Err(JwtError::Signature);
    }
    let claims: AccessClaims =
        serde_json::from_slice(&decode(c)?).map_err(|_| JwtError::Malformed)?;
    if claims.iss != iss {
        return Err(JwtError::Issuer);
    }
    if claims.aud != aud {
        return Err(JwtError::Audience);
    }
    let now = now.unix_seconds();
    if now >= claims.exp {
        return Err(JwtError::Expired);
    }
    if claims.iat > now + LEEWAY_SECS {
        return Err(JwtError::NotYetValid);
    }
    Ok(claims)
}
