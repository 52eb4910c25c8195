//! Small cryptographic helpers: CSPRNG tokens, SHA-256 digests, constant-time equality.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Bytes of entropy in every opaque token (refresh, reset, verification, MFA challenge):
/// 256 bits, comfortably above the 128-bit floor of DESIGN.md and NIST SP 800-63B §5.1.1.
pub const TOKEN_BYTES: usize = 32;

/// Fills a fixed-size array from the operating system's CSPRNG.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    // getrandom only fails when the OS has no entropy source at all; nothing can run then.
    #[allow(clippy::expect_used)]
    getrandom::fill(&mut buf).expect("operating system CSPRNG unavailable");
    buf
}

/// A new opaque secret, base64url without padding.
pub fn random_token() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes::<TOKEN_BYTES>())
}

/// SHA-256 of a token, base64url without padding: what is stored in place of the token.
pub fn token_hash(token: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(token.as_bytes()))
}

/// Constant-time equality for secrets and their digests.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// A secret encrypted at rest with AES-256-GCM under a data key of the key ring.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Sealed {
    /// Which data key (see `KeyRing::data_key_by_id`).
    pub key_id: String,
    /// 96-bit random nonce, fresh for every write (NIST SP 800-38D §8.2.2), base64url.
    pub nonce: String,
    /// Ciphertext and tag, base64url.
    pub ciphertext: String,
}

/// Encrypts `plaintext` bound to `context` (associated data: whose secret it is).
pub fn seal(key_id: &str, key: &[u8; 32], context: &[u8], plaintext: &[u8]) -> Option<Sealed> {
    use aes_gcm::aead::{Aead, KeyInit, Payload};
    let cipher = aes_gcm::Aes256Gcm::new(&(*key).into());
    let nonce = random_bytes::<12>();
    let ct = cipher
        .encrypt(
            &nonce.into(),
            Payload {
                msg: plaintext,
                aad: context,
            },
        )
        .ok()?;
    Some(Sealed {
        key_id: key_id.to_owned(),
        nonce: URL_SAFE_NO_PAD.encode(nonce),
        ciphertext: URL_SAFE_NO_PAD.encode(ct),
    })
}

/// Decrypts what [`seal`] produced with the same key and context; `None` when anything was
/// altered or belongs to another context.
pub fn open(key: &[u8; 32], context: &[u8], sealed: &Sealed) -> Option<Vec<u8>> {
    use aes_gcm::aead::{Aead, KeyInit, Payload};
    let cipher = aes_gcm::Aes256Gcm::new(&(*key).into());
    let nonce: [u8; 12] = URL_SAFE_NO_PAD
        .decode(&sealed.nonce)
        .ok()?
        .try_into()
        .ok()?;
    let ct = URL_SAFE_NO_PAD.decode(&sealed.ciphertext).ok()?;
    cipher
        .decrypt(
            &nonce.into(),
            Payload {
                msg: &ct,
                aad: context,
            },
        )
        .ok()
}

/// HMAC-SHA256 (RFC 2104) of `message` under `key`, base64url.
pub fn mac(key: &[u8; 32], message: &[u8]) -> String {
    use hmac::{KeyInit, Mac};
    let mut m = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    m.update(message);
    URL_SAFE_NO_PAD.encode(m.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_secrets_open_only_with_their_key_and_context() {
        let key = [7u8; 32];
        let sealed = seal("k1", &key, b"usr_a", b"totp seed").unwrap_or_else(|| unreachable!());
        assert_eq!(
            open(&key, b"usr_a", &sealed).as_deref(),
            Some(&b"totp seed"[..])
        );
        assert_eq!(open(&key, b"usr_b", &sealed), None, "bound to its user");
        assert_eq!(open(&[8u8; 32], b"usr_a", &sealed), None);
        let again = seal("k1", &key, b"usr_a", b"totp seed").unwrap_or_else(|| unreachable!());
        assert_ne!(sealed.nonce, again.nonce, "a fresh nonce per write");
        let mut tampered = sealed.clone();
        tampered.ciphertext.replace_range(
            0..1,
            if tampered.ciphertext.starts_with('A') {
                "B"
            } else {
                "A"
            },
        );
        assert_eq!(open(&key, b"usr_a", &tampered), None);
    }

    #[test]
    fn macs_are_deterministic_and_keyed() {
        assert_eq!(mac(&[1; 32], b"m"), mac(&[1; 32], b"m"));
        assert_ne!(mac(&[1; 32], b"m"), mac(&[2; 32], b"m"));
    }

    #[test]
    fn tokens_are_random_and_long() {
        let (a, b) = (random_token(), random_token());
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
    }

    #[test]
    fn token_hash_is_sha256_base64url() {
        // SHA-256("abc") from FIPS 180-2 appendix B.1.
        assert_eq!(
            token_hash("abc"),
            "ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0"
        );
    }

    #[test]
    fn ct_eq_compares_contents() {
        assert!(ct_eq(b"same", b"same"));
        assert!(!ct_eq(b"same", b"diff"));
        assert!(!ct_eq(b"short", b"longer"));
    }
}
