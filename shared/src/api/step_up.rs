//! The step-up fields of a request body (docs/permissions.md, "Step-up"): `password`, and
//! `code` or `recovery_code`.

use secrecy::{ExposeSecret, SecretString};

use crate::domain::{LoginPassword, RecoveryCode, TotpCode};
use crate::flows::steps::factor::SecondFactor;
use crate::flows::steps::step_up::Proof;
use crate::http::{Check, Fields};

/// `password`, and `code` or `recovery_code`, each optional: the proof a step-up asks for.
pub struct StepUpFields {
    password: Option<SecretString>,
    code: Option<String>,
    recovery_code: Option<SecretString>,
}

impl StepUpFields {
    pub fn read(f: &mut Fields) -> Self {
        let password = f.optional_secret("password");
        let code = f.optional_string("code");
        let recovery_code = f.optional_secret("recovery_code");
        if code.is_some() && recovery_code.is_some() {
            f.error(
                "recovery_code",
                "send either code or recovery_code, not both",
            );
        }
        Self {
            password,
            code,
            recovery_code,
        }
    }

    pub fn parse(&self, check: &mut Check) -> Proof {
        let password = self.password.as_ref().and_then(|p| {
            check.field("/password", LoginPassword::parse(p.expose_secret()), |e| {
                e.0
            })
        });
        let code = match (&self.code, &self.recovery_code) {
            (Some(c), _) => check
                .field("/code", TotpCode::parse(c), |e| e.0)
                .map(SecondFactor::Totp),
            (None, Some(r)) => check
                .field(
                    "/recovery_code",
                    RecoveryCode::parse(r.expose_secret()),
                    |e| e.0,
                )
                .map(SecondFactor::Recovery),
            (None, None) => None,
        };
        Proof { password, code }
    }
}
