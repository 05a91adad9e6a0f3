//! `connvault rotate-master-key`: re-seals every secret and the check value under one key, in
//! one transaction. Readers never stop: until the commit they read the old blobs with the old
//! key; after it, running servers that do not know the new key re-read the key file.
//!
//! With a key file, rotation generates the new key and writes it to the file (new key first,
//! old keys kept) before touching the database, so the new key can never be lost. With keys
//! from the environment, the operator puts the new key in `CONNVAULT_MASTER_KEY` and the old one
//! in `CONNVAULT_MASTER_KEY_PREVIOUS`; rotation re-seals everything under the current key.

use serde::Serialize;
use serde_json::json;
use sqlx::Row;

use crate::audit::{self, Actor, Event};
use crate::config::Config;
use crate::connections::SECRETS_TABLE;
use crate::db::{self, now, Db};
use crate::keyring::{KeyId, KeySource, Keyring, MasterKey};
use crate::seal::{self, Place};
use crate::startup::{self, StartupError, CHECK_PLACE, CHECK_PLAINTEXT};

#[derive(Debug, Serialize)]
pub struct RotationReport {
    pub previous_key_id: String,
    pub new_key_id: String,
    pub resealed: usize,
    /// Keys removed from the key file by `--retire-old`.
    pub retired: Vec<String>,
}

/// Rotates to a new key (or finishes an interrupted rotation). With `retire_old`, no new key is
/// made: stragglers are re-sealed under the current key and every older key leaves the file.
pub async fn rotate_master_key(config: &Config, retire_old: bool) -> Result<RotationReport, StartupError> {
    let check = db::read_check(config.database_url.expose_secret())
        .await?
        .ok_or_else(|| StartupError::Other("this database has never been started: there is nothing to rotate".into()))?;
    let keyring = startup::load_keyring(config, Some(&check))?;
    startup::verify_check(&keyring, &check)?;
    let previous = check.key_id.clone();

    // Decide the target key; with a key file a fresh key is written before anything else.
    let keyring = match keyring.source().clone() {
        KeySource::File(path) if keyring.current().id().to_string() == check.key_id && !retire_old => {
            let new = MasterKey::generate();
            let mut keys: Vec<&MasterKey> = vec![&new];
            keys.extend(keyring.keys());
            Keyring::write_file(&keys, &path)?;
            tracing::info!(new_key = %new.id(), "new master key written to {}", path.display());
            Keyring::read_file(&path)?
        }
        KeySource::Environment if keyring.current().id().to_string() == check.key_id && !retire_old => {
            return Err(StartupError::Other(
                "the master key comes from CONNVAULT_MASTER_KEY and everything is already sealed with it. To rotate, \
                 generate a new key (openssl rand -base64 32), set CONNVAULT_MASTER_KEY to it and \
                 CONNVAULT_MASTER_KEY_PREVIOUS to the old key, then run this command again"
                    .into(),
            ));
        }
        // An unfinished rotation, or --retire-old after one: re-seal whatever is not yet under
        // the current key (e.g. written by an instance that had not restarted yet).
        _ => keyring,
    };

    let db = Db::connect(config.database_url.expose_secret(), 2).await?;
    let resealed = reseal_all(&db, &keyring, &previous).await;
    let resealed = match resealed {
        Ok(n) => n,
        Err(e) => {
            db.close().await;
            return Err(e);
        }
    };
    let target = keyring.current().id();
    let mut retired = Vec::new();
    if retire_old {
        retired = retire(&db, &keyring, target).await?;
    }
    db.close().await;
    Ok(RotationReport { previous_key_id: previous, new_key_id: target.to_string(), resealed, retired })
}

async fn reseal_all(db: &Db, keyring: &Keyring, previous: &str) -> Result<usize, StartupError> {
    let target = keyring.current();
    let mut tx = db.begin().await?;
    let rows = sqlx::query(
        "SELECT s.id, s.connection_id, s.field, s.blob, c.environment_id FROM connection_secrets s JOIN connections c ON c.id = s.connection_id ORDER BY s.id",
    )
    .fetch_all(&mut *tx)
    .await?;
    let t = now();
    let mut n = 0;
    for r in &rows {
        let id: i64 = r.try_get("id")?;
        let field: String = r.try_get("field")?;
        let place = Place { table: SECRETS_TABLE, row: r.try_get("connection_id")?, field: &field, environment: r.try_get("environment_id")? };
        let blob: Vec<u8> = r.try_get("blob")?;
        if seal::parse_header(&blob).map(|h| h.key_id) == Ok(target.id()) {
            continue;
        }
        let plain = seal::open_with(keyring, &place, &blob)
            .map_err(|e| StartupError::Other(format!("secret {field} of connection row {} cannot be opened ({e}); nothing was changed", place.row)))?;
        sqlx::query("UPDATE connection_secrets SET blob = $1, key_id = $2, updated_at = $3 WHERE id = $4")
            .bind(seal::seal_with(target, &place, &plain))
            .bind(target.id().to_string())
            .bind(&t)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        n += 1;
    }
    n += reseal_outbox(&mut tx, keyring, &t).await?;
    n += reseal_webhooks(&mut tx, keyring, &t).await?;
    sqlx::query("UPDATE keyring_check SET key_id = $1, check_blob = $2, updated_at = $3")
        .bind(target.id().to_string())
        .bind(seal::seal_with(target, &CHECK_PLACE, CHECK_PLAINTEXT))
        .bind(&t)
        .execute(&mut *tx)
        .await?;
    audit::record(
        &mut tx,
        &Actor::operator(),
        Event::new("vault.rotate_master_key").detail(json!({"from": previous, "to": target.id().to_string(), "resealed": n})),
    )
    .await?;
    tx.commit().await?;
    Ok(n)
}

/// The outbox's sealed messages (each row has two blobs, `eml` and `text`, under one key id).
async fn reseal_outbox(tx: &mut db::Tx<'_>, keyring: &Keyring, t: &str) -> Result<usize, StartupError> {
    let target = keyring.current();
    let rows =
        sqlx::query("SELECT id, sealed_eml, sealed_text FROM outbox WHERE key_id <> $1 ORDER BY id").bind(target.id().to_string()).fetch_all(&mut **tx).await?;
    for r in &rows {
        let id: i64 = r.try_get("id")?;
        let mut blobs = Vec::new();
        for (column, field) in [("sealed_eml", "eml"), ("sealed_text", "text")] {
            let place = Place { table: crate::mail::OUTBOX_TABLE, row: id, field, environment: 0 };
            let blob: Vec<u8> = r.try_get(column)?;
            let plain = seal::open_with(keyring, &place, &blob)
                .map_err(|e| StartupError::Other(format!("outbox message {id} cannot be opened ({e}); nothing was changed")))?;
            blobs.push(seal::seal_with(target, &place, &plain));
        }
        sqlx::query("UPDATE outbox SET sealed_eml = $1, sealed_text = $2, key_id = $3, updated_at = $4 WHERE id = $5")
            .bind(&blobs[0])
            .bind(&blobs[1])
            .bind(target.id().to_string())
            .bind(t)
            .bind(id)
            .execute(&mut **tx)
            .await?;
    }
    Ok(rows.len())
}

/// The webhooks' signing secrets (the current one and, during a rotation, the previous one).
async fn reseal_webhooks(tx: &mut db::Tx<'_>, keyring: &Keyring, t: &str) -> Result<usize, StartupError> {
    let target = keyring.current();
    let rows = sqlx::query("SELECT id, environment_id, sealed_secret, sealed_previous FROM webhooks WHERE key_id <> $1 ORDER BY id")
        .bind(target.id().to_string())
        .fetch_all(&mut **tx)
        .await?;
    for r in &rows {
        let id: i64 = r.try_get("id")?;
        let environment: i64 = r.try_get("environment_id")?;
        let reseal = |field: &'static str, blob: Vec<u8>| -> Result<Vec<u8>, StartupError> {
            let place = Place { table: crate::webhooks::TABLE, row: id, field, environment };
            let plain = seal::open_with(keyring, &place, &blob)
                .map_err(|e| StartupError::Other(format!("the signing secret of webhook {id} cannot be opened ({e}); nothing was changed")))?;
            Ok(seal::seal_with(target, &place, &plain))
        };
        let secret = reseal("secret", r.try_get("sealed_secret")?)?;
        let previous = r.try_get::<Option<Vec<u8>>, _>("sealed_previous")?.map(|b| reseal("previous", b)).transpose()?;
        sqlx::query("UPDATE webhooks SET sealed_secret = $1, sealed_previous = $2, key_id = $3, updated_at = $4 WHERE id = $5")
            .bind(secret)
            .bind(previous)
            .bind(target.id().to_string())
            .bind(t)
            .bind(id)
            .execute(&mut **tx)
            .await?;
    }
    Ok(rows.len())
}

/// Drops every key except `target` from the key file, after checking that nothing uses them.
async fn retire(db: &Db, keyring: &Keyring, target: KeyId) -> Result<Vec<String>, StartupError> {
    let KeySource::File(path) = keyring.source() else {
        return Err(StartupError::Other("keys from the environment are retired by removing them from CONNVAULT_MASTER_KEY_PREVIOUS".into()));
    };
    let still: i64 = sqlx::query(
        "SELECT (SELECT COUNT(*) FROM connection_secrets WHERE key_id <> $1) + (SELECT COUNT(*) FROM outbox WHERE key_id <> $1) \
         + (SELECT COUNT(*) FROM webhooks WHERE key_id <> $1) AS n",
    )
    .bind(target.to_string())
    .fetch_one(db.pool())
    .await?
    .try_get("n")?;
    if still > 0 {
        return Err(StartupError::Other(format!("{still} secrets are still sealed with an older key; run rotate-master-key again before retiring")));
    }
    let retired: Vec<String> = keyring.ids().into_iter().filter(|id| *id != target).map(|id| id.to_string()).collect();
    Keyring::write_file(&[keyring.current()], path)?;
    Ok(retired)
}
