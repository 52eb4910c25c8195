//! Typed configuration, read once from the environment at cold start. Every variable, its
//! default and its meaning is listed in the README.

use std::path::PathBuf;
use std::time::Duration;

use crate::domain::PasswordPolicy;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignupMode {
    /// Anyone may create an organization.
    Open,
    /// Only a caller presenting the bootstrap token of the key material may.
    Closed,
}

pub use crate::keys::KeySource;

#[derive(Debug, Clone)]
pub struct Config {
    pub issuer: String,
    pub audience: String,
    /// Base of every link in mail; never taken from a request.
    pub app_url: String,
    pub signup: SignupMode,
    pub keys: KeySource,
    /// The algorithm of the signing key a local key directory is created with
    /// (`GATEHOUSE_SIGNING_ALG`, `ES256` or `EdDSA`); in AWS the signing secret's `alg`.
    pub signing_alg: crate::keys::Alg,
    pub main_table: String,
    pub audit_table: String,
    pub password_policy: PasswordPolicy,
    pub lockout_threshold: u32,
    /// Wrong MFA codes (less than a day apart) that lock the account; apart from passwords.
    pub mfa_lockout_threshold: u32,
    /// The issuer shown in authenticator apps.
    pub totp_issuer: String,
    pub lockout_duration: Duration,
    pub access_token_ttl: Duration,
    pub session_idle_timeout: Duration,
    pub session_lifetime: Duration,
    pub email_verification_ttl: Duration,
    /// How long a password-reset link works.
    pub reset_token_ttl: Duration,
    /// `POST /v1/auth/password/forgot` answers no sooner than this after the request arrived,
    /// so that whether a mail went out does not show in the response time.
    pub forgot_min_duration: Duration,
    /// The sender of every mail (`no-reply@example.com` or `Name <no-reply@example.com>`);
    /// required where mail goes through SES.
    pub mail_from: Option<String>,
    pub audit_retention: Duration,
    /// Take the client IP from `X-Forwarded-For` (only behind a proxy the operator controls).
    pub trust_forwarded_for: bool,
    /// Password hashes run at once, each with 19 MiB of working memory; more sign-ins queue.
    pub hash_concurrency: usize,
    /// Browser origins (`https://app.example.com`) the local server answers CORS requests
    /// from; none by default. In AWS, the HTTP API's `AllowedOrigins` does this instead.
    pub cors_origins: Vec<String>,
    /// The deployment's own API token scopes (`GATEHOUSE_APP_SCOPES`, space-separated,
    /// `resource:verb`), beside Gatehouse's (docs/api-tokens.md).
    pub app_scopes: Vec<String>,
}

/// The default of [`Config::hash_concurrency`]: one hash per CPU the process may use.
pub fn default_hash_concurrency() -> usize {
    std::thread::available_parallelism().map_or(2, std::num::NonZero::get)
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{name}: {problem}")]
    Invalid { name: &'static str, problem: String },
}

/// Access tokens live at most 15 minutes (DESIGN.md): revocation reaches them within that.
pub const MAX_ACCESS_TOKEN_TTL: Duration = Duration::from_secs(15 * 60);

impl Default for Config {
    /// The embedded default of the local server.
    fn default() -> Self {
        Self {
            issuer: "gatehouse".into(),
            audience: "gatehouse-api".into(),
            app_url: "http://localhost:3000/console".into(),
            signup: SignupMode::Open,
            keys: KeySource::Dir(PathBuf::from(".gatehouse")),
            signing_alg: crate::keys::Alg::Es256,
            main_table: "gatehouse-main".into(),
            audit_table: "gatehouse-audit".into(),
            password_policy: PasswordPolicy::default(),
            lockout_threshold: 5,
            mfa_lockout_threshold: 10,
            totp_issuer: "Gatehouse".into(),
            lockout_duration: Duration::from_secs(15 * 60),
            access_token_ttl: Duration::from_secs(10 * 60),
            session_idle_timeout: Duration::from_secs(24 * 3600),
            session_lifetime: Duration::from_secs(14 * 24 * 3600),
            email_verification_ttl: Duration::from_secs(24 * 3600),
            reset_token_ttl: Duration::from_secs(30 * 60),
            forgot_min_duration: Duration::from_millis(250),
            mail_from: None,
            audit_retention: Duration::from_secs(400 * 24 * 3600),
            trust_forwarded_for: false,
            hash_concurrency: default_hash_concurrency(),
            cors_origins: Vec::new(),
            app_scopes: Vec::new(),
        }
    }
}

fn invalid(name: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        name,
        problem: problem.into(),
    }
}

impl Config {
    /// The settings of an org that never changed its own (docs/org-settings.md).
    pub fn default_org_settings(&self) -> crate::domain::OrgSettings {
        crate::domain::OrgSettings {
            password_min_length: self.password_policy.min_len as u32,
            lockout_threshold: self.lockout_threshold,
            lockout_duration_seconds: self.lockout_duration.as_secs(),
            session_idle_timeout_seconds: self.session_idle_timeout.as_secs(),
            session_absolute_lifetime_seconds: self.session_lifetime.as_secs(),
            mfa_required: false,
        }
    }

    /// Reads the process environment over the defaults.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Reads configuration through `get`, so tests need not touch the process environment.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut c = Self::default();
        let text = |name: &'static str| {
            get(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let number = |name: &'static str| -> Result<Option<u64>, ConfigError> {
            text(name)
                .map(|v| {
                    v.parse::<u64>()
                        .map_err(|_| invalid(name, "must be a whole number"))
                })
                .transpose()
        };
        let seconds =
            |name: &'static str, min: u64, max: u64| -> Result<Option<Duration>, ConfigError> {
                match number(name)? {
                    Some(s) if s < min || s > max => Err(invalid(
                        name,
                        format!("must be between {min} and {max} seconds"),
                    )),
                    other => Ok(other.map(Duration::from_secs)),
                }
            };
        if let Some(v) = text("GATEHOUSE_ISSUER") {
            c.issuer = v;
        }
        if let Some(v) = text("GATEHOUSE_AUDIENCE") {
            c.audience = v;
        }
        if let Some(v) = text("APP_URL") {
            if !(v.starts_with("https://") || v.starts_with("http://")) {
                return Err(invalid("APP_URL", "must be an http(s) URL"));
            }
            c.app_url = v.trim_end_matches('/').to_owned();
        }
        match text("GATEHOUSE_SIGNUP").as_deref() {
            None | Some("open") => {}
            Some("closed") => c.signup = SignupMode::Closed,
            Some(_) => return Err(invalid("GATEHOUSE_SIGNUP", "must be open or closed")),
        }
        let (signing, data) = (
            text("GATEHOUSE_SIGNING_KEYS_SECRET_ARN"),
            text("GATEHOUSE_DATA_KEYS_SECRET_ARN"),
        );
        let aws = match text("GATEHOUSE_KEYS").as_deref() {
            None | Some("dir") => false,
            Some("aws") => true,
            Some(_) => return Err(invalid("GATEHOUSE_KEYS", "must be aws or dir")),
        };
        if aws || signing.is_some() || data.is_some() {
            c.keys = KeySource::SecretsManager { signing, data };
        } else if let Some(dir) = text("GATEHOUSE_KEYS_DIR") {
            c.keys = KeySource::Dir(dir.into());
        }
        if let Some(v) = text("GATEHOUSE_TLS_ROOTS") {
            crate::aws::TlsRoots::parse(&v)
                .ok_or_else(|| invalid("GATEHOUSE_TLS_ROOTS", "must be aws or platform"))?;
        }
        if let Some(v) = text("GATEHOUSE_SIGNING_ALG") {
            c.signing_alg = crate::keys::Alg::parse(&v)
                .ok_or_else(|| invalid("GATEHOUSE_SIGNING_ALG", "must be ES256 or EdDSA"))?;
        }
        if let Some(v) = text("GATEHOUSE_MAIN_TABLE") {
            c.main_table = v;
        }
        if let Some(v) = text("GATEHOUSE_AUDIT_TABLE") {
            c.audit_table = v;
        }
        if let Some(v) = number("GATEHOUSE_PASSWORD_MIN_LENGTH")? {
            if v < PasswordPolicy::FLOOR as u64 || v > PasswordPolicy::MAX as u64 {
                return Err(invalid(
                    "GATEHOUSE_PASSWORD_MIN_LENGTH",
                    "must be between 8 and 128",
                ));
            }
            c.password_policy = PasswordPolicy::new(v as usize);
        }
        if let Some(v) = number("GATEHOUSE_LOCKOUT_THRESHOLD")? {
            if !(1..=100).contains(&v) {
                return Err(invalid(
                    "GATEHOUSE_LOCKOUT_THRESHOLD",
                    "must be between 1 and 100",
                ));
            }
            c.lockout_threshold = v as u32;
        }
        if let Some(v) = number("GATEHOUSE_MFA_LOCKOUT_THRESHOLD")? {
            if !(1..=100).contains(&v) {
                return Err(invalid(
                    "GATEHOUSE_MFA_LOCKOUT_THRESHOLD",
                    "must be between 1 and 100",
                ));
            }
            c.mfa_lockout_threshold = v as u32;
        }
        if let Some(v) = text("GATEHOUSE_TOTP_ISSUER") {
            if v.contains(':') || v.chars().count() > 64 {
                return Err(invalid(
                    "GATEHOUSE_TOTP_ISSUER",
                    "must be at most 64 characters, without ':'",
                ));
            }
            c.totp_issuer = v;
        }
        if let Some(d) = seconds("GATEHOUSE_LOCKOUT_SECONDS", 60, 24 * 3600)? {
            c.lockout_duration = d;
        }
        if let Some(d) = seconds(
            "GATEHOUSE_ACCESS_TOKEN_SECONDS",
            60,
            MAX_ACCESS_TOKEN_TTL.as_secs(),
        )? {
            c.access_token_ttl = d;
        }
        if let Some(d) = seconds("GATEHOUSE_SESSION_IDLE_SECONDS", 300, 90 * 24 * 3600)? {
            c.session_idle_timeout = d;
        }
        if let Some(d) = seconds("GATEHOUSE_SESSION_LIFETIME_SECONDS", 300, 365 * 24 * 3600)? {
            c.session_lifetime = d;
        }
        if let Some(d) = seconds("GATEHOUSE_EMAIL_VERIFICATION_SECONDS", 600, 7 * 24 * 3600)? {
            c.email_verification_ttl = d;
        }
        if let Some(d) = seconds("GATEHOUSE_RESET_TOKEN_SECONDS", 300, 24 * 3600)? {
            c.reset_token_ttl = d;
        }
        if let Some(ms) = number("GATEHOUSE_FORGOT_MIN_MILLIS")? {
            if ms > 5_000 {
                return Err(invalid(
                    "GATEHOUSE_FORGOT_MIN_MILLIS",
                    "must be at most 5000",
                ));
            }
            c.forgot_min_duration = Duration::from_millis(ms);
        }
        if let Some(v) = text("GATEHOUSE_MAIL_FROM") {
            if !mail_from_ok(&v) {
                return Err(invalid(
                    "GATEHOUSE_MAIL_FROM",
                    "must be an address, or a name followed by an address in <>, on one line",
                ));
            }
            c.mail_from = Some(v);
        }
        if let Some(days) = number("GATEHOUSE_AUDIT_RETENTION_DAYS")? {
            if !(1..=3650).contains(&days) {
                return Err(invalid(
                    "GATEHOUSE_AUDIT_RETENTION_DAYS",
                    "must be between 1 and 3650",
                ));
            }
            c.audit_retention = Duration::from_secs(days * 24 * 3600);
        }
        if let Some(v) = number("GATEHOUSE_HASH_CONCURRENCY")? {
            if !(1..=64).contains(&v) {
                return Err(invalid(
                    "GATEHOUSE_HASH_CONCURRENCY",
                    "must be between 1 and 64",
                ));
            }
            c.hash_concurrency = v as usize;
        }
        if let Some(v) = text("GATEHOUSE_APP_SCOPES") {
            let mut scopes: Vec<String> = Vec::new();
            for scope in v.split_whitespace() {
                if !crate::api_token::valid_app_scope(scope) {
                    return Err(invalid(
                        "GATEHOUSE_APP_SCOPES",
                        format!(
                            "{scope:?} is not resource:verb (a-z, 0-9, _ and -, each part 1 to 32 \
                             starting with a letter), or is under a reserved prefix (users:, \
                             audit:, settings:, gatehouse:)"
                        ),
                    ));
                }
                if !scopes.iter().any(|s| s == scope) {
                    scopes.push(scope.to_owned());
                }
            }
            c.app_scopes = scopes;
        }
        if let Some(v) = text("GATEHOUSE_CORS_ORIGINS") {
            let origins: Vec<String> = v
                .split(',')
                .map(str::trim)
                .filter(|o| !o.is_empty())
                .map(str::to_owned)
                .collect();
            if let Some(bad) = origins.iter().find(|o| !is_origin(o)) {
                return Err(invalid(
                    "GATEHOUSE_CORS_ORIGINS",
                    format!(
                        "{bad:?} is not an origin: write scheme://host[:port], e.g. \
                         https://app.example.com, without a path or a wildcard"
                    ),
                ));
            }
            c.cors_origins = origins;
        }
        if let Some(v) = text("GATEHOUSE_LOG_LEVEL")
            && crate::telemetry::parse_level(&v).is_none()
        {
            return Err(invalid(
                "GATEHOUSE_LOG_LEVEL",
                "must be error, warn, info or debug",
            ));
        }
        match text("GATEHOUSE_TRUST_X_FORWARDED_FOR").as_deref() {
            None | Some("false") => {}
            Some("true") => c.trust_forwarded_for = true,
            Some(_) => {
                return Err(invalid(
                    "GATEHOUSE_TRUST_X_FORWARDED_FOR",
                    "must be true or false",
                ));
            }
        }
        Ok(c)
    }
}

/// An origin as browsers send it (RFC 6454 §6.1): `http(s)://host[:port]`, nothing after.
fn is_origin(v: &str) -> bool {
    let rest = v
        .strip_prefix("https://")
        .or_else(|| v.strip_prefix("http://"));
    rest.is_some_and(|r| {
        !r.is_empty()
            && r.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'))
    })
}

/// `addr@domain` or `Display Name <addr@domain>`, without line breaks (no header injection).
fn mail_from_ok(v: &str) -> bool {
    if v.chars().any(char::is_control) {
        return false;
    }
    let addr = match v.rsplit_once('<') {
        Some((_, rest)) => match rest.strip_suffix('>') {
            Some(a) => a,
            None => return false,
        },
        None => v,
    };
    crate::domain::Email::parse(addr).is_ok_and(|e| e.as_str().len() == addr.trim().len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_lookup(|k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    #[test]
    fn defaults_apply_when_nothing_is_set() {
        let c = cfg(&[]).ok();
        assert_eq!(c.as_ref().map(|c| c.lockout_threshold), Some(5));
        assert_eq!(c.map(|c| c.keys), Some(KeySource::Dir(".gatehouse".into())));
    }

    #[test]
    fn errors_name_the_variable() {
        let e = cfg(&[("GATEHOUSE_ACCESS_TOKEN_SECONDS", "3600")])
            .err()
            .map(|e| e.to_string());
        assert!(e.is_some_and(|e| e.starts_with("GATEHOUSE_ACCESS_TOKEN_SECONDS")));
        assert!(cfg(&[("GATEHOUSE_PASSWORD_MIN_LENGTH", "6")]).is_err());
        assert!(cfg(&[("APP_URL", "javascript:alert(1)")]).is_err());
        assert!(cfg(&[("GATEHOUSE_RESET_TOKEN_SECONDS", "10")]).is_err());
        let e = cfg(&[("GATEHOUSE_TLS_ROOTS", "system")])
            .err()
            .map(|e| e.to_string());
        assert!(e.is_some_and(|e| e.starts_with("GATEHOUSE_TLS_ROOTS")));
        assert!(cfg(&[("GATEHOUSE_TLS_ROOTS", "platform")]).is_ok());
    }

    #[test]
    fn the_sender_is_an_address_on_one_line() {
        for ok in ["no-reply@example.com", "Gatehouse <no-reply@example.com>"] {
            assert!(cfg(&[("GATEHOUSE_MAIL_FROM", ok)]).is_ok(), "{ok}");
        }
        for bad in [
            "no-reply",
            "Gatehouse <no-reply@example.com",
            "a@example.com\r\nBcc: x@evil.test",
        ] {
            assert!(cfg(&[("GATEHOUSE_MAIL_FROM", bad)]).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn app_scopes_are_read_once_each_and_never_reserved() {
        let c = cfg(&[(
            "GATEHOUSE_APP_SCOPES",
            " orders:read  orders:write orders:read ",
        )])
        .ok();
        assert_eq!(
            c.map(|c| c.app_scopes),
            Some(vec!["orders:read".to_owned(), "orders:write".to_owned()])
        );
        for bad in ["users:admin", "orders", "gatehouse:all", "Orders:read"] {
            assert!(cfg(&[("GATEHOUSE_APP_SCOPES", bad)]).is_err(), "{bad}");
        }
    }

    #[test]
    fn cors_origins_are_origins_and_nothing_else() {
        let c = cfg(&[(
            "GATEHOUSE_CORS_ORIGINS",
            " https://app.example.com, http://localhost:5173 ",
        )])
        .ok();
        assert_eq!(
            c.map(|c| c.cors_origins),
            Some(vec![
                "https://app.example.com".to_owned(),
                "http://localhost:5173".to_owned()
            ])
        );
        for bad in [
            "*",
            "app.example.com",
            "https://app.example.com/",
            "https://*.example.com",
        ] {
            assert!(cfg(&[("GATEHOUSE_CORS_ORIGINS", bad)]).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_secret_arn_selects_secrets_manager() {
        let c = cfg(&[(
            "GATEHOUSE_DATA_KEYS_SECRET_ARN",
            "arn:aws:secretsmanager:eu-west-1:1:secret:k",
        )])
        .ok();
        assert!(matches!(
            c.map(|c| c.keys),
            Some(KeySource::SecretsManager {
                signing: None,
                data: Some(_)
            })
        ));
        let c = cfg(&[("GATEHOUSE_KEYS", "aws")]).ok();
        assert!(matches!(
            c.map(|c| c.keys),
            Some(KeySource::SecretsManager {
                signing: None,
                data: None
            })
        ));
    }
}
