//! The breach corpus: whether a password is among the passwords of real breaches
//! (NIST SP 800-63B §5.1.1.2), against the bundled filter `shared/data/breached-passwords.bin`
//! (built by `tools/breached`, whose README gives the source, its licence and how to
//! regenerate it). 474,743 distinct passwords of 8 characters or more, in 592 KiB.
//!
//! The filter answers "is this lower-cased password in the breach corpus?" with no false
//! negatives and a small false-positive rate that depends on the password's length (the file
//! holds one binary fuse filter per range of lengths; the default file uses 8-bit fingerprints,
//! ≈1/256, for 8–11 characters and 16-bit fingerprints, ≈1/65,536, for 12 and more).
//! A password whose length no section covers (fewer than 8 characters) is never reported.
//!
//! Dependencies: `std` and `sha2` only. The lookup is the binary fuse filter query of the
//! `xorf` crate 0.13 (murmur3 finaliser, `hash_of_hash`, `fingerprint = h ^ (h >> 32)`),
//! re-implemented here over the raw little-endian bytes: no `xorf`, no serde, no unsafe, no
//! alignment requirement, no allocation at all, and every slice access is checked, so a
//! malformed file makes `contains` return `false` instead of panicking. The generator checks
//! this code against `xorf` for every entry and for random keys each time it writes the file.
//!
//! # File format (version 1, all integers little endian)
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 8 | magic `GHBREACH` |
//! | 8 | 2 | format version = 1 |
//! | 10 | 1 | key scheme = 1: key = first 8 bytes (LE u64) of SHA-256 of the lower-cased UTF-8 password |
//! | 11 | 1 | section count (1..=8) |
//! | 12 | 4 | total entries (informational) |
//! | 16 | 40 × count | section table, see below |
//! | … | … | fingerprint arrays (u8, or u16 LE), at the offsets the table gives |
//!
//! Section (40 bytes): `min_chars` u16, `max_chars` u16 (inclusive, 0xFFFF = no limit), both
//! counted in Unicode scalar values (`str::chars`); `fingerprint_bits` u8 (8 or 16); 3 reserved
//! bytes; `entries` u32; `seed` u64; `segment_length` u32; `segment_length_mask` u32;
//! `segment_count_length` u32; `fingerprint_count` u32; `data_offset` u32 (from file start).

use std::sync::LazyLock;

use sha2::{Digest, Sha256};

/// The bundled filter file.
static BUNDLED: &[u8] = include_bytes!("../data/breached-passwords.bin");

/// Whether `password`, compared without regard to case, is in the bundled breach corpus.
/// The file's header is parsed on first use, not at cold start; a lookup allocates only the
/// lower-cased copy.
pub fn is_breached(password: &str) -> bool {
    static FILTER: LazyLock<Option<Filter<'static>>> = LazyLock::new(|| Filter::parse(BUNDLED));
    FILTER
        .as_ref()
        .is_some_and(|f| f.contains(&password.to_lowercase()))
}

const MAGIC: [u8; 8] = *b"GHBREACH";
const VERSION: u16 = 1;
const KEY_SCHEME_SHA256_LE64: u8 = 1;
const HEADER_LEN: usize = 16;
const SECTION_LEN: usize = 40;
const MAX_SECTIONS: usize = 8;
const UNBOUNDED: u16 = u16::MAX;

/// One binary fuse filter covering passwords of `min_chars..=max_chars` characters.
#[derive(Clone, Copy, Debug, Default)]
struct Section {
    min_chars: usize,
    max_chars: usize,
    fingerprint_bytes: usize,
    seed: u64,
    segment_length: u32,
    segment_length_mask: u32,
    segment_count_length: u32,
    data_offset: usize,
    fingerprint_count: usize,
}

/// A parsed filter file: its bytes and its sections.
#[derive(Clone, Copy, Debug)]
pub struct Filter<'a> {
    bytes: &'a [u8],
    sections: [Section; MAX_SECTIONS],
    count: usize,
}

impl<'a> Filter<'a> {
    /// Parses and checks a filter file's header; `None` for a malformed or unknown file.
    pub fn parse(bytes: &'a [u8]) -> Option<Self> {
        let (sections, count) = parse_sections(bytes)?;
        Some(Self {
            bytes,
            sections,
            count,
        })
    }

    /// Whether `password_lowercase` (lower-cased with `str::to_lowercase`) is in the filter;
    /// `false` for a length no section covers.
    pub fn contains(&self, password_lowercase: &str) -> bool {
        let chars = password_lowercase.chars().count();
        let Some(section) = self.sections.get(..self.count).and_then(|s| {
            s.iter()
                .find(|s| s.min_chars <= chars && chars <= s.max_chars)
        }) else {
            return false;
        };
        let Some(key) = key_of(password_lowercase) else {
            return false;
        };
        query(self.bytes, section, key)
    }
}

/// The filter key of a lower-cased password: the first 8 bytes of its SHA-256, little endian.
fn key_of(password_lowercase: &str) -> Option<u64> {
    let digest = Sha256::digest(password_lowercase.as_bytes());
    let first: [u8; 8] = digest.get(..8)?.try_into().ok()?;
    Some(u64::from_le_bytes(first))
}

/// `xorf` 0.13 `bfuse_contains_impl`, with checked reads.
fn query(bytes: &[u8], s: &Section, key: u64) -> bool {
    let hash = mix64(key.wrapping_add(s.seed));
    let (h0, h1, h2) = hash_of_hash(
        hash,
        s.segment_length,
        s.segment_length_mask,
        s.segment_count_length,
    );
    let fingerprint = hash ^ (hash >> 32);
    let at = |index: u32| -> Option<u16> {
        let index = index as usize;
        if index >= s.fingerprint_count {
            return None;
        }
        let start = s
            .data_offset
            .checked_add(index.checked_mul(s.fingerprint_bytes)?)?;
        match s.fingerprint_bytes {
            1 => bytes.get(start).map(|b| u16::from(*b)),
            2 => {
                let pair = bytes.get(start..start.checked_add(2)?)?;
                Some(u16::from_le_bytes([*pair.first()?, *pair.get(1)?]))
            }
            _ => None,
        }
    };
    let (Some(a), Some(b), Some(c)) = (at(h0), at(h1), at(h2)) else {
        return false;
    };
    let mask: u16 = if s.fingerprint_bytes == 1 {
        0xFF
    } else {
        0xFFFF
    };
    (fingerprint as u16 & mask) ^ a ^ b ^ c == 0
}

/// MurmurHash3's 64-bit finaliser (`xorf::prelude::mix` applies it to `key + seed`).
const fn mix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^= k >> 33;
    k
}

/// `xorf::prelude::bfuse::hash_of_hash` (wrapping adds: identical on a validated header).
const fn hash_of_hash(
    hash: u64,
    segment_length: u32,
    segment_length_mask: u32,
    segment_count_length: u32,
) -> (u32, u32, u32) {
    let hi = ((hash as u128 * segment_count_length as u128) >> 64) as u64;
    let h0 = hi as u32;
    let mut h1 = h0.wrapping_add(segment_length);
    let mut h2 = h1.wrapping_add(segment_length);
    h1 ^= ((hash >> 18) as u32) & segment_length_mask;
    h2 ^= (hash as u32) & segment_length_mask;
    (h0, h1, h2)
}

fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(
        bytes.get(at..at.checked_add(2)?)?.try_into().ok()?,
    ))
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        bytes.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        bytes.get(at..at.checked_add(8)?)?.try_into().ok()?,
    ))
}

fn parse_sections(bytes: &[u8]) -> Option<([Section; MAX_SECTIONS], usize)> {
    if bytes.get(..8)? != MAGIC
        || u16_at(bytes, 8)? != VERSION
        || *bytes.get(10)? != KEY_SCHEME_SHA256_LE64
    {
        return None;
    }
    let count = usize::from(*bytes.get(11)?);
    if count == 0 || count > MAX_SECTIONS {
        return None;
    }
    let table_end = HEADER_LEN.checked_add(count.checked_mul(SECTION_LEN)?)?;
    if table_end > bytes.len() {
        return None;
    }
    let mut sections = [Section::default(); MAX_SECTIONS];
    for (i, slot) in sections.iter_mut().take(count).enumerate() {
        let at = HEADER_LEN + i * SECTION_LEN;
        let min_chars = u16_at(bytes, at)?;
        let max_chars = u16_at(bytes, at + 2)?;
        let fingerprint_bytes = match *bytes.get(at + 4)? {
            8 => 1,
            16 => 2,
            _ => return None,
        };
        // at + 5..at + 8 reserved; at + 8: entries (informational).
        let seed = u64_at(bytes, at + 12)?;
        let segment_length = u32_at(bytes, at + 20)?;
        let segment_length_mask = u32_at(bytes, at + 24)?;
        let segment_count_length = u32_at(bytes, at + 28)?;
        let fingerprint_count = u32_at(bytes, at + 32)?;
        let data_offset = u32_at(bytes, at + 36)?;
        // What makes h0, h1, h2 < fingerprint_count for every hash (h0 < segment_count_length;
        // h1, h2 stay inside the next two segments), so no u32 overflow either.
        let needed = u64::from(segment_count_length) + 2 * u64::from(segment_length);
        let data_len = usize::try_from(fingerprint_count)
            .ok()?
            .checked_mul(fingerprint_bytes)?;
        let data_end = usize::try_from(data_offset).ok()?.checked_add(data_len)?;
        if min_chars > max_chars
            || !segment_length.is_power_of_two()
            || segment_length_mask != segment_length - 1
            || segment_count_length == 0
            || segment_count_length % segment_length != 0
            || u64::from(fingerprint_count) < needed
            || (data_offset as usize) < table_end
            || data_end > bytes.len()
        {
            return None;
        }
        *slot = Section {
            min_chars: usize::from(min_chars),
            max_chars: if max_chars == UNBOUNDED {
                usize::MAX
            } else {
                usize::from(max_chars)
            },
            fingerprint_bytes,
            seed,
            segment_length,
            segment_length_mask,
            segment_count_length,
            data_offset: data_offset as usize,
            fingerprint_count: fingerprint_count as usize,
        };
    }
    Some((sections, count))
}

#[cfg(test)]
mod tests {
    use super::*;

    static FILTER: &[u8] = BUNDLED;

    fn contains(bytes: &[u8], password: &str) -> bool {
        Filter::parse(bytes).is_some_and(|f| f.contains(password))
    }

    /// Deterministic pseudo-random generator (SplitMix64), so the counts below never change.
    fn splitmix64(state: &mut u64) -> u64 {
        *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn random_string(state: &mut u64, len: usize) -> String {
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789!#%&*+-=?@^_~";
        (0..len)
            .map(|_| char::from(ALPHABET[(splitmix64(state) % ALPHABET.len() as u64) as usize]))
            .collect()
    }

    fn false_positives(seed: u64, lengths: std::ops::RangeInclusive<usize>, n: usize) -> usize {
        let mut state = seed;
        let span = (lengths.end() - lengths.start() + 1) as u64;
        (0..n)
            .filter(|_| {
                let len = lengths.start() + (splitmix64(&mut state) % span) as usize;
                contains(FILTER, &random_string(&mut state, len))
            })
            .count()
    }

    #[test]
    fn the_bundled_file_parses() {
        assert!(
            Filter::parse(FILTER).is_some(),
            "breached-passwords.bin did not parse"
        );
        assert!(is_breached("Password1234"), "any case");
    }

    #[test]
    fn breached_passwords_are_found() {
        // All in the Xato/Burnett top-1M list (line number in that list in the comment).
        for known in [
            "password",           // 2
            "12345678",           // 3
            "baseball",           // 12
            "trustno1",           // 37
            "iloveyou",           // 50
            "1qaz2wsx3edc",       // 1,472
            "1q2w3e4r5t6y",       // 2,020
            "mailcreated5240",    // 2,202 (listed as "Mailcreated5240")
            "qwerty123456",       // 2,749
            "123456789987654321", // 10,386
            "123456789012",       // 17,404
            "password1234",       // 31,873
            "qwertyuiop123",      // 36,911
            "iloveyou1234",       // 214,907
        ] {
            assert!(contains(FILTER, known), "{known} should be in the filter");
        }
    }

    #[test]
    fn passwords_shorter_than_the_covered_lengths_are_never_reported() {
        for short in ["", "123456", "qwerty", "abc123", "1234567"] {
            assert!(!contains(FILTER, short), "{short:?}");
        }
    }

    #[test]
    fn random_passphrases_are_not_found() {
        for phrase in [
            "correct horse battery staple",
            "correct horse battery staple!",
            "purple monkey dishwasher lantern",
            "tangerine-obelisk-marmalade-42",
            "zq8#vT1!mR4$pL7@",
        ] {
            assert!(!contains(FILTER, phrase), "{phrase}");
        }
    }

    #[test]
    fn the_false_positive_rate_is_as_expected_for_12_chars_and_more() {
        // 16-bit fingerprints: expected 10,000 / 65,536 ≈ 0.15 hits.
        let hits = false_positives(0x5eed_0012, 12..=24, 10_000);
        assert!(
            hits <= 3,
            "{hits} false positives in 10,000 random strings of 12-24 chars"
        );
    }

    #[test]
    fn the_false_positive_rate_is_as_expected_for_8_to_11_chars() {
        // 8-bit fingerprints: expected 10,000 / 256 ≈ 39 hits (σ ≈ 6.2).
        let hits = false_positives(0x5eed_0008, 8..=11, 10_000);
        assert!(
            (10..=75).contains(&hits),
            "{hits} false positives in 10,000 random strings of 8-11 chars"
        );
    }

    #[test]
    fn a_malformed_file_answers_false_without_panicking() {
        let truncated: &'static [u8] = FILTER.get(..FILTER.len() - 1).unwrap_or_default();
        let header_only: &'static [u8] = FILTER.get(..HEADER_LEN).unwrap_or_default();
        let mut inputs: Vec<&'static [u8]> = vec![&[], b"GHBREACH", header_only, truncated];
        // Corrupt each header and section-table byte in turn (to 0x00 and to 0xFF).
        let table_end = HEADER_LEN + usize::from(FILTER[11]) * SECTION_LEN;
        for at in 0..table_end {
            for value in [0x00, 0xFF] {
                let mut copy = FILTER.to_vec();
                copy[at] = value;
                inputs.push(Box::leak(copy.into_boxed_slice()));
            }
        }
        for bytes in &inputs {
            for password in ["password1234", "iloveyou", "correct horse battery staple"] {
                let _ = contains(bytes, password); // must not panic
            }
        }
        for bytes in &inputs[..4] {
            assert!(!contains(bytes, "password1234"));
        }
        let mut bad_magic = FILTER.to_vec();
        bad_magic[0] = b'X';
        assert!(!contains(
            Box::leak(bad_magic.into_boxed_slice()),
            "password1234"
        ));
        let mut bad_version = FILTER.to_vec();
        bad_version[8] = 2;
        assert!(!contains(
            Box::leak(bad_version.into_boxed_slice()),
            "password1234"
        ));
        // The bundled file still answers after all that.
        assert!(contains(FILTER, "password1234"));
    }

    #[test]
    fn the_key_is_the_little_endian_sha256_prefix() {
        // SHA-256("password") = 5e884898da280471...
        assert_eq!(key_of("password"), Some(0x7104_28da_9848_885e));
    }
}
