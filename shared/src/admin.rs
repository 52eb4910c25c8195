//! `gatehouse-admin`: the operator's CLI, on the same store code as the functions, with the
//! operator's AWS credentials (docs/operations.md). Everything it does is audited as the
//! system actor `system:operator`.
//!
//! ```text
//! gatehouse-admin mfa reset --email ADDR --reason TEXT
//! gatehouse-admin allowlist disable --org ORG_ID
//! gatehouse-admin keys publish | retire --kid KID | rotate-data | reseal | prune
//! ```
//!
//! Configuration is the functions' (`GATEHOUSE_MAIN_TABLE`, `GATEHOUSE_AUDIT_TABLE`,
//! `GATEHOUSE_SIGNING_KEYS_SECRET_ARN` and `GATEHOUSE_DATA_KEYS_SECRET_ARN`, and
//! `GATEHOUSE_MAIL_FROM` to mail the user; without it the user is not mailed and the CLI says
//! so). The `keys` commands are in docs/keys.md.

use std::net::{IpAddr, Ipv6Addr};

use crate::audit::RequestMeta;
use crate::config::Config;
use crate::domain::{Email, OrgId};
use crate::error::Error;
use crate::flows::{allowlist, operator};
use crate::key_rotation::{self as rotation, Secrets};
use crate::keys::KeySource;
use crate::state::AppState;

pub const USAGE: &str = "usage: gatehouse-admin mfa reset --email ADDR --reason TEXT\n       gatehouse-admin allowlist disable --org ORG_ID\n       gatehouse-admin keys publish | retire --kid KID | rotate-data | reseal | prune";

/// A command line that could not be run, or a command that failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{0}\n{USAGE}")]
    Usage(String),
    #[error("{0}")]
    Failed(String),
}

/// What the operator asked for.
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    MfaReset {
        email: Email,
        reason: String,
    },
    /// Break glass: turn an org's IP allowlist off (README, "Locked out by the allowlist").
    AllowlistDisable {
        org: OrgId,
    },
    /// Publish the current signing secret's public keys (docs/keys.md).
    KeysPublish,
    /// A leaked signing key: out of the secret and the published keys at once.
    KeysRetire {
        kid: String,
    },
    /// A new data-key seed becomes current.
    KeysRotateData,
    /// Seal every TOTP seed again under the current data key.
    KeysReseal,
    /// Drop the previous data-key seeds nothing uses any more.
    KeysPrune,
}

/// Parses the arguments after the program name.
pub fn parse(args: &[String]) -> Result<Command, AdminError> {
    let usage = |m: &str| AdminError::Usage(m.to_owned());
    match args {
        [group, verb, rest @ ..] if group == "mfa" && verb == "reset" => {
            let mut email = None;
            let mut reason = None;
            let mut it = rest.iter();
            while let Some(flag) = it.next() {
                let value = it
                    .next()
                    .ok_or_else(|| usage(&format!("{flag} needs a value")))?;
                match flag.as_str() {
                    "--email" => email = Some(value.clone()),
                    "--reason" => reason = Some(value.trim().to_owned()),
                    other => return Err(usage(&format!("unknown option {other}"))),
                }
            }
            let email = email.ok_or_else(|| usage("--email is required"))?;
            let email = Email::parse(&email).map_err(|e| usage(&format!("--email: {}", e.0)))?;
            let reason = reason
                .filter(|r| !r.is_empty() && r.chars().count() <= 500)
                .ok_or_else(|| usage("--reason is required: 1 to 500 characters"))?;
            Ok(Command::MfaReset { email, reason })
        }
        [group, verb, rest @ ..] if group == "allowlist" && verb == "disable" => match rest {
            [flag, value] if flag == "--org" => OrgId::parse(value)
                .map(|org| Command::AllowlistDisable { org })
                .ok_or_else(|| usage("--org: not an org id (org_ and 32 hex digits)")),
            _ => Err(usage("allowlist disable needs --org ORG_ID")),
        },
        [group, rest @ ..] if group == "keys" => match rest {
            [verb] if verb == "publish" => Ok(Command::KeysPublish),
            [verb] if verb == "rotate-data" => Ok(Command::KeysRotateData),
            [verb] if verb == "reseal" => Ok(Command::KeysReseal),
            [verb] if verb == "prune" => Ok(Command::KeysPrune),
            [verb, flag, kid] if verb == "retire" && flag == "--kid" && !kid.is_empty() => {
                Ok(Command::KeysRetire { kid: kid.clone() })
            }
            _ => Err(usage(
                "keys takes publish, retire --kid KID, rotate-data, reseal or prune",
            )),
        },
        _ => Err(usage("unknown command")),
    }
}

/// Runs a command against `st`; returns the line to print.
pub async fn run(st: &AppState, command: &Command) -> Result<String, AdminError> {
    run_with(st, None, command).await
}

/// As [`run`], with the Secrets Manager client the `keys` commands need.
pub async fn run_with(
    st: &AppState,
    secrets: Option<&Secrets>,
    command: &Command,
) -> Result<String, AdminError> {
    let meta = RequestMeta {
        ip: IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        user_agent: Some(format!("gatehouse-admin/{}", env!("CARGO_PKG_VERSION"))),
        request_id: uuid::Uuid::now_v7().simple().to_string(),
    };
    match command {
        Command::MfaReset { email, reason } => {
            match operator::reset_mfa(st, email, reason, &meta).await {
                Ok(()) => Ok(format!(
                    "MFA of {email} reset; every session ended (request {}).",
                    meta.request_id
                )),
                Err(Error::NotFound) => Err(AdminError::Failed(format!("no account has {email}"))),
                Err(e) => Err(AdminError::Failed(format!("MFA reset failed: {e}"))),
            }
        }
        Command::AllowlistDisable { org } => {
            match allowlist::disable_as_operator(st, org, &meta).await {
                Ok(true) => Ok(format!(
                    "The IP allowlist of {org} is off (its entries are kept); the owners are \
                     mailed when GATEHOUSE_MAIL_FROM is set (request {}).",
                    meta.request_id
                )),
                Ok(false) => Ok(format!(
                    "The IP allowlist of {org} was already off; nothing changed."
                )),
                Err(Error::NotFound) => Err(AdminError::Failed(format!("no org {org}"))),
                Err(e) => Err(AdminError::Failed(format!("allowlist disable failed: {e}"))),
            }
        }
        Command::KeysPublish
        | Command::KeysRetire { .. }
        | Command::KeysRotateData
        | Command::KeysReseal
        | Command::KeysPrune => keys(st, secrets, command)
            .await
            .map_err(|e| AdminError::Failed(e.to_string())),
    }
}

/// The `keys` commands (docs/keys.md).
async fn keys(
    st: &AppState,
    secrets: Option<&Secrets>,
    command: &Command,
) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
    let (signing, data) = match &st.config.keys {
        KeySource::SecretsManager { signing, data } => (signing.as_deref(), data.as_deref()),
        KeySource::Dir(_) => (None, None),
    };
    let secrets = secrets.ok_or("the keys commands need Secrets Manager")?;
    let signing = || signing.ok_or("GATEHOUSE_SIGNING_KEYS_SECRET_ARN must be set");
    let data = || data.ok_or("GATEHOUSE_DATA_KEYS_SECRET_ARN must be set");
    let now = st.clock.now();
    Ok(match command {
        Command::KeysPublish => {
            let kids = rotation::publish_current(secrets, &st.store, signing()?, now).await?;
            format!("Published {} key(s): {}.", kids.len(), kids.join(", "))
        }
        Command::KeysRetire { kid } => {
            let signer = rotation::retire(secrets, &st.store, signing()?, kid, now).await?;
            format!(
                "Key {kid} is out of the signing secret and the published keys; {signer} signs \
                 from now on. Functions drop it within 5 minutes, outside verifiers when their \
                 JWKS cache expires (5 minutes)."
            )
        }
        Command::KeysRotateData => {
            let id = rotation::rotate_data(secrets, data()?).await?;
            format!(
                "Data key {id} is current. After 5 minutes (every function has it), run \
                 `gatehouse-admin keys reseal`, then `gatehouse-admin keys prune`."
            )
        }
        Command::KeysReseal => {
            let r = crate::flows::keys::reseal(st).await?;
            let codes: Vec<String> = r
                .recovery_codes_by_pepper
                .iter()
                .map(|(id, n)| format!("{n} under {id}"))
                .collect();
            format!(
                "{} TOTP factor(s), {} sealed again, {} changed meanwhile (run again to check). \
                 Recovery codes: {}.",
                r.factors,
                r.resealed,
                r.changed_meanwhile,
                if codes.is_empty() {
                    "none".to_owned()
                } else {
                    codes.join(", ")
                }
            )
        }
        Command::KeysPrune => {
            let in_use = crate::flows::keys::data_keys_in_use(st).await?;
            let (dropped, kept) = rotation::prune_data(secrets, data()?, &in_use).await?;
            format!(
                "Dropped {} previous data key(s){}; kept {} still in use{}.",
                dropped.len(),
                if dropped.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", dropped.join(", "))
                },
                kept.len(),
                if kept.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", kept.join(", "))
                },
            )
        }
        Command::MfaReset { .. } | Command::AllowlistDisable { .. } => String::new(),
    })
}

/// The binary's `main`: parse, build the state from the environment, run. A failure is
/// printed as `Error: {message}` (a usage error with the usage lines) on stderr, exit code 1.
pub async fn main() -> std::process::ExitCode {
    crate::telemetry::init();
    match try_main().await {
        Ok(line) => {
            println!("{line}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("Error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn try_main() -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = parse(&args)?;
    let config = Config::from_env()?;
    if config.mail_from.is_none() {
        eprintln!("GATEHOUSE_MAIL_FROM is not set: nobody will be mailed.");
    }
    let state = AppState::for_operator(config).await?;
    let secrets = match &state.config.keys {
        KeySource::SecretsManager { .. } => Some(Secrets::new(
            aws_sdk_secretsmanager::Client::new(&crate::aws::sdk_config().await),
        )),
        KeySource::Dir(_) => None,
    };
    Ok(run_with(&state, secrets.as_ref(), &command).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &[&str]) -> Vec<String> {
        s.iter().map(|a| (*a).to_owned()).collect()
    }

    #[test]
    fn the_command_line_is_checked() {
        let ok = parse(&args(&[
            "mfa",
            "reset",
            "--email",
            "A@Example.com",
            "--reason",
            " lost phone ",
        ]));
        assert!(matches!(
            ok,
            Ok(Command::MfaReset { ref email, ref reason })
                if email.as_str() == "a@example.com" && reason == "lost phone"
        ));
        for bad in [
            &["mfa", "reset", "--email", "a@example.com"][..],
            &["mfa", "reset", "--reason", "x"],
            &["mfa", "reset", "--email", "not an address", "--reason", "x"],
            &["mfa", "reset", "--email", "a@example.com", "--reason", "  "],
            &["mfa", "reset", "--email"],
            &[
                "mfa",
                "reset",
                "--email",
                "a@example.com",
                "--reason",
                "x",
                "--force",
                "y",
            ],
            &["users", "list"],
            &[],
        ] {
            assert!(
                matches!(parse(&args(bad)), Err(AdminError::Usage(_))),
                "{bad:?}"
            );
        }
    }
}
