//! Test harness: every integration test runs against SQLite and, when the test command has
//! started a throwaway PostgreSQL server (CONNVAULT_TEST_POSTGRES_URL), against PostgreSQL too.
//! Under CI a missing PostgreSQL is a failure, not a skip.

#![allow(dead_code)]

pub mod aiosmtpd;
pub mod api;

#[allow(unused_imports)]
pub use api::{key, session, Api, Who};

use std::collections::HashMap;
use std::path::PathBuf;

use server::config::Config;
use server::startup::{self, Services};
use sqlx::{AnyConnection, AssertSqlSafe, Connection, Executor, Row};

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

    /// A digest of every row of every table: equal digests mean nothing was written. The one
    /// column left out is an API key's `last_used_at`: authentication stamps it on the first use
    /// of each minute, whatever the request then does, so a check that spans a minute boundary
    /// would otherwise see a write the operation under test never made.
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
                Kind::Postgres => match use_stamps(&t) {
                    [] => format!("SELECT t::text AS r FROM \"{t}\" t ORDER BY 1"),
                    cols => format!(
                        "SELECT (to_jsonb(t) - ARRAY[{}]::text[])::text AS r FROM \"{t}\" t ORDER BY 1",
                        cols.iter().map(|c| format!("'{c}'")).collect::<Vec<_>>().join(", ")
                    ),
                },
            };
            // SQLite cannot concatenate a whole row generically; dump each row as its text form.
            let rows = match self.kind {
                Kind::Sqlite => dump_sqlite_table_except(&mut conn, &t, use_stamps(&t)).await,
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

/// Columns that authentication stamps on use (see `content_digest`), per table.
fn use_stamps(table: &str) -> &'static [&'static str] {
    match table {
        "api_keys" => &["last_used_at"],
        _ => &[],
    }
}

async fn dump_sqlite_table(conn: &mut AnyConnection, table: &str) -> Vec<String> {
    dump_sqlite_table_except(conn, table, &[]).await
}

async fn dump_sqlite_table_except(conn: &mut AnyConnection, table: &str, except: &[&str]) -> Vec<String> {
    let cols: Vec<String> = conn
        .fetch_all(sqlx::query(AssertSqlSafe(format!("SELECT name FROM pragma_table_info('{table}')"))))
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<String, _>("name"))
        .filter(|c| !except.contains(&c.as_str()))
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

/// A loopback port that is bound but not listening, for as long as the socket lives: a
/// connection to it is refused, and no concurrent test can take the port meanwhile (as it could
/// a port bound and freed again).
pub fn refusing_port() -> (tokio::net::TcpSocket, u16) {
    let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
    socket.bind("127.0.0.1:0".parse().expect("an address")).expect("a free port");
    let port = socket.local_addr().expect("bound").port();
    (socket, port)
}
