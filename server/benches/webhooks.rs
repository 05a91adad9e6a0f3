//! Webhook delivery benchmark: 10,000 events, enqueued as changes make them (in their
//! transactions, 20 to a transaction, at a steady 2,000 a second), delivered by the job
//! queue's workers to a loopback receiver, on SQLite (and PostgreSQL when
//! CONNVAULT_TEST_POSTGRES_URL names a server it may create a database on). Measures the
//! delivery throughput, the latency from enqueue (the payload's `timestamp`) to the receiver
//! (p50, p99; aim: p99 under 2 s), and the token broker's cached throughput (16 concurrent
//! callers, in process, fetching a minted token the broker holds) while the events flow,
//! beside its throughput just before without them (aim: at least 0.9×). Each backend runs the
//! pair `BENCH_REPS` times (default 3) and reports the median ratio with the lowest and the
//! highest. Prints a Markdown table.
//!
//!     cargo bench -p server --bench webhooks

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use server::audit::{self, Actor, Event};
use server::config::Config;
use server::startup::{self, Services};

const EVENTS: usize = 10_000;
const PER_TX: usize = 20;
const RATE: f64 = 2_000.0;
const CALLERS: usize = 16;
const REPS: usize = 3;

/// Receive times minus the payloads' timestamps, in milliseconds.
type Latencies = Arc<Mutex<Vec<f64>>>;

async fn receiver() -> (SocketAddr, Latencies) {
    let got: Latencies = Arc::default();
    let state = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: axum::body::Bytes| {
            let state = state.clone();
            async move {
                let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
                let sent = chrono::DateTime::parse_from_rfc3339(v["timestamp"].as_str().unwrap()).unwrap();
                let ms = (chrono::Utc::now() - sent.with_timezone(&chrono::Utc)).num_microseconds().unwrap() as f64 / 1000.0;
                state.lock().unwrap().push(ms);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, got)
}

fn config(dir: &std::path::Path, url: &str) -> Config {
    let map: HashMap<&str, String> = [
        ("CONNVAULT_DATA_DIR", dir.display().to_string()),
        ("DATABASE_URL", url.to_string()),
        ("CONNVAULT_ALLOW_LOOPBACK", "1".into()),
        ("CONNVAULT_DB_MAX_CONNECTIONS", "24".into()),
    ]
    .into_iter()
    .collect();
    Config::from_sources(None, |k| map.get(k).cloned()).unwrap()
}

/// An SAP OData connection with OAuth client credentials (against the SAP stand-in on
/// loopback) bound to integration `Bench` in DEV, and an API key that may fetch its token; the
/// first fetch mints the token and fetches the CSRF session, so every later one is the cached
/// path (memory only: no statement writes, nothing calls out).
async fn broker_setup(s: &Services) -> (String, server::providers::sap_odata::standin::StandIn) {
    let sap = server::providers::sap_odata::standin::StandIn::new();
    let urls = sap.spawn().await.unwrap();
    sap.add_client("sb-bench", "xsuaa-bench-secret", true);
    let op = Actor::operator();
    let new = serde_json::from_value(json!({"name": "Api", "provider": "sap_odata",
        "settings": {"service_url": urls.service_url, "auth": "oauth_client_credentials", "token_url": urls.token_url, "client_id": "sb-bench"},
        "secrets": {"client_secret": "xsuaa-bench-secret"}}))
    .unwrap();
    server::connections::create(&s.db, &s.vault, &op, "DEV", new).await.unwrap();
    server::integrations::publish(&s.db, &op, "DEV", "Bench", &serde_json::from_value(json!({"provider": "sap_odata"})).unwrap()).await.unwrap();
    server::integrations::bind(&s.db, &op, "DEV", "Bench", "Api").await.unwrap();
    let grants = server::api_keys::parse_grant("DEV:tokens:read").unwrap();
    let new = server::api_keys::NewApiKey { name: "bench".into(), grants, allowed_addresses: vec![], expires_at: None };
    let (_, value) = server::api_keys::create(&s.db, &op, server::api_keys::Creator::Operator, new).await.unwrap();
    let key = value.expose_secret().to_string();
    fetch(s, &key).await;
    let served =
        s.broker.for_key(s.keys(), s.signing(), &key, None, "DEV", "Bench", server::broker::Refresh::Cached, server::broker::Use::Token).await.unwrap();
    assert!(served.token.cached, "the benchmark measures the cached path");
    (key, sap)
}

async fn fetch(s: &Services, key: &str) {
    s.broker.for_key(s.keys(), s.signing(), key, None, "DEV", "Bench", server::broker::Refresh::Cached, server::broker::Use::Token).await.unwrap();
}

/// Token fetches per second by `CALLERS` concurrent callers until `stop`.
async fn broker_load(s: &Services, key: &str, stop: Arc<AtomicBool>) -> f64 {
    let count = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    let callers = std::env::var("BENCH_CALLERS").ok().and_then(|v| v.parse().ok()).unwrap_or(CALLERS);
    if callers == 0 {
        while !stop.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        return 1.0;
    }
    for _ in 0..callers {
        let (s, key, stop, count) = (s.clone(), key.to_string(), stop.clone(), count.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                fetch(&s, &key).await;
                count.fetch_add(1, Ordering::Relaxed);
                // A kept route answers without awaiting anything: give the worker thread back
                // after each call, as a request does when it ends (a loop that never yields
                // would starve the timers, the workers and the events of the runtime).
                tokio::task::yield_now().await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    count.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

struct Figures {
    backend: &'static str,
    enqueued_per_s: f64,
    delivered_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    broker_alone: f64,
    broker_during: f64,
    /// The median of the runs' ratios, and the lowest and highest.
    ratio: f64,
    ratio_range: (f64, f64),
    reps: usize,
}

async fn run(backend: &'static str, url: &str, dir: &std::path::Path) -> Figures {
    let s = startup::open(config(dir, url)).await.unwrap();
    let (addr, got) = receiver().await;
    let env = server::environments::find(&s.db, "DEV").await.unwrap();
    let hook = server::webhooks::NewWebhook { url: format!("http://{addr}/hook"), events: vec!["connection.updated".into()], description: None, enabled: None };
    server::webhooks::create(&s.db, &s.vault, &s.outbound, &Actor::operator(), &env, &hook).await.unwrap();
    let (key, _sap) = broker_setup(&s).await;

    // The broker alone, then beside 10,000 events; `BENCH_REPS` times (default 3), because
    // one 5-second window on two shared cores varies by a fifth from run to run: the ratio
    // reported is the median of the pairs, with the lowest and highest beside it.
    let running = server::workers::start(&s).await.unwrap();
    let reps = std::env::var("BENCH_REPS").ok().and_then(|v| v.parse().ok()).unwrap_or(REPS).max(1);
    let (mut ratios, mut alone, mut during, mut enqueue_s, mut took_s) = (Vec::new(), Vec::new(), Vec::new(), 0.0, 0.0);
    let mut latencies = Vec::new();
    for rep in 0..reps {
        let stop = Arc::new(AtomicBool::new(false));
        let a = {
            let stop2 = stop.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(5)).await;
                stop2.store(true, Ordering::Relaxed);
            });
            broker_load(&s, &key, stop).await
        };
        // The events, at a steady rate, with the broker under the same load meanwhile.
        let stop = Arc::new(AtomicBool::new(false));
        let broker = {
            let (s, key, stop) = (s.clone(), key.clone(), stop.clone());
            tokio::spawn(async move { broker_load(&s, &key, stop).await })
        };
        let start = Instant::now();
        let actor = Actor::system("bench");
        for batch in 0..EVENTS / PER_TX {
            let due = Duration::from_secs_f64((batch * PER_TX) as f64 / RATE);
            if let Some(wait) = due.checked_sub(start.elapsed()) {
                tokio::time::sleep(wait).await;
            }
            let names: Vec<String> = (0..PER_TX).map(|i| format!("Conn{}-{}", rep, batch * PER_TX + i)).collect();
            let events: Vec<Event> = names
                .iter()
                .map(|n| Event::new("connection.update").environment(env.id, &env.name).object("connection", n).detail(json!({"changed": ["settings"]})))
                .collect();
            let mut tx = s.db.begin().await.unwrap();
            audit::record_all(&mut tx, &actor, &events).await.unwrap();
            tx.commit().await.unwrap();
        }
        let enqueued = start.elapsed();
        let deadline = Instant::now() + Duration::from_secs(300);
        while got.lock().unwrap().len() < EVENTS {
            assert!(Instant::now() < deadline, "only {} of {EVENTS} delivered in 5 minutes", got.lock().unwrap().len());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let took = start.elapsed();
        stop.store(true, Ordering::Relaxed);
        let d = broker.await.unwrap();
        latencies.append(&mut got.lock().unwrap());
        eprintln!("{backend}, run {}: broker alone {a:.0}/s, during delivery {d:.0}/s ({:.2}×)", rep + 1, d / a);
        (enqueue_s, took_s) = (enqueue_s + enqueued.as_secs_f64(), took_s + took.as_secs_f64());
        ratios.push(d / a);
        alone.push(a);
        during.push(d);
    }
    running.stop(&s).await;
    latencies.sort_by(f64::total_cmp);
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    s.db.close().await;
    let (low, high) = (ratios.iter().copied().fold(f64::MAX, f64::min), ratios.iter().copied().fold(0.0, f64::max));
    Figures {
        backend,
        enqueued_per_s: (EVENTS * reps) as f64 / enqueue_s,
        delivered_per_s: (EVENTS * reps) as f64 / took_s,
        p50_ms: percentile(&latencies, 0.5),
        p99_ms: percentile(&latencies, 0.99),
        broker_alone: median(&mut alone),
        broker_during: median(&mut during),
        ratio: median(&mut ratios),
        ratio_range: (low, high),
        reps,
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    sqlx::any::install_default_drivers();
    let mut figures = Vec::new();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/bench.db", dir.path().display());
    if std::env::var("BENCH_SKIP_SQLITE").is_err() {
        figures.push(run("SQLite", &url, dir.path()).await);
    }
    if let Some(pg) = common::scratch_postgres().await {
        let dir = tempfile::tempdir().unwrap();
        figures.push(run("PostgreSQL", &pg.url, dir.path()).await);
        pg.remove().await;
    }
    println!("\n{EVENTS} events at {RATE} a second, {PER_TX} to a transaction; broker: {CALLERS} concurrent callers in process\n");
    println!("| backend | runs | enqueued per second | delivered per second | enqueue → receiver p50 | p99 (aim < 2 s) | broker alone (median) | broker during delivery (median) | ratio, median (aim ≥ 0.9) | lowest–highest |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for f in figures {
        println!(
            "| {} | {} | {:.0} | {:.0} | {:.0} ms | {:.0} ms | {:.0}/s | {:.0}/s | {:.2}× | {:.2}–{:.2}× |",
            f.backend,
            f.reps,
            f.enqueued_per_s,
            f.delivered_per_s,
            f.p50_ms,
            f.p99_ms,
            f.broker_alone,
            f.broker_during,
            f.ratio,
            f.ratio_range.0,
            f.ratio_range.1
        );
    }
}
