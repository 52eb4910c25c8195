//! The use cases, one module each, named for what the user does. Flows take the store, keys,
//! clock and mailer from the state; they hold no HTTP types.

pub mod allowlist;
pub mod audit;
pub mod email;
pub mod invitations;
pub mod keys;
pub mod login;
pub mod mfa;
pub mod offboarding;
pub mod operator;
pub mod org;
pub mod password;
pub mod refresh;
pub mod sessions;
pub mod signup;
pub mod steps;
pub mod tokens;
pub mod users;

pub use crate::error::Error;

pub use steps::session::IssuedTokens;

/// How often a flow re-reads and retries after losing an optimistic-concurrency race. Enough
/// for dozens of simultaneous writers to one item; past it the caller gets a 503.
pub const MAX_RACE_RETRIES: usize = 64;
