//! Environments and connections, the data model, on every backend.

use crate::common;

use std::collections::BTreeMap;

use common::backends;
use serde_json::{json, Map, Value};
use server::audit::Actor;
use server::connections::{self, ConnectionPatch, ListQuery, NewConnection};
use server::environments;
use server::error::Error;
use server::feed::Feed;
use server::secret::SecretString;
use sqlx::{AnyConnection, Connection, Executor, Row};

fn obj(v: Value) -> Map<String, Value> {
    v.as_object().unwrap().clone()
}

fn secrets(pairs: &[(&str, &str)]) -> BTreeMap<String, SecretString> {
    pairs.iter().map(|(k, v)| (k.to_string(), SecretString::from(*v))).collect()
}

fn new(name: &str, settings: Value, s: &[(&str, &str)]) -> NewConnection {
    NewConnection { name: name.into(), provider: "http".into(), settings: obj(settings), secrets: secrets(s) }
}

async fn count(url: &str, sql: &'static str) -> i64 {
    let mut c = AnyConnection::connect(url).await.unwrap();
    let n = c.fetch_one(sql).await.unwrap().get("n");
    c.close().await.unwrap();
    n
}

#[tokio::test]
async fn first_start_creates_dev_qa_prod_in_order_and_a_private_key_file() {
    for db in backends().await {
        let s = db.open().await;
        let envs = environments::list(&s.db).await.unwrap();
        let names: Vec<_> = envs.iter().map(|e| (e.name.as_str(), e.position)).collect();
        assert_eq!(names, vec![("DEV", 1), ("QA", 2), ("PROD", 3)], "{:?}", db.kind);
        for e in &envs {
            assert!(e.id > 0 && e.created_at.ends_with('Z') && e.updated_at.ends_with('Z'));
        }
        assert!(!server::keyring::is_too_open(&s.config.master_key_file));
        // A second start neither re-seeds nor creates another key.
        let key_before = std::fs::read(&s.config.master_key_file).unwrap();
        s.db.close().await;
        let s = db.open().await;
        assert_eq!(environments::list(&s.db).await.unwrap().len(), 3);
        assert_eq!(std::fs::read(&s.config.master_key_file).unwrap(), key_before);
        assert_eq!(count(&db.url, "SELECT COUNT(*) AS n FROM keyring_check").await, 1);
    }
}

#[tokio::test]
async fn administrators_add_rename_and_reorder_environments() {
    for db in backends().await {
        let s = db.open().await;
        let actor = Actor::operator();
        let uat = environments::add(&s.db, &actor, "UAT", Some(3)).await.unwrap();
        assert_eq!(uat.position, 3);
        let order = |envs: Vec<environments::Environment>| envs.into_iter().map(|e| e.name).collect::<Vec<_>>();
        assert_eq!(order(environments::list(&s.db).await.unwrap()), ["DEV", "QA", "UAT", "PROD"]);

        // Names are unique without case; bad names are explained.
        let dup = environments::add(&s.db, &actor, "uat", None).await.unwrap_err();
        assert!(matches!(dup, Error::Conflict { code: "environment_exists", .. }), "{dup:?}");
        let bad = environments::add(&s.db, &actor, "9 lives", None).await.unwrap_err();
        assert!(matches!(&bad, Error::Validation(f) if f[0].field == "name"), "{bad:?}");
        let bad_pos = environments::add(&s.db, &actor, "EXTRA", Some(9)).await.unwrap_err();
        assert!(bad_pos.to_string().contains("position must be from 1 to 5"), "{bad_pos}");

        // A secret stays readable when its environment is renamed (the seal binds the id).
        connections::create(
            &s.db,
            &s.vault,
            &actor,
            "UAT",
            new("Svc", json!({"base_url": "https://u.example.com", "auth": "bearer"}), &[("token", "uat-token")]),
        )
        .await
        .unwrap();
        environments::rename(&s.db, &actor, "uat", "Staging").await.unwrap();
        assert_eq!(connections::open_secret(&s.db, &s.vault, "STAGING", "svc", "token").await.unwrap().expose_secret(), "uat-token");
        let renamed_to_existing = environments::rename(&s.db, &actor, "Staging", "qa").await.unwrap_err();
        assert!(matches!(renamed_to_existing, Error::Conflict { .. }));

        let moved = environments::move_to(&s.db, &actor, "PROD", 1).await.unwrap();
        assert_eq!(order(moved), ["PROD", "DEV", "QA", "Staging"]);
        let all = environments::reorder(&s.db, &actor, &["dev".into(), "qa".into(), "staging".into(), "prod".into()]).await.unwrap();
        assert_eq!(order(all.clone()), ["DEV", "QA", "Staging", "PROD"]);
        assert_eq!(all.iter().map(|e| e.position).collect::<Vec<_>>(), [1, 2, 3, 4]);
        let partial = environments::reorder(&s.db, &actor, &["DEV".into(), "QA".into()]).await.unwrap_err();
        assert!(partial.to_string().contains("missing: Staging, PROD"), "{partial}");
        let unknown = environments::find(&s.db, "NOPE").await.unwrap_err();
        assert!(matches!(&unknown, Error::NotFound(m) if m.starts_with("No environment named NOPE")), "{unknown:?}");
    }
}

#[tokio::test]
async fn connection_lifecycle_never_returns_secrets() {
    for db in backends().await {
        let s = db.open().await;
        let actor = Actor::operator();
        let c = connections::create(
            &s.db,
            &s.vault,
            &actor,
            "dev",
            new("Billing", json!({"base_url": "https://billing.example.com", "auth": "basic", "username": "svc"}), &[("password", "pw-MARKER-1")]),
        )
        .await
        .unwrap();
        assert_eq!((c.environment.as_str(), c.name.as_str(), c.provider.as_str()), ("DEV", "Billing", "http"));
        assert_eq!(c.secrets_set.keys().collect::<Vec<_>>(), ["password"]);
        assert_eq!(c.secrets_set_by["password"], actor.label);
        let text = serde_json::to_string(&c).unwrap();
        assert!(!text.contains("pw-MARKER-1"), "{text}");

        // Switch to bearer: the password no longer applies and is removed; the token may come
        // later (from the API's admin, through a credential request).
        let c2 = connections::update(
            &s.db,
            &s.vault,
            &actor,
            "DEV",
            "billing",
            ConnectionPatch {
                settings: obj(json!({"auth": "bearer", "username": null})),
                secrets: secrets(&[("token", "tok-MARKER-2")]),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        assert_eq!(c2.secrets_set.keys().collect::<Vec<_>>(), ["token"]);
        assert_eq!(c2.settings, obj(json!({"base_url": "https://billing.example.com", "auth": "bearer"})));
        assert!(c2.updated_at >= c.updated_at);
        assert_eq!(connections::open_secret(&s.db, &s.vault, "DEV", "Billing", "token").await.unwrap().expose_secret(), "tok-MARKER-2");
        assert!(connections::open_secret(&s.db, &s.vault, "DEV", "Billing", "password").await.is_err());

        // Rename, then delete.
        let c3 = connections::update(&s.db, &s.vault, &actor, "DEV", "Billing", ConnectionPatch { name: Some("Billing_v2".into()), ..Default::default() })
            .await
            .unwrap();
        assert_eq!(c3.name, "Billing_v2");
        assert_eq!(connections::open_secret(&s.db, &s.vault, "DEV", "Billing_v2", "token").await.unwrap().expose_secret(), "tok-MARKER-2");
        connections::delete(&s.db, &actor, "DEV", "billing_v2", false).await.unwrap();
        assert!(matches!(connections::get(&s.db, "DEV", "Billing_v2").await.unwrap_err(), Error::NotFound(_)));
        assert_eq!(count(&db.url, "SELECT COUNT(*) AS n FROM connection_secrets").await, 0);

        // Audit trail: every change, never a value.
        let events = server::audit::recent(&s.db, 50).await.unwrap();
        let actions: Vec<&str> = events.iter().rev().map(|e| e.action.as_str()).collect();
        assert_eq!(
            actions,
            ["vault.initialize", "connection.create", "connection.update", "connection.secret_replace", "connection.update", "connection.delete"]
        );
        assert!(!serde_json::to_string(&events).unwrap().contains("MARKER"));
    }
}

#[tokio::test]
async fn bad_input_is_explained_and_nothing_is_written() {
    for db in backends().await {
        let s = db.open().await;
        let actor = Actor::operator();
        let ok = json!({"base_url": "https://x.example.com", "auth": "bearer"});
        let cases: Vec<(NewConnection, &str)> = vec![
            (new("", ok.clone(), &[("token", "t")]), "name"),
            (new("has space", ok.clone(), &[("token", "t")]), "name"),
            (NewConnection { provider: "soap".into(), ..new("X", ok.clone(), &[("token", "t")]) }, "provider"),
            (new("X", ok.clone(), &[("token", "   ")]), "secrets.token"),
            (new("X", json!({"base_url": "nope", "auth": "bearer"}), &[("token", "t")]), "settings.base_url"),
        ];
        for (input, field) in cases {
            let err = connections::create(&s.db, &s.vault, &actor, "DEV", input).await.unwrap_err();
            assert_eq!(err.status().as_u16(), 422, "{err:?}");
            assert!(err.details().iter().any(|d| d.field == field), "{field}: {err:?}");
        }
        let unknown_env = connections::create(&s.db, &s.vault, &actor, "NOPE", new("X", ok.clone(), &[("token", "t")])).await.unwrap_err();
        assert_eq!(unknown_env.status().as_u16(), 404);

        // Duplicate names (without case) are a clear conflict, per environment.
        connections::create(&s.db, &s.vault, &actor, "DEV", new("Main", ok.clone(), &[("token", "t")])).await.unwrap();
        let dup = connections::create(&s.db, &s.vault, &actor, "DEV", new("MAIN", ok.clone(), &[("token", "t2")])).await.unwrap_err();
        assert!(matches!(&dup, Error::Conflict { code: "connection_exists", message } if message.contains("already exists in DEV")), "{dup:?}");
        connections::create(&s.db, &s.vault, &actor, "QA", new("Main", ok.clone(), &[("token", "t")])).await.unwrap();
        assert_eq!(connections::open_secret(&s.db, &s.vault, "DEV", "Main", "token").await.unwrap().expose_secret(), "t");
        assert_eq!(count(&db.url, "SELECT COUNT(*) AS n FROM connections").await, 2);
    }
}

/// If any part of a write fails (here: its audit event cannot be written), nothing of it stays.
#[tokio::test]
async fn a_failed_write_leaves_nothing_half_written() {
    for db in backends().await {
        let s = db.open().await;
        let actor = Actor::operator();
        connections::create(&s.db, &s.vault, &actor, "DEV", new("Stay", json!({"base_url": "https://x.example.com", "auth": "bearer"}), &[("token", "old")]))
            .await
            .unwrap();
        db.exec("ALTER TABLE audit_events RENAME TO audit_events_gone").await;
        let err =
            connections::create(&s.db, &s.vault, &actor, "DEV", new("Half", json!({"base_url": "https://x.example.com", "auth": "bearer"}), &[("token", "t")]))
                .await;
        assert!(err.is_err());
        let err =
            connections::update(&s.db, &s.vault, &actor, "DEV", "Stay", ConnectionPatch { secrets: secrets(&[("token", "new")]), ..Default::default() }).await;
        assert!(err.is_err());
        let err = connections::delete(&s.db, &actor, "DEV", "Stay", false).await;
        assert!(err.is_err());
        db.exec("ALTER TABLE audit_events_gone RENAME TO audit_events").await;
        assert_eq!(count(&db.url, "SELECT COUNT(*) AS n FROM connections").await, 1);
        assert_eq!(count(&db.url, "SELECT COUNT(*) AS n FROM connection_secrets").await, 1);
        assert_eq!(connections::open_secret(&s.db, &s.vault, "DEV", "Stay", "token").await.unwrap().expose_secret(), "old");
    }
}

#[tokio::test]
async fn the_audit_trail_is_append_only() {
    for db in backends().await {
        let s = db.open().await;
        s.db.close().await;
        let mut c = AnyConnection::connect(&db.url).await.unwrap();
        assert!(c.execute("UPDATE audit_events SET actor_label = 'someone else'").await.is_err());
        assert!(c.execute("DELETE FROM audit_events").await.is_err());
        c.close().await.unwrap();
    }
}

#[tokio::test]
async fn listing_pages_filters_and_searches() {
    for db in backends().await {
        let s = db.open().await;
        let actor = Actor::operator();
        for i in 0..250 {
            let name = format!("svc_{i:03}");
            connections::create(&s.db, &s.vault, &actor, "QA", new(&name, json!({"base_url": "https://x.example.com", "auth": "bearer"}), &[("token", "t")]))
                .await
                .unwrap();
        }
        let mut names = Vec::new();
        let mut cursor = None;
        let mut pages = 0;
        loop {
            let page = connections::list(&s.db, "QA", &ListQuery { limit: Some(100), feed: Feed::Default { cursor: cursor.clone() }, ..Default::default() })
                .await
                .unwrap();
            pages += 1;
            names.extend(page.items.iter().map(|c| c.name.clone()));
            assert!(page.items.iter().all(|c| c.secrets_set.contains_key("token")));
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        assert_eq!(pages, 3);
        assert_eq!(names, (0..250).map(|i| format!("svc_{i:03}")).collect::<Vec<_>>());
        let found = connections::list(&s.db, "qa", &ListQuery { search: Some("SVC_1_".into()), ..Default::default() }).await.unwrap();
        assert_eq!(found.items.len(), 0, "_ is matched literally");
        let found = connections::list(&s.db, "qa", &ListQuery { search: Some("SVC_12".into()), ..Default::default() }).await.unwrap();
        assert_eq!(found.items.len(), 10);
        let none = connections::list(&s.db, "qa", &ListQuery { provider: Some("salesforce".into()), ..Default::default() }).await.unwrap();
        assert!(none.items.is_empty());
        let bad = connections::list(&s.db, "qa", &ListQuery { feed: Feed::Default { cursor: Some("!!".into()) }, ..Default::default() }).await.unwrap_err();
        assert!(matches!(&bad, Error::Validation(f) if f[0].field == "cursor"));
        let bad = connections::list(&s.db, "qa", &ListQuery { limit: Some(0), ..Default::default() }).await.unwrap_err();
        assert!(matches!(&bad, Error::Validation(f) if f[0].field == "limit"));
    }
}
