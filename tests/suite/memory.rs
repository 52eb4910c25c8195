//! Memory stays bounded under sign-in load (docs/performance.md). Each argon2id hash works
//! in 19 MiB; allocated per hash, the allocator kept those buffers and a server grew past
//! 500 MiB within 200 sign-ins. The local server runs here as a process of its own, and its
//! peak resident memory (`VmHWM`) must stay under a stated bound through 1,000 sequential
//! sign-ins and then a concurrent load. Memory, not time, is asserted: the check holds on a
//! slow or busy machine too.

use gatehouse_tests::LocalServer;

/// The bounds (MiB): one hash at a time needs one working memory; a concurrent load, with
/// two hashes at once (`GATEHOUSE_HASH_CONCURRENCY=2`), two.
const SEQUENTIAL_BOUND_MIB: u64 = 64;
const CONCURRENT_BOUND_MIB: u64 = 96;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peak_memory_stays_bounded_through_a_thousand_sign_ins_and_a_concurrent_load() {
    let server = LocalServer::start(
        env!("CARGO_BIN_EXE_local-server"),
        &[
            ("GATEHOUSE_HASH_CONCURRENCY", "2"),
            ("GATEHOUSE_LOG_LEVEL", "warn"),
        ],
    )
    .await;
    server.verified_user("load@example.com").await;
    let start = server.peak_rss_kib();
    server.sign_ins("load@example.com", 1, 1_000).await;
    let sequential = server.peak_rss_kib();
    // Four at once: more simultaneous sign-ins to one address than the lockout threshold
    // (5) would be refused while the others are being checked (docs/lockout.md).
    server.sign_ins("load@example.com", 4, 80).await;
    let concurrent = server.peak_rss_kib();
    eprintln!(
        "peak RSS: {} MiB at start, {} MiB after 1,000 sequential sign-ins, {} MiB after 320 \
         more at concurrency 4",
        start / 1024,
        sequential / 1024,
        concurrent / 1024,
    );
    assert!(
        sequential < SEQUENTIAL_BOUND_MIB * 1024,
        "peak {sequential} KiB over {SEQUENTIAL_BOUND_MIB} MiB after sequential sign-ins"
    );
    assert!(
        concurrent < CONCURRENT_BOUND_MIB * 1024,
        "peak {concurrent} KiB over {CONCURRENT_BOUND_MIB} MiB under a concurrent load"
    );
}
