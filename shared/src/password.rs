//! Password hashing: argon2id with the OWASP Password Storage Cheat Sheet parameters
//! (m=19456 KiB, t=2, p=1), always on a blocking thread.

use argon2::{Algorithm, Argon2, Params, PasswordHasher, PasswordVerifier, Version};

use crate::domain::{LoginPassword, NewPassword};

/// OWASP Password Storage Cheat Sheet, argon2id, first recommended configuration.
pub const MEMORY_KIB: u32 = 19_456;
pub const ITERATIONS: u32 = 2;
pub const PARALLELISM: u32 = 1;

/// The PHC prefix every hash made with the current parameters starts with; any other prefix
/// means the hash is rehashed at the next successful sign-in.
const CURRENT_PREFIX: &str = "$argon2id$v=19$m=19456,t=2,p=1$";

/// The hash unknown emails are verified against, so that they cost what a real account costs.
/// A hash of a random password nobody knows, made with the current parameters.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$ZHVtbXktc2FsdC1nYXRlaG91c2U$1u9d8F3T5bN1k3R2C5iQYV0rSWbDoyC2x9Ivp0Wb9Mw";

#[derive(Debug, thiserror::Error)]
#[error("password hashing failed")]
pub struct HashError;

fn argon2() -> Result<Argon2<'static>, HashError> {
    let params = Params::new(MEMORY_KIB, ITERATIONS, PARALLELISM, None).map_err(|_| HashError)?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// Hashes on the calling thread. Prefer [`hash`] from async code.
pub fn hash_now(password: &str) -> Result<String, HashError> {
    let phc = argon2()?
        .hash_password(password.as_bytes())
        .map_err(|_| HashError)?;
    Ok(phc.to_string())
}

/// Verifies on the calling thread; a malformed stored hash verifies nothing.
pub fn verify_now(password: &str, phc: &str) -> bool {
    argon2().is_ok_and(|a| a.verify_password(password.as_bytes(), phc).is_ok())
}

pub fn needs_rehash(phc: &str) -> bool {
    !phc.starts_with(CURRENT_PREFIX)
}

pub async fn hash(password: &NewPassword) -> Result<String, HashError> {
    let pw = password.expose().to_owned();
    tokio::task::spawn_blocking(move || hash_now(&pw))
        .await
        .map_err(|_| HashError)?
}

/// Hashes a password that was just verified, to upgrade a hash made with older parameters.
pub async fn rehash(password: &LoginPassword) -> Result<String, HashError> {
    let pw = password.expose().to_owned();
    tokio::task::spawn_blocking(move || hash_now(&pw))
        .await
        .map_err(|_| HashError)?
}

/// Verifies `password` against `phc`, or against the dummy hash when there is no account, so
/// that both take the same time. Returns false for the dummy.
pub async fn verify(password: &LoginPassword, phc: Option<&str>) -> bool {
    let pw = password.expose().to_owned();
    let real = phc.is_some();
    let target = phc.unwrap_or(DUMMY_HASH).to_owned();
    let ok = tokio::task::spawn_blocking(move || verify_now(&pw, &target))
        .await
        .unwrap_or(false);
    ok && real
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_argon2id_phc_strings_with_owasp_parameters() {
        let phc = hash_now("correct horse battery staple").unwrap_or_default();
        assert!(phc.starts_with(CURRENT_PREFIX), "{phc}");
        assert!(!needs_rehash(&phc));
        assert!(verify_now("correct horse battery staple", &phc));
        assert!(!verify_now("correct horse battery stapl", &phc));
        assert!(!verify_now("correct horse battery staple ", &phc));
    }

    #[test]
    fn dummy_hash_is_well_formed_with_current_parameters() {
        assert!(!needs_rehash(DUMMY_HASH));
        assert!(argon2::PasswordHash::new(DUMMY_HASH).is_ok());
    }

    #[test]
    fn weaker_parameters_need_a_rehash() {
        assert!(needs_rehash(
            "$argon2id$v=19$m=4096,t=3,p=1$c2FsdHNhbHQ$aGFzaA"
        ));
        assert!(needs_rehash(
            "$argon2i$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaA"
        ));
    }
}
