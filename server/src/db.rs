//! Database access: one repository layer over SQLite (embedded default) and PostgreSQL
//! (shared by several instances), through sqlx's `Any` driver. Queries are written once, in the
//! SQL both backends speak (`$N` parameters, `RETURNING`, text timestamps).

use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

use sqlx::any::AnyPoolOptions;
use sqlx::{AnyConnection, AnyPool, Connection, Executor, Row};

use crate::error::{Error, Result};

pub type Tx<'a> = sqlx::Transaction<'a, sqlx::Any>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn of_url(url: &str) -> Backend {
        if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            Backend::Postgres
        }
    }
}

#[derive(Debug, Clone)]
pub struct Db {
    pool: AnyPool,
    backend: Backend,
    watch: Watch,
}

/// The one statement that reads the epoch, on both backends.
const EPOCH_SQL: &str = "SELECT version FROM route_epoch WHERE id = 1";

/// How the broker learns that what it keeps (`route_epoch`, see its migrations) may be stale.
#[derive(Clone, Default)]
enum Watch {
    /// Nothing may be kept (an in-memory SQLite database).
    #[default]
    None,
    Sqlite(Arc<Mutex<Watched>>),
    Postgres(Arc<Rounds>),
}

/// A read-only connection of its own to an SQLite file, watching `route_epoch`: `PRAGMA
/// data_version` tells in about a microsecond, without a trip through the pool, whether
/// anything at all was committed since the last look (by any connection of any process); only
/// then is the epoch itself read again.
struct Watched {
    conn: rusqlite::Connection,
    /// `data_version` when `epoch` was read.
    data_version: i64,
    epoch: i64,
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Watch::None => "Watch::None",
            Watch::Sqlite(_) => "Watch::Sqlite",
            Watch::Postgres(_) => "Watch::Postgres",
        })
    }
}

impl Watch {
    fn open_sqlite(path: &std::path::Path) -> Result<Watch> {
        use rusqlite::OpenFlags;
        let failed = |e: rusqlite::Error| Error::Internal(format!("cannot watch {} for changes: {e}", path.display()));
        let conn = rusqlite::Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX).map_err(failed)?;
        conn.busy_timeout(Duration::from_millis(200)).map_err(failed)?;
        let data_version = conn.query_row("PRAGMA data_version", [], |row| row.get(0)).map_err(failed)?;
        let epoch = conn.query_row(EPOCH_SQL, [], |row| row.get(0)).map_err(failed)?;
        Ok(Watch::Sqlite(Arc::new(Mutex::new(Watched { conn, data_version, epoch }))))
    }

    async fn epoch(&self) -> Option<i64> {
        match self {
            Watch::None => None,
            Watch::Sqlite(w) => sqlite_epoch(w),
            Watch::Postgres(rounds) => rounds.epoch().await,
        }
    }
}

fn sqlite_epoch(w: &Mutex<Watched>) -> Option<i64> {
    let mut w = w.lock().unwrap_or_else(|e| e.into_inner());
    let data_version: i64 = w.conn.prepare_cached("PRAGMA data_version").ok()?.query_row([], |row| row.get(0)).ok()?;
    if data_version != w.data_version {
        // Read after data_version: a commit in between only makes the epoch newer than the
        // version it is filed under, and the next look reads it again.
        let epoch = w.conn.prepare_cached(EPOCH_SQL).ok()?.query_row([], |row| row.get(0)).ok()?;
        (w.data_version, w.epoch) = (data_version, epoch);
    }
    Some(w.epoch)
}

/// PostgreSQL: another server's change is seen only by asking the database, so every caller
/// waits for a read of `route_epoch` that *began after it asked* (it sees every commit made
/// before the call arrived: a revoked key is refused at once, on every server). One read
/// answers all the callers waiting when it begins: under load the rounds run back to back on
/// a connection of their own (not the pool's, which background jobs may hold), one trivial
/// query each, however many calls they answer. Idle for a second, the reader stops and closes
/// its connection; the next caller starts it again. A failed read answers `None` (nothing kept
/// is used: the caller reads everything through the pool).
struct Rounds {
    url: String,
    state: Mutex<RoundState>,
    /// A caller asked for a round.
    asked: tokio::sync::Notify,
    /// The last round done: its number and what it read.
    done: tokio::sync::watch::Sender<(u64, Option<i64>)>,
}

#[derive(Default)]
struct RoundState {
    /// Rounds begun (a round's number is the count when it began).
    begun: u64,
    /// Callers that asked since the last round began (they wait for the next one).
    asking: usize,
    reader: Option<tokio::task::JoinHandle<()>>,
    closed: bool,
}

/// How long the reader waits for a caller before it stops; and how long a read may take
/// before its callers give up on it (`None`).
const ROUND_IDLE: Duration = Duration::from_secs(1);
const ROUND_TIMEOUT: Duration = Duration::from_secs(5);

impl Rounds {
    fn new(url: &str) -> Arc<Rounds> {
        Arc::new(Rounds { url: url.to_string(), state: Mutex::default(), asked: tokio::sync::Notify::new(), done: tokio::sync::watch::channel((0, None)).0 })
    }

    async fn epoch(self: &Arc<Self>) -> Option<i64> {
        let mut rx = self.done.subscribe();
        let target = {
            let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
            if st.closed {
                return None;
            }
            st.asking += 1;
            // A reader that ended with its runtime (a test's) is started again.
            if st.reader.as_ref().is_none_or(|t| t.is_finished()) {
                st.reader = Some(tokio::spawn(self.clone().read_rounds()));
            }
            st.begun + 1
        };
        self.asked.notify_one();
        let seen = tokio::time::timeout(ROUND_TIMEOUT, rx.wait_for(|(round, _)| *round >= target)).await.ok()?.ok()?;
        seen.1
    }

    async fn read_rounds(self: Arc<Self>) {
        let mut conn: Option<AnyConnection> = None;
        loop {
            // Before a round begins, the callers the last one woke get to ask again (they run
            // on the other worker threads or after a yield), so that one read answers them all
            // rather than every other one: half the reads under load, a yield's delay alone.
            let mut asking = self.state.lock().unwrap_or_else(|e| e.into_inner()).asking;
            for _ in 0..8 {
                tokio::task::yield_now().await;
                let now = self.state.lock().unwrap_or_else(|e| e.into_inner()).asking;
                if now == asking {
                    break;
                }
                asking = now;
            }
            let round = {
                let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
                if st.closed {
                    break;
                }
                if st.asking > 0 {
                    st.asking = 0;
                    st.begun += 1;
                    Some(st.begun)
                } else {
                    None
                }
            };
            let Some(round) = round else {
                if tokio::time::timeout(ROUND_IDLE, self.asked.notified()).await.is_err() {
                    let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
                    if st.asking == 0 {
                        st.reader = None;
                        break;
                    }
                }
                continue;
            };
            let read = tokio::time::timeout(ROUND_TIMEOUT, Self::read(&mut conn, &self.url))
                .await
                .map_err(|_| format!("no answer within {} s", ROUND_TIMEOUT.as_secs()))
                .and_then(|r| r.map_err(|e| e.to_string()));
            let epoch = match read {
                Ok(epoch) => Some(epoch),
                Err(error) => {
                    tracing::warn!(%error, "reading route_epoch failed; the broker reads every route until it works again");
                    conn = None;
                    None
                }
            };
            self.done.send_replace((round, epoch));
        }
        if let Some(c) = conn {
            let _ = c.close().await;
        }
    }

    async fn read(conn: &mut Option<AnyConnection>, url: &str) -> std::result::Result<i64, sqlx::Error> {
        if conn.is_none() {
            *conn = Some(AnyConnection::connect(url).await?);
        }
        let c = conn.as_mut().expect("just connected");
        sqlx::query_scalar(EPOCH_SQL).fetch_one(c).await
    }

    /// Stops the reader and closes its connection; callers waiting get `None`.
    async fn close(&self) {
        let reader = {
            let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
            st.closed = true;
            st.reader.take()
        };
        self.asked.notify_one();
        self.done.send_replace((u64::MAX, None));
        if let Some(t) = reader {
            let _ = t.await;
        }
    }
}

/// The current time as stored: RFC 3339, UTC, microseconds, `Z` (fixed width, so it sorts).
/// Rows per multi-row INSERT: well under both backends' limits on parameters per statement
/// (SQLite 32,766, PostgreSQL 65,535) for tables of up to 100 columns.
pub const INSERT_BATCH: usize = 300;

/// `1,2,3` for an `IN (…)` list. Only integers can be in it, so the text is safe to put in SQL
/// (`AssertSqlSafe`) whatever they came from.
pub fn id_list(ids: impl IntoIterator<Item = i64>) -> String {
    ids.into_iter().map(|id| id.to_string()).collect::<Vec<_>>().join(",")
}

/// `INSERT INTO table (columns) VALUES ($1, …), ($k, …), …` for `rows` rows, parameters
/// numbered row by row: one statement for many rows, in the SQL both backends speak.
pub fn multi_row_insert(table: &str, columns: &[&str], rows: usize) -> String {
    let mut sql = format!("INSERT INTO {table} ({}) VALUES ", columns.join(", "));
    for row in 0..rows {
        if row > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for col in 0..columns.len() {
            if col > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!("${}", row * columns.len() + col + 1));
        }
        sql.push(')');
    }
    sql
}

pub fn now() -> String {
    format_time(chrono::Utc::now())
}

/// The current minute in the stored form's first 16 characters (`2026-11-24T14:07`), formatted
/// once a minute rather than on every call (the API-key check asks on every request).
pub fn this_minute() -> String {
    static CACHE: std::sync::Mutex<(i64, String)> = std::sync::Mutex::new((i64::MIN, String::new()));
    let t = chrono::Utc::now();
    let minute = t.timestamp().div_euclid(60);
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    if cache.0 != minute {
        *cache = (minute, format_time(t)[..16].to_string());
    }
    cache.1.clone()
}

/// The stored form of the time `days` days from now.
pub fn days_from_now(days: i64) -> String {
    format_time(chrono::Utc::now() + chrono::Duration::days(days))
}

pub fn format_time(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

static MIGRATE_SQLITE: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");
static MIGRATE_POSTGRES: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");

fn install_drivers() {
    static ONCE: Once = Once::new();
    ONCE.call_once(sqlx::any::install_default_drivers);
}

/// The key check value as stored, read before anything is written.
#[derive(Debug, Clone)]
pub struct CheckRecord {
    pub key_id: String,
    pub blob: Vec<u8>,
}

/// The path of an SQLite database URL (`sqlite://path?...`, `sqlite:path`).
pub fn sqlite_path(url: &str) -> Option<std::path::PathBuf> {
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or("");
    if path.is_empty() || path == ":memory:" {
        return None;
    }
    Some(std::path::PathBuf::from(path))
}

/// Reads the keyring check value without writing anything: SQLite is opened read-only (and not
/// at all when the file does not exist); PostgreSQL only sees a SELECT.
/// `Ok(None)` means a fresh database.
pub async fn read_check(url: &str) -> Result<Option<CheckRecord>> {
    install_drivers();
    let mut conn: AnyConnection = match Backend::of_url(url) {
        Backend::Sqlite => {
            let Some(path) = sqlite_path(url) else { return Ok(None) };
            if !path.exists() {
                return Ok(None);
            }
            let ro = format!("sqlite://{}?mode=ro", path.display());
            AnyConnection::connect(&ro).await?
        }
        Backend::Postgres => AnyConnection::connect(url).await?,
    };
    let exists_sql = match Backend::of_url(url) {
        Backend::Sqlite => "SELECT COUNT(*) AS n FROM sqlite_master WHERE type = 'table' AND name = 'keyring_check'",
        Backend::Postgres => "SELECT COUNT(*) AS n FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = 'keyring_check'",
    };
    let n: i64 = conn.fetch_one(exists_sql).await?.try_get("n")?;
    let record = if n == 0 {
        None
    } else {
        conn.fetch_optional("SELECT key_id, check_blob FROM keyring_check ORDER BY id DESC LIMIT 1")
            .await?
            .map(|row| -> Result<CheckRecord> { Ok(CheckRecord { key_id: row.try_get("key_id")?, blob: row.try_get("check_blob")? }) })
            .transpose()?
    };
    conn.close().await?;
    Ok(record)
}

/// The check value through an open pool.
pub async fn read_check_in(db: &Db) -> Result<Option<CheckRecord>> {
    let row = sqlx::query("SELECT key_id, check_blob FROM keyring_check ORDER BY id DESC LIMIT 1").fetch_optional(db.pool()).await?;
    Ok(match row {
        Some(r) => Some(CheckRecord { key_id: r.try_get("key_id")?, blob: r.try_get("check_blob")? }),
        None => None,
    })
}

impl Db {
    /// Connects (creating the SQLite file and its folder if needed) and applies migrations.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Db> {
        install_drivers();
        let backend = Backend::of_url(url);
        if let Some(path) = sqlite_path(url).filter(|_| backend == Backend::Sqlite) {
            // The folder 0700 and the file 0600 (SQLite gives its WAL the file's permissions).
            if let Some(dir) = path.parent() {
                crate::keyring::create_private_dir(dir).map_err(|e| Error::Internal(format!("cannot create the data folder {}: {e}", dir.display())))?;
            }
            crate::keyring::create_private_file(&path).map_err(|e| Error::Internal(format!("cannot create the database file {}: {e}", path.display())))?;
        }
        let url = match backend {
            Backend::Sqlite if !url.contains("mode=") => format!("{url}{}mode=rwc", if url.contains('?') { '&' } else { '?' }),
            _ => url.to_string(),
        };
        let pool = AnyPoolOptions::new()
            .max_connections(if backend == Backend::Sqlite { max_connections.min(8) } else { max_connections })
            .acquire_timeout(Duration::from_secs(30))
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        conn.execute("PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON; PRAGMA synchronous = FULL;").await?;
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await?;
        let mut db = Db { pool, backend, watch: Watch::default() };
        db.migrate().await?;
        db.watch = match backend {
            Backend::Sqlite => match sqlite_path(&url) {
                Some(path) => Watch::open_sqlite(&path)?,
                None => Watch::None,
            },
            Backend::Postgres => Watch::Postgres(Rounds::new(&url)),
        };
        Ok(db)
    }

    async fn migrate(&self) -> Result<()> {
        let migrator = match self.backend {
            Backend::Sqlite => &MIGRATE_SQLITE,
            Backend::Postgres => &MIGRATE_POSTGRES,
        };
        migrator.run(&self.pool).await.map_err(|e| Error::Internal(format!("database migration failed: {e}")))
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// A number that changes whenever what decides an API key's route changes (keys, accounts
    /// and roles, environments, integrations, connections: the `route_epoch` migrations), by
    /// this process or another sharing the database, read no earlier than this call began (on
    /// PostgreSQL a round trip shared by the calls waiting, see [`Rounds`]). `None` for an
    /// in-memory SQLite database, where nothing may be kept; a failed read is `None` too, so
    /// whatever is kept on it fails closed.
    pub async fn route_epoch(&self) -> Option<i64> {
        self.watch.epoch().await
    }

    pub async fn begin(&self) -> Result<Tx<'static>> {
        match self.backend {
            // A deferred SQLite transaction that reads and then writes fails at once with
            // SQLITE_BUSY(_SNAPSHOT) when another connection wrote in between (busy_timeout does
            // not help there): take the write lock at the start, waiting for it up to the busy
            // timeout, so concurrent changes (requests, background jobs) queue instead of failing.
            Backend::Sqlite => Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?),
            Backend::Postgres => Ok(self.pool.begin().await?),
        }
    }

    /// A cheap round trip, for `/health`.
    pub async fn ping(&self) -> Result<()> {
        self.pool.execute("SELECT 1").await?;
        Ok(())
    }

    pub async fn close(&self) {
        if let Watch::Postgres(rounds) = &self.watch {
            rounds.close().await;
        }
        self.pool.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_row_inserts_number_parameters_row_by_row() {
        assert_eq!(multi_row_insert("t", &["a", "b"], 2), "INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4)");
        assert_eq!(multi_row_insert("t", &["a"], 1), "INSERT INTO t (a) VALUES ($1)");
    }

    #[test]
    fn sqlite_paths() {
        assert_eq!(sqlite_path("sqlite://./data/x.db?mode=rwc").unwrap(), std::path::PathBuf::from("./data/x.db"));
        assert_eq!(sqlite_path("sqlite:data/x.db").unwrap(), std::path::PathBuf::from("data/x.db"));
        assert_eq!(sqlite_path("sqlite://:memory:"), None);
        assert_eq!(sqlite_path("postgres://x"), None);
    }

    #[test]
    fn time_format_is_fixed_width_utc() {
        let t = chrono::DateTime::parse_from_rfc3339("2026-11-24T07:43:00+02:00").unwrap().with_timezone(&chrono::Utc);
        assert_eq!(format_time(t), "2026-11-24T05:43:00.000000Z");
        assert_eq!(now().len(), 27);
    }
}
