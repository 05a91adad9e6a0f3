//! Promises 1–5 and 9 of vault-security.md, on every backend.

use crate::common;

use std::collections::BTreeMap;

use common::{backends, Kind, TestDb};
use serde_json::json;
use server::audit::Actor;
use server::connections::{self, NewConnection};
use server::error::Error;
use server::keyring::{KeyId, Keyring, MasterKey};
use server::seal::{self, SealError};
use server::secret::SecretString;
use server::startup::{self, StartupError};
use sqlx::{AnyConnection, Connection, Executor, Row};

const MARKER: &str = "MARKER-7c1e-plaintext-must-never-reach-disk";

fn bearer(name: &str, token: &str) -> NewConnection {
    NewConnection {
        name: name.into(),
        provider: "http".into(),
        settings: json!({"base_url": "https://api.example.com", "auth": "bearer"}).as_object().unwrap().clone(),
        secrets: BTreeMap::from([("token".to_string(), SecretString::from(token))]),
    }
}

async fn blob_of(db: &TestDb, env: &str, name: &str) -> (i64, Vec<u8>) {
    sqlx::any::install_default_drivers();
    let mut c = AnyConnection::connect(&db.url).await.unwrap();
    let r = c
        .fetch_one(
            sqlx::query("SELECT s.id, s.blob FROM connection_secrets s JOIN connections c ON c.id = s.connection_id JOIN environments e ON e.id = c.environment_id WHERE e.name = $1 AND c.name = $2")
                .bind(env)
                .bind(name),
        )
        .await
        .unwrap();
    let out = (r.get("id"), r.get("blob"));
    c.close().await.unwrap();
    out
}

async fn set_blob(db: &TestDb, secret_row: i64, blob: &[u8]) {
    let mut c = AnyConnection::connect(&db.url).await.unwrap();
    c.execute(sqlx::query("UPDATE connection_secrets SET blob = $1 WHERE id = $2").bind(blob.to_vec()).bind(secret_row)).await.unwrap();
    c.close().await.unwrap();
}

async fn audit_actions(db: &TestDb) -> Vec<String> {
    let mut c = AnyConnection::connect(&db.url).await.unwrap();
    let rows = c.fetch_all("SELECT action FROM audit_events ORDER BY id").await.unwrap();
    c.close().await.unwrap();
    rows.iter().map(|r| r.get("action")).collect()
}

/// Promise 1: a fresh nonce per seal, and a header with format version and key id.
#[tokio::test]
async fn promise_1_every_stored_blob_is_fresh_and_labelled() {
    for db in backends().await {
        let s = db.open().await;
        let actor = Actor::operator();
        for i in 0..20 {
            connections::create(&s.db, &s.vault, &actor, "DEV", bearer(&format!("c{i}"), "same-token")).await.unwrap();
        }
        let mut seen = std::collections::HashSet::new();
        for i in 0..20 {
            let (_, blob) = blob_of(&db, "DEV", &format!("c{i}")).await;
            let header = seal::parse_header(&blob).unwrap();
            assert_eq!(header.version, seal::FORMAT_VERSION);
            assert_eq!(header.key_id, s.vault.current_key_id());
            assert!(seen.insert(header.nonce), "{:?}: nonce reused", db.kind);
        }
    }
}

/// Promise 2: a blob copied to another connection (another row, another environment) does not
/// open, and the reader gets an integrity error, never the other connection's secret.
#[tokio::test]
async fn promise_2_blobs_moved_between_rows_or_environments_do_not_open() {
    for db in backends().await {
        let s = db.open().await;
        let actor = Actor::operator();
        connections::create(&s.db, &s.vault, &actor, "DEV", bearer("A", "secret-of-A")).await.unwrap();
        connections::create(&s.db, &s.vault, &actor, "PROD", bearer("B", "secret-of-B")).await.unwrap();
        connections::create(&s.db, &s.vault, &actor, "DEV", bearer("C", "secret-of-C")).await.unwrap();
        let (_, a_blob) = blob_of(&db, "DEV", "A").await;

        // Across environments: A (DEV) into B (PROD).
        let (b_row, _) = blob_of(&db, "PROD", "B").await;
        set_blob(&db, b_row, &a_blob).await;
        let err = connections::open_secret(&s.db, &s.vault, "PROD", "B", "token").await.unwrap_err();
        assert!(matches!(err, Error::Seal(SealError::Integrity)), "{:?}: {err:?}", db.kind);

        // Across rows in the same environment: A into C.
        let (c_row, _) = blob_of(&db, "DEV", "C").await;
        set_blob(&db, c_row, &a_blob).await;
        let err = connections::open_secret(&s.db, &s.vault, "DEV", "C", "token").await.unwrap_err();
        assert!(matches!(err, Error::Seal(SealError::Integrity)), "{:?}: {err:?}", db.kind);

        // A itself still opens.
        let a = connections::open_secret(&s.db, &s.vault, "DEV", "A", "token").await.unwrap();
        assert_eq!(a.expose_secret(), "secret-of-A");
        let failures = audit_actions(&db).await.iter().filter(|a| *a == "secret.integrity_failure").count();
        assert_eq!(failures, 2, "{:?}: each failed open is audited", db.kind);
    }
}

/// Promise 3: tampering is detected and audited; no plaintext reaches the database (nor, for
/// SQLite, its file and WAL).
#[tokio::test]
async fn promise_3_tampering_is_detected_and_no_plaintext_reaches_disk() {
    for db in backends().await {
        let s = db.open().await;
        let actor = Actor::operator();
        connections::create(&s.db, &s.vault, &actor, "QA", bearer("Tamper", MARKER)).await.unwrap();
        connections::update(
            &s.db,
            &s.vault,
            &actor,
            "QA",
            "Tamper",
            connections::ConnectionPatch {
                secrets: BTreeMap::from([("token".to_string(), SecretString::from(format!("{MARKER}-v2").as_str()))]),
                ..Default::default()
            },
        )
        .await
        .unwrap();

        // No plaintext anywhere in the stored data (audit included).
        assert!(!db.all_text().await.contains("MARKER-7c1e"), "{:?}: plaintext in the database", db.kind);
        if db.kind == Kind::Sqlite {
            let file = db.sqlite_file().unwrap();
            for path in [file.clone(), file.with_extension("db-wal"), file.with_extension("db-shm")] {
                if let Ok(bytes) = std::fs::read(&path) {
                    assert!(!bytes.windows(11).any(|w| w == b"MARKER-7c1e"), "plaintext in {}", path.display());
                }
            }
            assert!(file.with_extension("db-wal").exists(), "the WAL is scanned while it holds the writes");
        }

        // Flip one byte of the ciphertext.
        let (row, mut blob) = blob_of(&db, "QA", "Tamper").await;
        let last = blob.len() - 5;
        blob[last] ^= 0x20;
        set_blob(&db, row, &blob).await;
        let err = connections::open_secret(&s.db, &s.vault, "QA", "Tamper", "token").await.unwrap_err();
        assert!(matches!(err, Error::Seal(SealError::Integrity)), "{err:?}");
        assert!(err.public_message().contains("tampered"), "{}", err.public_message());
        assert!(audit_actions(&db).await.contains(&"secret.integrity_failure".to_string()));
    }
}

/// Promise 4: a wrong, malformed or missing key refuses to start, says which key it expected,
/// and leaves the database byte-identical.
#[tokio::test]
async fn promise_4_wrong_or_malformed_key_refuses_to_start_and_writes_nothing() {
    for db in backends().await {
        let s = db.open().await;
        connections::create(&s.db, &s.vault, &Actor::operator(), "DEV", bearer("Keep", "kept-secret")).await.unwrap();
        let expected = s.vault.current_key_id().to_string();
        s.db.close().await;
        drop(s);
        let digest = db.content_digest().await;
        let file_bytes = db.sqlite_file().map(|f| std::fs::read(f).unwrap());

        let other = MasterKey::generate();
        let b64 = other.to_base64();
        let attempts: Vec<(&str, Vec<(&str, &str)>)> = vec![
            ("wrong key", vec![("CONNVAULT_MASTER_KEY", b64.as_str())]),
            ("malformed key", vec![("CONNVAULT_MASTER_KEY", "not-a-key")]),
            ("short key", vec![("CONNVAULT_MASTER_KEY", "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwd")]),
            ("missing key file", vec![("CONNVAULT_MASTER_KEY_FILE", "/nonexistent/dir/master.key")]),
        ];
        for (what, vars) in attempts {
            let err = startup::open(db.config_with(&vars)).await.expect_err(what);
            let msg = err.to_string();
            match what {
                "wrong key" => {
                    assert!(matches!(err, StartupError::WrongKey { .. }), "{what}: {err:?}");
                    assert!(msg.contains(&expected) && msg.contains(&other.id().to_string()), "{what}: {msg}");
                }
                "missing key file" => {
                    assert!(matches!(err, StartupError::MissingKeyFile { .. }), "{what}: {err:?}");
                    assert!(msg.contains(&expected), "{what}: {msg}");
                    assert!(!std::path::Path::new("/nonexistent/dir/master.key").exists());
                }
                _ => assert!(msg.contains("32 bytes"), "{what}: {msg}"),
            }
            assert_eq!(db.content_digest().await, digest, "{:?} {what}: the database changed", db.kind);
            if let (Some(f), Some(before)) = (db.sqlite_file(), &file_bytes) {
                assert_eq!(&std::fs::read(&f).unwrap(), before, "{what}: the SQLite file changed");
                assert!(!f.with_extension("db-wal").exists() || std::fs::metadata(f.with_extension("db-wal")).unwrap().len() == 0, "{what}: a WAL was written");
            }
        }

        // The right key still opens everything.
        let s = db.open().await;
        assert_eq!(connections::open_secret(&s.db, &s.vault, "DEV", "Keep", "token").await.unwrap().expose_secret(), "kept-secret");
    }
}

/// A damaged check value (right key id, wrong bytes) is refused as well.
#[tokio::test]
async fn a_damaged_check_value_refuses_to_start() {
    for db in backends().await {
        let s = db.open().await;
        s.db.close().await;
        let mut c = AnyConnection::connect(&db.url).await.unwrap();
        let blob: Vec<u8> = c.fetch_one("SELECT check_blob FROM keyring_check").await.unwrap().get("check_blob");
        let mut bad = blob.clone();
        *bad.last_mut().unwrap() ^= 1;
        c.execute(sqlx::query("UPDATE keyring_check SET check_blob = $1").bind(bad)).await.unwrap();
        c.close().await.unwrap();
        let err = startup::open(db.config()).await.unwrap_err();
        assert!(matches!(err, StartupError::CheckFailed { .. }), "{err:?}");
    }
}

/// Promise 5: write, rotate, write, restart with new + old keys, read both; after retiring the
/// old key, the new key alone reads everything. A reader opened before the rotation keeps
/// reading without a restart.
#[tokio::test]
async fn promise_5_master_key_rotation_keeps_everything_readable() {
    for db in backends().await {
        let s = db.open().await;
        let actor = Actor::operator();
        let old_id = s.vault.current_key_id();
        connections::create(&s.db, &s.vault, &actor, "DEV", bearer("Before", "written-before")).await.unwrap();
        connections::create(&s.db, &s.vault, &actor, "PROD", bearer("BeforeProd", "written-before-prod")).await.unwrap();
        // An email kept in the outbox is sealed too, and must survive the rotation.
        let email =
            server::mail::Email { to: "a@example.com".into(), subject: "S".into(), text: "kept text".into(), html: "<p>h</p>".into(), attachments: vec![] };
        let server::mail::Delivery::Outbox { id: mail_id } = s.mailer.send(&s.db, &s.vault, &email).await.unwrap() else { panic!("outbox") };

        let old_b64 = Keyring::read_file(&db.config().master_key_file).unwrap().current().to_base64();
        let report = server::rotate::rotate_master_key(&db.config(), false).await.unwrap();
        assert_eq!(report.resealed, 3, "two secrets and one outbox message");
        assert_eq!(report.previous_key_id, old_id.to_string());
        let new_id = KeyId::parse(&report.new_key_id).unwrap();
        assert_ne!(new_id, old_id);

        // The running server (opened before the rotation) still reads: it picks up the new key.
        assert_eq!(connections::open_secret(&s.db, &s.vault, "DEV", "Before", "token").await.unwrap().expose_secret(), "written-before");
        connections::create(&s.db, &s.vault, &actor, "DEV", bearer("After", "written-after")).await.unwrap();
        assert_eq!(seal::parse_header(&blob_of(&db, "DEV", "After").await.1).unwrap().key_id, new_id);
        for name in ["Before", "After"] {
            assert_eq!(seal::parse_header(&blob_of(&db, "DEV", name).await.1).unwrap().key_id, new_id, "{name}");
        }
        s.db.close().await;

        // Restart: the key file now holds new + old.
        let ring = Keyring::read_file(&db.config().master_key_file).unwrap();
        assert_eq!(ring.ids(), vec![new_id, old_id]);
        let s = db.open().await;
        assert_eq!(connections::open_secret(&s.db, &s.vault, "DEV", "Before", "token").await.unwrap().expose_secret(), "written-before");
        assert_eq!(connections::open_secret(&s.db, &s.vault, "DEV", "After", "token").await.unwrap().expose_secret(), "written-after");
        s.db.close().await;

        // An instance that had not restarted yet wrote a secret with the old key meanwhile.
        let old_key = MasterKey::parse(&old_b64).unwrap();
        let (secret_row, _) = blob_of(&db, "DEV", "After").await;
        let mut c = AnyConnection::connect(&db.url).await.unwrap();
        let r = c
            .fetch_one(
                sqlx::query("SELECT s.connection_id, c.environment_id FROM connection_secrets s JOIN connections c ON c.id = s.connection_id WHERE s.id = $1")
                    .bind(secret_row),
            )
            .await
            .unwrap();
        c.close().await.unwrap();
        let place = seal::Place { table: "connection_secrets", row: r.get("connection_id"), field: "token", environment: r.get("environment_id") };
        set_blob(&db, secret_row, &seal::seal_with(&old_key, &place, b"straggler")).await;
        // Retire: stragglers re-sealed under the current key, the old key leaves the file.
        let report = server::rotate::rotate_master_key(&db.config(), true).await.unwrap();
        assert_eq!(report.new_key_id, new_id.to_string(), "retiring makes no new key");
        assert_eq!(Keyring::read_file(&db.config().master_key_file).unwrap().ids(), vec![new_id]);
        assert_eq!(report.retired, vec![old_id.to_string()]);
        assert_eq!(report.resealed, 1, "the straggler");
        let s = db.open().await;
        for (env, name, value) in [("DEV", "Before", "written-before"), ("DEV", "After", "straggler"), ("PROD", "BeforeProd", "written-before-prod")] {
            assert_eq!(connections::open_secret(&s.db, &s.vault, env, name, "token").await.unwrap().expose_secret(), value);
        }
        assert_eq!(server::mail::text(&s.db, &s.vault, mail_id).await.unwrap().1.trim(), "kept text");
        // The old key alone no longer opens this database.
        let old_only = format!("{}", startup::open(db.config_with(&[("CONNVAULT_MASTER_KEY", &old_b64)])).await.unwrap_err());
        assert!(old_only.contains("wrong master key"), "{old_only}");
    }
}

/// Rotation with keys from the environment: the operator supplies the new key as current and
/// the old one as previous; the command re-seals everything under the new key.
#[tokio::test]
async fn rotation_with_keys_from_the_environment() {
    for db in backends().await {
        let old = MasterKey::generate();
        let old_b64 = old.to_base64();
        let s = startup::open(db.config_with(&[("CONNVAULT_MASTER_KEY", &old_b64)])).await.unwrap();
        connections::create(&s.db, &s.vault, &Actor::operator(), "QA", bearer("Env", "env-secret")).await.unwrap();
        s.db.close().await;

        let refused = server::rotate::rotate_master_key(&db.config_with(&[("CONNVAULT_MASTER_KEY", &old_b64)]), false).await.unwrap_err();
        assert!(refused.to_string().contains("CONNVAULT_MASTER_KEY_PREVIOUS"), "{refused}");

        let new = MasterKey::generate();
        let new_b64 = new.to_base64();
        let both = [("CONNVAULT_MASTER_KEY", new_b64.as_str()), ("CONNVAULT_MASTER_KEY_PREVIOUS", old_b64.as_str())];
        let report = server::rotate::rotate_master_key(&db.config_with(&both), false).await.unwrap();
        assert_eq!((report.resealed, report.new_key_id.clone()), (1, new.id().to_string()));
        let s = startup::open(db.config_with(&[("CONNVAULT_MASTER_KEY", &new_b64)])).await.unwrap();
        assert_eq!(connections::open_secret(&s.db, &s.vault, "QA", "Env", "token").await.unwrap().expose_secret(), "env-secret");
    }
}

/// Promise 9: secret comparisons are constant-time (the types have no `PartialEq`; see the
/// compile-time check in `secret.rs`), and secrets never print.
#[test]
fn promise_9_secret_types_compare_in_constant_time_and_never_print() {
    let a = SecretString::from("value");
    assert!(a.ct_eq(&SecretString::from("value")));
    assert!(!a.ct_eq(&SecretString::from("other")));
    let input: NewConnection = serde_json::from_value(json!({"name": "X", "provider": "http", "secrets": {"token": MARKER}})).unwrap();
    assert!(!format!("{input:?}").contains(MARKER));
}
