//! Key builders: the only place key strings are spelled. Stored items carry them, so they
//! are data, not names: the test below pins each to what `docs/data-model.md` lists.

use crate::clock::Timestamp;
use crate::domain::{ChallengeId, Email, EventId, OrgId, SessionId, TokenId, UserId};
use crate::store::{Key, TokenKind};

// Partitions: a prefix and the id they belong to.
const EMAIL: &str = "EMAIL#";
const USER: &str = "USER#";
const ORG: &str = "ORG#";
const TOKEN: &str = "TOKEN#";
const API_SECRET: &str = "APITOKEN#";

// Sort keys under an email.
/// The account.
pub const ACCOUNT: &str = "ACCOUNT";
/// The password failure budget, with or without an account.
pub const LOCKOUT: &str = "LOCKOUT";
/// The mailed-link state of password resets.
pub const MAIL_RESET: &str = "MAIL#RESET";
/// The mailed-link state of email verifications.
pub const MAIL_VERIFY: &str = "MAIL#VERIFY";
/// The mailed-link state of invitations.
pub const MAIL_INVITE: &str = "MAIL#INVITE";
/// The mailed-link state of email changes (under the new address).
pub const MAIL_EMAIL_CHANGE: &str = "MAIL#EMAIL_CHANGE";
/// The copy of the org's settings that sign-in reads (also under an org: the settings).
pub const SETTINGS: &str = "SETTINGS";

// Sort keys under a user.
/// The user item: the reference from the user id to the account, and the state every
/// request checks.
pub const USER_REF: &str = "USER";
/// When the user last signed in.
pub const LAST_LOGIN: &str = "LAST_LOGIN";
/// Every session of a user sorts under this prefix.
pub const SESSION_PREFIX: &str = "SESSION#";
/// Every MFA item of a user sorts under this prefix, so one query reads them all.
pub const MFA_PREFIX: &str = "MFA#";
/// The TOTP factor.
pub const MFA_TOTP: &str = "MFA#TOTP";
/// The MFA failure budget.
pub const MFA_LOCKOUT: &str = "MFA#LOCKOUT";
/// Followed by the slot.
pub const MFA_RECOVERY_PREFIX: &str = "MFA#RECOVERY#";
/// Followed by the challenge id.
pub const MFA_CHALLENGE_PREFIX: &str = "MFA#CHALLENGE#";

// Sort keys of items alone in their partition.
const ORG_SK: &str = "ORG";
const TOKEN_SK: &str = "TOKEN";
const API_SECRET_SK: &str = "SECRET";

pub fn email_partition(email: &Email) -> String {
    format!("{EMAIL}{email}")
}
pub fn account(email: &Email) -> Key {
    Key::new(email_partition(email), ACCOUNT)
}
pub fn lockout(email: &Email) -> Key {
    Key::new(email_partition(email), LOCKOUT)
}
pub fn settings_copy(email: &Email) -> Key {
    Key::new(email_partition(email), SETTINGS)
}
/// The sort key of the mailed-link state of `kind`.
pub fn mail_link_sort(kind: TokenKind) -> &'static str {
    match kind {
        TokenKind::EmailVerification => MAIL_VERIFY,
        TokenKind::PasswordReset => MAIL_RESET,
        TokenKind::Invitation => MAIL_INVITE,
        TokenKind::EmailChange => MAIL_EMAIL_CHANGE,
    }
}
pub fn mail_link(email: &Email, kind: TokenKind) -> Key {
    Key::new(email_partition(email), mail_link_sort(kind))
}
pub fn user_partition(user: &UserId) -> String {
    format!("{USER}{user}")
}
/// The user a `USER#…` partition belongs to.
pub fn user_of_partition(pk: &str) -> Option<UserId> {
    UserId::parse(pk.strip_prefix(USER)?)
}
pub fn user_ref(user: &UserId) -> Key {
    Key::new(user_partition(user), USER_REF)
}
/// The mailed-link state of the links that belong to a user rather than to an address
/// (invitations, email changes): two orgs inviting one address keep their own.
pub fn user_mail_link(user: &UserId, kind: TokenKind) -> Key {
    Key::new(user_partition(user), mail_link_sort(kind))
}
pub fn last_login(user: &UserId) -> Key {
    Key::new(user_partition(user), LAST_LOGIN)
}
pub fn session(user: &UserId, session: &SessionId) -> Key {
    Key::new(user_partition(user), format!("{SESSION_PREFIX}{session}"))
}
pub fn totp_factor(user: &UserId) -> Key {
    Key::new(user_partition(user), MFA_TOTP)
}
pub fn recovery_code(user: &UserId, slot: u8) -> Key {
    Key::new(user_partition(user), format!("{MFA_RECOVERY_PREFIX}{slot}"))
}
pub fn challenge(user: &UserId, id: &ChallengeId) -> Key {
    Key::new(user_partition(user), format!("{MFA_CHALLENGE_PREFIX}{id}"))
}
/// The MFA failure budget of a user, apart from the password one.
pub fn mfa_lockout(user: &UserId) -> Key {
    Key::new(user_partition(user), MFA_LOCKOUT)
}
pub fn org_partition(org: &OrgId) -> String {
    format!("{ORG}{org}")
}
pub fn org(org: &OrgId) -> Key {
    Key::new(org_partition(org), ORG_SK)
}
pub fn org_settings(org: &OrgId) -> Key {
    Key::new(org_partition(org), SETTINGS)
}
/// Where no org's settings ever are (no org id is `-`), for an address without an account:
/// over 16 partitions by the address, so that a flood of unknown addresses checks no single
/// hot partition (whose throttling would tell them from known ones).
pub fn no_org_settings(email: &Email) -> Key {
    Key::new(no_org_partition(email), SETTINGS)
}
fn no_org_partition(email: &Email) -> String {
    use sha2::Digest;
    let shard = sha2::Sha256::digest(email.as_str().as_bytes())[0] % 16;
    format!("{NO_ORG}#{shard:x}")
}
const ALLOWLIST: &str = "ALLOWLIST";
/// An org's IP allowlist.
pub fn org_allowlist(org: &OrgId) -> Key {
    Key::new(org_partition(org), ALLOWLIST)
}
/// Where no org's allowlist ever is, as [`no_org_settings`].
pub fn no_org_allowlist(email: &Email) -> Key {
    Key::new(no_org_partition(email), ALLOWLIST)
}
/// The `gsi1` key of a user item: listed under its org, by user.
pub fn org_member(org: &OrgId, user: &UserId) -> Key {
    Key::new(org_partition(org), user_partition(user))
}
/// Every user of an org sorts under this prefix on `gsi1`.
pub const USER_PREFIX: &str = USER;
/// An address taken by a user of an org (invited or not): at most one user per address
/// per org.
pub fn member_email(org: &OrgId, email: &Email) -> Key {
    Key::new(org_partition(org), format!("{MEMBER_PREFIX}{email}"))
}
const MEMBER_PREFIX: &str = "MEMBER#";
/// The receipt of an offboarding, by its request id.
pub fn offboard_receipt(org: &OrgId, request_id: &str) -> Key {
    Key::new(org_partition(org), format!("{OFFBOARD_PREFIX}{request_id}"))
}
const OFFBOARD_PREFIX: &str = "OFFBOARD#";
/// The invitations an org sent within the last hour.
pub fn invite_rate(org: &OrgId) -> Key {
    Key::new(org_partition(org), INVITE_RATE)
}
const INVITE_RATE: &str = "RATE#INVITE";
/// Every API token of an org sorts under this prefix.
pub const API_TOKEN_PREFIX: &str = "APITOKEN#";
/// An API token, under its org.
pub fn api_token(org: &OrgId, id: &TokenId) -> Key {
    Key::new(org_partition(org), format!("{API_TOKEN_PREFIX}{id}"))
}
/// A live secret of an API token, by its SHA-256.
pub fn api_secret(hash: &str) -> Key {
    Key::new(format!("{API_SECRET}{hash}"), API_SECRET_SK)
}
/// That a token was used from an IP in a minute (unix seconds / 60).
pub fn api_token_use(org: &OrgId, id: &TokenId, ip: &str, minute: i64) -> Key {
    Key::new(
        org_partition(org),
        format!("{API_TOKEN_USE_PREFIX}{id}#{ip}#{minute}"),
    )
}
const API_TOKEN_USE_PREFIX: &str = "TOKENUSE#";
/// That the allowlist refused `who` (a user or token id) from an IP in a minute, at the
/// authorizer (unix seconds / 60).
pub fn ip_refusal(org: &OrgId, who: &str, ip: &str, minute: i64) -> Key {
    Key::new(
        org_partition(org),
        format!("{IP_REFUSAL_PREFIX}{who}#{ip}#{minute}"),
    )
}
const IP_REFUSAL_PREFIX: &str = "IPREFUSED#";
/// The public keys that verify access tokens, as `key-rotation` published them: read by
/// every function that holds no signing key (docs/keys.md).
pub fn published_keys() -> Key {
    Key::new(PUBLISHED_KEYS, PUBLISHED_KEYS_SK)
}
const PUBLISHED_KEYS: &str = "KEYS";
const PUBLISHED_KEYS_SK: &str = "JWKS";
pub fn token(hash: &str) -> Key {
    Key::new(format!("{TOKEN}{hash}"), TOKEN_SK)
}
/// Audit events of sign-ins with no account behind them belong to no org.
pub const NO_ORG: &str = "ORG#-";
/// Partitions an org's audit events are spread over, so that no org's audit becomes
/// the hot key that throttles its sign-ins (docs/data-model.md, "Audit at scale").
pub const AUDIT_SHARDS: u8 = 4;
fn org_part(org: Option<&OrgId>) -> String {
    org.map_or_else(|| NO_ORG.to_owned(), org_partition)
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
/// `ORG#{org}#USER#{user}` (or `ORG#-#USER#{user}`): the events about one user, on the
/// `by_user` index.
pub fn audit_user_partition(org: Option<&OrgId>, user: &UserId) -> String {
    format!("{}#{}", org_part(org), user_partition(user))
}
pub fn audit_sort(at: Timestamp, id: &EventId) -> String {
    format!("{at}#{id}")
}

#[cfg(test)]
mod tests {
    //! The key strings as `docs/data-model.md` lists them: stored items carry them, so a
    //! change here is a data migration, not a refactoring.
    use super::*;

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
        assert_eq!(settings_copy(&em), k(e, "SETTINGS"));
        assert_eq!(mail_link(&em, TokenKind::Invitation), k(e, "MAIL#INVITE"));
        assert_eq!(
            mail_link(&em, TokenKind::EmailChange),
            k(e, "MAIL#EMAIL_CHANGE")
        );
        assert_eq!(email_partition(&em), e);
        assert_eq!(mail_link(&em, TokenKind::PasswordReset), k(e, "MAIL#RESET"));
        assert_eq!(
            mail_link(&em, TokenKind::EmailVerification),
            k(e, "MAIL#VERIFY")
        );
        assert_eq!(user_ref(&usr), k(&u, "USER"));
        assert_eq!(last_login(&usr), k(&u, "LAST_LOGIN"));
        assert_eq!(
            user_mail_link(&usr, TokenKind::Invitation),
            k(&u, "MAIL#INVITE")
        );
        assert_eq!(member_email(&og, &em), k(&o, "MEMBER#a@example.com"));
        assert_eq!(offboard_receipt(&og, "r-1"), k(&o, "OFFBOARD#r-1"));
        assert_eq!(invite_rate(&og), k(&o, "RATE#INVITE"));
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
        for sk in [
            MFA_TOTP,
            MFA_LOCKOUT,
            MFA_RECOVERY_PREFIX,
            MFA_CHALLENGE_PREFIX,
        ] {
            assert!(sk.starts_with(MFA_PREFIX), "{sk}");
        }
        assert_eq!(org_member(&og, &usr), k(&o, &u));
        assert_eq!(org(&og), k(&o, "ORG"));
        assert_eq!(org_settings(&og), k(&o, "SETTINGS"));
        assert_eq!(org_allowlist(&og), k(&o, "ALLOWLIST"));
        let shard = no_org_settings(&em).pk;
        assert!(shard.starts_with("ORG#-#") && shard.len() == "ORG#-#0".len());
        assert_eq!(no_org_settings(&em), k(&shard, "SETTINGS"));
        assert_eq!(no_org_allowlist(&em), k(&shard, "ALLOWLIST"));
        let spread: std::collections::HashSet<String> = (0..200)
            .filter_map(|i| Email::parse(&format!("u{i}@example.com")).ok())
            .map(|e| no_org_settings(&e).pk)
            .collect();
        assert_eq!(spread.len(), 16);
        assert_eq!(org_partition(&og), o);
        assert_eq!(token("abc"), k("TOKEN#abc", "TOKEN"));
        let tok: TokenId = id(TokenId::parse, "tok")?;
        assert_eq!(api_token(&og, &tok), k(&o, &format!("APITOKEN#tok_{HEX}")));
        assert_eq!(api_secret("abc"), k("APITOKEN#abc", "SECRET"));
        assert_eq!(
            api_token_use(&og, &tok, "192.0.2.1", 7),
            k(&o, &format!("TOKENUSE#tok_{HEX}#192.0.2.1#7"))
        );
        assert_eq!(
            ip_refusal(&og, "usr_1", "192.0.2.1", 7),
            k(&o, "IPREFUSED#usr_1#192.0.2.1#7")
        );
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

    /// A user is indexed under its org on `gsi1` (by the user item; the account is not).
    #[test]
    fn a_user_is_indexed_under_its_org() -> Result<(), String> {
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
        let [
            Write::Put { item: account, .. },
            Write::Put { item: user, .. },
        ] = &tx.writes[..]
        else {
            return Err(format!("{:?}", tx.writes));
        };
        let s = |v: &str| Some(AttributeValue::S(v.to_owned()));
        assert_eq!(user.get("gsi1pk").cloned(), s(&format!("ORG#org_{HEX}")));
        assert_eq!(user.get("gsi1sk").cloned(), s(&format!("USER#usr_{HEX}")));
        assert_eq!(user.get("sk").cloned(), s("USER"));
        assert_eq!(account.get("gsi1pk"), None);
        Ok(())
    }
}
