//! Invitations, deactivation rules, the environment setting "Allow developers to manage API
//! keys", who may revoke a key, and deleting a connection that integrations use. On every
//! backend.

use crate::common;

use common::backends;
use serde_json::json;
use server::access::Access;
use server::api_keys::{self, Creator, Grant, NewApiKey};
use server::audit::Actor;
use server::connections::{self, NewConnection};
use server::error::Error;
use server::secret::SecretString;
use server::users::{self, Role};
use server::{environments, sessions};

fn pw(s: &str) -> SecretString {
    SecretString::from(s)
}

fn token_of(link: &str) -> String {
    link.split("token=").nth(1).unwrap().to_string()
}

#[tokio::test]
async fn an_invitation_is_single_use_expiring_and_for_one_account() {
    for db in backends().await {
        let s = db.open().await;
        let owner = users::create(&s.db, &Actor::operator(), "owner@example.com", &pw("owner password 123"), true).await.unwrap();
        let actor = owner.actor(None);
        let (dev, link) = sessions::invite(s.sessions(), &actor, "dev@example.com").await.unwrap();
        assert_eq!(dev.status, "invited");
        assert!(link.starts_with(&format!("{}/welcome?token=", s.config.public_url)), "{link}");
        assert_eq!(token_of(&link).len(), 43, "256 random bits");
        assert!(!db.all_text().await.contains(&token_of(&link)), "only a digest of the link is stored");
        // Nobody can sign in to an invited account: it has no password at all.
        assert!(sessions::sign_in(s.sessions(), "dev@example.com", &pw(""), None).await.is_err());
        // Inviting the same address twice is a conflict.
        assert!(matches!(sessions::invite(s.sessions(), &actor, "DEV@example.com").await.unwrap_err(), Error::Conflict { code: "user_exists", .. }));

        // A weak password does not use the link up.
        let weak = sessions::accept_invite(s.sessions(), &token_of(&link), &pw("short"), None).await.unwrap_err();
        assert!(matches!(&weak, Error::Validation(f) if f[0].field == "password"), "{weak:?}");
        // A fresh link replaces the first.
        let second = sessions::reinvite(s.sessions(), &actor, dev.id).await.unwrap();
        assert!(matches!(sessions::accept_invite(s.sessions(), &token_of(&link), &pw("developer password 1"), None).await.unwrap_err(), Error::Forbidden(_)));
        let (me, session) = sessions::accept_invite(s.sessions(), &token_of(&second), &pw("developer password 1"), None).await.unwrap();
        assert_eq!((me.id, me.status.as_str()), (dev.id, "active"));
        assert_eq!(sessions::user_for(&s.db, session.expose_secret()).await.unwrap().unwrap().id, dev.id);
        assert!(users::get(&s.db, dev.id).await.unwrap().last_sign_in_at.is_some());
        // Single use; and an accepted account cannot be re-invited.
        assert!(matches!(sessions::accept_invite(s.sessions(), &token_of(&second), &pw("another password 12"), None).await.unwrap_err(), Error::Forbidden(_)));
        assert!(matches!(sessions::reinvite(s.sessions(), &actor, dev.id).await.unwrap_err(), Error::Conflict { code: "not_invited", .. }));
        assert!(sessions::sign_in(s.sessions(), "dev@example.com", &pw("developer password 1"), None).await.is_ok());

        // Expired: refused. A setup link cannot accept an invitation either.
        let (_, late) = sessions::invite(s.sessions(), &actor, "late@example.com").await.unwrap();
        db.exec("UPDATE one_time_links SET expires_at = '2000-01-01T00:00:00.000000Z' WHERE used_at IS NULL").await;
        assert!(matches!(sessions::accept_invite(s.sessions(), &token_of(&late), &pw("late password 123"), None).await.unwrap_err(), Error::Forbidden(_)));
        let actions: Vec<String> = server::audit::recent(&s.db, 50).await.unwrap().into_iter().map(|e| e.action).collect();
        for a in ["user.create", "user.reinvite", "user.invite_accept"] {
            assert!(actions.iter().any(|x| x == a), "{a} audited: {actions:?}");
        }
    }
}

#[tokio::test]
async fn the_last_owner_cannot_be_deactivated_and_others_come_back() {
    for db in backends().await {
        let s = db.open().await;
        let op = Actor::operator();
        let owner = users::create(&s.db, &op, "owner@example.com", &pw("owner password 123"), true).await.unwrap();
        let err = users::deactivate(&s.db, &op, owner.id).await.unwrap_err();
        assert!(matches!(err, Error::Conflict { code: "last_owner", .. }), "{err:?}");
        assert_eq!(users::get(&s.db, owner.id).await.unwrap().status, "active");
        let second = users::create(&s.db, &op, "second@example.com", &pw("owner password 456"), true).await.unwrap();
        users::deactivate(&s.db, &op, owner.id).await.unwrap();
        assert_eq!(users::get(&s.db, owner.id).await.unwrap().status, "deactivated");
        assert!(matches!(users::deactivate(&s.db, &op, second.id).await.unwrap_err(), Error::Conflict { code: "last_owner", .. }));
        users::reactivate(&s.db, &op, owner.id).await.unwrap();
        assert!(sessions::sign_in(s.sessions(), "owner@example.com", &pw("owner password 123"), None).await.is_ok());
    }
}

fn key_input(env: &str, resource: &str, access: Access) -> NewApiKey {
    NewApiKey {
        name: format!("{env} {resource}"),
        grants: vec![Grant { environment: env.into(), resource: resource.into(), access }],
        allowed_addresses: vec![],
        expires_at: None,
    }
}

#[tokio::test]
async fn developers_manage_api_keys_only_where_the_environment_allows_it() {
    for db in backends().await {
        let s = db.open().await;
        let op = Actor::operator();
        let dev = users::create(&s.db, &op, "dev@example.com", &pw("developer password 1"), false).await.unwrap();
        let dev = users::set_role(&s.db, &op, dev.id, "DEV", Some(Role::Developer)).await.unwrap();
        let refused = api_keys::create(&s.db, &dev.actor(None), Creator::User(&dev), key_input("DEV", "tokens", Access::Read)).await.unwrap_err();
        assert!(matches!(refused, Error::Forbidden(_)), "{refused:?}");

        let env = environments::set_allow_dev_api_keys(&s.db, &op, "dev", true).await.unwrap();
        assert!(env.allow_dev_api_keys && environments::find(&s.db, "DEV").await.unwrap().allow_dev_api_keys);
        let (key, _) = api_keys::create(&s.db, &dev.actor(None), Creator::User(&dev), key_input("DEV", "tokens", Access::Read)).await.unwrap();
        // Still never wider than the developer: no users access, no other environment.
        assert!(api_keys::create(&s.db, &dev.actor(None), Creator::User(&dev), key_input("QA", "tokens", Access::Read)).await.is_err());
        assert!(api_keys::create(&s.db, &dev.actor(None), Creator::User(&dev), key_input("DEV", "promotion", Access::Write)).await.is_err());

        // Who may revoke: the creator, and whoever manages keys in every environment it reaches.
        let envs = environments::list(&s.db).await.unwrap();
        let viewer = users::create(&s.db, &op, "v@example.com", &pw("viewer password 12"), false).await.unwrap();
        let viewer = users::set_role(&s.db, &op, viewer.id, "DEV", Some(Role::Viewer)).await.unwrap();
        let admin = users::create(&s.db, &op, "a@example.com", &pw("admin password 123"), false).await.unwrap();
        let admin = users::set_role(&s.db, &op, admin.id, "DEV", Some(Role::Administrator)).await.unwrap();
        assert!(api_keys::user_may_revoke(&dev, &key, &envs));
        assert!(api_keys::user_may_revoke(&admin, &key, &envs));
        assert!(!api_keys::user_may_revoke(&viewer, &key, &envs));
        let (everywhere, _) = api_keys::create(&s.db, &op, Creator::Operator, key_input("*", "tokens", Access::Read)).await.unwrap();
        assert!(!api_keys::user_may_revoke(&admin, &everywhere, &envs), "an administrator of DEV only cannot revoke a key for every environment");

        environments::set_allow_dev_api_keys(&s.db, &op, "DEV", false).await.unwrap();
        assert!(api_keys::create(&s.db, &dev.actor(None), Creator::User(&dev), key_input("DEV", "tokens", Access::Read)).await.is_err());
        let changes = server::audit::recent(&s.db, 50).await.unwrap().into_iter().filter(|e| e.action == "environment.setting_change").count();
        assert_eq!(changes, 2);
    }
}

#[tokio::test]
async fn a_connection_an_integration_uses_is_deleted_only_with_force() {
    for db in backends().await {
        let s = db.open().await;
        let op = Actor::operator();
        let input = NewConnection {
            name: "Billing".into(),
            provider: "http".into(),
            settings: serde_json::from_value(json!({"base_url": "https://billing.example.com", "auth": "bearer"})).unwrap(),
            secrets: [("token".to_string(), SecretString::from("tok-123"))].into(),
        };
        let c = connections::create(&s.db, &s.vault, &op, "DEV", input).await.unwrap();
        let env = environments::find(&s.db, "DEV").await.unwrap();
        for name in ["Invoices", "Customers"] {
            db.exec(&format!(
                "INSERT INTO integrations (environment_id, name, name_key, provider, connection_id, bound_by, bound_at, created_by, updated_by, created_at, updated_at) \
                 VALUES ({}, '{name}', '{}', 'http', {}, 'x', '2026-01-01T00:00:00.000000Z', 'x', 'x', '2026-01-01T00:00:00.000000Z', '2026-01-01T00:00:00.000000Z')",
                env.id,
                name.to_lowercase(),
                c.id
            ))
            .await;
        }
        let before = db.content_digest().await;
        let err = connections::delete(&s.db, &op, "DEV", "billing", false).await.unwrap_err();
        assert_eq!(err.status().as_u16(), 409);
        assert!(matches!(&err, Error::Conflict { code: "connection_in_use", message } if message.contains("Customers, Invoices")), "{err:?}");
        assert_eq!(db.content_digest().await, before, "a refused delete writes nothing");
        // The database itself refuses to orphan a binding.
        assert!(db.try_exec(&format!("DELETE FROM connections WHERE id = {}", c.id)).await.is_err());

        connections::delete(&s.db, &op, "DEV", "Billing", true).await.unwrap();
        assert!(matches!(connections::get(&s.db, "DEV", "Billing").await.unwrap_err(), Error::NotFound(_)));
        let events = server::audit::recent(&s.db, 10).await.unwrap();
        let unbound: Vec<&str> = events.iter().filter(|e| e.action == "binding.remove").filter_map(|e| e.object_name.as_deref()).collect();
        assert_eq!(unbound.len(), 2, "{unbound:?}");
        assert!(events.iter().any(|e| e.action == "connection.delete"));
    }
}

/// Promise 11: when the audit store refuses a write, the change it describes does not happen,
/// and nothing the change would have returned (a key, a session) is handed out.
#[tokio::test]
async fn promise_11_a_change_whose_audit_event_cannot_be_written_does_not_happen() {
    for db in backends().await {
        let s = db.open().await;
        let op = Actor::operator();
        let owner = users::create(&s.db, &op, "owner@example.com", &pw("owner password 123"), true).await.unwrap();
        let input = || NewConnection {
            name: "Billing".into(),
            provider: "http".into(),
            settings: serde_json::from_value(json!({"base_url": "https://billing.example.com", "auth": "bearer"})).unwrap(),
            secrets: [("token".to_string(), SecretString::from("audit-marker-77"))].into(),
        };
        connections::create(&s.db, &s.vault, &op, "DEV", input()).await.unwrap();
        match db.kind {
            common::Kind::Sqlite => {
                db.exec("CREATE TRIGGER audit_down BEFORE INSERT ON audit_events BEGIN SELECT RAISE(ABORT, 'audit store down'); END").await;
            }
            common::Kind::Postgres => {
                db.exec("CREATE FUNCTION audit_down() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'audit store down'; END $$").await;
                db.exec("CREATE TRIGGER audit_down BEFORE INSERT ON audit_events FOR EACH ROW EXECUTE FUNCTION audit_down()").await;
            }
        }
        let before = db.content_digest().await;
        let patch =
            server::connections::ConnectionPatch { secrets: [("token".to_string(), SecretString::from("audit-marker-88"))].into(), ..Default::default() };
        assert!(connections::update(&s.db, &s.vault, &op, "DEV", "Billing", patch).await.is_err());
        assert!(connections::delete(&s.db, &op, "DEV", "Billing", true).await.is_err());
        let mut second = input();
        second.name = "Second".into();
        assert!(connections::create(&s.db, &s.vault, &op, "DEV", second).await.is_err());
        assert!(users::set_role(&s.db, &op, owner.id, "QA", Some(Role::Viewer)).await.is_err());
        assert!(sessions::invite(s.sessions(), &owner.actor(None), "new@example.com").await.is_err());
        assert!(environments::set_allow_dev_api_keys(&s.db, &op, "DEV", true).await.is_err());
        assert!(api_keys::create(&s.db, &op, Creator::Operator, key_input("DEV", "tokens", Access::Read)).await.is_err(), "no key without its audit event");
        assert!(sessions::sign_in(s.sessions(), "owner@example.com", &pw("owner password 123"), None).await.is_err(), "no session without its audit event");
        assert_eq!(db.content_digest().await, before, "nothing was written");
        assert!(!db.all_text().await.contains("audit-marker-88"));
    }
}
