//! The password policy (NIST SP 800-63B §5.1.1.2, docs/passwords.md): a length range
//! counted in characters, any characters, no composition rules; refused when found in a
//! breach corpus or the list of common passwords, when repetitive or sequential (`aaaa…`,
//! `1234…`, `abcd…`, keyboard rows), when built from context (the email, the org's name, the
//! product's name), or when equal to the current password. Never trimmed or truncated.

use secrecy::{ExposeSecret, SecretString};

use crate::domain::Email;

#[derive(Debug, Clone, Copy)]
pub struct PasswordPolicy {
    pub min_len: usize,
}

impl PasswordPolicy {
    /// Never below 8, whatever an operator configures (NIST SP 800-63B §5.1.1.2).
    pub const FLOOR: usize = 8;
    pub const DEFAULT_MIN: usize = 12;
    pub const MAX: usize = 128;

    pub fn new(min_len: usize) -> Self {
        Self {
            min_len: min_len.clamp(Self::FLOOR, Self::MAX),
        }
    }
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        Self::new(Self::DEFAULT_MIN)
    }
}

/// What a new password must not be built from.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    pub email: &'a Email,
    /// The org's name, when there is an org (always but at its creation).
    pub org_name: Option<&'a str>,
    /// The current password, when the caller typed it (a change; a reset checks against the
    /// stored hash instead, see `flows::password`).
    pub current: Option<&'a str>,
}

/// The product's own name, which a password must not be built from either.
const PRODUCT_NAME: &str = "gatehouse";

/// A new password that passed the policy.
#[derive(Debug)]
pub struct NewPassword(SecretString);

impl NewPassword {
    /// Checks every rule and returns all that failed, by stable rule name.
    pub fn parse(
        raw: &str,
        policy: PasswordPolicy,
        ctx: &Context<'_>,
    ) -> Result<Self, Vec<PolicyViolation>> {
        let mut failed = Vec::new();
        let len = raw.chars().count();
        if len < policy.min_len {
            failed.push(PolicyViolation::TooShort {
                min: policy.min_len,
            });
        }
        if len > PasswordPolicy::MAX {
            failed.push(PolicyViolation::TooLong {
                max: PasswordPolicy::MAX,
            });
        }
        let lower = raw.to_lowercase();
        if is_common(&lower) {
            failed.push(PolicyViolation::Common);
        }
        match shape(&lower) {
            Some(Shape::Repetitive) => failed.push(PolicyViolation::Repetitive),
            Some(Shape::Sequential) => failed.push(PolicyViolation::Sequential),
            None => {}
        }
        if built_from_context(&lower, ctx) {
            failed.push(PolicyViolation::Context);
        }
        if ctx.current.is_some_and(|c| c == raw) {
            failed.push(PolicyViolation::Reused);
        }
        if failed.is_empty() {
            Ok(Self(SecretString::from(raw)))
        } else {
            Err(failed)
        }
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

/// The common passwords refused at any length: 19,640 entries from the list Django ships,
/// compiled by Royce Williams (source and licence in `shared/data/README.md`). Lower-case,
/// sorted by bytes, one per line; zlib-compressed by `shared/build.rs` (162 KiB to 57 KiB).
static COMMON_PASSWORDS_Z: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/common-passwords.txt.z"));

/// The common passwords, inflated on first use (about a millisecond), not at cold start.
fn common_passwords() -> &'static str {
    static TEXT: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| inflate(COMMON_PASSWORDS_Z));
    &TEXT
}

/// A bundled file that `shared/build.rs` compressed (this list, and the deployed OpenAPI
/// document); empty if it does not inflate to UTF-8 (the tests inflate each against its source).
pub(crate) fn inflate(packed: &[u8]) -> String {
    miniz_oxide::inflate::decompress_to_vec_zlib(packed)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .unwrap_or_default()
}

/// Whether `lower` (lower-cased) is a common password or in the breach corpus
/// ([`crate::breached`]). Both are indexed on first use, not at cold start.
pub fn is_common(lower: &str) -> bool {
    static LIST: std::sync::LazyLock<Vec<&'static str>> =
        std::sync::LazyLock::new(|| common_passwords().lines().collect());
    LIST.binary_search(&lower).is_ok() || crate::breached::is_breached(lower)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyViolation {
    TooShort { min: usize },
    TooLong { max: usize },
    Common,
    Repetitive,
    Sequential,
    Context,
    Reused,
}

impl PolicyViolation {
    pub fn rule(&self) -> &'static str {
        match self {
            Self::TooShort { .. } => "min_length",
            Self::TooLong { .. } => "max_length",
            Self::Common => "common_password",
            Self::Repetitive => "repetitive",
            Self::Sequential => "sequential",
            Self::Context => "context",
            Self::Reused => "reused",
        }
    }

    pub fn message(&self) -> String {
        match self {
            Self::TooShort { min } => format!("must be at least {min} characters"),
            Self::TooLong { max } => format!("must be at most {max} characters"),
            Self::Common => "is on a list of passwords from real breaches, which attackers try \
                             first"
                .into(),
            Self::Repetitive => {
                "is a character or a short group of characters repeated; choose something \
                 less regular"
                    .into()
            }
            Self::Sequential => "is made of sequences or keyboard rows (abcd, 1234, qwerty)".into(),
            Self::Context => "must not be built from your email address, your organization's \
                              name or the product's name"
                .into(),
            Self::Reused => "must differ from your current password".into(),
        }
    }
}

/// A password with too little in it besides patterns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Repetitive,
    Sequential,
}

/// Keyboard rows (US layout, the shifted row too), in which neighbours form runs like
/// `qwerty` or `asdf`, forwards or backwards.
const ROWS: [&str; 8] = [
    "`1234567890-=",
    "qwertyuiop[]\\",
    "asdfghjkl;'",
    "zxcvbnm,./",
    "~!@#$%^&*()_+",
    "qwertyuiop{}|",
    "asdfghjkl:\"",
    "zxcvbnm<>?",
];

/// How `b` can follow `a` in a run, as a set of ways: the same character, the next or
/// previous letter or digit (`9` then `0` counts), or the right or left neighbour on a
/// keyboard row. A run keeps to one way (`fg` is both a sequence and a keyboard step; `fgh`
/// is a run of keyboard steps, `fgh…` of both).
fn step(a: char, b: char) -> u8 {
    const REPEAT: u8 = 1;
    const UP: u8 = 2;
    const DOWN: u8 = 4;
    const RIGHT: u8 = 8;
    const LEFT: u8 = 16;
    if a == b {
        return REPEAT;
    }
    let mut ways = 0;
    let (ua, ub) = (u32::from(a), u32::from(b));
    let same_class = (a.is_ascii_lowercase() && b.is_ascii_lowercase())
        || (a.is_ascii_digit() && b.is_ascii_digit());
    if same_class {
        if ub == ua + 1 || (a == '9' && b == '0') {
            ways |= UP;
        }
        if ua == ub + 1 || (a == '0' && b == '9') {
            ways |= DOWN;
        }
    }
    for row in ROWS {
        if let (Some(i), Some(j)) = (row.find(a), row.find(b)) {
            if j == i + 1 {
                ways |= RIGHT;
            }
            if i == j + 1 {
                ways |= LEFT;
            }
        }
    }
    ways
}

/// The fewest pieces `s` splits into, where a piece is one character, or a run of at least
/// three (one character repeated, a sequence, a keyboard row), or a block of up to four
/// characters written at least twice in a row (`abab`, `123123`). A random password needs
/// about one piece per character; `qwertyuiop123` needs two.
fn pieces(s: &[char]) -> usize {
    let n = s.len();
    let mut best = vec![usize::MAX; n + 1];
    best[0] = 0;
    for i in 0..n {
        if best[i] == usize::MAX {
            continue;
        }
        let here = best[i] + 1;
        // One character.
        best[i + 1] = best[i + 1].min(here);
        // A run that keeps to one way.
        if i + 1 < n {
            let mut ways = step(s[i], s[i + 1]);
            let mut j = i + 1;
            while ways != 0 && j + 1 < n && ways & step(s[j], s[j + 1]) != 0 {
                ways &= step(s[j], s[j + 1]);
                j += 1;
            }
            if ways != 0 && j >= i + 2 {
                for b in &mut best[i + 3..=j + 1] {
                    *b = (*b).min(here);
                }
            }
        }
        // A short block repeated.
        for block in 2..=4 {
            let mut end = i + 2 * block;
            while end <= n && s[end - block..end] == s[i..i + block] {
                best[end] = best[end].min(here);
                end += block;
            }
        }
    }
    best[n]
}

/// Whether `s` is one block repeated (`aaaaaaaaaaaa`, `abcabcabcabc`, `passwordpassword`).
fn is_repetition(s: &[char]) -> bool {
    let n = s.len();
    (1..=n / 2).any(|p| n.is_multiple_of(p) && s.chunks(p).all(|c| c == &s[..p]))
}

/// The patterns a password is built from, when little else is in it: at most a quarter as
/// many pieces as characters (at least 3 allowed).
fn shape(lower: &str) -> Option<Shape> {
    let chars: Vec<char> = lower.chars().collect();
    if chars.len() < 3 {
        return None;
    }
    if is_repetition(&chars) {
        return Some(Shape::Repetitive);
    }
    (pieces(&chars) <= (chars.len() / 4).max(3)).then_some(Shape::Sequential)
}

/// Whether the password is built from context: it holds the email's local part (the user
/// name, 3 characters or more) or the product's name; or, once every other context word (the
/// parts of the local part, the domain's first label, the org's name and its words; 3
/// characters or more) is taken out, fewer than 6 characters are left, or only a pattern.
fn built_from_context(lower: &str, ctx: &Context<'_>) -> bool {
    let local = ctx.email.local_part();
    if (local.chars().count() >= 3 && lower.contains(local)) || lower.contains(PRODUCT_NAME) {
        return true;
    }
    let mut words: Vec<String> = local
        .split(['.', '_', '-', '+'])
        .map(str::to_owned)
        .collect();
    if let Some((_, domain)) = ctx.email.as_str().rsplit_once('@') {
        words.extend(domain.split('.').next().map(str::to_owned));
    }
    if let Some(org) = ctx.org_name {
        let org = org.to_lowercase();
        words.extend(org.split(|c: char| !c.is_alphanumeric()).map(str::to_owned));
        words.push(org.split_whitespace().collect::<String>());
        words.push(org);
    }
    words.retain(|w| w.chars().count() >= 3);
    // Longest first, so that the whole name goes before its words.
    words.sort_by_key(|w| std::cmp::Reverse(w.len()));
    let mut rest = lower.to_owned();
    for w in &words {
        rest = rest.replace(w.as_str(), " ");
    }
    if rest == lower {
        return false;
    }
    let left: String = rest.chars().filter(|c| !c.is_whitespace()).collect();
    left.chars().count() < 6 || shape(&left).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn email() -> Email {
        Email::parse("alice@example.com").unwrap_or_else(|e| unreachable!("{e:?}"))
    }

    fn ctx(email: &Email) -> Context<'_> {
        Context {
            email,
            org_name: Some("Acme Widgets"),
            current: Some("my current passphrase"),
        }
    }

    fn rules(pw: &str) -> Vec<&'static str> {
        let e = email();
        match NewPassword::parse(pw, PasswordPolicy::default(), &ctx(&e)) {
            Ok(_) => Vec::new(),
            Err(v) => v.iter().map(PolicyViolation::rule).collect(),
        }
    }

    #[test]
    fn the_issue_examples_are_refused() {
        for (pw, rule) in [
            ("123456789012", "sequential"),
            ("aaaaaaaaaaaa", "repetitive"),
            ("abcdefghijkl", "sequential"),
            ("qwertyuiop123", "sequential"),
            ("Acme Widgets 2026", "context"),
            ("acmewidgets!!", "context"),
            ("alice@example.com1", "context"),
            ("my name is ALICE!", "context"),
            ("example!2026", "context"),
            ("gatehouse2026!", "context"),
            ("my current passphrase", "reused"),
        ] {
            assert!(rules(pw).contains(&rule), "{pw}: {:?}", rules(pw));
        }
    }

    #[test]
    fn every_failed_rule_is_listed() {
        assert_eq!(
            rules("alice"),
            ["min_length", "common_password", "context"],
            "{:?}",
            rules("alice")
        );
        let long = "x".repeat(129);
        assert_eq!(rules(&long), ["max_length", "repetitive"]);
    }

    #[test]
    fn breached_passwords_of_every_length_are_refused() {
        for pw in ["iloveyou1234", "password1234", "1q2w3e4r5t6y", "Password1"] {
            assert!(rules(pw).contains(&"common_password"), "{pw}");
        }
        assert!(is_common("1qaz2wsx3edc"));
    }

    #[test]
    fn ordinary_passphrases_and_random_passwords_pass() {
        for pw in [
            "correct horse battery staple",
            "  correct horse 🐎 battery staple  ",
            "Tr0ub4dor&3-purple",
            "x7#Kp2!mQz9&",
            "my dog acme eats widgets daily", // context words with plenty besides
            "zxcv-lantern-obelisk",           // a short keyboard run among words
        ] {
            assert_eq!(rules(pw), Vec::<&str>::new(), "{pw}");
        }
    }

    #[test]
    fn patterns_mixed_together_are_still_patterns() {
        for pw in [
            "aaaa1111bbbb",
            "abcabcabcabc",
            "0987654321poiu",
            "asdfghjkl;'zxcv",
            "121212121212",
            "passwordpassword",
        ] {
            assert!(
                rules(pw)
                    .iter()
                    .any(|r| *r == "repetitive" || *r == "sequential"),
                "{pw}: {:?}",
                rules(pw)
            );
        }
    }

    #[test]
    fn passphrases_with_spaces_and_emoji_are_kept_exactly() {
        let raw = "  correct horse 🐎 battery staple  ";
        let e = email();
        let p = NewPassword::parse(raw, PasswordPolicy::default(), &ctx(&e));
        assert_eq!(p.map(|p| p.expose().to_owned()).ok(), Some(raw.to_owned()));
    }

    #[test]
    fn policy_minimum_never_drops_below_eight() {
        assert_eq!(PasswordPolicy::new(4).min_len, 8);
    }

    #[test]
    fn the_common_password_list_is_sorted_lower_case_and_large() {
        assert_eq!(
            common_passwords(),
            include_str!("../data/common-passwords.txt"),
            "the bundled copy inflates to the file"
        );
        let entries: Vec<&str> = common_passwords().lines().collect();
        assert!(entries.len() >= 10_000, "{}", entries.len());
        assert!(
            entries.windows(2).all(|w| w[0] < w[1]),
            "sorted, no duplicates"
        );
        assert!(
            entries
                .iter()
                .all(|e| !e.is_empty() && *e == e.to_lowercase())
        );
    }
}
