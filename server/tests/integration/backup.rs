//! Passphrase-encrypted backups (promise 12), on every backend: a full round trip into a fresh
//! instance with another master key, nothing in clear in the file, and a wrong passphrase, an
//! edited or cut file, or an occupied target refused before anything is written.

use crate::common;

use common::{backends, Kind, TestDb};
use serde_json::{json, Value};
use server::audit::Actor;
use server::backup::{self, Created};
use server::connections::{self, NewConnection};
use server::error::Error;
use server::integrations::{self, Publish};
use server::secret::SecretString;
use server::signing::{self, IssueRequest};
use server::startup::Services;
use server::users::{self, Role};
use sqlx::{AnyConnection, Connection, Executor, Row};

const MARKER: &str = "MARKER-backup-5d2e-secret-value";
const BASIC_MARKER: &str = "MARKER-backup-basic-password";
const PASSPHRASE: &str = "a long backup passphrase";
const PASSWORD: &str = "owner password 123";

fn connection(name: &str, provider: &str, settings: Value, secrets: &[(&str, &str)]) -> NewConnection {
    NewConnection {
        name: name.into(),
        provider: provider.into(),
        settings: settings.as_object().unwrap().clone(),
        secrets: secrets.iter().map(|(k, v)| (k.to_string(), SecretString::from(*v))).collect(),
    }
}

fn pass(text: &str) -> SecretString {
    SecretString::from(text)
}

/// Pairs of fresh databases (source, target) for every backend of this run.
async fn pairs() -> Vec<(TestDb, TestDb)> {
    backends().await.into_iter().zip(backends().await).collect()
}

/// An instance as people leave it: connections with secrets in two environments (one
/// Salesforce with an active and a pending certificate, and a cached session token), bound and
/// unbound integrations, an owner, a developer with a role, an API key.
async fn seed(s: &Services) -> String {
    let op = Actor::operator();
    let (db, vault) = (&s.db, &s.vault);
    let billing = connection("Billing", "http", json!({"base_url": "https://billing.example.com", "auth": "bearer"}), &[("token", MARKER)]);
    connections::create(db, vault, &op, "DEV", billing).await.unwrap();
    let basic = json!({"base_url": "https://ledger.example.com", "auth": "basic", "username": "svc"});
    connections::create(db, vault, &op, "QA", connection("Ledger", "http", basic, &[("password", BASIC_MARKER)])).await.unwrap();
    let sf = json!({"login_url": "https://login.salesforce.com", "username": "int@acme.com", "consumer_key": "3MVG9abc"});
    connections::create(db, vault, &op, "DEV", connection("SF_Main", "salesforce", sf, &[])).await.unwrap();
    signing::issue_certificate(s.signing(), &op, "DEV", "SF_Main", IssueRequest::default()).await.unwrap();
    let rotation = signing::issue_certificate(s.signing(), &op, "DEV", "SF_Main", IssueRequest::default()).await.unwrap();
    assert_eq!(rotation.certificate.state, "pending");
    for (name, provider, connection) in [("Accounts", "salesforce", Some("SF_Main")), ("Billing_Sync", "http", Some("Billing")), ("Reports", "http", None)] {
        let publish = Publish { provider: provider.into(), objects: vec![], description: Some(format!("{name} sync")), version: Some("1.0".into()) };
        integrations::publish(db, &op, "DEV", name, &publish).await.unwrap();
        if let Some(c) = connection {
            integrations::bind(db, &op, "DEV", name, c).await.unwrap();
        }
    }
    users::create(db, &op, "owner@example.com", &pass(PASSWORD), true).await.unwrap();
    let dev = users::create(db, &op, "dev@example.com", &pass(PASSWORD), false).await.unwrap();
    users::set_role(db, &op, dev.id, "DEV", Some(Role::Developer)).await.unwrap();
    common::key(s, &["DEV:connections:read"]).await
}

/// A Salesforce session token, as the broker caches it: a cache the backup leaves out. Its blob
/// is junk on purpose (a backup that tried to open it would fail).
async fn cache_a_session_token(db: &TestDb) {
    db.exec(
        "INSERT INTO connection_secrets (connection_id, field, blob, key_id, set_by, created_at, updated_at) \
         SELECT id, 'access_token', X'00', 'x', 'broker', '2026-01-01T00:00:00.000000Z', '2026-01-01T00:00:00.000000Z' FROM connections WHERE name = 'SF_Main'"
            .replace("X'00'", if db.kind == Kind::Postgres { "'\\x00'::bytea" } else { "X'00'" })
            .as_str(),
    )
    .await;
}

/// A seeded instance, and a backup of it.
async fn seeded_backup(db: &TestDb) -> (Services, Vec<u8>) {
    let s = db.open().await;
    seed(&s).await;
    let file = make(&s).await.file;
    (s, file)
}

async fn make(s: &Services) -> Created {
    backup::create(s.backup(), &Actor::operator(), &pass(PASSPHRASE)).await.unwrap()
}

async fn rows(db: &TestDb, sql: &'static str) -> Vec<String> {
    sqlx::any::install_default_drivers();
    let mut c = AnyConnection::connect(&db.url).await.unwrap();
    let out = c.fetch_all(sql).await.unwrap().iter().map(|r| r.get::<String, _>(0)).collect();
    c.close().await.unwrap();
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn a_backup_restores_into_a_fresh_instance_with_another_master_key() {
    for (source_db, target_db) in pairs().await {
        let source = source_db.open().await;
        let api_key = seed(&source).await;
        cache_a_session_token(&source_db).await;
        let created = make(&source).await;
        assert_eq!(created.counts.connections, 3);
        assert_eq!(created.counts.secrets, 4, "token, password, private_key, pending_private_key; not the cached session");
        assert_eq!((created.counts.certificates, created.counts.integrations, created.counts.bindings), (2, 3, 2));
        assert_eq!((created.counts.environments, created.counts.users, created.counts.api_keys), (3, 2, 1));
        assert_eq!(created.header.source.database, if source_db.kind == Kind::Sqlite { "sqlite" } else { "postgresql" });

        let target = target_db.open().await;
        assert_ne!(source.vault.current_key_id(), target.vault.current_key_id(), "two instances, two master keys");
        let restored = backup::restore(target.backup(), &Actor::operator(), created.file.clone(), &pass(PASSPHRASE), false).await.unwrap();
        assert_eq!(restored.counts, created.counts);
        assert_eq!(restored.replaced.connections, 0);
        assert_eq!(restored.key_id, target.vault.current_key_id().to_string());

        // The same secrets, sealed under the target's key.
        let (db, vault) = (&target.db, &target.vault);
        assert_eq!(connections::open_secret(db, vault, "DEV", "Billing", "token").await.unwrap().expose_secret(), MARKER);
        assert_eq!(connections::open_secret(db, vault, "QA", "Ledger", "password").await.unwrap().expose_secret(), BASIC_MARKER);
        for field in ["private_key", "pending_private_key"] {
            let before = connections::open_secret(&source.db, &source.vault, "DEV", "SF_Main", field).await.unwrap();
            let after = connections::open_secret(db, vault, "DEV", "SF_Main", field).await.unwrap();
            assert!(before.ct_eq(&after), "{field} came back different");
        }
        let key_ids = rows(&target_db, "SELECT DISTINCT key_id FROM connection_secrets").await;
        assert_eq!(key_ids, vec![target.vault.current_key_id().to_string()]);
        let sf = connections::get(db, "DEV", "SF_Main").await.unwrap();
        assert!(!sf.secrets_set.contains_key("access_token"), "the cached session stays behind");
        assert_eq!(sf.settings, connections::get(&source.db, "DEV", "SF_Main").await.unwrap().settings);
        let billing = connections::get(db, "DEV", "Billing").await.unwrap();
        let billing_before = connections::get(&source.db, "DEV", "Billing").await.unwrap();
        assert_eq!(
            (billing.secrets_set, billing.created_at, billing.created_by),
            (billing_before.secrets_set, billing_before.created_at, billing_before.created_by)
        );

        // Certificates: the one to upload, and both states.
        assert_eq!(signing::certificate_pem(db, "DEV", "SF_Main").await.unwrap(), signing::certificate_pem(&source.db, "DEV", "SF_Main").await.unwrap());
        let status = signing::status_of(db, "DEV", "SF_Main").await.unwrap();
        let status_before = signing::status_of(&source.db, "DEV", "SF_Main").await.unwrap();
        assert_eq!(status.certificate.map(|c| c.fingerprint_sha256), status_before.certificate.map(|c| c.fingerprint_sha256));
        assert_eq!(status.pending_certificate.map(|c| c.fingerprint_sha256), status_before.pending_certificate.map(|c| c.fingerprint_sha256));

        // Integrations and bindings.
        assert_eq!(integrations::get(db, "DEV", "Accounts").await.unwrap().connection.as_deref(), Some("SF_Main"));
        assert_eq!(integrations::get(db, "DEV", "Billing_Sync").await.unwrap().connection.as_deref(), Some("Billing"));
        let reports = integrations::get(db, "DEV", "Reports").await.unwrap();
        assert_eq!((reports.connection, reports.description.as_deref()), (None, Some("Reports sync")));

        // People and keys work as before: the same password, the same role, the same API key.
        let (owner, _) = server::sessions::sign_in(target.sessions(), "owner@example.com", &pass(PASSWORD), None).await.unwrap();
        assert!(owner.is_owner);
        let dev = users::list(db).await.unwrap().into_iter().find(|u| u.email == "dev@example.com").unwrap();
        assert_eq!(dev.roles.get("DEV"), Some(&Role::Developer));
        let key = server::api_keys::authenticate(target.keys(), &api_key, None).await.unwrap();
        assert_eq!(key.key.name, "test");

        // Audited on both sides; the target's database holds no secret in clear.
        assert!(rows(&source_db, "SELECT action FROM audit_events").await.contains(&"backup.create".to_string()));
        let restore_events = rows(&target_db, "SELECT detail FROM audit_events WHERE action = 'backup.restore'").await;
        assert_eq!(restore_events.len(), 1);
        assert!(restore_events[0].contains("\"replace\":false"), "{}", restore_events[0]);
        let everything = target_db.all_text().await;
        assert!(!everything.contains(MARKER) && !everything.contains(BASIC_MARKER) && !everything.contains("PRIVATE KEY"));
        source.db.close().await;
        target.db.close().await;
    }
}

/// Promise 12: the backup carries the secrets only encrypted, and the default export not at all.
#[tokio::test]
async fn promise_12_no_secret_in_clear_in_a_backup_or_an_export() {
    for db in backends().await {
        let s = db.open().await;
        seed(&s).await;
        let created = make(&s).await;
        let private_key = connections::open_secret(&s.db, &s.vault, "DEV", "SF_Main", "private_key").await.unwrap();
        for needle in [MARKER, BASIC_MARKER, &private_key.expose_secret()[..40], "PRIVATE KEY", "owner@example.com", "billing.example.com"] {
            assert!(!contains(&created.file, needle.as_bytes()), "the backup file carries {needle:?} in clear");
        }
        use base64::Engine;
        let encoded = base64::engine::general_purpose::STANDARD.encode(MARKER);
        assert!(!contains(&created.file, &encoded.as_bytes()[..20]), "the backup carries the secret's base64 in clear");
        // The header is readable and names no secret.
        let header_line = created.file.split(|b| *b == b'\n').nth(1).unwrap();
        let header: Value = serde_json::from_slice(header_line).unwrap();
        assert_eq!(header["format"], "connvault-backup");
        assert_eq!(header["kdf"]["algorithm"], "argon2id");
        assert_eq!(header["kdf"]["memory_kib"], 65536);

        let export = server::promotion::export(&s.db, &Actor::operator(), "DEV").await.unwrap().to_string();
        assert!(!export.contains(MARKER) && !export.contains("PRIVATE KEY") && !export.contains("secrets"), "{export}");
        s.db.close().await;
    }
}

/// A refused restore writes nothing: the target database is byte-for-byte the same.
async fn refused(target: &Services, target_db: &TestDb, file: Vec<u8>, passphrase: &str, replace: bool) -> Error {
    let before = target_db.content_digest().await;
    let err = backup::restore(target.backup(), &Actor::operator(), file, &pass(passphrase), replace).await.unwrap_err();
    assert_eq!(target_db.content_digest().await, before, "a refused restore wrote something: {err}");
    err
}

#[tokio::test]
async fn a_wrong_passphrase_an_edited_or_cut_file_is_refused_and_nothing_is_written() {
    for (source_db, target_db) in pairs().await {
        let (source, file) = seeded_backup(&source_db).await;
        let target = target_db.open().await;

        let err = refused(&target, &target_db, file.clone(), "not the right passphrase", false).await;
        assert!(err.to_string().contains("passphrase is wrong"), "{err}");
        let err = refused(&target, &target_db, file.clone(), "short", false).await;
        assert!(matches!(&err, Error::Validation(e) if e[0].field == "passphrase" && e[0].message.contains("at least 12")), "{err:?}");

        // One header byte changed (the year of created_at, still a valid header).
        let at = file.windows(14).position(|w| w == b"\"created_at\":\"").unwrap() + 14;
        let mut edited = file.clone();
        edited[at + 3] = if edited[at + 3] == b'0' { b'1' } else { b'0' };
        let err = refused(&target, &target_db, edited, PASSPHRASE, false).await;
        assert!(err.to_string().contains("changed or damaged"), "{err}");
        // One ciphertext byte changed.
        let mut flipped = file.clone();
        *flipped.last_mut().unwrap() ^= 1;
        refused(&target, &target_db, flipped, PASSPHRASE, false).await;
        // Cut short, and not a backup at all.
        let err = refused(&target, &target_db, file[..file.len() - 100].to_vec(), PASSPHRASE, false).await;
        assert!(err.to_string().contains("cut short"), "{err}");
        let err = refused(&target, &target_db, b"SQLite format 3\0".to_vec(), PASSPHRASE, false).await;
        assert!(err.to_string().contains("not a connvault backup"), "{err}");
        // Another format version: named, before any key is derived.
        let header_end = backup::MAGIC.len() + file[backup::MAGIC.len()..].iter().position(|b| *b == b'\n').unwrap() + 1;
        let mut other = String::from_utf8(file[..header_end].to_vec()).unwrap().replacen("\"format_version\":1", "\"format_version\":2", 1).into_bytes();
        other.extend_from_slice(&file[header_end..]);
        let err = refused(&target, &target_db, other, PASSPHRASE, false).await;
        assert!(err.to_string().contains("format version 2"), "{err}");

        // And the right passphrase on the intact file still works.
        backup::restore(target.backup(), &Actor::operator(), file, &pass(PASSPHRASE), false).await.unwrap();
        source.db.close().await;
        target.db.close().await;
    }
}

#[tokio::test]
async fn an_occupied_target_is_refused_unless_replace() {
    for (source_db, target_db) in pairs().await {
        let (source, file) = seeded_backup(&source_db).await;

        // The target has a life of its own: a connection, a person signed in, an API key.
        let target = target_db.open().await;
        let op = Actor::operator();
        let bearer = json!({"base_url": "https://other.example.com", "auth": "bearer"});
        let own = connection("Billing", "http", bearer.clone(), &[("token", "the target's own token")]);
        connections::create(&target.db, &target.vault, &op, "DEV", own).await.unwrap();
        let only_here = connection("OnlyHere", "http", bearer, &[("token", "t")]);
        connections::create(&target.db, &target.vault, &op, "PROD", only_here).await.unwrap();
        let session = common::session(&target, "someone@example.com", None, true).await;
        server::environments::add(&target.db, &op, "UAT", None).await.unwrap();

        let err = refused(&target, &target_db, file.clone(), PASSPHRASE, false).await;
        assert!(matches!(&err, Error::Conflict { code: "target_not_empty", .. }), "{err:?}");
        assert!(err.to_string().contains("2 connections") && err.to_string().contains("--replace"), "{err}");

        let restored = backup::restore(target.backup(), &op, file, &pass(PASSPHRASE), true).await.unwrap();
        assert_eq!((restored.replaced.connections, restored.replaced.users, restored.replaced.environments), (2, 1, 4));
        let (db, vault) = (&target.db, &target.vault);
        assert_eq!(connections::open_secret(db, vault, "DEV", "Billing", "token").await.unwrap().expose_secret(), MARKER);
        assert!(connections::get(db, "PROD", "OnlyHere").await.is_err(), "replaced: the target's own connections are gone");
        let envs: Vec<String> = server::environments::list(db).await.unwrap().into_iter().map(|e| e.name).collect();
        assert_eq!(envs, ["DEV", "QA", "PROD"]);
        assert!(server::sessions::user_for(db, &session).await.unwrap().is_none(), "the replaced accounts' sessions end");
        assert!(users::list(db).await.unwrap().iter().all(|u| u.email != "someone@example.com"));
        // The audit trail is kept, and says what happened.
        let actions = rows(&target_db, "SELECT action FROM audit_events ORDER BY id").await;
        assert!(actions.contains(&"connection.create".to_string()) && actions.last().map(String::as_str) == Some("backup.restore"), "{actions:?}");
        // Restoring the same backup again over itself works too.
        let again = backup::restore(target.backup(), &op, make(&source).await.file, &pass(PASSPHRASE), true).await.unwrap();
        assert_eq!(again.replaced.connections, 3);
        source.db.close().await;
        target.db.close().await;
    }
}

/// Webhook subscriptions come back from a backup with their signing secrets (during a rotation
/// the previous one too), so a restored instance signs as the receivers expect; each
/// environment's schedule comes back too.
#[tokio::test]
async fn webhooks_and_schedules_come_back_from_a_backup() {
    use std::sync::{Arc, Mutex};
    let got: Arc<Mutex<Vec<(axum::http::HeaderMap, Vec<u8>)>>> = Arc::default();
    let state = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
            let state = state.clone();
            async move {
                state.lock().unwrap().push((headers, body.to_vec()));
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let loopback = [("CONNVAULT_ALLOW_LOOPBACK", "1")];
    for (source_db, target_db) in pairs().await {
        let source = server::startup::open(source_db.config_with(&loopback)).await.unwrap();
        let op = Actor::operator();
        let env = server::environments::find(&source.db, "QA").await.unwrap();
        let new = server::webhooks::NewWebhook {
            url: format!("http://{addr}/hook"),
            events: vec!["*".into()],
            description: Some("release bot".into()),
            enabled: None,
        };
        let made = server::webhooks::create(&source.db, &source.vault, &source.outbound, &op, &env, &new).await.unwrap();
        let rotated = server::webhooks::rotate_secret(&source.db, &source.vault, &op, &env, made.webhook.id).await.unwrap();
        let schedule = server::environments::Schedule { check_every_hours: 12, renew_days_before: 21 };
        server::environments::set_schedule(&source.db, &op, "QA", schedule).await.unwrap();
        let created = make(&source).await;
        assert_eq!(created.counts.webhooks, 1);
        assert!(!contains(&created.file, rotated.secret.as_bytes()) && !contains(&created.file, b"whsec_"), "secrets only inside the encryption");

        let target = server::startup::open(target_db.config_with(&loopback)).await.unwrap();
        let restored = backup::restore(target.backup(), &op, created.file.clone(), &pass(PASSPHRASE), false).await.unwrap();
        assert_eq!(restored.counts.webhooks, 1);
        assert_eq!(server::environments::schedule(&target.db, "QA").await.unwrap(), schedule);
        assert_eq!(server::environments::schedule(&target.db, "DEV").await.unwrap().check_every_hours, 6);
        let env = server::environments::find(&target.db, "QA").await.unwrap();
        let hooks = server::webhooks::list(&target.db, &env).await.unwrap();
        assert_eq!(hooks.len(), 1);
        assert_eq!((hooks[0].url.as_str(), hooks[0].description.as_str()), (new.url.as_str(), "release bot"));

        let before = got.lock().unwrap().len();
        server::webhooks::send_test(&target.db, &op, &env, hooks[0].id).await.unwrap();
        server::jobs::drain(&target.db, &target, &server::workers::KINDS).await.unwrap();
        let (headers, body) = got.lock().unwrap()[before..].first().cloned().expect("delivered by the restored instance");
        for secret in [&rotated.secret, &made.secret] {
            standardwebhooks::Webhook::new(secret).unwrap().verify(&body, &headers).unwrap_or_else(|e| panic!("{e:?}"));
        }
    }
}
