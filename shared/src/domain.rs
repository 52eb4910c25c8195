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

/// An email address in canonical form, the account's identity (DESIGN.md, docs/data-model.md
/// "Emails"): a plain addr-spec (no display name, comments, quoted or IP-literal parts), NFC,
/// without control, invisible or text-direction characters, the local part without
/// compatibility look-alikes (fullwidth letters) and lower-cased, the domain in its IDNA ASCII
/// form (UTS #46). Two addresses that look alike are either the same `Email` or one of them
/// is refused, so look-alikes never become second accounts.
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
        if crate::text::hidden_char(s).is_some() || s.chars().any(char::is_whitespace) {
            return Err(Invalid::new(
                "must not contain spaces, control, invisible or text-direction characters",
            ));
        }
        let s = crate::text::nfc(s);
        let Some((local, domain)) = s.rsplit_once('@') else {
            return Err(Invalid::new(
                "must be an email address like name@example.com",
            ));
        };
        if !is_dot_atom(local) || local.len() > 64 {
            return Err(Invalid::new(
                "must be a plain address like name@example.com (no name, quotes or brackets)",
            ));
        }
        if crate::text::has_compatibility_variants(local) {
            return Err(Invalid::new(
                "must not contain fullwidth or other look-alike characters",
            ));
        }
        let domain = match idna::domain_to_ascii_strict(domain) {
            Ok(d) if d.contains('.') && !d.ends_with('.') => d,
            _ => return Err(Invalid::new("must have a valid domain, like example.com")),
        };
        let local = crate::text::nfc(&local.to_lowercase()).into_owned();
        let address = format!("{local}@{domain}");
        if address.len() > Self::MAX_LEN {
            return Err(Invalid::new("must be at most 254 characters"));
        }
        Ok(Self(address))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn local_part(&self) -> &str {
        self.0.rsplit_once('@').map_or(&self.0, |(l, _)| l)
    }
}

/// RFC 5322 §3.2.3 `dot-atom-text`, with the UTF-8 letters and digits of RFC 6531.
fn is_dot_atom(s: &str) -> bool {
    const SPECIALS: &str = "!#$%&'*+-/=?^_`{|}~";
    !s.is_empty()
        && !s.starts_with('.')
        && !s.ends_with('.')
        && !s.contains("..")
        && s.chars().all(|c| {
            c == '.'
                || c.is_ascii_alphanumeric()
                || SPECIALS.contains(c)
                || (!c.is_ascii() && (c.is_alphabetic() || c.is_numeric()))
        })
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

pub use crate::policy::{Context as PasswordContext, NewPassword, PasswordPolicy, PolicyViolation};

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

/// An organization's name as people see it, in mail too: NFC, not blank, at most 100
/// characters, no control, invisible or text-direction characters (which could make it read
/// as something else). Mail shows it quoted and never as a link (`mail::quoted`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgName(String);

impl OrgName {
    pub const MAX_LEN: usize = 100;

    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let s = crate::text::nfc(raw.trim());
        if s.is_empty() {
            return Err(Invalid::new("must not be blank"));
        }
        if s.chars().count() > Self::MAX_LEN {
            return Err(Invalid::new("must be at most 100 characters"));
        }
        if crate::text::hidden_char(&s).is_some() {
            return Err(Invalid::new(
                "must not contain control, invisible or text-direction characters",
            ));
        }
        Ok(Self(s.into_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An API token's name: the rules of [`OrgName`] (it shows in lists and owners' mail).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenName(String);

impl TokenName {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        OrgName::parse(raw).map(|n| Self(n.0))
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
id_type!(TokenId, "tok");

/// An org's security settings (docs/org-settings.md). An org that never changed them has
/// no item and runs on the deployment's defaults (`Config::default_org_settings`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgSettings {
    pub password_min_length: u32,
    pub lockout_threshold: u32,
    pub lockout_duration_seconds: u64,
    pub session_idle_timeout_seconds: u64,
    pub session_absolute_lifetime_seconds: u64,
    pub mfa_required: bool,
}

impl OrgSettings {
    pub fn password_policy(&self) -> crate::policy::PasswordPolicy {
        crate::policy::PasswordPolicy::new(self.password_min_length as usize)
    }

    pub fn idle_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.session_idle_timeout_seconds)
    }

    pub fn absolute_lifetime(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.session_absolute_lifetime_seconds)
    }

    pub fn lockout_duration(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.lockout_duration_seconds)
    }
}

/// A user's role in their org (docs/permissions.md has what each may do).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Owner,
    Admin,
    Auditor,
    Member,
}

impl Role {
    pub const ALL: [Role; 4] = [Self::Owner, Self::Admin, Self::Auditor, Self::Member];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Owner => "owner",
            Self::Admin => "admin",
            Self::Auditor => "auditor",
            Self::Member => "member",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// Where a user stands: invited (no password yet), active, or deactivated (signs in like a
/// wrong password; every credential ended).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AccountStatus {
    Invited,
    Active,
    /// Stored as `disabled` by versions before users could be deactivated.
    #[serde(alias = "disabled")]
    Deactivated,
}

impl AccountStatus {
    pub const ALL: [AccountStatus; 3] = [Self::Invited, Self::Active, Self::Deactivated];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Invited => "invited",
            Self::Active => "active",
            Self::Deactivated => "deactivated",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn look_alike_addresses_are_one_address_or_refused() {
        let canon = |s: &str| Email::parse(s).map(|e| e.to_string());
        let victim = Ok("victim@corp.example".to_owned());
        // Composed and decomposed forms, a Unicode domain and its punycode.
        assert_eq!(
            canon("Jose\u{301}@corp.example"),
            canon("José@corp.example")
        );
        assert_eq!(
            canon("a@bücher.example"),
            Ok("a@xn--bcher-kva.example".into())
        );
        assert_eq!(canon("a@XN--BCHER-KVA.example"), canon("a@bücher.example"));
        // Fullwidth letters: the domain folds, the local part is refused.
        assert_eq!(canon("victim@ｃｏｒｐ.example"), victim);
        assert!(canon("ｖｉｃｔｉｍ@corp.example").is_err());
        // Invisible and direction characters, display names and quotes are refused.
        for bad in [
            "vic\u{200B}tim@corp.example",
            "victim\u{200D}@corp.example",
            "\u{FEFF}victim@corp.example",
            "victim@corp\u{202E}.example",
            "x<victim@corp.example>",
            "\"x\"<victim@corp.example>",
            "\"victim\"@corp.example",
            "victim@[192.0.2.1]",
            "victim(comment)@corp.example",
            "victim@corp.example.",
            "victim@-corp.example",
        ] {
            assert!(
                canon(bad).is_err(),
                "{bad:?} was accepted as {:?}",
                canon(bad)
            );
        }
        assert_eq!(canon("Victim@Corp.Example"), victim);
        assert_eq!(
            canon("o'brien+tag@corp.example"),
            Ok("o'brien+tag@corp.example".into())
        );
        assert_eq!(canon("Ünal@corp.example"), Ok("ünal@corp.example".into()));
    }

    #[test]
    fn org_names_are_not_blank_and_hide_nothing() {
        assert_eq!(
            OrgName::parse("  Acme GmbH & Co. KG ").map(|o| o.as_str().to_owned()),
            Ok("Acme GmbH & Co. KG".into())
        );
        for bad in [
            "",
            "   ",
            "\u{3000}",
            "Acme\u{202E}",
            "Ac\u{200B}me",
            "Ac\nme",
            "\u{2066}x",
        ] {
            assert!(OrgName::parse(bad).is_err(), "{bad:?}");
        }
        assert!(OrgName::parse(&"x".repeat(101)).is_err());
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
