//! What one call of each hot operation costs (`make bench-functions`, part of `make bench`):
//! sign-in, MFA verify, refresh and the authorizer's decision, each run by its function's
//! release binary as Lambda runs it (the stand-in Runtime API, the template's environment,
//! Secrets Manager and DynamoDB on moto) at the memory sizes Lambda offers, with the CPU
//! Lambda gives each size; and the DynamoDB request units each operation consumes.
//!
//! CPU: Lambda gives a function CPU in proportion to its memory, one vCPU at 1,769 MB. The
//! bench puts each function process in a cgroup whose CPU quota is `M / 1769` of one CPU
//! (cgroup v2 `cpu.max`, or v1 `cpu.cfs_quota_us`, over a 20 ms period), joined before the
//! binary is exec'd. Durations run from the event's delivery to the answer, as Lambda bills
//! them; moto runs outside the quota. The first invocations after each start are not counted.
//! moto is far slower than DynamoDB (a Python server whose transactions take tens to hundreds
//! of milliseconds), so the bench also records each call's CPU time (the function's threads'
//! `schedstat`), and `scripts/cost.py` models a deployed call as that CPU time at the size's
//! CPU share plus the round trips times a stated DynamoDB latency (docs/cost.md).
//!
//! Request units: the same operations in-process on the memory store behind a meter that
//! sizes every item by DynamoDB's rules and counts what on-demand mode bills (reads per 4 KB,
//! strongly consistent; writes per 1 KB of the larger of the item before and after; writes
//! in a transaction, condition checks included, twice).
//!
//! Writes `docs/bench/functions.json`, which `scripts/cost.py` reads (docs/cost.md).
//! `BENCH_FUNCTION_SAMPLES` sets the timed calls per size (default 10).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use gatehouse::store::{
    AttributeValue, Backend, Item, Key, MemoryStore, Page, Query, StoreError, Table, Write,
};
use gatehouse_tests::runtime_api::{
    Answer, FunctionProcess, RuntimeApi, binary_of, environment, first_rotation, http_event,
    resource_of, stack, template,
};
use gatehouse_tests::{PASSWORD, TestApp, test_config};
use serde_json::{Value, json};

/// The sizes measured; the template's `MemorySize` for each function must be one of them.
const SIZES: [u32; 6] = [128, 256, 512, 1024, 1769, 2048];
/// Lambda: one full vCPU at 1,769 MB.
const FULL_VCPU_MB: f64 = 1769.0;
const PERIOD_US: u64 = 20_000;

// ---------------------------------------------------------------------------------------
// DynamoDB request units.

/// An attribute value's size by DynamoDB's rules ("Item sizes and formats").
fn value_size(v: &AttributeValue) -> usize {
    match v {
        AttributeValue::S(s) => s.len(),
        AttributeValue::N(n) => number_size(n),
        AttributeValue::B(b) => b.as_ref().len(),
        AttributeValue::Bool(_) | AttributeValue::Null(_) => 1,
        AttributeValue::Ss(v) => v.iter().map(String::len).sum(),
        AttributeValue::Ns(v) => v.iter().map(|n| number_size(n)).sum(),
        AttributeValue::Bs(v) => v.iter().map(|b| b.as_ref().len()).sum(),
        AttributeValue::L(l) => 3 + l.iter().map(|e| 1 + value_size(e)).sum::<usize>(),
        AttributeValue::M(m) => {
            3 + m
                .iter()
                .map(|(k, e)| 1 + k.len() + value_size(e))
                .sum::<usize>()
        }
        _ => 0,
    }
}

/// One byte per two significant digits, plus one.
fn number_size(n: &str) -> usize {
    let digits = n
        .chars()
        .filter(char::is_ascii_digit)
        .collect::<String>()
        .trim_matches('0')
        .len()
        .max(1);
    digits.div_ceil(2) + 1
}

fn item_size(item: &Item) -> usize {
    item.iter().map(|(k, v)| k.len() + value_size(v)).sum()
}

fn key_of(item: &Item) -> Key {
    let s = |a: &str| item.get(a).and_then(|v| v.as_s().ok()).cloned();
    Key::new(s("pk").unwrap_or_default(), s("sk").unwrap_or_default())
}

/// Counts round trips and on-demand request units as DynamoDB would bill them.
#[derive(Default)]
struct Meter {
    inner: MemoryStore,
    tally: Mutex<Tally>,
}

#[derive(Default, Clone, Copy, Debug)]
struct Tally {
    round_trips: u32,
    read_units: f64,
    write_units: f64,
}

impl Meter {
    fn add(&self, reads: f64, writes: f64) {
        let mut t = self.tally.lock().unwrap();
        t.round_trips += 1;
        t.read_units += reads;
        t.write_units += writes;
    }

    fn take(&self) -> Tally {
        std::mem::take(&mut *self.tally.lock().unwrap())
    }

    async fn size_of(&self, table: Table, key: &Key) -> usize {
        self.inner
            .get(table, key)
            .await
            .ok()
            .flatten()
            .map_or(0, |i| item_size(&i))
    }
}

fn read_units(bytes: usize) -> f64 {
    bytes.div_ceil(4096).max(1) as f64
}

fn write_units(bytes: usize) -> f64 {
    bytes.div_ceil(1024).max(1) as f64
}

#[async_trait]
impl Backend for Meter {
    async fn get(&self, table: Table, key: &Key) -> Result<Option<Item>, StoreError> {
        let item = self.inner.get(table, key).await?;
        self.add(read_units(item.as_ref().map_or(0, item_size)), 0.0);
        Ok(item)
    }

    async fn get_many(&self, table: Table, keys: &[Key]) -> Result<Vec<Option<Item>>, StoreError> {
        let items = self.inner.get_many(table, keys).await?;
        let units = items
            .iter()
            .map(|i| read_units(i.as_ref().map_or(0, item_size)))
            .sum();
        self.add(units, 0.0);
        Ok(items)
    }

    async fn query(&self, q: &Query) -> Result<Page, StoreError> {
        let page = self.inner.query(q).await?;
        let units = read_units(page.items.iter().map(item_size).sum());
        // Index queries are eventually consistent: half a unit per 4 KB.
        self.add(
            if q.index.is_some() {
                units / 2.0
            } else {
                units
            },
            0.0,
        );
        Ok(page)
    }

    async fn transact(&self, writes: &[Write]) -> Result<(), StoreError> {
        let keys: Vec<(Table, Key)> = writes
            .iter()
            .map(|w| match w {
                Write::Put { table, item, .. } => (*table, key_of(item)),
                Write::Delete { table, key, .. }
                | Write::Check { table, key, .. }
                | Write::Count { table, key, .. }
                | Write::Set { table, key, .. } => (*table, key.clone()),
            })
            .collect();
        let mut before = Vec::new();
        for (table, key) in &keys {
            before.push(self.size_of(*table, key).await);
        }
        self.inner.transact(writes).await?;
        // One write alone goes as PutItem, DeleteItem or UpdateItem (DynamoStore::transact).
        let factor = if writes.len() == 1 && !matches!(writes[0], Write::Check { .. }) {
            1.0
        } else {
            2.0
        };
        let mut units = 0.0;
        for ((table, key), before) in keys.iter().zip(before) {
            let after = self.size_of(*table, key).await;
            units += factor * write_units(before.max(after));
        }
        self.add(0.0, units);
        Ok(())
    }
}

/// Request units per operation, in-process (the authorizer with a warm cache, as it runs
/// between cold starts).
fn request_units(rt: &tokio::runtime::Runtime) -> HashMap<&'static str, Tally> {
    let meter = Arc::new(Meter::default());
    let app = TestApp::from_parts(test_config(), meter.clone(), None);
    rt.block_on(async {
        app.signup("units@example.com").await;
        let mfa = app.mfa_user("units-mfa@example.com").await;
        let mut out = HashMap::new();

        meter.take();
        let (access, refresh, _) = app.login_ok("units@example.com").await;
        out.insert("login", meter.take());

        let r = app.refresh(&refresh).await;
        assert_eq!(r.status, 200, "{}", r.body);
        out.insert("refresh", meter.take());

        let challenge = app.mfa_challenge(&mfa.email).await;
        meter.take();
        let r = app
            .mfa_verify(&challenge, "code", &app.code(&mfa.secret, 0))
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        out.insert("mfa_verify", meter.take());

        let auth = gatehouse::authorizer::Authorizer::new(app.state.clone());
        let event = include_str!("../fixtures/authorizer-v2.json").replace("CREDENTIAL", &access);
        let decide = || async {
            let req: gatehouse::authorizer::Request = serde_json::from_str(&event).unwrap();
            let answer = serde_json::to_value(auth.decide(&req).await).unwrap();
            assert_eq!(answer["isAuthorized"], true, "{answer}");
        };
        decide().await;
        meter.take();
        decide().await;
        out.insert("authorizer", meter.take());
        out
    })
}

// ---------------------------------------------------------------------------------------
// CPU in proportion to memory.

/// A cgroup whose CPU quota is what Lambda gives a function of `mb`; removed when dropped.
struct CpuLimit {
    dir: PathBuf,
}

impl CpuLimit {
    fn new(mb: u32) -> Result<Self, String> {
        let quota = ((PERIOD_US as f64) * f64::from(mb) / FULL_VCPU_MB).round() as u64;
        let quota = quota.max(1_000);
        let name = format!("gatehouse-bench-{}-{mb}", std::process::id());
        let v2 = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
        let dir = if v2 {
            PathBuf::from("/sys/fs/cgroup").join(name)
        } else {
            PathBuf::from("/sys/fs/cgroup/cpu").join(name)
        };
        let fail = |what: &str, e: std::io::Error| format!("{what} {}: {e}", dir.display());
        std::fs::create_dir(&dir).map_err(|e| fail("cannot create", e))?;
        let limit = Self { dir: dir.clone() };
        if v2 {
            std::fs::write(dir.join("cpu.max"), format!("{quota} {PERIOD_US}"))
                .map_err(|e| fail("cannot set cpu.max in", e))?;
        } else {
            std::fs::write(dir.join("cpu.cfs_period_us"), PERIOD_US.to_string())
                .map_err(|e| fail("cannot set the period in", e))?;
            std::fs::write(dir.join("cpu.cfs_quota_us"), quota.to_string())
                .map_err(|e| fail("cannot set the quota in", e))?;
        }
        Ok(limit)
    }

    fn procs(&self) -> PathBuf {
        self.dir.join("cgroup.procs")
    }
}

impl Drop for CpuLimit {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// CPU time a process has run so far, in nanoseconds: the sum over its threads of the first
/// field of `/proc/<pid>/task/<tid>/schedstat` (nanosecond resolution; the functions' threads
/// live through the calls measured).
fn cpu_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// Peak resident memory of a process (`VmHWM`), in MiB.
fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

fn body(answer: Answer) -> Value {
    match answer {
        Answer::Response(v) => {
            serde_json::from_str(v["body"].as_str().unwrap_or("null")).unwrap_or(Value::Null)
        }
        Answer::Error(e) => panic!("the function answered an error: {e}"),
    }
}

fn status(answer: &Answer) -> u64 {
    match answer {
        Answer::Response(v) => v["statusCode"].as_u64().unwrap_or(0),
        Answer::Error(e) => panic!("the function answered an error: {e}"),
    }
}

/// The code of `secret` for the step after the real clock's: never the step enrollment used.
fn next_code(secret: &str) -> String {
    let seed = gatehouse::totp::from_base32(secret).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    gatehouse::totp::generate(&seed, gatehouse::totp::Params::APP, now + 30)
}

struct Operation {
    name: &'static str,
    function: &'static str,
    what: &'static str,
    /// (memory, median, p90, median CPU time) of the calls at each size.
    durations: Vec<(u32, Duration, Duration, Duration)>,
    peak_rss_mib: f64,
}

fn login_event(email: &str) -> Value {
    http_event(
        "POST",
        "/v1/auth/login",
        Some(json!({"email": email, "password": PASSWORD})),
    )
}

fn main() {
    let samples: usize = std::env::var("BENCH_FUNCTION_SAMPLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    const WARM: usize = 2;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // Child processes are spawned and reaped on this runtime, also outside `block_on`.
    let _entered = rt.enter();

    let units = request_units(&rt);

    let t = template();
    let mut refs = rt.block_on(stack());
    rt.block_on(first_rotation("release", &t, &mut refs));
    // The stack's users, written in-process with the stack's own keys and tables.
    let app = rt.block_on(async {
        let store = gatehouse::store::DynamoStore::new(
            gatehouse_tests::dynamo_client(),
            refs["MainTable"].clone(),
            refs["AuditTable"].clone(),
        );
        let app = TestApp::from_parts(test_config(), Arc::new(store), None);
        let loader = gatehouse::state::KeyLoader::new(
            gatehouse::keys::KeySource::SecretsManager {
                signing: Some(refs["SigningKeysSecret"].clone()),
                data: Some(refs["DataKeysSecret"].clone()),
            },
            gatehouse::keys::Alg::Es256,
            Some(gatehouse_tests::secrets_client()),
            app.state.store.clone(),
        );
        let keys = gatehouse::keys::Keys::new(loader.load().await.unwrap());
        let families = gatehouse::api::FAMILIES
            .iter()
            .map(|f| (f.routes)())
            .collect();
        app.as_function(keys, families)
    });
    let per_size = samples + WARM;
    // The base32 secret each MFA user enrolled with, by email. Enrollment leaves the app's
    // clock alone: the functions run on the real clock, and take the next step's code.
    let mut secrets: HashMap<String, String> = HashMap::new();
    rt.block_on(async {
        for (i, _) in SIZES.iter().enumerate() {
            app.signup(&format!("login-{i}@example.com")).await;
            for j in 0..per_size {
                let email = format!("mfa-{i}-{j}@example.com");
                let (_, secret, _) = app.enroll_totp(&email).await;
                secrets.insert(email, secret);
            }
        }
    });

    // A function started once, unlimited, for what the measured calls need first.
    let helper_api = rt.block_on(RuntimeApi::start());
    let _helper = FunctionProcess::start_binary(
        &binary_of("release", "login"),
        "login",
        &helper_api,
        &environment(&t, resource_of("login"), &refs),
    );

    let mut operations = vec![
        Operation {
            name: "login",
            function: "login",
            what: "POST /v1/auth/login, the right password, no MFA",
            durations: Vec::new(),
            peak_rss_mib: 0.0,
        },
        Operation {
            name: "mfa_verify",
            function: "mfa",
            what: "POST /v1/auth/mfa/verify, the right TOTP code",
            durations: Vec::new(),
            peak_rss_mib: 0.0,
        },
        Operation {
            name: "refresh",
            function: "login",
            what: "POST /v1/auth/refresh, rotating the refresh token",
            durations: Vec::new(),
            peak_rss_mib: 0.0,
        },
        Operation {
            name: "authorizer",
            function: "authorizer",
            what: "the Lambda authorizer's decision on an access token",
            durations: Vec::new(),
            peak_rss_mib: 0.0,
        },
    ];
    let mut limited = true;
    for (i, &mb) in SIZES.iter().enumerate() {
        let limit = match CpuLimit::new(mb) {
            Ok(l) => Some(l),
            Err(e) => {
                if limited {
                    eprintln!(
                        "NOT LIMITED: {e}. Every size below runs with the whole machine's CPU (run as root with a writable cgroup cpu controller)."
                    );
                }
                limited = false;
                None
            }
        };
        for op in &mut operations {
            let times = rt.block_on(async {
                // What each call needs, made first by the unlimited helper.
                let events: Vec<Value> = match op.name {
                    "login" => (0..per_size)
                        .map(|_| login_event(&format!("login-{i}@example.com")))
                        .collect(),
                    "mfa_verify" => {
                        let mut v = Vec::new();
                        for j in 0..per_size {
                            let email = format!("mfa-{i}-{j}@example.com");
                            let challenge =
                                body(helper_api.invoke(login_event(&email)).await)["mfa_token"]
                                    .as_str()
                                    .unwrap()
                                    .to_owned();
                            v.push((challenge, secrets[&email].clone()));
                        }
                        v.into_iter()
                            .map(|(c, s)| {
                                // The code is computed when the event is built: at most a
                                // few seconds before it is used, within the skew.
                                http_event(
                                    "POST",
                                    "/v1/auth/mfa/verify",
                                    Some(json!({"mfa_token": c, "code": next_code(&s)})),
                                )
                            })
                            .collect()
                    }
                    // Refresh tokens rotate: each call's token comes from the previous answer.
                    "refresh" => Vec::new(),
                    "authorizer" => {
                        let signed_in = body(
                            helper_api
                                .invoke(login_event(&format!("login-{i}@example.com")))
                                .await,
                        );
                        let access = signed_in["access_token"].as_str().unwrap().to_owned();
                        let event = include_str!("../fixtures/authorizer-v2.json")
                            .replace("CREDENTIAL", &access);
                        vec![serde_json::from_str(&event).unwrap(); per_size]
                    }
                    other => panic!("{other}"),
                };
                let api = RuntimeApi::start().await;
                let f = FunctionProcess::start_limited(
                    &binary_of("release", op.function),
                    op.function,
                    &api,
                    &environment(&t, resource_of(op.function), &refs),
                    mb,
                    limit.as_ref().map(CpuLimit::procs).as_deref(),
                );
                api.first_poll(Duration::from_secs(60))
                    .await
                    .unwrap_or_else(|| panic!("{} never asked for an event", op.function));
                let mut refresh_token = String::new();
                if op.name == "refresh" {
                    let signed_in = body(
                        helper_api
                            .invoke(login_event(&format!("login-{i}@example.com")))
                            .await,
                    );
                    refresh_token = signed_in["refresh_token"].as_str().unwrap().to_owned();
                }
                let mut times = Vec::new();
                let mut cpu = Vec::new();
                let pid = f.child.id().unwrap_or(0);
                for k in 0..per_size {
                    let event = if op.name == "refresh" {
                        http_event(
                            "POST",
                            "/v1/auth/refresh",
                            Some(json!({"refresh_token": refresh_token})),
                        )
                    } else {
                        events.get(k).cloned().unwrap()
                    };
                    let cpu_before = cpu_ns(pid);
                    let started = Instant::now();
                    let answer = api.invoke(event).await;
                    let took = started.elapsed();
                    let cpu_took = Duration::from_nanos(cpu_ns(pid).saturating_sub(cpu_before));
                    if op.name == "authorizer" {
                        let Answer::Response(v) = &answer else {
                            panic!("{answer:?}")
                        };
                        assert_eq!(v["isAuthorized"], true, "{v}");
                    } else {
                        assert_eq!(status(&answer), 200, "{}: {answer:?}", op.name);
                        if op.name == "refresh" {
                            refresh_token =
                                body(answer)["refresh_token"].as_str().unwrap().to_owned();
                        }
                    }
                    if k >= WARM {
                        times.push(took);
                        cpu.push(cpu_took);
                    }
                }
                (times, cpu, peak_rss_mib(pid))
            });
            let (mut times, mut cpu, rss) = times;
            times.sort();
            cpu.sort();
            let median = times[times.len() / 2];
            let p90 = times[(times.len() * 9) / 10];
            op.durations.push((mb, median, p90, cpu[cpu.len() / 2]));
            op.peak_rss_mib = op.peak_rss_mib.max(rss);
        }
    }

    println!(
        "Functions as Lambda runs them, CPU in proportion to memory ({}; {samples} calls per size after {WARM} warm ones; moto)",
        if limited {
            "cgroup CPU quota M/1769 of a CPU"
        } else {
            "NOT LIMITED: whole machine"
        }
    );
    for (title, pick) in [
        (
            "median duration, event to answer (moto's latency included)",
            0,
        ),
        ("median CPU time of the function per call", 1),
    ] {
        println!("{title}");
        print!("{:<12}", "operation");
        for mb in SIZES {
            print!("{:>10}", format!("{mb} MB"));
        }
        println!("{:>12} {:>14}", "peak RSS", "RRU + WRU");
        for op in &operations {
            print!("{:<12}", op.name);
            for (_, median, _, cpu) in &op.durations {
                let d = if pick == 0 { median } else { cpu };
                print!("{:>10}", format!("{:.1} ms", d.as_secs_f64() * 1e3));
            }
            let u = units[op.name];
            println!(
                "{:>12} {:>14}",
                format!("{:.1} MiB", op.peak_rss_mib),
                format!("{:.1} + {:.1}", u.read_units, u.write_units)
            );
        }
    }
    println!("(medians; GB-seconds and cost per call: scripts/cost.py, docs/cost.md)");

    let doc = json!({
        "measured_on": time::OffsetDateTime::now_utc().date().to_string(),
        "command": "make bench-functions",
        "machine": format!("{} cores, {}", std::thread::available_parallelism().map_or(0, |n| n.get()), std::env::consts::ARCH),
        "cpu_rule": if limited {
            "a function of M MB gets M/1769 of one CPU (Lambda: 1,769 MB = 1 vCPU), by a cgroup CPU quota over a 20 ms period"
        } else {
            "NOT LIMITED: the cgroup could not be made; every size ran with the whole machine"
        },
        "operations": operations.iter().map(|op| {
            let u = units[op.name];
            json!({
                "name": op.name,
                "function": op.function,
                "resource": resource_of(op.function),
                "what": op.what,
                "durations": op.durations.iter().map(|(mb, m, p, c)| json!({
                    "memory_mb": mb,
                    "median_ms": (m.as_secs_f64() * 1e4).round() / 10.0,
                    "p90_ms": (p.as_secs_f64() * 1e4).round() / 10.0,
                    "cpu_ms": (c.as_secs_f64() * 1e4).round() / 10.0,
                })).collect::<Vec<_>>(),
                "dynamodb": {"round_trips": u.round_trips, "read_units": u.read_units, "write_units": u.write_units},
                "peak_rss_mib": (op.peak_rss_mib * 10.0).round() / 10.0,
            })
        }).collect::<Vec<_>>(),
    });
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/bench/functions.json");
    if limited {
        std::fs::create_dir_all(out.parent().unwrap()).unwrap();
        std::fs::write(&out, serde_json::to_string_pretty(&doc).unwrap() + "\n").unwrap();
        println!("wrote {}", out.display());
    } else {
        println!("not written to {}: the CPU was not limited", out.display());
    }
}
