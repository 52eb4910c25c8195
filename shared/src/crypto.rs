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

#[cfg(test)]
mod tests {
    use super::*;

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
