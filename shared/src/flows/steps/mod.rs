//! The steps flows share, one level below them (docs/architecture.md): a flow imports steps,
//! never another flow, and no step imports a flow.

pub mod address;
pub mod api_tokens;
pub mod challenge;
pub mod factor;
pub mod invitation;
pub mod ip_allowlist;
pub mod links;
pub mod lockout;
pub mod mfa_reset;
pub mod notice;
pub mod offboard;
pub mod owners;
pub mod session;
pub mod step_up;
