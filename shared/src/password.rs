//! Password hashing: argon2id with the OWASP Password Storage Cheat Sheet parameters
//! (m=19456 KiB, t=2, p=1), on blocking threads, with bounded memory.
//!
//! Each hash needs 19 MiB of working memory. Allocated per hash, the allocator keeps those
//! buffers around per thread, and a warm function grows by tens of MiB per concurrent
//! sign-in until the platform kills it. The [`Hasher`] therefore owns a small pool of
//! working memories, reused hash after hash (argon2 fills caller-provided blocks), and lets
//! at most as many hashes run at once as it has memories: further sign-ins queue for a turn
//! instead of allocating. Peak memory is `concurrency × 19 MiB` above the process's base
//! (docs/performance.md).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use argon2::password_hash::phc::{Output, ParamsString, PasswordHash, Salt};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use tokio::sync::Semaphore;

use crate::domain::{LoginPassword, NewPassword};

/// OWASP Password Storage Cheat Sheet, argon2id, first recommended configuration.
pub const MEMORY_KIB: u32 = 19_456;
pub const ITERATIONS: u32 = 2;
pub const PARALLELISM: u32 = 1;
/// Bytes of hash output and of salt (RFC 9106 §3.1 recommends 16 bytes of salt).
const OUTPUT_LEN: usize = 32;
const SALT_LEN: usize = 16;

/// The PHC prefix every hash made with the current parameters starts with; any other prefix
/// means the hash is rehashed at the next successful sign-in.
const CURRENT_PREFIX: &str = "$argon2id$v=19$m=19456,t=2,p=1$";

/// The hash unknown emails are verified against, so that they cost what a real account costs.
/// A hash of a random password nobody knows, made with the current parameters.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$ZHVtbXktc2FsdC1nYXRlaG91c2U$1u9d8F3T5bN1k3R2C5iQYV0rSWbDoyC2x9Ivp0Wb9Mw";

#[derive(Debug, thiserror::Error)]
#[error("password hashing failed")]
pub struct HashError;

fn current_params() -> Result<Params, HashError> {
    Params::new(MEMORY_KIB, ITERATIONS, PARALLELISM, Some(OUTPUT_LEN)).map_err(|_| HashError)
}

/// A working memory for the current parameters: `MEMORY_KIB` blocks of 1 KiB.
fn new_memory() -> Vec<Block> {
    vec![Block::default(); MEMORY_KIB as usize]
}

/// Hashes `password` with the current parameters and a fresh salt into a PHC string, in
/// `memory` (at least `MEMORY_KIB` blocks).
fn hash_with(password: &[u8], memory: &mut [Block]) -> Result<String, HashError> {
    let params = current_params()?;
    let salt = crate::crypto::random_bytes::<SALT_LEN>();
    let mut out = [0u8; OUTPUT_LEN];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
        .hash_password_into_with_memory(password, &salt, &mut out, memory)
        .map_err(|_| HashError)?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).map_err(|_| HashError)?,
        salt: Some(Salt::new(&salt).map_err(|_| HashError)?),
        hash: Some(Output::new(&out).map_err(|_| HashError)?),
    };
    Ok(phc.to_string())
}

/// Verifies `password` against a PHC string (any argon2 variant and parameters), in
/// `memory` when it is large enough, else in a buffer of its own. A malformed stored hash
/// verifies nothing. The outputs are compared in constant time.
fn verify_with(password: &[u8], phc: &str, memory: &mut [Block]) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (&parsed.salt, &parsed.hash) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(parsed.algorithm.as_str()) else {
        return false;
    };
    let version = match parsed.version.map(Version::try_from).transpose() {
        Ok(v) => v.unwrap_or_default(),
        Err(_) => return false,
    };
    let Ok(params) = Params::try_from(&parsed) else {
        return false;
    };
    let blocks = params.block_count();
    let mut own;
    let memory = match memory.get_mut(..blocks) {
        Some(m) => m,
        None => {
            own = vec![Block::default(); blocks];
            &mut own[..]
        }
    };
    let mut out = [0u8; Output::MAX_LENGTH];
    let Some(out) = out.get_mut(..expected.len()) else {
        return false;
    };
    Argon2::new(algorithm, version, params)
        .hash_password_into_with_memory(password, salt, out, memory)
        .is_ok()
        && crate::crypto::ct_eq(out, expected.as_bytes())
}

/// Hashes on the calling thread with a memory of its own. Prefer [`Hasher::hash`].
pub fn hash_now(password: &str) -> Result<String, HashError> {
    hash_with(password.as_bytes(), &mut new_memory())
}

/// Verifies on the calling thread with a memory of its own. Prefer [`Hasher::verify`].
pub fn verify_now(password: &str, phc: &str) -> bool {
    verify_with(password.as_bytes(), phc, &mut new_memory())
}

pub fn needs_rehash(phc: &str) -> bool {
    !phc.starts_with(CURRENT_PREFIX)
}

/// Runs argon2 on blocking threads, at most `concurrency` at once, each in a working memory
/// from a pool that never holds more than `concurrency` of them. Cheap to clone.
#[derive(Clone)]
pub struct Hasher(Arc<Pool>);

struct Pool {
    turns: Arc<Semaphore>,
    concurrency: usize,
    memories: Mutex<Vec<Vec<Block>>>,
    verifications: AtomicU64,
}

impl std::fmt::Debug for Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hasher")
            .field("concurrency", &self.0.concurrency)
            .finish_non_exhaustive()
    }
}

impl Hasher {
    /// A hasher running at most `concurrency` hashes at once (at least 1).
    pub fn new(concurrency: usize) -> Self {
        let concurrency = concurrency.max(1);
        Self(Arc::new(Pool {
            turns: Arc::new(Semaphore::new(concurrency)),
            concurrency,
            memories: Mutex::new(Vec::with_capacity(concurrency)),
            verifications: AtomicU64::new(0),
        }))
    }

    pub fn concurrency(&self) -> usize {
        self.0.concurrency
    }

    /// How many passwords this hasher has checked against a hash (a real or the dummy one):
    /// what the lockout must bound, whatever arrives at once.
    pub fn verifications(&self) -> u64 {
        self.0.verifications.load(Ordering::Relaxed)
    }

    /// Runs `f` on a blocking thread once a turn is free, in a pooled working memory. The
    /// turn and the memory go back to the pool when `f` returns, on that thread: a request
    /// dropped meanwhile (the client went away) cannot let more hashes run than memories
    /// exist.
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut [Block]) -> T + Send + 'static,
    ) -> Result<T, HashError> {
        let turn = Arc::clone(&self.0.turns)
            .acquire_owned()
            .await
            .map_err(|_| HashError)?;
        let pool = Arc::clone(&self.0);
        tokio::task::spawn_blocking(move || {
            let mut memory = lock(&pool.memories).pop().unwrap_or_else(new_memory);
            let result = f(&mut memory);
            lock(&pool.memories).push(memory);
            drop(turn);
            result
        })
        .await
        .map_err(|_| HashError)
    }

    /// Hashes a new password.
    pub async fn hash(&self, password: &NewPassword) -> Result<String, HashError> {
        let pw = password.expose().to_owned();
        self.run(move |m| hash_with(pw.as_bytes(), m)).await?
    }

    /// Hashes a password that was just verified, to upgrade a hash made with older parameters.
    pub async fn rehash(&self, password: &LoginPassword) -> Result<String, HashError> {
        let pw = password.expose().to_owned();
        self.run(move |m| hash_with(pw.as_bytes(), m)).await?
    }

    /// Verifies `password` against `phc`, or against the dummy hash when there is no account,
    /// so that both take the same time. Returns false for the dummy.
    pub async fn verify(&self, password: &LoginPassword, phc: Option<&str>) -> bool {
        self.0.verifications.fetch_add(1, Ordering::Relaxed);
        let pw = password.expose().to_owned();
        // An account with no password (offboarded: the hash is deleted) takes the dummy's
        // time too, or a fast refusal would tell its address from every other.
        let phc = phc.filter(|p| !p.is_empty());
        let real = phc.is_some();
        let target = phc.unwrap_or(DUMMY_HASH).to_owned();
        let ok = self
            .run(move |m| verify_with(pw.as_bytes(), &target, m))
            .await
            .unwrap_or(false);
        ok && real
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
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
    fn hashes_verify_with_the_argon2_crate_and_the_other_way_round() {
        use argon2::{PasswordHasher, PasswordVerifier};
        let ours = hash_now("a passphrase").unwrap_or_default();
        let a = Argon2::default();
        assert!(a.verify_password(b"a passphrase", ours.as_str()).is_ok());
        let theirs = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(4096, 3, 1, None).unwrap_or_else(|_| unreachable!()),
        )
        .hash_password(b"a passphrase")
        .map(|h| h.to_string())
        .unwrap_or_default();
        assert!(
            verify_now("a passphrase", &theirs),
            "older parameters verify"
        );
        assert!(!verify_now("another one", &theirs));
        assert!(!verify_now("a passphrase", "$argon2id$v=19$garbage"));
    }

    /// RFC 9106 §5.3: argon2id test vector (with secret and associated data, which this
    /// module never uses), computed through the same pooled-memory path.
    #[test]
    fn pooled_memory_gives_the_rfc_9106_result() {
        let mut memory = vec![Block::default(); 64];
        let mut out = [0u8; 32];
        let secret = [3u8; 8];
        let params = argon2::ParamsBuilder::new()
            .m_cost(32)
            .t_cost(3)
            .p_cost(4)
            .output_len(32)
            .data(argon2::AssociatedData::new(&[4u8; 12]).unwrap_or_else(|_| unreachable!()))
            .build()
            .unwrap_or_else(|_| unreachable!());
        Argon2::new_with_secret(&secret, Algorithm::Argon2id, Version::V0x13, params)
            .unwrap_or_else(|_| unreachable!())
            .hash_password_into_with_memory(&[1u8; 32], &[2u8; 16], &mut out, &mut memory)
            .unwrap_or_else(|_| unreachable!());
        let expected = [
            0x0d, 0x64, 0x0d, 0xf5, 0x8d, 0x78, 0x76, 0x6c, 0x08, 0xc0, 0x37, 0xa3, 0x4a, 0x8b,
            0x53, 0xc9, 0xd0, 0x1e, 0xf0, 0x45, 0x2d, 0x75, 0xb6, 0x5e, 0xb5, 0x25, 0x20, 0xe9,
            0x6b, 0x01, 0xe6, 0x59,
        ];
        assert_eq!(out, expected);
    }

    #[test]
    fn dummy_hash_is_well_formed_with_current_parameters() {
        assert!(!needs_rehash(DUMMY_HASH));
        assert!(PasswordHash::new(DUMMY_HASH).is_ok());
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_pool_never_holds_more_memories_than_turns() {
        let h = Hasher::new(2);
        let pw = LoginPassword::parse("a passphrase").unwrap_or_else(|_| unreachable!());
        let phc = hash_now("a passphrase").unwrap_or_default();
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (h, phc) = (h.clone(), phc.clone());
            let pw = LoginPassword::parse(pw.expose()).unwrap_or_else(|_| unreachable!());
            tasks.push(tokio::spawn(async move { h.verify(&pw, Some(&phc)).await }));
        }
        for t in tasks {
            assert!(t.await.unwrap_or(false));
        }
        assert_eq!(h.verifications(), 8);
        assert!(lock(&h.0.memories).len() <= 2);
    }
}
