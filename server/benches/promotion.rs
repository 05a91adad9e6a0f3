//! Promotion benchmark: an environment of 10,000 integrations and 10,000 connections (half the
//! integrations bound) is exported, then planned and applied into an empty environment, then
//! planned and applied again (nothing left to change), on SQLite (and PostgreSQL when
//! CONNVAULT_TEST_POSTGRES_URL names a server it may create a database on). Each import is
//! timed as the REST handler runs it: read and check the bundle, then plan or apply. Prints a
//! Markdown table; the aim is under 5 s for each step.
//!
//!     cargo bench -p server --bench promotion

mod common;

use std::time::{Duration, Instant};

use server::audit::Actor;
use server::db::{format_time, Db};
use server::promotion::{self, Mode, Options, Report};

const INTEGRATIONS: usize = 10_000;
const CONNECTIONS: usize = 10_000;
const RUNS: usize = 3;

async fn environment(db: &Db, name: &str, position: i64) {
    sqlx::query("INSERT INTO environments (name, name_key, position, created_at, updated_at) VALUES ($1, $2, $3, $4, $4)")
        .bind(name)
        .bind(name.to_lowercase())
        .bind(position)
        .bind(format_time(chrono::Utc::now()))
        .execute(db.pool())
        .await
        .unwrap();
}

/// Read and check the bundle, then plan or apply it, as `POST …/import` does.
async fn import(db: &Db, actor: &Actor, env: &str, bytes: &[u8], mode: Mode) -> Report {
    let bundle = promotion::parse(bytes).unwrap();
    promotion::import(db, actor, env, &bundle, mode, Options { create_placeholders: true, overwrite_settings: false }).await.unwrap()
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// The median of `RUNS` runs of `f` (which must leave the database as it found it).
async fn median<F: AsyncFnMut()>(mut f: F) -> Duration {
    let mut times = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let start = Instant::now();
        f().await;
        times.push(start.elapsed());
    }
    times.sort();
    times[RUNS / 2]
}

fn changed(r: &Report) -> usize {
    r.changes.iter().filter(|c| matches!(c.action, promotion::Action::Create | promotion::Action::Update)).count()
}

async fn run(backend: &str, url: &str) {
    let db = Db::connect(url, 4).await.unwrap();
    let actor = Actor::system("benchmark");
    environment(&db, "SRC", 1).await;
    environment(&db, "DST", 2).await;
    let sample = serde_json::to_vec(&promotion::sample_bundle("SRC", INTEGRATIONS, CONNECTIONS)).unwrap();
    let start = Instant::now();
    let seeded = import(&db, &actor, "SRC", &sample, Mode::Apply).await;
    let seed_time = start.elapsed();
    assert_eq!(changed(&seeded), INTEGRATIONS + CONNECTIONS + INTEGRATIONS / 2);
    if backend == "PostgreSQL" {
        sqlx::query("ANALYZE").execute(db.pool()).await.unwrap();
    }

    let mut bytes = Vec::new();
    let export = median(async || {
        bytes = serde_json::to_vec(&promotion::export(&db, &actor, "SRC").await.unwrap()).unwrap();
    })
    .await;
    let size_mb = bytes.len() as f64 / (1024.0 * 1024.0);
    let plan = median(async || {
        let r = import(&db, &actor, "DST", &bytes, Mode::Plan).await;
        assert_eq!(changed(&r), INTEGRATIONS + CONNECTIONS + INTEGRATIONS / 2);
    })
    .await;
    let start = Instant::now();
    let applied = import(&db, &actor, "DST", &bytes, Mode::Apply).await;
    let apply = start.elapsed();
    assert!(applied.applied && changed(&applied) == INTEGRATIONS + CONNECTIONS + INTEGRATIONS / 2);
    let replan = median(async || {
        assert_eq!(changed(&import(&db, &actor, "DST", &bytes, Mode::Plan).await), 0);
    })
    .await;
    let reapply = median(async || {
        assert_eq!(changed(&import(&db, &actor, "DST", &bytes, Mode::Apply).await), 0);
    })
    .await;
    for (step, time) in [
        ("apply into an empty environment (seeding the source)", seed_time),
        (&*format!("export ({size_mb:.1} MB of JSON)"), export),
        ("plan into an empty environment", plan),
        ("apply into an empty environment", apply),
        ("plan again (all unchanged)", replan),
        ("apply again (nothing to change)", reapply),
    ] {
        println!("| {backend} | {step} | {:.2} |", secs(time));
    }
    db.close().await;
}

#[tokio::main]
async fn main() {
    sqlx::any::install_default_drivers();
    println!(
        "{INTEGRATIONS} integrations, {CONNECTIONS} connections, {} bindings; median of {RUNS} runs (applies into an empty environment: one run)\n",
        INTEGRATIONS / 2
    );
    println!("| backend | step | seconds |");
    println!("|---|---|---|");
    let dir = tempfile::tempdir().unwrap();
    run("SQLite", &format!("sqlite://{}?mode=rwc", dir.path().join("bench.db").display())).await;
    if let Some(pg) = common::scratch_postgres().await {
        run("PostgreSQL", &pg.url).await;
        pg.remove().await;
    }
}
