//! Gatehouse: account security for B2B SaaS on AWS.
//!
//! Everything with logic in it lives here; each Lambda in `functions/` is a thin `main` that
//! builds an [`AppState`] and runs its family's router with [`runtime::run`].

pub mod access;
pub mod admin;
pub mod allowlist;
pub mod api;
pub mod api_token;
pub mod audit;
pub mod authorizer;
pub mod aws;
pub mod breached;
pub mod clock;
pub mod config;
pub mod console;
pub mod crypto;
pub mod domain;
pub mod error;
pub mod flows;
pub mod http;
pub mod jwt;
pub mod key_rotation;
pub mod keys;
pub mod local;
pub mod mail;
pub mod offboarding;
pub mod password;
pub mod policy;
pub mod problem;
pub mod runtime;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod text;
pub mod totp;

pub use state::AppState;
