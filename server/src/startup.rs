//! Opening the vault: configuration → keyring → key check → database. A wrong or malformed key
//! stops the server before it binds a port or writes anything (the check value is read with a
//! read-only connection, before migrations run).

use std::sync::Arc;

use serde_json::json;
use sqlx::Row;

use crate::audit::{self, Actor, Event};
use crate::broker::Broker;
use crate::config::Config;
use crate::db::{self, now, CheckRecord, Db};
use crate::environments;
use crate::keyring::{is_too_open, KeyId, Keyring, KeyringError, MasterKey};
use crate::mail::Mailer;
use crate::outbound::Outbound;
use crate::ratelimit::Limiter;
use crate::seal::{self, Place, Vault};

/// The check value's place: one per database.
pub const CHECK_PLACE: Place<'static> = Place { table: "keyring_check", row: 0, field: "check", environment: 0 };
pub const CHECK_PLAINTEXT: &[u8] = b"connvault keyring check v1";

pub use crate::services::Services;

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(
        "wrong master key: this database was sealed with master key {expected}, but the keyring \
         holds {have}. Start with the key whose id is {expected} (CONNVAULT_MASTER_KEY or \
         CONNVAULT_MASTER_KEY_FILE); nothing was changed"
    )]
    WrongKey { expected: String, have: String },
    #[error(
        "the master key file {path} does not exist, but this database was sealed with master key \
         {expected}. Restore the key file from your backup (or set CONNVAULT_MASTER_KEY); \
         nothing was changed"
    )]
    MissingKeyFile { path: String, expected: String },
    #[error("master key {key} does not open this database's check value: the key file or the database is damaged ({reason}); nothing was changed")]
    CheckFailed { key: String, reason: String },
    #[error("the database's keyring check value names key id {0:?}, which is not a key id; the database is damaged")]
    BadCheckRecord(String),
    #[error("master key: {0}")]
    Keyring(#[from] KeyringError),
    #[error("{0}")]
    Other(String),
}

impl From<crate::error::Error> for StartupError {
    fn from(e: crate::error::Error) -> Self {
        StartupError::Other(match e {
            crate::error::Error::Database(e) => format!("database: {e}"),
            other => other.to_string(),
        })
    }
}

impl From<sqlx::Error> for StartupError {
    fn from(e: sqlx::Error) -> Self {
        StartupError::Other(format!("database: {e}"))
    }
}

fn loud(lines: &[String]) {
    let width = lines.iter().map(|l| l.len()).max().unwrap_or(0).min(100);
    let bar = "!".repeat(width + 4);
    eprintln!("\n{bar}");
    for l in lines {
        eprintln!("! {l}");
    }
    eprintln!("{bar}\n");
}

/// Loads (or, on a fresh database, creates) the keyring. Writes nothing if `check` exists.
pub fn load_keyring(config: &Config, check: Option<&CheckRecord>) -> Result<Keyring, StartupError> {
    if let Some(current) = &config.master_key {
        return Ok(Keyring::from_env_values(current.expose_secret(), config.master_key_previous.as_ref().map(|p| p.expose_secret()))?);
    }
    let path = &config.master_key_file;
    if path.exists() {
        if is_too_open(path) {
            loud(&[format!("WARNING: the master key file {} can be read by other users.", path.display()), format!("Run: chmod 600 {}", path.display())]);
        }
        return Ok(Keyring::read_file(path)?);
    }
    if let Some(check) = check {
        return Err(StartupError::MissingKeyFile { path: path.display().to_string(), expected: check.key_id.clone() });
    }
    let key = MasterKey::generate();
    Keyring::write_file(&[&key], path)?;
    loud(&[
        format!("A new master key was created: {} (key id {}).", path.display(), key.id()),
        "BACK IT UP NOW, somewhere other than this machine. Every stored secret is sealed".into(),
        "with it: if the file is lost, no secret can ever be opened again.".into(),
    ]);
    tracing::warn!(key_id = %key.id(), path = %path.display(), "created a new master key file; back it up");
    Ok(Keyring::read_file(path)?)
}

/// Verifies that `keyring` opens the stored check value.
pub fn verify_check(keyring: &Keyring, check: &CheckRecord) -> Result<(), StartupError> {
    let id = KeyId::parse(&check.key_id).ok_or_else(|| StartupError::BadCheckRecord(check.key_id.clone()))?;
    if keyring.get(id).is_none() {
        let have = keyring.ids().iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
        return Err(StartupError::WrongKey { expected: check.key_id.clone(), have });
    }
    match seal::open_with(keyring, &CHECK_PLACE, &check.blob) {
        Ok(plain) if &plain[..] == CHECK_PLAINTEXT => Ok(()),
        Ok(_) => Err(StartupError::CheckFailed { key: check.key_id.clone(), reason: "unexpected check value".into() }),
        Err(e) => Err(StartupError::CheckFailed { key: check.key_id.clone(), reason: e.to_string() }),
    }
}

/// Opens the vault for serving (or for a command): verifies the key, then migrates and, on a
/// fresh database, writes the check value and the default environments in one transaction.
pub async fn open(config: Config) -> Result<Services, StartupError> {
    // A mail setting that cannot work stops the start before anything is written, rather than
    // failing the first email.
    let mailer = Mailer::from_config(config.smtp_url.as_ref().map(|u| u.expose_secret()), &config.smtp_from).map_err(|e| StartupError::Other(e.to_string()))?;
    let check = db::read_check(config.database_url.expose_secret()).await.map_err(|e| StartupError::Other(format!("cannot read the database: {e}")))?;
    let keyring = load_keyring(&config, check.as_ref())?;
    if let Some(check) = &check {
        verify_check(&keyring, check)?;
        if check.key_id != keyring.current().id().to_string() {
            tracing::warn!(
                sealed_with = %check.key_id, current = %keyring.current().id(),
                "a master key rotation is unfinished: run `connvault rotate-master-key` to re-seal everything under the current key"
            );
        }
    }
    let outbound = Outbound::new(&config).map_err(|e| StartupError::Other(format!("outbound calls: {e}")))?;
    let db = Db::connect(config.database_url.expose_secret(), config.db_max_connections).await?;
    if check.is_none() {
        initialize(&db, &keyring).await?;
    }
    tracing::info!(backend = ?db.backend(), key_id = %keyring.current().id(), mail = %mailer.describe(), "vault open");
    let limiter = Limiter::new(config.auth_failure_limit, std::time::Duration::from_secs(300));
    let account_limiter = Limiter::new(config.account_failure_limit, std::time::Duration::from_secs(300));
    let services = Services {
        config: Arc::new(config),
        db,
        vault: Vault::new(keyring),
        limiter,
        account_limiter,
        outbound,
        broker: Broker::default(),
        key_use: Default::default(),
        mailer,
    };
    Ok(services)
}

async fn initialize(db: &Db, keyring: &Keyring) -> Result<(), StartupError> {
    let mut tx = db.begin().await?;
    let existing: i64 = sqlx::query("SELECT COUNT(*) AS n FROM keyring_check").fetch_one(&mut *tx).await?.try_get("n")?;
    if existing > 0 {
        // Another instance initialised the database between our read and now: verify instead.
        tx.rollback().await?;
        let check = db::read_check_in(db).await?.expect("a check row exists");
        return verify_check(keyring, &check);
    }
    let t = now();
    let key = keyring.current();
    sqlx::query("INSERT INTO keyring_check (key_id, check_blob, created_at, updated_at) VALUES ($1, $2, $3, $3)")
        .bind(key.id().to_string())
        .bind(seal::seal_with(key, &CHECK_PLACE, CHECK_PLAINTEXT))
        .bind(&t)
        .execute(&mut *tx)
        .await?;
    let envs: i64 = sqlx::query("SELECT COUNT(*) AS n FROM environments").fetch_one(&mut *tx).await?.try_get("n")?;
    if envs == 0 {
        environments::seed_defaults(&mut tx).await?;
    }
    audit::record(
        &mut tx,
        &Actor::system("first start"),
        Event::new("vault.initialize").detail(json!({"key_id": key.id().to_string(), "environments": environments::DEFAULTS})),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}
