//! Typed records, their keys, the reads flows need and [`Tx`], the builder of the
//! transactions that change state together with their audit events.
//! The key design is documented in `docs/data-model.md`.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize, de::DeserializeOwned};

use super::{
    AttributeValue, Backend, Cond, Index, Item, Key, Page, Query, SkRange, StoreError, Table, Write,
};
use crate::audit::AuditEvent;
use crate::clock::Timestamp;
use crate::domain::{AccountStatus, ChallengeId, Email, OrgId, Role, SessionId, UserId};

/// `Debug` that shows `…` for the named fields: records that hold password hashes, token
/// digests or sealed secrets must not put them into logs or panics through `{:?}`.
macro_rules! debug_hiding {
    ($t:ident { $($f:ident),* } hiding { $($h:ident),* }) => {
        impl std::fmt::Debug for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($t))
                    $(.field(stringify!($f), &self.$f))*
                    $(.field(stringify!($h), &"…"))*
                    .finish()
            }
        }
    };
}

/// A record with the version its optimistic-concurrency condition checks.
#[derive(Debug, Clone, PartialEq)]
pub struct Versioned<T> {
    pub value: T,
    pub ver: u64,
}

/// An account: credentials and everything sign-in needs, keyed by email so that login is a
/// single read. `EMAIL#{email}` / `ACCOUNT`.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct AccountRecord {
    pub user_id: UserId,
    pub org_id: OrgId,
    pub email: Email,
    pub role: Role,
    pub status: AccountStatus,
    pub email_verified: bool,
    pub mfa_enabled: bool,
    /// argon2id PHC string.
    pub password_hash: String,
    /// Counts password resets and changes. Sessions and MFA challenges carry the epoch they
    /// were opened in; those of an older one are revoked (see `flows::sessions::sweep`).
    #[serde(default)]
    pub password_epoch: u64,
    pub created_at: Timestamp,
}

debug_hiding!(AccountRecord {
    user_id, org_id, email, role, status, email_verified, mfa_enabled, password_epoch, created_at
} hiding { password_hash });

/// The way from a user id to the account. `USER#{user_id}` / `USER`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserRef {
    pub user_id: UserId,
    pub org_id: OrgId,
    pub email: Email,
}

/// A failure budget: the sign-in attempts of an email (`EMAIL#{email}` / `LOCKOUT`, whether
/// or not an account has the address) or the wrong MFA codes of a user
/// (`USER#{user_id}` / `MFA#LOCKOUT`). The rules are in `flows::lockout`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LockoutRecord {
    /// Attempts counted since the last success. A lock running out does not reset it; a
    /// success or a password reset deletes the record.
    pub failures: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locked_until: Option<Timestamp>,
    /// Past the hard limit: only a password reset by mail lifts the lock.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reset_required: bool,
    pub last_failure_at: Timestamp,
    /// Requests refused while locked since the last counted attempt: summarized in one
    /// audit event by the next write of the record, not one event each.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub refused: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_refused_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_refused_at: Option<Timestamp>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl LockoutRecord {
    /// How long a record is kept after its last event: a count ends with a success or a
    /// reset, not with time, but an address nobody tries for a year is forgotten.
    pub const RETENTION: Duration = Duration::from_secs(365 * 24 * 3600);

    /// A record with nothing counted yet.
    pub fn empty(now: Timestamp) -> Self {
        Self {
            failures: 0,
            locked_until: None,
            reset_required: false,
            last_failure_at: now,
            refused: 0,
            first_refused_at: None,
            last_refused_at: None,
        }
    }

    /// Whether nothing may be tried now: a lock runs, or a reset is required.
    pub fn is_locked(&self, now: Timestamp) -> bool {
        self.reset_required || self.locked_until.is_some_and(|t| now < t)
    }
}

/// Which failure budget a write is about.
#[derive(Debug, Clone, Copy)]
pub enum Budget<'a> {
    /// Sign-in attempts of an address (passwords, and re-authentication while signed in).
    Password(&'a Email),
    /// Wrong MFA codes of a user.
    Mfa(&'a UserId),
}

impl Budget<'_> {
    fn key(self) -> Key {
        match self {
            Self::Password(email) => keys::lockout(email),
            Self::Mfa(user) => keys::mfa_lockout(user),
        }
    }
}

/// `ORG#{org_id}` / `ORG`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrgRecord {
    pub org_id: OrgId,
    pub name: String,
    pub owner_id: UserId,
    pub created_at: Timestamp,
}

/// A signed-in device. `USER#{user_id}` / `SESSION#{session_id}`.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionRecord {
    pub session_id: SessionId,
    pub user_id: UserId,
    pub org_id: OrgId,
    pub role: Role,
    pub amr: Vec<String>,
    pub created_at: Timestamp,
    pub last_used_at: Timestamp,
    pub ip: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// SHA-256 of the current refresh token's secret.
    pub refresh_hash: String,
    /// SHA-256 of recently rotated secrets, newest first: presenting one is token reuse.
    #[serde(default)]
    pub previous_refresh_hashes: Vec<String>,
    /// The account's password epoch when the session was opened …
    #[serde(default)]
    pub password_epoch: u64,
    /// … and the account's email, which keys it: a refresh commits only while the account
    /// is still at that epoch (absent in sessions from before epochs existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<Email>,
    /// The session ends when unused until then (idle timeout) …
    pub idle_expires_at: Timestamp,
    /// … and at the latest then (absolute lifetime).
    pub expires_at: Timestamp,
}

debug_hiding!(SessionRecord {
    session_id, user_id, org_id, role, amr, created_at, last_used_at, ip, user_agent,
    password_epoch, email, idle_expires_at, expires_at
} hiding { refresh_hash, previous_refresh_hashes });

impl SessionRecord {
    pub fn is_live(&self, now: Timestamp) -> bool {
        now < self.idle_expires_at && now < self.expires_at
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FactorStatus {
    /// Enrolled, waiting for the first code.
    Pending,
    Enabled,
}

/// A user's TOTP factor. `USER#{user_id}` / `MFA#TOTP`.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct TotpFactorRecord {
    pub status: FactorStatus,
    /// The seed, AES-256-GCM under a data key, the user id as associated data.
    pub seed: crate::crypto::Sealed,
    /// The last accepted time step: a code of this step or an older one is refused
    /// (RFC 6238 §5.2: a code is accepted once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_step: Option<u64>,
    pub created_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled_at: Option<Timestamp>,
}

debug_hiding!(TotpFactorRecord { status, last_step, created_at, enabled_at } hiding { seed });

/// One of ten recovery code slots. `USER#{user_id}` / `MFA#RECOVERY#{slot}`.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct RecoveryCodeRecord {
    pub slot: u8,
    /// HMAC-SHA256 of the user id and the canonical code under the pepper `pepper_id`.
    pub hash: String,
    pub pepper_id: String,
    pub created_at: Timestamp,
}

debug_hiding!(RecoveryCodeRecord { slot, pepper_id, created_at } hiding { hash });

/// The second step of a sign-in with MFA. `USER#{user_id}` / `MFA#CHALLENGE#{challenge_id}`.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct ChallengeRecord {
    pub challenge_id: ChallengeId,
    pub user_id: UserId,
    pub org_id: OrgId,
    pub email: Email,
    pub role: Role,
    /// SHA-256 of the challenge token's secret.
    pub secret_hash: String,
    pub failures: u32,
    /// The account's password epoch at the first step.
    #[serde(default)]
    pub password_epoch: u64,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}

debug_hiding!(ChallengeRecord {
    challenge_id, user_id, org_id, email, role, failures, password_epoch, created_at, expires_at
} hiding { secret_hash });

/// What a one-time token stored by its hash is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenKind {
    EmailVerification,
    PasswordReset,
}

impl TokenKind {
    /// The sort key of the [`MailLinkState`] of this kind, under the email's partition.
    pub fn state_sk(self) -> &'static str {
        match self {
            Self::EmailVerification => "MAIL#VERIFY",
            Self::PasswordReset => "MAIL#RESET",
        }
    }
}

/// The mailed links of one kind for an email: the newest token (issuing one deletes the one
/// before) and when recent mails went out (for the hourly limit).
/// `EMAIL#{email}` / `MAIL#RESET` or `MAIL#VERIFY`.
#[derive(Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct MailLinkState {
    /// Hash of the newest token, which may have been used or have expired since.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_hash: Option<String>,
    /// When mails of this kind went out within the last hour, oldest first.
    #[serde(default)]
    pub sent_at: Vec<Timestamp>,
}

debug_hiding!(MailLinkState { sent_at } hiding { current_hash });

/// A one-time token, stored as the SHA-256 of its value. `TOKEN#{hash}` / `TOKEN`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub kind: TokenKind,
    pub user_id: UserId,
    pub email: Email,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}

pub mod keys {
    //! Key builders: the only place key strings are spelled.
    use super::Key;
    use crate::clock::Timestamp;
    use crate::domain::{ChallengeId, Email, EventId, OrgId, SessionId, UserId};

    pub fn account(email: &Email) -> Key {
        Key::new(format!("EMAIL#{email}"), "ACCOUNT")
    }
    pub fn lockout(email: &Email) -> Key {
        Key::new(format!("EMAIL#{email}"), "LOCKOUT")
    }
    pub fn email_partition(email: &Email) -> String {
        format!("EMAIL#{email}")
    }
    pub fn user_ref(user: &UserId) -> Key {
        Key::new(format!("USER#{user}"), "USER")
    }
    pub fn user_partition(user: &UserId) -> String {
        format!("USER#{user}")
    }
    pub fn session(user: &UserId, session: &SessionId) -> Key {
        Key::new(format!("USER#{user}"), format!("SESSION#{session}"))
    }
    pub fn org(org: &OrgId) -> Key {
        Key::new(format!("ORG#{org}"), "ORG")
    }
    pub fn org_partition(org: &OrgId) -> String {
        format!("ORG#{org}")
    }
    pub fn totp_factor(user: &UserId) -> Key {
        Key::new(format!("USER#{user}"), "MFA#TOTP")
    }
    pub fn recovery_code(user: &UserId, slot: u8) -> Key {
        Key::new(format!("USER#{user}"), format!("MFA#RECOVERY#{slot}"))
    }
    pub fn challenge(user: &UserId, id: &ChallengeId) -> Key {
        Key::new(format!("USER#{user}"), format!("MFA#CHALLENGE#{id}"))
    }
    /// The MFA failure budget of a user, apart from the password one.
    pub fn mfa_lockout(user: &UserId) -> Key {
        Key::new(format!("USER#{user}"), "MFA#LOCKOUT")
    }
    /// Every MFA item of a user sorts under this prefix, so one query reads them all.
    pub const MFA_PREFIX: &str = "MFA#";
    pub fn mail_link(email: &Email, kind: super::TokenKind) -> Key {
        Key::new(format!("EMAIL#{email}"), kind.state_sk())
    }
    pub fn token(hash: &str) -> Key {
        Key::new(format!("TOKEN#{hash}"), "TOKEN")
    }
    /// Audit events of sign-ins with no account behind them belong to no org.
    pub const NO_ORG: &str = "ORG#-";
    /// Partitions an org's audit events are spread over, so that no org's audit becomes
    /// the hot key that throttles its sign-ins (docs/data-model.md, "Audit at scale").
    pub const AUDIT_SHARDS: u8 = 4;
    fn org_part(org: Option<&OrgId>) -> String {
        org.map_or_else(|| NO_ORG.to_owned(), |o| format!("ORG#{o}"))
    }
    /// `ORG#{org}#S{shard}` (or `ORG#-#S{shard}`): shard `0..AUDIT_SHARDS`.
    pub fn audit_partition(org: Option<&OrgId>, shard: u8) -> String {
        format!("{}#S{shard}", org_part(org))
    }
    /// The shard of an event: from its id, so it is spread evenly and known again.
    pub fn audit_shard(id: &EventId) -> u8 {
        let h = crate::crypto::token_hash(id.as_str());
        h.bytes().next().map_or(0, |b| b % AUDIT_SHARDS)
    }
    pub fn audit_user_partition(org: Option<&OrgId>, user: &UserId) -> String {
        format!("{}#USER#{user}", org_part(org))
    }
    pub fn audit_sort(at: Timestamp, id: &EventId) -> String {
        format!("{at}#{id}")
    }

    #[cfg(test)]
    mod tests {
        //! The key strings as `docs/data-model.md` lists them: stored items carry them, so a
        //! change here is a data migration, not a refactoring.
        use super::*;
        use crate::store::TokenKind;

        const HEX: &str = "0123456789abcdef0123456789abcdef";

        fn id<T>(parse: fn(&str) -> Option<T>, prefix: &str) -> Result<T, String> {
            parse(&format!("{prefix}_{HEX}")).ok_or_else(|| format!("{prefix} id"))
        }

        fn email() -> Result<Email, String> {
            Email::parse("a@example.com").map_err(|e| e.0)
        }

        #[test]
        fn key_strings_are_as_documented() -> Result<(), String> {
            let em = email()?;
            let usr: UserId = id(UserId::parse, "usr")?;
            let og: OrgId = id(OrgId::parse, "org")?;
            let ses: SessionId = id(SessionId::parse, "ses")?;
            let ch: ChallengeId = id(ChallengeId::parse, "mfc")?;
            let ev: EventId = id(EventId::parse, "evt")?;
            let (e, u, o) = (
                "EMAIL#a@example.com",
                format!("USER#usr_{HEX}"),
                format!("ORG#org_{HEX}"),
            );
            let k = |pk: &str, sk: &str| Key::new(pk, sk);
            assert_eq!(account(&em), k(e, "ACCOUNT"));
            assert_eq!(lockout(&em), k(e, "LOCKOUT"));
            assert_eq!(email_partition(&em), e);
            assert_eq!(mail_link(&em, TokenKind::PasswordReset), k(e, "MAIL#RESET"));
            assert_eq!(
                mail_link(&em, TokenKind::EmailVerification),
                k(e, "MAIL#VERIFY")
            );
            assert_eq!(user_ref(&usr), k(&u, "USER"));
            assert_eq!(user_partition(&usr), u);
            assert_eq!(session(&usr, &ses), k(&u, &format!("SESSION#ses_{HEX}")));
            assert_eq!(totp_factor(&usr), k(&u, "MFA#TOTP"));
            assert_eq!(recovery_code(&usr, 7), k(&u, "MFA#RECOVERY#7"));
            assert_eq!(
                challenge(&usr, &ch),
                k(&u, &format!("MFA#CHALLENGE#mfc_{HEX}"))
            );
            assert_eq!(mfa_lockout(&usr), k(&u, "MFA#LOCKOUT"));
            assert_eq!(MFA_PREFIX, "MFA#");
            assert_eq!(org(&og), k(&o, "ORG"));
            assert_eq!(org_partition(&og), o);
            assert_eq!(token("abc"), k("TOKEN#abc", "TOKEN"));
            assert_eq!(NO_ORG, "ORG#-");
            assert_eq!(audit_partition(Some(&og), 3), format!("{o}#S3"));
            assert_eq!(audit_partition(None, 0), "ORG#-#S0");
            assert_eq!(audit_user_partition(Some(&og), &usr), format!("{o}#{u}"));
            assert_eq!(audit_user_partition(None, &usr), format!("ORG#-#{u}"));
            let at = Timestamp::from_unix_millis(0);
            assert_eq!(
                audit_sort(at, &ev),
                format!("1970-01-01T00:00:00.000Z#evt_{HEX}")
            );
            assert!(audit_shard(&ev) < AUDIT_SHARDS);
            Ok(())
        }

        /// An account is indexed under its org on `gsi1`.
        #[test]
        fn an_account_is_indexed_under_its_org() -> Result<(), String> {
            use crate::domain::{AccountStatus, Role};
            use crate::store::{AccountRecord, AttributeValue, MemoryStore, Store, Write};
            let store = Store::new(
                std::sync::Arc::new(MemoryStore::new()),
                std::time::Duration::from_secs(60),
            );
            let a = AccountRecord {
                user_id: id(UserId::parse, "usr")?,
                org_id: id(OrgId::parse, "org")?,
                email: email()?,
                role: Role::Owner,
                status: AccountStatus::Active,
                email_verified: true,
                mfa_enabled: false,
                password_hash: String::new(),
                password_epoch: 0,
                created_at: Timestamp::from_unix_millis(0),
            };
            let mut tx = store.tx();
            tx.put_account(&a, None);
            let Some(Write::Put { item, .. }) = tx.writes.first() else {
                return Err(format!("{:?}", tx.writes));
            };
            let s = |v: &str| Some(AttributeValue::S(v.to_owned()));
            assert_eq!(item.get("gsi1pk").cloned(), s(&format!("ORG#org_{HEX}")));
            assert_eq!(item.get("gsi1sk").cloned(), s(&format!("USER#usr_{HEX}")));
            Ok(())
        }
    }
}

fn to_item<T: Serialize>(value: &T) -> Result<Item, StoreError> {
    serde_dynamo::to_item(value).map_err(|e| StoreError::Corrupt(format!("serialize: {e}")))
}

fn from_item<T: DeserializeOwned>(item: Item) -> Result<T, StoreError> {
    serde_dynamo::from_item(item).map_err(|e| StoreError::Corrupt(format!("deserialize: {e}")))
}

fn versioned<T: DeserializeOwned>(item: Item) -> Result<Versioned<T>, StoreError> {
    let ver = super::attr_u64(&item, super::VERSION).unwrap_or(0);
    Ok(Versioned {
        value: from_item(item)?,
        ver,
    })
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

/// How often [`Store::commit`] sends a transaction again after a `TransactionConflict`.
pub const CONFLICT_RETRIES: u32 = 8;

/// A random pause before the `attempt`-th resend (0-based): up to 2, 4, 8 … 100 ms, so that
/// colliding writers spread out (full jitter).
fn conflict_pause(attempt: u32) -> Duration {
    let cap_ms = (2u64 << attempt.min(6)).min(100);
    let r = u64::from_le_bytes(crate::crypto::random_bytes::<8>());
    Duration::from_micros(r % (cap_ms * 1000 + 1))
}

/// The version a new item starts at: random (below 2^53, so every JSON reader keeps it
/// exact), so that an item deleted and created again never repeats a version a stale
/// writer may hold. Versions then go up by one per write.
fn initial_version() -> u64 {
    u64::from_le_bytes(crate::crypto::random_bytes::<8>()) % ((1 << 53) - 1) + 1
}

/// The repository every flow reads and writes through.
#[derive(Clone)]
pub struct Store {
    backend: Arc<dyn Backend>,
    audit_retention: Duration,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

/// Everything MFA about a user, in one query.
#[derive(Debug, Default)]
pub struct MfaState {
    pub factor: Option<Versioned<TotpFactorRecord>>,
    pub recovery_codes: Vec<Versioned<RecoveryCodeRecord>>,
    pub challenges: Vec<Versioned<ChallengeRecord>>,
    pub lockout: Option<Versioned<LockoutRecord>>,
}

/// Everything under an email: its account, its failure count and its mailed links, in one
/// read.
#[derive(Debug, Default)]
pub struct LoginState {
    pub account: Option<Versioned<AccountRecord>>,
    pub lockout: Option<Versioned<LockoutRecord>>,
    pub reset_link: Option<Versioned<MailLinkState>>,
    pub verify_link: Option<Versioned<MailLinkState>>,
}

impl Store {
    pub fn new(backend: Arc<dyn Backend>, audit_retention: Duration) -> Self {
        Self {
            backend,
            audit_retention,
        }
    }

    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    pub fn tx(&self) -> Tx {
        Tx {
            writes: Vec::new(),
            error: None,
            audit_retention: self.audit_retention,
        }
    }

    /// Writes the transaction: all of it or nothing. A transaction DynamoDB cancelled for a
    /// collision with another one in flight ([`StoreError::Conflict`]) found no condition
    /// false, so it is sent again, after a short random pause, up to [`CONFLICT_RETRIES`]
    /// times; then the store counts as unavailable (503). Flows only ever see
    /// `ConditionFailed` for a condition that was really false.
    pub async fn commit(&self, tx: Tx) -> Result<(), StoreError> {
        if let Some(e) = tx.error {
            return Err(e);
        }
        let mut attempt = 0;
        loop {
            match self.backend.transact(&tx.writes).await {
                Err(StoreError::Conflict) if attempt < CONFLICT_RETRIES => {
                    tokio::time::sleep(conflict_pause(attempt)).await;
                    attempt += 1;
                }
                Err(StoreError::Conflict) => {
                    return Err(StoreError::Unavailable(
                        "transaction conflicts persisted".into(),
                    ));
                }
                other => return other,
            }
        }
    }

    async fn get<T: DeserializeOwned>(
        &self,
        table: Table,
        key: &Key,
    ) -> Result<Option<Versioned<T>>, StoreError> {
        self.backend
            .get(table, key)
            .await?
            .map(versioned)
            .transpose()
    }

    /// One query on the email's partition: the account (if any) and its lockout counter.
    pub async fn login_state(&self, email: &Email) -> Result<LoginState, StoreError> {
        let page = self
            .backend
            .query(&Query::new(Table::Main, keys::email_partition(email)))
            .await?;
        let mut state = LoginState::default();
        for item in page.items {
            match super::attr_str(&item, super::SK) {
                Some("ACCOUNT") => state.account = Some(versioned(item)?),
                Some("LOCKOUT") => state.lockout = Some(versioned(item)?),
                Some("MAIL#RESET") => state.reset_link = Some(versioned(item)?),
                Some("MAIL#VERIFY") => state.verify_link = Some(versioned(item)?),
                _ => {}
            }
        }
        Ok(state)
    }

    pub async fn budget(
        &self,
        b: Budget<'_>,
    ) -> Result<Option<Versioned<LockoutRecord>>, StoreError> {
        self.get(Table::Main, &b.key()).await
    }

    pub async fn account(
        &self,
        email: &Email,
    ) -> Result<Option<Versioned<AccountRecord>>, StoreError> {
        self.get(Table::Main, &keys::account(email)).await
    }

    pub async fn user_ref(&self, user: &UserId) -> Result<Option<UserRef>, StoreError> {
        Ok(self
            .get(Table::Main, &keys::user_ref(user))
            .await?
            .map(|v| v.value))
    }

    /// The account of a user id: two reads (the reference, then the account).
    pub async fn account_by_user(
        &self,
        user: &UserId,
    ) -> Result<Option<Versioned<AccountRecord>>, StoreError> {
        match self.user_ref(user).await? {
            Some(r) => self.account(&r.email).await,
            None => Ok(None),
        }
    }

    pub async fn org(&self, org: &OrgId) -> Result<Option<OrgRecord>, StoreError> {
        Ok(self
            .get(Table::Main, &keys::org(org))
            .await?
            .map(|v| v.value))
    }

    pub async fn session(
        &self,
        user: &UserId,
        session: &SessionId,
    ) -> Result<Option<Versioned<SessionRecord>>, StoreError> {
        self.get(Table::Main, &keys::session(user, session)).await
    }

    /// Every session item of a user, live or not, oldest first.
    pub async fn sessions(
        &self,
        user: &UserId,
    ) -> Result<Vec<Versioned<SessionRecord>>, StoreError> {
        let mut q = Query::new(Table::Main, keys::user_partition(user));
        q.sk = SkRange::BeginsWith("SESSION#".into());
        let mut out = Vec::new();
        loop {
            let page = self.backend.query(&q).await?;
            for item in page.items {
                out.push(versioned(item)?);
            }
            match page.last_key {
                Some(k) => q.start_after = Some(k),
                None => return Ok(out),
            }
        }
    }

    /// One query on the user's partition for the `MFA#` items.
    pub async fn mfa_state(&self, user: &UserId) -> Result<MfaState, StoreError> {
        let mut q = Query::new(Table::Main, keys::user_partition(user));
        q.sk = SkRange::BeginsWith(keys::MFA_PREFIX.into());
        let mut state = MfaState::default();
        loop {
            let page = self.backend.query(&q).await?;
            for item in page.items {
                let sk = super::attr_str(&item, super::SK)
                    .unwrap_or_default()
                    .to_owned();
                if sk == "MFA#TOTP" {
                    state.factor = Some(versioned(item)?);
                } else if sk == "MFA#LOCKOUT" {
                    state.lockout = Some(versioned(item)?);
                } else if sk.starts_with("MFA#RECOVERY#") {
                    state.recovery_codes.push(versioned(item)?);
                } else if sk.starts_with("MFA#CHALLENGE#") {
                    state.challenges.push(versioned(item)?);
                }
            }
            match page.last_key {
                Some(k) => q.start_after = Some(k),
                None => return Ok(state),
            }
        }
    }

    pub async fn token(&self, hash: &str) -> Result<Option<TokenRecord>, StoreError> {
        Ok(self
            .get(Table::Main, &keys::token(hash))
            .await?
            .map(|v| v.value))
    }

    pub async fn mail_link(
        &self,
        email: &Email,
        kind: TokenKind,
    ) -> Result<Option<Versioned<MailLinkState>>, StoreError> {
        self.get(Table::Main, &keys::mail_link(email, kind)).await
    }

    /// Audit events of an org (or of one user in it), newest first, one page of at most
    /// `limit` at a time: one Query per shard (one for a user, on the `by_user` index),
    /// merged. Pass the returned cursor back for the next page; `None` after the last.
    pub async fn audit_events(
        &self,
        org: Option<&OrgId>,
        user: Option<&UserId>,
        range: SkRange,
        limit: u32,
        cursor: Option<AuditCursor>,
    ) -> Result<(Vec<AuditEvent>, Option<AuditCursor>), StoreError> {
        let queries: Vec<Query> = match user {
            Some(u) => {
                let mut q = Query::new(Table::Audit, keys::audit_user_partition(org, u));
                q.index = Some(Index::AuditByUser);
                vec![q]
            }
            None => (0..keys::AUDIT_SHARDS)
                .map(|shard| Query::new(Table::Audit, keys::audit_partition(org, shard)))
                .collect(),
        };
        let mut positions = cursor.map_or_else(|| vec![Shard::Start; queries.len()], |c| c.0);
        if positions.len() != queries.len() {
            return Err(StoreError::Invalid("cursor of another query".into()));
        }
        // Each shard's next page, tagged with its shard.
        let mut hits: Vec<(String, usize, Item)> = Vec::new();
        let mut more = vec![false; queries.len()];
        let mut returned = vec![0usize; queries.len()];
        for (i, mut q) in queries.into_iter().enumerate() {
            let start_after = match &positions[i] {
                Shard::Done => continue,
                Shard::Start => None,
                Shard::After(k) => Some(k.clone()),
            };
            q.sk = range.clone();
            q.newest_first = true;
            q.limit = Some(limit);
            q.start_after = start_after;
            let Page { items, last_key } = self.backend.query(&q).await?;
            more[i] = last_key.is_some();
            returned[i] = items.len();
            for item in items {
                let sk = super::attr_str(&item, super::SK)
                    .unwrap_or_default()
                    .to_owned();
                hits.push((sk, i, item));
            }
        }
        hits.sort_by(|a, b| b.0.cmp(&a.0));
        hits.truncate(limit as usize);
        let mut taken = vec![0usize; positions.len()];
        let mut events = Vec::with_capacity(hits.len());
        for (_, shard, item) in hits {
            taken[shard] += 1;
            positions[shard] = Shard::After(audit_key(&item));
            events.push(from_item(item)?);
        }
        // A shard whose page was taken whole, with nothing after it, is done.
        for (i, p) in positions.iter_mut().enumerate() {
            if taken[i] == returned[i] && !more[i] {
                *p = Shard::Done;
            }
        }
        let next = (!positions.iter().all(|p| *p == Shard::Done)).then_some(AuditCursor(positions));
        Ok((events, next))
    }
}

/// Where an audit query stands in one shard.
#[derive(Debug, Clone, PartialEq)]
enum Shard {
    Start,
    After(Item),
    Done,
}

/// Where a paged audit query stands, shard by shard. Opaque; the audit API seals it.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditCursor(Vec<Shard>);

/// The table and index keys of an audit item, to resume a query after it.
fn audit_key(item: &Item) -> Item {
    ["pk", "sk", "user_pk"]
        .iter()
        .filter_map(|k| item.get(*k).map(|v| ((*k).to_owned(), v.clone())))
        .collect()
}

/// The writes of one transaction. Each adder returns the write's index, which
/// [`StoreError::ConditionFailed`] names when that write's condition was false.
#[derive(Debug)]
pub struct Tx {
    writes: Vec<Write>,
    error: Option<StoreError>,
    audit_retention: Duration,
}

impl Tx {
    pub fn len(&self) -> usize {
        self.writes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.writes.is_empty()
    }

    fn push(&mut self, w: Write) -> usize {
        self.writes.push(w);
        self.writes.len() - 1
    }

    fn put<T: Serialize>(
        &mut self,
        table: Table,
        key: Key,
        value: &T,
        cond: Cond,
        extra: Vec<(&str, AttributeValue)>,
    ) -> usize {
        let mut item = match to_item(value) {
            Ok(i) => i,
            Err(e) => {
                self.error.get_or_insert(e);
                Item::new()
            }
        };
        item.insert(super::PK.to_owned(), s(key.pk));
        item.insert(super::SK.to_owned(), s(key.sk));
        for (k, v) in extra {
            item.insert(k.to_owned(), v);
        }
        self.push(Write::Put { table, item, cond })
    }

    /// The next version for a record last read at `prev` (absent: a new item, whose first
    /// version is random: see [`initial_version`]).
    fn bump(prev: Option<u64>) -> AttributeValue {
        n(prev.map_or_else(initial_version, |v| v + 1))
    }

    pub fn create_org(&mut self, org: &OrgRecord) -> usize {
        self.put(
            Table::Main,
            keys::org(&org.org_id),
            org,
            Cond::NotExists,
            vec![(super::VERSION, Self::bump(None))],
        )
    }

    /// Creates an account and its user reference; the account's index fails when the email is
    /// taken.
    pub fn create_account(&mut self, a: &AccountRecord) -> usize {
        let idx = self.put_account(a, None);
        let r = UserRef {
            user_id: a.user_id.clone(),
            org_id: a.org_id.clone(),
            email: a.email.clone(),
        };
        self.put(
            Table::Main,
            keys::user_ref(&a.user_id),
            &r,
            Cond::NotExists,
            vec![(super::VERSION, Self::bump(None))],
        );
        idx
    }

    /// Writes an account read at version `prev` (`None`: it must not exist yet).
    pub fn put_account(&mut self, a: &AccountRecord, prev: Option<u64>) -> usize {
        let cond = prev.map_or(Cond::NotExists, Cond::Version);
        let extra = vec![
            (super::VERSION, Self::bump(prev)),
            ("gsi1pk", s(keys::org_partition(&a.org_id))),
            ("gsi1sk", s(format!("USER#{}", a.user_id))),
        ];
        self.put(Table::Main, keys::account(&a.email), a, cond, extra)
    }

    /// Writes a failure budget read at version `prev` (`None`: it must not exist yet) and
    /// returns the version written, which a success clears it under.
    pub fn put_budget(&mut self, b: Budget<'_>, l: &LockoutRecord, prev: Option<u64>) -> u64 {
        let keep_until = [Some(l.last_failure_at), l.locked_until, l.last_refused_at]
            .into_iter()
            .flatten()
            .max()
            .unwrap_or(l.last_failure_at);
        let ttl = keep_until.plus(LockoutRecord::RETENTION).unix_seconds();
        let ver = prev.map_or_else(initial_version, |v| v + 1);
        let extra = vec![(super::VERSION, n(ver)), (super::TTL, n(ttl))];
        // Strictly as read: a budget read at a version and cleared (deleted) since must not
        // come back with a count built on the cleared one.
        self.put(
            Table::Main,
            b.key(),
            l,
            prev.map_or(Cond::NotExists, Cond::Version),
            extra,
        );
        ver
    }

    /// Clears a failure budget on a success, on the condition that it is still as `seen`
    /// (what this request counted or read): its version, and its tally of refusals, whose
    /// summary the caller writes in the same transaction, so none goes unreported. `None`
    /// checks that no budget appeared meanwhile.
    pub fn clear_budget(
        &mut self,
        b: Budget<'_>,
        seen: Option<&Versioned<LockoutRecord>>,
    ) -> usize {
        match seen {
            Some(l) => self.push(Write::Delete {
                table: Table::Main,
                key: b.key(),
                cond: Cond::VersionAndNumber {
                    ver: l.ver,
                    attr: "refused",
                    value: u64::from(l.value.refused),
                },
            }),
            None => self.push(Write::Check {
                table: Table::Main,
                key: b.key(),
                cond: Cond::NotExists,
            }),
        }
    }

    /// Counts a request refused while the budget is locked: `refused` + 1 and its times, on
    /// the existing record, without touching its version (so counted attempts and successes
    /// never wait for refusals, and no refusal is lost to a race).
    pub fn count_refusal(&mut self, b: Budget<'_>, now: Timestamp) -> usize {
        self.push(Write::Count {
            table: Table::Main,
            key: b.key(),
            counter: "refused",
            first: "first_refused_at",
            last: "last_refused_at",
            at: s(now.to_string()),
            // Kept a year after the last refusal too: a record that needs a reset must not
            // expire while it is being hammered.
            ttl: now.plus(LockoutRecord::RETENTION).unix_seconds(),
            cond: Cond::Exists,
        })
    }

    /// Deletes a failure budget whatever its state (a password reset does).
    pub fn remove_budget(&mut self, b: Budget<'_>) -> usize {
        self.push(Write::Delete {
            table: Table::Main,
            key: b.key(),
            cond: Cond::None,
        })
    }

    /// Writes a session read at version `prev` (`None`: a new session).
    pub fn put_session(&mut self, sess: &SessionRecord, prev: Option<u64>) -> usize {
        let cond = prev.map_or(Cond::NotExists, Cond::Version);
        let extra = vec![
            (super::VERSION, Self::bump(prev)),
            (super::TTL, n(sess.expires_at.unix_seconds())),
        ];
        self.put(
            Table::Main,
            keys::session(&sess.user_id, &sess.session_id),
            sess,
            cond,
            extra,
        )
    }

    pub fn delete_session(&mut self, user: &UserId, session: &SessionId, cond: Cond) -> usize {
        self.push(Write::Delete {
            table: Table::Main,
            key: keys::session(user, session),
            cond,
        })
    }

    /// Writes the TOTP factor read at version `prev` (`None`: it must not exist yet).
    pub fn put_totp_factor(
        &mut self,
        user: &UserId,
        f: &TotpFactorRecord,
        prev: Option<u64>,
    ) -> usize {
        let cond = prev.map_or(Cond::NotExists, Cond::Version);
        self.put(
            Table::Main,
            keys::totp_factor(user),
            f,
            cond,
            vec![(super::VERSION, Self::bump(prev))],
        )
    }

    pub fn delete_totp_factor(&mut self, user: &UserId, cond: Cond) -> usize {
        self.push(Write::Delete {
            table: Table::Main,
            key: keys::totp_factor(user),
            cond,
        })
    }

    /// Writes a recovery code slot, replacing whatever was there.
    pub fn put_recovery_code(&mut self, user: &UserId, r: &RecoveryCodeRecord) -> usize {
        self.put(
            Table::Main,
            keys::recovery_code(user, r.slot),
            r,
            Cond::None,
            vec![(super::VERSION, Self::bump(None))],
        )
    }

    pub fn delete_recovery_code(&mut self, user: &UserId, slot: u8, cond: Cond) -> usize {
        self.push(Write::Delete {
            table: Table::Main,
            key: keys::recovery_code(user, slot),
            cond,
        })
    }

    /// Writes a challenge read at version `prev` (`None`: a new one).
    pub fn put_challenge(&mut self, c: &ChallengeRecord, prev: Option<u64>) -> usize {
        let cond = prev.map_or(Cond::NotExists, Cond::Version);
        let extra = vec![
            (super::VERSION, Self::bump(prev)),
            (super::TTL, n(c.expires_at.unix_seconds())),
        ];
        self.put(
            Table::Main,
            keys::challenge(&c.user_id, &c.challenge_id),
            c,
            cond,
            extra,
        )
    }

    pub fn delete_challenge(&mut self, user: &UserId, id: &ChallengeId, cond: Cond) -> usize {
        self.push(Write::Delete {
            table: Table::Main,
            key: keys::challenge(user, id),
            cond,
        })
    }

    /// Fails the transaction unless the account is still at version `ver`: for writes that
    /// are valid only as long as the account (its password above all) is unchanged.
    pub fn check_account(&mut self, email: &Email, ver: u64) -> usize {
        self.push(Write::Check {
            table: Table::Main,
            key: keys::account(email),
            cond: Cond::Version(ver),
        })
    }

    /// Fails the transaction unless the account's password is still of epoch `epoch`: what a
    /// session or challenge opened with that password may do only while it is current.
    pub fn check_password_epoch(&mut self, email: &Email, epoch: u64) -> usize {
        self.push(Write::Check {
            table: Table::Main,
            key: keys::account(email),
            cond: Cond::NumberIs {
                attr: "password_epoch",
                value: epoch,
            },
        })
    }

    /// Writes the mailed-link state read at version `prev` (`None`: it must not exist yet).
    pub fn put_mail_link(
        &mut self,
        email: &Email,
        kind: TokenKind,
        state: &MailLinkState,
        prev: Option<u64>,
        keep_until: Timestamp,
    ) -> usize {
        self.put(
            Table::Main,
            keys::mail_link(email, kind),
            state,
            prev.map_or(Cond::NotExists, Cond::Version),
            vec![
                (super::VERSION, Self::bump(prev)),
                (super::TTL, n(keep_until.unix_seconds())),
            ],
        )
    }

    /// Uses up a one-time token: fails the transaction when it is gone (used already, or
    /// replaced by a newer one), so a token works once however many requests race for it.
    pub fn consume_token(&mut self, hash: &str) -> usize {
        self.push(Write::Delete {
            table: Table::Main,
            key: keys::token(hash),
            cond: Cond::Exists,
        })
    }

    /// Deletes a token that may or may not still exist (an older link being replaced).
    pub fn delete_token(&mut self, hash: &str) -> usize {
        self.push(Write::Delete {
            table: Table::Main,
            key: keys::token(hash),
            cond: Cond::None,
        })
    }

    pub fn create_token(&mut self, hash: &str, t: &TokenRecord) -> usize {
        let extra = vec![
            (super::VERSION, Self::bump(None)),
            (super::TTL, n(t.expires_at.unix_seconds())),
        ];
        self.put(Table::Main, keys::token(hash), t, Cond::NotExists, extra)
    }

    /// Appends an audit event. The audit table is append-only: the condition makes an event
    /// id that already exists fail the whole transaction rather than overwrite history.
    pub fn audit(&mut self, e: &AuditEvent) -> usize {
        let key = Key::new(
            keys::audit_partition(e.org_id.as_ref(), keys::audit_shard(&e.id)),
            keys::audit_sort(e.at, &e.id),
        );
        let ttl = e.at.plus(self.audit_retention).unix_seconds();
        let mut extra = vec![(super::TTL, n(ttl))];
        if let Some(u) = &e.target_user_id {
            extra.push((
                "user_pk",
                s(keys::audit_user_partition(e.org_id.as_ref(), u)),
            ));
        }
        self.put(Table::Audit, key, e, Cond::NotExists, extra)
    }
}
