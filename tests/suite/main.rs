//! The integration suite: one binary, so the workspace links once.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod allowlist;
mod api_errors;
mod architecture;
mod audit;
mod audit_query;
mod authorizer;
mod concurrency;
mod conflicts;
mod conformance;
mod e2e;
mod functions;
mod infra;
mod invitations;
mod jwt;
mod key_rotation;
mod keys;
mod lambda;
mod local;
mod lockout;
mod login;
mod logs;
mod mail;
mod memory;
mod mfa;
mod mfa_hardening;
mod offboarding;
mod openapi;
mod reset;
mod sessions;
mod signup;
mod tokens;
mod users;
