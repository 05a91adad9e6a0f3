//! Paging benchmark: 10,000 connections in one environment, on SQLite (and PostgreSQL when
//! CONNVAULT_TEST_POSTGRES_URL names a server it may create a database on). Times one page of
//! `connections::list` (the query and the JSON the REST handler sends) for each way of reading
//! the list, and prints the median and p95 as a Markdown table.
//!
//!     cargo bench -p server --bench paging

mod common;

use std::time::{Duration, Instant};

use server::connections::{self, ListQuery};
use server::db::{format_time, Db};
use server::feed::Feed;

const CONNECTIONS: usize = 10_000;
const RUNS: usize = 100;
const WARMUP: usize = 5;
const ENV: &str = "BENCH";

/// Inserts the environment and its connections directly, in one transaction (no secrets).
async fn seed(db: &Db) -> chrono::DateTime<chrono::Utc> {
    let base = chrono::Utc::now() - chrono::Duration::days(1);
    let mut tx = db.begin().await.unwrap();
    let t = format_time(base);
    let env_id: i64 = sqlx::Row::get(
        &sqlx::query("INSERT INTO environments (name, name_key, position, created_at, updated_at) VALUES ($1, $2, 1, $3, $3) RETURNING id")
            .bind(ENV)
            .bind(ENV.to_lowercase())
            .bind(&t)
            .fetch_one(&mut *tx)
            .await
            .unwrap(),
        "id",
    );
    for i in 0..CONNECTIONS {
        // Names in an order unrelated to ids; every fourth one another provider; every
        // connection changed once, a few seconds after it was created.
        let name = format!("svc-{:05}", (i * 7919) % CONNECTIONS);
        let created = base + chrono::Duration::milliseconds(i as i64);
        let updated = created + chrono::Duration::seconds(((i * 31) % 600) as i64);
        sqlx::query(
            "INSERT INTO connections (environment_id, name, name_key, provider, settings, created_by, updated_by, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, 'bench', 'bench', $6, $7)",
        )
        .bind(env_id)
        .bind(&name)
        .bind(name.to_lowercase())
        .bind(if i % 4 == 0 { "salesforce" } else { "http" })
        .bind(r#"{"base_url":"https://api.example.com","auth":"bearer"}"#)
        .bind(format_time(created))
        .bind(format_time(updated))
        .execute(&mut *tx)
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
    base
}

async fn page(db: &Db, q: &ListQuery) -> (usize, Option<String>) {
    let page = connections::list(db, ENV, q).await.unwrap();
    let json = serde_json::to_vec(&page).unwrap();
    std::hint::black_box(json);
    (page.items.len(), page.next_cursor)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn measure(db: &Db, q: &ListQuery) -> (f64, f64, usize) {
    for _ in 0..WARMUP {
        page(db, q).await;
    }
    let mut times = Vec::with_capacity(RUNS);
    let mut rows = 0;
    for _ in 0..RUNS {
        let start = Instant::now();
        rows = page(db, q).await.0;
        times.push(start.elapsed());
    }
    times.sort();
    let p95 = times[(RUNS * 95).div_ceil(100) - 1];
    (ms(times[RUNS / 2]), ms(p95), rows)
}

fn q(feed: Feed) -> ListQuery {
    ListQuery { limit: Some(100), feed, ..Default::default() }
}

async fn run(backend: &str, url: &str) {
    let db = Db::connect(url, 4).await.unwrap();
    let started = Instant::now();
    let base = seed(&db).await;
    eprintln!("{backend}: seeded {CONNECTIONS} connections in {:.1} s", started.elapsed().as_secs_f64());
    if backend == "PostgreSQL" {
        sqlx::query("ANALYZE").execute(db.pool()).await.unwrap();
    }
    // Page 90 by name: follow the cursors there.
    let mut deep = q(Feed::default());
    for _ in 1..90 {
        let (_, next) = page(&db, &deep).await;
        deep.feed = Feed::Default { cursor: next };
    }
    let cases: Vec<(&str, ListQuery)> = vec![
        ("first page by name", q(Feed::default())),
        ("page 90 by name (cursor)", deep),
        ("search `q=12`, first page", ListQuery { search: Some("12".into()), ..q(Feed::default()) }),
        ("provider filter, first page", ListQuery { provider: Some("salesforce".into()), ..q(Feed::default()) }),
        ("`since_id` = 5000", q(Feed::SinceId { since_id: 5_000, cursor: None })),
        ("`updated_since` = mid-list", q(Feed::UpdatedSince { since: base + chrono::Duration::seconds(5), cursor: None })),
    ];
    for (name, query) in &cases {
        let (median, p95, rows) = measure(&db, query).await;
        println!("| {backend} | {name} | {rows} | {median:.2} | {p95:.2} |");
    }
    db.close().await;
}

#[tokio::main]
async fn main() {
    sqlx::any::install_default_drivers();
    println!("{CONNECTIONS} connections in one environment, limit 100, {RUNS} runs each (after {WARMUP} warm-up runs)\n");
    println!("| backend | page | rows | median ms | p95 ms |");
    println!("|---|---|---|---|---|");
    let dir = tempfile::tempdir().unwrap();
    run("SQLite", &format!("sqlite://{}?mode=rwc", dir.path().join("bench.db").display())).await;
    if let Some(pg) = common::scratch_postgres().await {
        run("PostgreSQL", &pg.url).await;
        pg.remove().await;
    }
}
