//! `make bench`: in-process latency of the login and MFA families on the memory store, against the
//! time of one argon2id hash with the production parameters, plus store round trips per
//! operation. Cases are measured round-robin, sample by sample, so that noise on this shared
//! machine falls on all of them alike and the ratios stay meaningful.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use gatehouse::config::Config;
use gatehouse::store::{Backend, Item, Key, MemoryStore, Page, Query, StoreError, Table, Write};
use gatehouse_tests::{PASSWORD, TestApp};
use http::Method;

/// Counts the round trips a DynamoDB deployment would make.
#[derive(Default)]
struct Counting {
    inner: MemoryStore,
    reads: AtomicUsize,
    writes: AtomicUsize,
}

#[async_trait]
impl Backend for Counting {
    async fn get(&self, table: Table, key: &Key) -> Result<Option<Item>, StoreError> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        self.inner.get(table, key).await
    }
    async fn query(&self, q: &Query) -> Result<Page, StoreError> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        self.inner.query(q).await
    }
    async fn transact(&self, w: Vec<Write>) -> Result<(), StoreError> {
        self.writes.fetch_add(1, Ordering::Relaxed);
        self.inner.transact(w).await
    }
}

struct Case {
    name: &'static str,
    samples: Vec<Duration>,
    reads: usize,
    writes: usize,
    ops: usize,
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn p90(v: &mut [Duration]) -> Duration {
    v.sort();
    v[(v.len() * 9) / 10]
}

fn main() {
    let samples: usize = std::env::var("BENCH_SAMPLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let counting = Arc::new(Counting::default());
    let config = Config {
        lockout_threshold: u32::MAX,
        ..Config::default()
    };
    let app = TestApp::from_parts(config, counting.clone(), None);
    rt.block_on(app.signup("bench@example.com"));
    let (access, refresh, _) = rt.block_on(app.login_ok("bench@example.com"));
    let (mut access, mut refresh) = (access, refresh);
    let mfa = rt.block_on(app.mfa_user("mfa@example.com"));
    let mut mfa_token = String::new();
    let mut mfa_access = String::new();

    let names = [
        "argon2id hash (reference)",
        "login, correct password",
        "login, wrong password",
        "login, unknown email",
        "login, MFA on (step one)",
        "MFA verify, TOTP code",
        "logout",
        "refresh",
        "me",
        "jwks",
    ];
    let mut cases: Vec<Case> = names
        .iter()
        .map(|n| Case {
            name: n,
            samples: Vec::new(),
            reads: 0,
            writes: 0,
            ops: 0,
        })
        .collect();

    // Warm-up, then interleaved samples.
    for round in 0..samples + 3 {
        for (i, case) in cases.iter_mut().enumerate() {
            let (r0, w0) = (
                counting.reads.load(Ordering::Relaxed),
                counting.writes.load(Ordering::Relaxed),
            );
            // Each MFA verify needs the challenge of the step-one login just before it and a
            // code of a step not used yet: the clock moves on one step, outside the timing.
            let code = if i == 5 {
                app.next_step();
                app.code(&mfa.secret, 0)
            } else {
                String::new()
            };
            let (elapsed, iters) = rt.block_on(async {
                let iters = if i >= 7 { 50 } else { 1 };
                let start = Instant::now();
                for _ in 0..iters {
                    match i {
                        0 => {
                            tokio::task::spawn_blocking(|| {
                                gatehouse::password::hash_now(PASSWORD).unwrap()
                            })
                            .await
                            .unwrap();
                        }
                        1 => assert_eq!(app.login("bench@example.com", PASSWORD).await.status, 200),
                        2 => assert_eq!(
                            app.login("bench@example.com", "not the password!")
                                .await
                                .status,
                            401
                        ),
                        3 => {
                            assert_eq!(app.login("nobody@example.com", PASSWORD).await.status, 401)
                        }
                        4 => {
                            let r = app.login(&mfa.email, PASSWORD).await;
                            assert_eq!(r.status, 200);
                            mfa_token = r.str("mfa_token");
                        }
                        5 => {
                            let r = app.mfa_verify(&mfa_token, "code", &code).await;
                            assert_eq!(r.status, 200, "{}", r.body);
                            mfa_access = r.str("access_token");
                        }
                        // Signs out the session the MFA verify just opened.
                        6 => assert_eq!(
                            app.request(Method::POST, "/v1/auth/logout", None, Some(&mfa_access))
                                .await
                                .status,
                            204
                        ),
                        7 => {
                            let r = app.refresh(&refresh).await;
                            assert_eq!(r.status, 200);
                            refresh = r.str("refresh_token");
                            access = r.str("access_token");
                        }
                        8 => assert_eq!(app.get("/v1/me", &access).await.status, 200),
                        _ => assert_eq!(
                            app.request(Method::GET, "/.well-known/jwks.json", None, None)
                                .await
                                .status,
                            200
                        ),
                    }
                }
                (start.elapsed(), iters)
            });
            if round >= 3 {
                case.samples.push(elapsed / iters);
                case.ops += iters as usize;
                case.reads += counting.reads.load(Ordering::Relaxed) - r0;
                case.writes += counting.writes.load(Ordering::Relaxed) - w0;
            }
        }
    }

    let hash = median(&mut cases[0].samples.clone());
    println!();
    println!(
        "Gatehouse latency, in-process, memory store ({samples} interleaved samples per case)"
    );
    println!(
        "{:<28} {:>12} {:>12} {:>10} {:>16}",
        "case", "median", "p90", "× hash", "reads+writes/op"
    );
    for c in &mut cases {
        let (m, p) = (median(&mut c.samples), p90(&mut c.samples));
        let trips = if c.ops == 0 || c.name.starts_with("argon2") {
            "-".to_owned()
        } else {
            format!(
                "{:.0}+{:.0}",
                c.reads as f64 / c.ops as f64,
                c.writes as f64 / c.ops as f64
            )
        };
        println!(
            "{:<28} {:>12} {:>12} {:>10.3} {:>16}",
            c.name,
            format!("{:.3} ms", m.as_secs_f64() * 1e3),
            format!("{:.3} ms", p.as_secs_f64() * 1e3),
            m.as_secs_f64() / hash.as_secs_f64(),
            trips
        );
    }
    let login = median(&mut cases[1].samples);
    let ratio = login.as_secs_f64() / hash.as_secs_f64();
    println!();
    println!(
        "login / argon2id hash = {ratio:.3} (budget ≤ 1.15: {})",
        if ratio <= 1.15 { "met" } else { "NOT met" }
    );
}
