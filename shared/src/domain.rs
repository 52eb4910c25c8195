//! Domain types that parse: invalid values cannot exist past the edge.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

/// Why a value was refused; `message` is safe to show to the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid(pub String);

impl Invalid {
    fn new(msg: impl Into<String>) -> Self {
        Self(msg.into())
    }
}

/// An email address, trimmed and lower-cased: the account's identity for sign-in.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Email(String);

impl Email {
    /// RFC 5321 §4.5.3.1.3 limits a path to 256 octets, hence 254 for the address.
    pub const MAX_LEN: usize = 254;

    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let s = raw.trim();
        if s.is_empty() {
            return Err(Invalid::new("must not be empty"));
        }
        if s.len() > Self::MAX_LEN {
            return Err(Invalid::new("must be at most 254 characters"));
        }
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(Invalid::new(
                "must not contain spaces or control characters",
            ));
        }
        let Some((local, domain)) = s.rsplit_once('@') else {
            return Err(Invalid::new("must be an email address"));
        };
        let domain_ok = !domain.is_empty()
            && domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains("..")
            && !domain.contains('@');
        if local.is_empty() || local.len() > 64 || local.contains('@') || !domain_ok {
            return Err(Invalid::new("must be an email address"));
        }
        Ok(Self(s.to_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn local_part(&self) -> &str {
        self.0.rsplit_once('@').map_or(&self.0, |(l, _)| l)
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The password rules of DESIGN.md (NIST SP 800-63B §5.1.1.2): a length range, no composition
/// rules, not a common password, not the email's local part; never trimmed or truncated.
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

/// A new password that passed the policy. Length is counted in Unicode scalar values.
#[derive(Debug)]
pub struct NewPassword(SecretString);

impl NewPassword {
    /// Checks every rule and returns all that failed, by stable rule name.
    pub fn parse(
        raw: &str,
        policy: PasswordPolicy,
        email: &Email,
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
        if is_common(raw) {
            failed.push(PolicyViolation::Common);
        }
        let local = email.local_part();
        if local.chars().count() >= 3 && raw.to_lowercase().contains(local) {
            failed.push(PolicyViolation::ContainsEmail);
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

/// The common passwords refused: 19,640 entries from the list Django ships, compiled by
/// Royce Williams (source and licence in `shared/data/README.md`). Lower-case, sorted by bytes,
/// one per line.
const COMMON_PASSWORDS: &str = include_str!("../data/common-passwords.txt");

/// Whether `password`, compared without regard to case, is on the bundled list. The list is
/// indexed on first use, not at cold start.
pub fn is_common(password: &str) -> bool {
    static LIST: std::sync::LazyLock<Vec<&'static str>> =
        std::sync::LazyLock::new(|| COMMON_PASSWORDS.lines().collect());
    LIST.binary_search(&password.to_lowercase().as_str())
        .is_ok()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyViolation {
    TooShort { min: usize },
    TooLong { max: usize },
    Common,
    ContainsEmail,
}

impl PolicyViolation {
    pub fn rule(&self) -> &'static str {
        match self {
            Self::TooShort { .. } => "min_length",
            Self::TooLong { .. } => "max_length",
            Self::Common => "common_password",
            Self::ContainsEmail => "contains_email",
        }
    }

    pub fn message(&self) -> String {
        match self {
            Self::TooShort { min } => format!("must be at least {min} characters"),
            Self::TooLong { max } => format!("must be at most {max} characters"),
            Self::Common => {
                "is too common: it is on a list of passwords attackers try first".into()
            }
            Self::ContainsEmail => "must not contain your email address".into(),
        }
    }
}

/// A password offered at sign-in: any string up to a generous bound, verified exactly as typed.
#[derive(Debug)]
pub struct LoginPassword(SecretString);

impl LoginPassword {
    /// Bounds argon2 input at sign-in (4 KiB at most); no stored password can be longer than
    /// 128 characters, so nothing valid is refused. Counted in characters, as the OpenAPI
    /// document's `maxLength` is.
    pub const MAX_CHARS: usize = 1024;

    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        if raw.is_empty() {
            return Err(Invalid::new("must not be empty"));
        }
        if raw.chars().count() > Self::MAX_CHARS {
            return Err(Invalid::new("must be at most 1024 characters"));
        }
        Ok(Self(SecretString::from(raw)))
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgName(String);

impl OrgName {
    pub const MAX_LEN: usize = 100;

    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let s = raw.trim();
        if s.is_empty() {
            return Err(Invalid::new("must not be empty"));
        }
        if s.chars().count() > Self::MAX_LEN {
            return Err(Invalid::new("must be at most 100 characters"));
        }
        if s.chars().any(char::is_control) {
            return Err(Invalid::new("must not contain control characters"));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A TOTP code as typed: six digits; spaces (as apps display `123 456`) are ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TotpCode(String);

impl TotpCode {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let s: String = raw.chars().filter(|c| *c != ' ').collect();
        if s.len() == usize::from(crate::totp::DIGITS) && s.bytes().all(|b| b.is_ascii_digit()) {
            Ok(Self(s))
        } else {
            Err(Invalid::new(
                "must be the 6-digit code from your authenticator app",
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A single-use recovery code, `xxxxx-xxxxx`: 10 characters of Crockford's base32 (50 bits),
/// no characters that read alike. Parsing forgives case, dashes, spaces and i/l/o for 1/1/0.
#[derive(Clone, PartialEq, Eq)]
pub struct RecoveryCode(String);

impl fmt::Debug for RecoveryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RecoveryCode(…)")
    }
}

impl RecoveryCode {
    const ALPHABET: &'static [u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
    const LEN: usize = 10;

    pub fn generate() -> Self {
        let bytes = crate::crypto::random_bytes::<{ Self::LEN }>();
        Self(
            bytes
                .iter()
                .map(|b| char::from(Self::ALPHABET[usize::from(b & 31)]))
                .collect(),
        )
    }

    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let mut s = String::with_capacity(Self::LEN);
        for c in raw.chars().filter(|c| !matches!(c, '-' | ' ')) {
            let c = match c.to_ascii_lowercase() {
                'i' | 'l' => '1',
                'o' => '0',
                c => c,
            };
            if !c.is_ascii() || !Self::ALPHABET.contains(&(c as u8)) {
                return Err(Invalid::new("must be a recovery code like abcde-12345"));
            }
            s.push(c);
        }
        if s.len() == Self::LEN {
            Ok(Self(s))
        } else {
            Err(Invalid::new("must be a recovery code like abcde-12345"))
        }
    }

    /// The canonical form that is hashed: ten characters, no dash.
    pub fn canonical(&self) -> &str {
        &self.0
    }

    /// The form shown to the user once: `xxxxx-xxxxx`.
    pub fn display(&self) -> String {
        format!("{}-{}", &self.0[..5], &self.0[5..])
    }
}

macro_rules! id_type {
    ($name:ident, $prefix:literal) => {
        #[doc = concat!("An opaque identifier, `", $prefix, "_` followed by a UUIDv7 in hex.")]
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn new() -> Self {
                Self(format!(concat!($prefix, "_{}"), uuid::Uuid::now_v7().simple()))
            }

            /// Accepts only the shape this type generates, so ids from outside cannot carry
            /// key separators or other surprises into storage keys.
            pub fn parse(raw: &str) -> Option<Self> {
                let hex = raw.strip_prefix(concat!($prefix, "_"))?;
                (hex.len() == 32 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
                    .then(|| Self(raw.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id_type!(UserId, "usr");
id_type!(OrgId, "org");
id_type!(SessionId, "ses");
id_type!(EventId, "evt");
id_type!(ChallengeId, "mfc");

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Owner,
    Admin,
    Member,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Owner => "owner",
            Self::Admin => "admin",
            Self::Member => "member",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountStatus {
    Active,
    Disabled,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn email() -> Email {
        Email::parse("alice@example.com").unwrap_or_else(|e| unreachable!("{e:?}"))
    }

    #[test]
    fn email_is_trimmed_and_lowercased() {
        let e = Email::parse("  Alice@Example.COM ").map(|e| e.to_string());
        assert_eq!(e, Ok("alice@example.com".to_string()));
    }

    #[test]
    fn malformed_emails_are_refused() {
        for bad in [
            "",
            "alice",
            "@example.com",
            "alice@",
            "alice@localhost",
            "a b@example.com",
            "alice@example..com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn password_policy_lists_every_failed_rule() {
        let err = NewPassword::parse("alice", PasswordPolicy::default(), &email()).err();
        assert_eq!(
            err,
            Some(vec![
                PolicyViolation::TooShort { min: 12 },
                PolicyViolation::Common,
                PolicyViolation::ContainsEmail
            ])
        );
        let long = "x".repeat(129);
        let err = NewPassword::parse(&long, PasswordPolicy::default(), &email()).err();
        assert_eq!(err, Some(vec![PolicyViolation::TooLong { max: 128 }]));
    }

    #[test]
    fn the_common_password_list_is_sorted_lower_case_and_large() {
        let entries: Vec<&str> = COMMON_PASSWORDS.lines().collect();
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

    #[test]
    fn common_passwords_are_refused_whatever_their_case() {
        for common in ["1qaz2wsx3edc", "Administrator", "CHRISTOPHER1", "password"] {
            assert!(is_common(common), "{common}");
        }
        assert!(!is_common("correct horse battery staple"));
        let policy = PasswordPolicy::new(8);
        let err = NewPassword::parse("Password1", policy, &email()).err();
        assert_eq!(err, Some(vec![PolicyViolation::Common]));
    }

    #[test]
    fn passphrases_with_spaces_and_emoji_are_kept_exactly() {
        let raw = "  correct horse 🐎 battery staple  ";
        let p = NewPassword::parse(raw, PasswordPolicy::default(), &email());
        assert_eq!(p.map(|p| p.expose().to_owned()).ok(), Some(raw.to_owned()));
    }

    #[test]
    fn policy_minimum_never_drops_below_eight() {
        assert_eq!(PasswordPolicy::new(4).min_len, 8);
    }

    #[test]
    fn totp_codes_are_six_digits_and_spaces_are_ignored() {
        assert_eq!(
            TotpCode::parse("123 456").map(|c| c.as_str().to_owned()),
            Ok("123456".into())
        );
        for bad in ["12345", "1234567", "12a456", ""] {
            assert!(TotpCode::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn recovery_codes_are_easy_to_type_back() {
        let code = RecoveryCode::generate();
        let shown = code.display();
        assert_eq!(shown.len(), 11);
        assert_eq!(RecoveryCode::parse(&shown.to_uppercase()), Ok(code.clone()));
        assert_eq!(RecoveryCode::parse(&shown.replace('-', " ")), Ok(code));
        assert_eq!(
            RecoveryCode::parse("abcde-fghij").map(|c| c.canonical().to_owned()),
            Ok("abcdefgh1j".into())
        );
        assert!(RecoveryCode::parse("abcde-fghi").is_err());
        assert!(
            RecoveryCode::parse("abcde-fghiu").is_err(),
            "u is not in the alphabet"
        );
    }

    #[test]
    fn ids_round_trip_and_refuse_foreign_shapes() {
        let id = UserId::new();
        assert_eq!(UserId::parse(id.as_str()), Some(id.clone()));
        assert_eq!(UserId::parse("usr_#"), None);
        assert_eq!(SessionId::parse(id.as_str()), None);
    }
}
