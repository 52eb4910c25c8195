//! The Lambda authorizer other stacks attach to their HTTP API routes (docs/authorizer.md):
//! API Gateway payload format 2.0 with simple responses. It admits an access token or an API
//! token and hands the route's integration who is calling, as strings in the `context`.
//!
//! An access token is verified locally (signature, `iss`, `aud`, `exp`), then checked against
//! the state it stands on, as `access::authenticate` does: the session, the user, the org's
//! settings and its IP allowlist (`access::read_state`), so that a logout, a deactivation, a
//! role change or a list that no longer holds the source IP bites (a refusal is audited,
//! `via` `authorizer`). An API token costs one GetItem for its secret, never cached (a deleted token stops
//! at once), then its creator's state; its use is recorded (`flows::tokens::record_use`).
//!
//! The state `access::read_state` reads is cached per warm Lambda for [`CACHE_TTL`] at most,
//! measured with the app's clock, in at most [`CACHE_CAPACITY`] entries: with a warm cache an
//! access token costs no round trip, and a revoked session, a deactivation, a role change or
//! an allowlist change bites within [`CACHE_TTL`].

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use serde::ser::{Serialize, SerializeMap, Serializer};

use crate::access::{self, State};
use crate::api_token;
use crate::audit::RequestMeta;
use crate::clock::Timestamp;
use crate::domain::{OrgId, SessionId, UserId};
use crate::error::Error;
use crate::flows::steps::ip_allowlist::{self, Via};
use crate::flows::steps::session::SCOPE_MFA_ENROLL;
use crate::jwt;
use crate::state::AppState;

/// The event API Gateway sends an HTTP API authorizer (payload format 2.0).
pub use aws_lambda_events::apigw::ApiGatewayV2CustomAuthorizerV2Request as Request;

/// The longest a warm Lambda answers from a state it read: the most a revoked session, a
/// deactivation or a role change may go unseen.
pub const CACHE_TTL: Duration = Duration::from_secs(60);
/// The most states a warm Lambda keeps; when full, the expired ones go, and if none has
/// expired, all of them.
pub const CACHE_CAPACITY: usize = 10_000;

/// What the authorizer answers API Gateway: `{"isAuthorized": …, "context": {…}}`, the
/// context empty on a deny.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    Allow(Context),
    Deny,
}

impl Response {
    pub fn is_allowed(&self) -> bool {
        matches!(self, Self::Allow(_))
    }

    pub fn context(&self) -> Option<&Context> {
        match self {
            Self::Allow(c) => Some(c),
            Self::Deny => None,
        }
    }
}

impl Serialize for Response {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(2))?;
        match self {
            Self::Allow(c) => {
                m.serialize_entry("isAuthorized", &true)?;
                m.serialize_entry("context", c)?;
            }
            Self::Deny => {
                m.serialize_entry("isAuthorized", &false)?;
                m.serialize_entry("context", &HashMap::<&str, &str>::new())?;
            }
        }
        m.end()
    }
}

/// Who is calling, as the route's integration reads it (`$context.authorizer.<field>` in a
/// mapping, `requestContext.authorizer.lambda.<field>` in a Lambda's event). Every value is a
/// string; an absent one is `""`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Context {
    pub org_id: String,
    /// `user` (an access token) or `token` (an API token).
    pub principal_type: &'static str,
    /// The user's id, or the API token's.
    pub principal_id: String,
    /// A user's role now (as of the cached state); `""` for a token.
    pub role: String,
    /// A token's effective scopes (those its creator's role holds now), space-separated;
    /// `""` for a user.
    pub scopes: String,
    /// A user's session; `""` for a token.
    pub session_id: String,
}

/// Why a request was denied, for the log: never the credential.
#[derive(Debug)]
enum Denied {
    NoBearer,
    NoSourceIp,
    BadAccessToken(jwt::JwtError),
    EnrollmentOnly,
    NotLive,
    Allowlist,
    Store,
}

impl std::fmt::Display for Denied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NoBearer => f.write_str("no bearer credential"),
            Self::NoSourceIp => f.write_str("no source IP in the request context"),
            Self::BadAccessToken(e) => write!(f, "access token refused: {e}"),
            Self::EnrollmentOnly => f.write_str("the session may only enroll MFA"),
            Self::NotLive => f.write_str("the credential is not live"),
            Self::Allowlist => f.write_str("the org's IP allowlist refuses the source IP"),
            Self::Store => f.write_str("the store could not be read"),
        }
    }
}

impl From<Error> for Denied {
    fn from(e: Error) -> Self {
        match e {
            Error::Store(err) => {
                tracing::warn!(error = %err, "authorizer could not read the store: denied");
                Self::Store
            }
            _ => Self::NotLive,
        }
    }
}

type CacheKey = (UserId, OrgId, Option<SessionId>);

/// The states read by [`access::read_state`], each with when it was read.
#[derive(Debug)]
struct StateCache {
    ttl: Duration,
    capacity: usize,
    entries: Mutex<HashMap<CacheKey, (Timestamp, State)>>,
}

impl StateCache {
    fn new(ttl: Duration, capacity: usize) -> Self {
        Self {
            ttl,
            capacity,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn fresh(&self, read_at: Timestamp, now: Timestamp) -> bool {
        // A clock that went back makes an entry stale rather than fresh for longer.
        read_at <= now && now < read_at.plus(self.ttl)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<CacheKey, (Timestamp, State)>> {
        // The map holds plain data: a panic elsewhere cannot leave it half-written.
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn get(&self, key: &CacheKey, now: Timestamp) -> Option<State> {
        let mut entries = self.lock();
        match entries.get(key) {
            Some((at, state)) if self.fresh(*at, now) => Some(state.clone()),
            Some(_) => {
                entries.remove(key);
                None
            }
            None => None,
        }
    }

    fn put(&self, key: CacheKey, state: State, now: Timestamp) {
        let mut entries = self.lock();
        if entries.len() >= self.capacity && !entries.contains_key(&key) {
            entries.retain(|_, (at, _)| self.fresh(*at, now));
            if entries.len() >= self.capacity {
                entries.clear();
            }
        }
        entries.insert(key, (now, state));
    }

    fn len(&self) -> usize {
        self.lock().len()
    }
}

/// The (who, address) pairs the allowlist refused this minute and that this Lambda
/// recorded: a refused address costs one audit write per minute, not one per request.
#[derive(Debug, Default)]
struct RefusalMemo {
    minute: i64,
    seen: std::collections::HashSet<(String, IpAddr)>,
}

/// The authorizer of one warm Lambda: the app's state and its cache of read states.
#[derive(Debug)]
pub struct Authorizer {
    state: AppState,
    cache: StateCache,
    refused: Mutex<RefusalMemo>,
}

impl Authorizer {
    pub fn new(state: AppState) -> Self {
        Self {
            state,
            cache: StateCache::new(CACHE_TTL, CACHE_CAPACITY),
            refused: Mutex::default(),
        }
    }

    /// Denies a request the org's allowlist refuses, recording the refusal at most once a
    /// minute per (who, address) (`ip_allowlist::record_once_a_minute`).
    async fn refuse(&self, org: &OrgId, who: &access::Actor, meta: &RequestMeta) -> Denied {
        let st = &self.state;
        let minute = st.clock.now().unix_seconds().div_euclid(60);
        let id = who.id();
        let first = {
            let mut memo = self
                .refused
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if memo.minute != minute || memo.seen.len() >= CACHE_CAPACITY {
                memo.minute = minute;
                memo.seen.clear();
            }
            memo.seen.insert((id.clone(), meta.ip))
        };
        if first {
            let e = ip_allowlist::refusal_of(st, org, who, Via::Authorizer, meta);
            ip_allowlist::record_once_a_minute(st, org, &id, &e).await;
        }
        Denied::Allowlist
    }

    /// How many states the cache holds.
    pub fn cached(&self) -> usize {
        self.cache.len()
    }

    /// Allows or denies one request. Every failure denies: a missing or malformed credential,
    /// one that is not live, and a store that cannot be read (logged).
    pub async fn decide(&self, req: &Request) -> Response {
        match self.try_decide(req).await {
            Ok(context) => Response::Allow(context),
            Err(why) => {
                tracing::debug!(reason = %why, "authorizer denied");
                Response::Deny
            }
        }
    }

    async fn try_decide(&self, req: &Request) -> Result<Context, Denied> {
        let bearer = bearer(req).ok_or(Denied::NoBearer)?;
        // API Gateway's view of the caller; it cannot be set by the caller.
        let ip: IpAddr = req
            .request_context
            .http
            .source_ip
            .as_deref()
            .and_then(|ip| ip.parse().ok())
            .ok_or(Denied::NoSourceIp)?;
        if api_token::looks_like(bearer) {
            self.api_token(bearer, ip, req).await
        } else {
            self.access_token(bearer, ip, req).await
        }
    }

    /// The state of `user` in `org` (and `session`), from the cache while it is fresh.
    async fn state_of(
        &self,
        user: &UserId,
        org: &OrgId,
        session: Option<&SessionId>,
    ) -> Result<State, Denied> {
        let key = (user.clone(), org.clone(), session.cloned());
        let now = self.state.clock.now();
        if let Some(state) = self.cache.get(&key, now) {
            return Ok(state);
        }
        let state = access::read_state(&self.state, user, org, session).await?;
        // Stamped with the time before the read: what is answered from the cache is never
        // older than the TTL, however long the read took.
        self.cache.put(key, state.clone(), now);
        Ok(state)
    }

    async fn access_token(
        &self,
        token: &str,
        ip: IpAddr,
        req: &Request,
    ) -> Result<Context, Denied> {
        let st = &self.state;
        let claims = jwt::verify(
            &st.keys.current(),
            token,
            &st.config.issuer,
            &st.config.audience,
            st.clock.now(),
        )
        .map_err(Denied::BadAccessToken)?;
        if claims.scope.as_deref() == Some(SCOPE_MFA_ENROLL) {
            return Err(Denied::EnrollmentOnly);
        }
        let state = self
            .state_of(&claims.sub, &claims.org, Some(&claims.sid))
            .await?;
        let actor = access::user_actor(&claims, state, st.clock.now())?;
        if actor.enrollment_only() {
            return Err(Denied::EnrollmentOnly);
        }
        let meta = request_meta(req, ip);
        if !actor.allowlist.permits(ip) {
            return Err(self.refuse(&actor.org, &actor.actor(), &meta).await);
        }
        Ok(Context {
            org_id: actor.org.to_string(),
            principal_type: "user",
            principal_id: actor.user.to_string(),
            role: actor.role.as_str().to_owned(),
            scopes: String::new(),
            session_id: actor.session.to_string(),
        })
    }

    async fn api_token(&self, raw: &str, ip: IpAddr, req: &Request) -> Result<Context, Denied> {
        let st = &self.state;
        // A malformed secret or a bad checksum is refused here without a read; the secret's
        // item is read every time, so a deleted or rotated-out secret stops at once.
        let (hash, secret) = access::token_secret(st, raw).await?;
        let state = self
            .state_of(&secret.value.created_by, &secret.value.org_id, None)
            .await?;
        let actor = access::token_actor(
            hash,
            secret,
            state.user.as_ref(),
            state.settings,
            state.allowlist,
        )?;
        let meta = request_meta(req, ip);
        if !actor.allowlist.permits(ip) {
            return Err(self.refuse(&actor.org, &actor.actor(), &meta).await);
        }
        crate::flows::tokens::record_use(st, &actor, &meta).await;
        Ok(Context {
            org_id: actor.org.to_string(),
            principal_type: "token",
            principal_id: actor.token.to_string(),
            role: String::new(),
            scopes: actor.scopes.join(" "),
            session_id: String::new(),
        })
    }
}

/// The bearer credential: from the `Authorization` header, else from the first identity
/// source (which API Gateway fills with that header's value). The scheme is case-insensitive.
fn bearer(req: &Request) -> Option<&str> {
    let raw = match req.headers.get(http::header::AUTHORIZATION) {
        Some(v) => v.to_str().ok()?,
        None => req.identity_source.as_ref()?.first()?.as_str(),
    };
    let (scheme, credential) = raw.trim().split_once(' ')?;
    let credential = credential.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !credential.is_empty()).then_some(credential)
}

/// Who asked and from where, for the record of a token's use.
fn request_meta(req: &Request, ip: IpAddr) -> RequestMeta {
    let user_agent = req
        .headers
        .get(http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .or(req.request_context.http.user_agent.as_deref())
        .map(|ua| ua.chars().take(RequestMeta::MAX_USER_AGENT).collect());
    RequestMeta {
        ip,
        user_agent,
        request_id: req.request_context.request_id.clone().unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::store::CurrentSettings;

    fn state() -> State {
        State {
            session: None,
            user: None,
            settings: CurrentSettings::of(None, Config::default().default_org_settings()),
            allowlist: crate::allowlist::Rule::default(),
        }
    }

    fn key(i: usize) -> CacheKey {
        (
            UserId::new(),
            OrgId::new(),
            i.is_multiple_of(2).then(SessionId::new),
        )
    }

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_unix_millis(1_800_000_000_000 + secs * 1000)
    }

    #[test]
    fn an_entry_is_fresh_for_the_ttl_and_not_a_moment_longer() {
        let cache = StateCache::new(CACHE_TTL, 10);
        let k = key(0);
        cache.put(k.clone(), state(), at(0));
        assert!(cache.get(&k, at(0)).is_some());
        assert!(cache.get(&k, at(59)).is_some());
        assert!(cache.get(&k, at(60)).is_none());
        assert_eq!(cache.len(), 0, "a stale entry is dropped when met");
        cache.put(k.clone(), state(), at(100));
        assert!(cache.get(&k, at(99)).is_none(), "a clock gone back");
    }

    #[test]
    fn a_full_cache_drops_the_expired_then_everything() {
        let cache = StateCache::new(CACHE_TTL, 4);
        for i in 0..2 {
            cache.put(key(i), state(), at(0));
        }
        for i in 2..4 {
            cache.put(key(i), state(), at(30));
        }
        assert_eq!(cache.len(), 4);
        // Full at 70 s: the two read at 0 s have expired and go; the two of 30 s stay.
        let kept = key(9);
        cache.put(kept.clone(), state(), at(70));
        assert_eq!(cache.len(), 3);
        cache.put(key(10), state(), at(70));
        assert_eq!(cache.len(), 4);
        // Full again and nothing expired: everything goes.
        cache.put(key(11), state(), at(71));
        assert_eq!(cache.len(), 1);
        assert!(cache.get(&kept, at(71)).is_none());
        // Replacing an entry of a full cache drops nothing.
        let cache = StateCache::new(CACHE_TTL, 2);
        let (a, b) = (key(0), key(1));
        cache.put(a.clone(), state(), at(0));
        cache.put(b.clone(), state(), at(0));
        cache.put(a.clone(), state(), at(1));
        assert!(cache.get(&b, at(1)).is_some());
        assert_eq!(cache.len(), 2);
    }
}
