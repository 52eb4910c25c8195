//! API token secrets and scopes (docs/api-tokens.md).
//!
//! A secret is `gth_`, 30 random base62 characters (178 bits) and 6 base62 characters of
//! the CRC32 of everything before them: a typo or a truncated paste is refused by
//! [`parse`] without a database read, and leak scanners can check a candidate offline. Only
//! its SHA-256 is stored ([`crate::crypto::token_hash`]).

use secrecy::{ExposeSecret, SecretString};

/// What every secret starts with.
pub const PREFIX: &str = "gth_";
/// Random characters after the prefix: 30 × log2(62) ≈ 178.6 bits, above the 160 API.md asks.
pub const RANDOM_CHARS: usize = 30;
/// Characters of the checksum at the end.
pub const CHECKSUM_CHARS: usize = 6;
/// The length of every secret.
pub const LEN: usize = PREFIX.len() + RANDOM_CHARS + CHECKSUM_CHARS;

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// The CRC32 (IEEE) of `body` in base62, zero-padded to [`CHECKSUM_CHARS`].
fn checksum(body: &str) -> [u8; CHECKSUM_CHARS] {
    let mut n = crc32fast::hash(body.as_bytes());
    let mut out = [b'0'; CHECKSUM_CHARS];
    for c in out.iter_mut().rev() {
        *c = BASE62[(n % 62) as usize];
        n /= 62;
    }
    out
}

/// A new secret. Each random character is drawn uniformly (bytes of 248 and above, which
/// would favour the first characters, are drawn again).
pub fn generate() -> SecretString {
    let mut s = String::with_capacity(LEN);
    s.push_str(PREFIX);
    while s.len() < PREFIX.len() + RANDOM_CHARS {
        for b in crate::crypto::random_bytes::<32>() {
            if b < 248 && s.len() < PREFIX.len() + RANDOM_CHARS {
                s.push(BASE62[(b % 62) as usize] as char);
            }
        }
    }
    let sum = checksum(&s);
    s.extend(sum.iter().map(|&c| c as char));
    SecretString::from(s)
}

/// Whether `raw` has the shape of a secret and its checksum matches: `false` needs no
/// database read to refuse.
pub fn parse(raw: &str) -> bool {
    raw.len() == LEN
        && raw.starts_with(PREFIX)
        && raw[PREFIX.len()..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric())
        && checksum(&raw[..LEN - CHECKSUM_CHARS]).as_slice()
            == &raw.as_bytes()[LEN - CHECKSUM_CHARS..]
}

/// Whether a bearer credential is meant as an API token (rather than an access token).
pub fn looks_like(raw: &str) -> bool {
    raw.starts_with(PREFIX)
}

/// `gth_` and the first 4 and last 4 characters after it, as lists show a secret.
pub fn masked(secret: &SecretString) -> String {
    let s = secret.expose_secret();
    let rest = s.get(PREFIX.len()..).unwrap_or_default();
    let head = rest.get(..4).unwrap_or_default();
    let tail = rest.get(rest.len().saturating_sub(4)..).unwrap_or_default();
    format!("{PREFIX}{head}…{tail}")
}

/// Prefixes no deployment scope may use.
pub const RESERVED: &[&str] = &["users:", "audit:", "settings:", "gatehouse:"];

/// Whether `name` is a well-formed deployment scope: `resource:verb`, each 1 to 32 of
/// `a-z 0-9 _ -` starting with a letter, and not under a reserved prefix.
pub fn valid_app_scope(name: &str) -> bool {
    let part = |p: &str| {
        (1..=32).contains(&p.len())
            && p.starts_with(|c: char| c.is_ascii_lowercase())
            && p.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
    };
    matches!(name.split_once(':'), Some((r, v)) if part(r) && part(v))
        && !RESERVED.iter().any(|p| name.starts_with(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_secret_parses_and_one_changed_character_does_not() {
        for _ in 0..200 {
            let s = generate();
            let raw = s.expose_secret();
            assert_eq!(raw.len(), LEN);
            assert!(parse(raw), "{}", masked(&s));
            for i in PREFIX.len()..LEN {
                let mut b = raw.as_bytes().to_vec();
                b[i] = if b[i] == b'a' { b'b' } else { b'a' };
                let typo = String::from_utf8(b).unwrap_or_default();
                assert!(!parse(&typo), "a typo at {i} went through");
            }
            assert!(!parse(&raw[..LEN - 1]));
            assert!(!parse(&format!("{raw}0")));
        }
        assert!(!parse("gth_"));
        assert!(!parse(&format!("ghp_{}", &generate().expose_secret()[4..])));
    }

    #[test]
    fn every_character_is_drawn_evenly() {
        let mut seen = [0u32; 62];
        for _ in 0..2000 {
            let s = generate();
            for b in s.expose_secret()[PREFIX.len()..PREFIX.len() + RANDOM_CHARS].bytes() {
                let i = BASE62.iter().position(|&c| c == b).unwrap_or(0);
                seen[i] += 1;
            }
        }
        // 60,000 draws: about 968 each; a bias of 248/256 would show far outside this.
        assert!(seen.iter().all(|&n| (800..1140).contains(&n)), "{seen:?}");
    }

    #[test]
    fn the_mask_shows_eight_characters_of_thirty_six() {
        let s = SecretString::from("gth_abcdEFGHijklmnopqrstuvwxyz0123456789".to_owned());
        assert_eq!(masked(&s), "gth_abcd…6789");
    }

    #[test]
    fn app_scopes_are_resource_verb_and_not_reserved() {
        for ok in ["orders:read", "orders:write", "billing-v2:export_all"] {
            assert!(valid_app_scope(ok), "{ok}");
        }
        for bad in [
            "users:read",
            "audit:export",
            "settings:write",
            "gatehouse:admin",
            "orders",
            "Orders:read",
            "orders:",
            ":read",
            "orders:read:all",
            "1orders:read",
            "orders read",
        ] {
            assert!(!valid_app_scope(bad), "{bad}");
        }
    }
}
