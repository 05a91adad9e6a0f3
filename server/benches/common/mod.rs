//! What the benchmarks share: a scratch PostgreSQL database when one may be created.

use sqlx::{AnyConnection, AssertSqlSafe, Connection, Executor};

/// A database of its own on the server CONNVAULT_TEST_POSTGRES_URL names, dropped by `remove`.
pub struct ScratchPostgres {
    admin: AnyConnection,
    name: String,
    pub url: String,
}

/// `None` (and a note on stderr) when CONNVAULT_TEST_POSTGRES_URL is not set.
pub async fn scratch_postgres() -> Option<ScratchPostgres> {
    let Some(admin_url) = std::env::var("CONNVAULT_TEST_POSTGRES_URL").ok().filter(|v| !v.is_empty()) else {
        eprintln!("PostgreSQL skipped (set CONNVAULT_TEST_POSTGRES_URL to include it)");
        return None;
    };
    let mut bytes = [0u8; 6];
    getrandom::fill(&mut bytes).unwrap();
    let name = format!("cv_bench_{}", hex::encode(bytes));
    let mut admin = AnyConnection::connect(&admin_url).await.unwrap();
    admin.execute(sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))).await.unwrap();
    let mut url = url::Url::parse(&admin_url).unwrap();
    url.set_path(&format!("/{name}"));
    Some(ScratchPostgres { admin, name, url: url.to_string() })
}

impl ScratchPostgres {
    pub async fn remove(mut self) {
        self.admin.execute(sqlx::query(AssertSqlSafe(format!("DROP DATABASE {} WITH (FORCE)", self.name)))).await.unwrap();
        self.admin.close().await.unwrap();
    }
}
