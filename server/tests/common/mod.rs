//! Test harness: every integration test runs against SQLite and, when the test command has
//! started a throwaway PostgreSQL server (CONNVAULT_TEST_POSTGRES_URL), against PostgreSQL too.
//! Under CI a missing PostgreSQL is a failure, not a skip.

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use server::api_keys::{self, Creator, NewApiKey};
use server::audit::Actor;
use server::config::Config;
use server::secret::SecretString;
use server::startup::{self, Services};
use server::users::{self, Role};
use sqlx::{AnyConnection, AssertSqlSafe, Connection, Executor, Row};
use tower::ServiceExt;

pub const PG_ENV: &str = "CONNVAULT_TEST_POSTGRES_URL";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Sqlite,
    Postgres,
}

/// One fresh, empty database plus a data folder for the key file.
pub struct TestDb {
    pub kind: Kind,
    pub url: String,
    pub dir: tempfile::TempDir,
}

impl TestDb {
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    pub fn sqlite_file(&self) -> Option<PathBuf> {
        server::db::sqlite_path(&self.url)
    }

    /// A configuration for this database, with extra environment variables.
    pub fn config_with(&self, vars: &[(&str, &str)]) -> Config {
        let mut map: HashMap<String, String> = HashMap::new();
        map.insert("CONNVAULT_DATA_DIR".into(), self.data_dir().display().to_string());
        map.insert("DATABASE_URL".into(), self.url.clone());
        map.insert("CONNVAULT_DB_MAX_CONNECTIONS".into(), "4".into());
        for (k, v) in vars {
            map.insert(k.to_string(), v.to_string());
        }
        Config::from_sources(None, |k| map.get(k).cloned()).expect("test configuration")
    }

    pub fn config(&self) -> Config {
        self.config_with(&[])
    }

    pub async fn open(&self) -> Services {
        startup::open(self.config()).await.unwrap_or_else(|e| panic!("{:?} open failed: {e}", self.kind))
    }

    /// A digest of every row of every table: equal digests mean nothing was written.
    pub async fn content_digest(&self) -> String {
        use sha2::Digest;
        sqlx::any::install_default_drivers();
        let mut conn = AnyConnection::connect(&self.url).await.unwrap();
        let tables: Vec<String> = match self.kind {
            Kind::Sqlite => conn.fetch_all("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").await.unwrap(),
            Kind::Postgres => conn
                .fetch_all("SELECT table_name::text AS name FROM information_schema.tables WHERE table_schema = current_schema() ORDER BY table_name")
                .await
                .unwrap(),
        }
        .iter()
        .map(|r| r.get::<String, _>("name"))
        .collect();
        let mut hasher = sha2::Sha256::new();
        for t in tables {
            let sql = match self.kind {
                Kind::Sqlite => format!(
                    "SELECT quote(t.rowid) || ':' || (SELECT group_concat(x, '|') FROM (SELECT * FROM \"{t}\" WHERE rowid = t.rowid) x) AS r FROM \"{t}\" t"
                ),
                Kind::Postgres => format!("SELECT t::text AS r FROM \"{t}\" t ORDER BY 1"),
            };
            // SQLite cannot concatenate a whole row generically; dump each row as its text form.
            let rows = match self.kind {
                Kind::Sqlite => dump_sqlite_table(&mut conn, &t).await,
                Kind::Postgres => conn.fetch_all(sqlx::query(AssertSqlSafe(sql))).await.unwrap().iter().map(|r| r.get::<String, _>("r")).collect(),
            };
            hasher.update(t.as_bytes());
            for r in rows {
                hasher.update(r.as_bytes());
            }
        }
        conn.close().await.unwrap();
        hex::encode(hasher.finalize())
    }

    /// Every stored value of every table as text (blobs as hex), to scan for plaintext.
    pub async fn all_text(&self) -> String {
        sqlx::any::install_default_drivers();
        let mut conn = AnyConnection::connect(&self.url).await.unwrap();
        let mut out = String::new();
        match self.kind {
            Kind::Sqlite => {
                let tables: Vec<String> =
                    conn.fetch_all("SELECT name FROM sqlite_master WHERE type = 'table'").await.unwrap().iter().map(|r| r.get("name")).collect();
                for t in tables {
                    out.push_str(&dump_sqlite_table(&mut conn, &t).await.join("\n"));
                }
            }
            Kind::Postgres => {
                let tables: Vec<String> = conn
                    .fetch_all("SELECT table_name::text AS name FROM information_schema.tables WHERE table_schema = current_schema()")
                    .await
                    .unwrap()
                    .iter()
                    .map(|r| r.get("name"))
                    .collect();
                for t in tables {
                    for r in conn.fetch_all(sqlx::query(AssertSqlSafe(format!("SELECT t::text AS r FROM \"{t}\" t")))).await.unwrap() {
                        out.push_str(&r.get::<String, _>("r"));
                        out.push('\n');
                    }
                }
            }
        }
        conn.close().await.unwrap();
        out
    }

    /// Runs one statement directly against the database (to simulate an attacker with SQL).
    pub async fn exec(&self, sql: &str) {
        sqlx::any::install_default_drivers();
        let mut conn = AnyConnection::connect(&self.url).await.unwrap();
        conn.execute(sqlx::query(AssertSqlSafe(sql.to_string()))).await.unwrap();
        conn.close().await.unwrap();
    }

    /// Like `exec`, but returns the database's answer (for statements it must refuse).
    pub async fn try_exec(&self, sql: &str) -> Result<(), sqlx::Error> {
        sqlx::any::install_default_drivers();
        let mut conn = AnyConnection::connect(&self.url).await?;
        let result = conn.execute(sqlx::query(AssertSqlSafe(sql.to_string()))).await.map(|_| ());
        conn.close().await?;
        result
    }
}

async fn dump_sqlite_table(conn: &mut AnyConnection, table: &str) -> Vec<String> {
    let cols: Vec<String> = conn
        .fetch_all(sqlx::query(AssertSqlSafe(format!("SELECT name FROM pragma_table_info('{table}')"))))
        .await
        .unwrap()
        .iter()
        .map(|r| r.get("name"))
        .collect();
    if cols.is_empty() {
        return Vec::new();
    }
    let expr = cols.iter().map(|c| format!("quote(\"{c}\")")).collect::<Vec<_>>().join(" || '|' || ");
    conn.fetch_all(sqlx::query(AssertSqlSafe(format!("SELECT {expr} AS r FROM \"{table}\" ORDER BY rowid"))))
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<String, _>("r"))
        .collect()
}

fn random_suffix() -> String {
    let mut b = [0u8; 6];
    getrandom::fill(&mut b).unwrap();
    hex::encode(b)
}

async fn fresh_postgres(admin_url: &str) -> String {
    sqlx::any::install_default_drivers();
    let name = format!("cv_test_{}", random_suffix());
    let mut conn = AnyConnection::connect(admin_url).await.unwrap_or_else(|e| panic!("cannot reach PostgreSQL at {admin_url}: {e}"));
    conn.execute(sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))).await.unwrap();
    conn.close().await.unwrap();
    let mut url = url::Url::parse(admin_url).unwrap();
    url.set_path(&format!("/{name}"));
    url.to_string()
}

/// Fresh databases for every backend available to this run.
pub async fn backends() -> Vec<TestDb> {
    let mut out = Vec::new();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("connvault.db").display());
    out.push(TestDb { kind: Kind::Sqlite, url, dir });
    match std::env::var(PG_ENV).ok().filter(|v| !v.is_empty()) {
        Some(admin) => out.push(TestDb { kind: Kind::Postgres, url: fresh_postgres(&admin).await, dir: tempfile::tempdir().unwrap() }),
        None if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("{PG_ENV} is not set: under CI the PostgreSQL backend must be tested (run `make test`)")
        }
        None => eprintln!("SKIPPED: PostgreSQL backend ({PG_ENV} not set; `make test` starts a throwaway server)"),
    }
    out
}

// The REST API through the real router (CSRF guard included).

pub const ORIGIN: &str = "http://127.0.0.1:3000";

#[derive(Clone, Copy, Debug)]
pub enum Who<'a> {
    Nobody,
    Session(&'a str),
    Key(&'a str),
}

pub struct Api {
    pub s: Services,
    pub router: axum::Router,
}

impl Api {
    pub fn new(s: Services) -> Api {
        let router = server::api::with_csrf_guard(server::api::router(s.clone()), &s.config.public_url);
        Api { s, router }
    }

    pub async fn call(&self, who: Who<'_>, method: &str, path: &str, body: Option<Value>) -> (StatusCode, Value, String) {
        self.call_from(who, method, path, body, "192.0.2.1:5000").await
    }

    pub async fn call_from(&self, who: Who<'_>, method: &str, path: &str, body: Option<Value>, addr: &str) -> (StatusCode, Value, String) {
        let mut req = Request::builder().method(method).uri(path);
        match who {
            Who::Nobody => {}
            Who::Session(token) => req = req.header("Cookie", format!("cv_session={token}")).header("Origin", ORIGIN),
            Who::Key(key) => req = req.header("Authorization", format!("Bearer {key}")),
        }
        let req = match body {
            Some(b) => req.header("Content-Type", "application/json").body(Body::from(b.to_string())),
            None => req.body(Body::empty()),
        };
        let mut req = req.unwrap();
        req.extensions_mut().insert(ConnectInfo(addr.parse::<SocketAddr>().unwrap()));
        let res = self.router.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null), text)
    }
}

pub async fn session(s: &Services, email: &str, role: Option<(&str, Role)>, owner: bool) -> String {
    let op = Actor::operator();
    let u = users::create(&s.db, &op, email, &SecretString::from("a long enough password"), owner).await.unwrap();
    if let Some((env, r)) = role {
        users::set_role(&s.db, &op, u.id, env, Some(r)).await.unwrap();
    }
    let (_, token) = server::sessions::sign_in(s, email, &SecretString::from("a long enough password"), None).await.unwrap();
    token.expose_secret().to_string()
}

pub async fn key(s: &Services, grants: &[&str]) -> String {
    let grants = grants.iter().flat_map(|g| api_keys::parse_grant(g).unwrap()).collect();
    let (_, value) =
        api_keys::create(&s.db, &Actor::operator(), Creator::Operator, NewApiKey { name: "test".into(), grants, allowed_addresses: vec![], expires_at: None })
            .await
            .unwrap();
    value.expose_secret().to_string()
}
