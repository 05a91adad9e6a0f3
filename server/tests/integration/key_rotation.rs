//! Rotating an API key: a new key with the same name, grants, addresses and expiry, the old one
//! revoked in the same transaction (both or neither), never wider than whoever rotates it. On
//! every backend.

use crate::common;

use common::{backends, Api, Kind, Who};
use server::api_keys::{self, Creator, NewApiKey};
use server::audit::Actor;
use server::secret::SecretString;
use server::users::{self, Role};

#[tokio::test]
async fn rotation_replaces_a_key_in_one_transaction_and_never_widens_it() {
    for db in backends().await {
        let api = Api::new(db.open().await);
        let op = Actor::operator();
        let owner = users::create(&api.s.db, &op, "owner@example.com", &SecretString::from("a long enough password"), true).await.unwrap();
        let grants = ["DEV:connections:read", "QA:connections:read"].iter().flat_map(|g| api_keys::parse_grant(g).unwrap()).collect();
        let input = NewApiKey { name: "billing app".into(), grants, allowed_addresses: vec!["192.0.2.0/24".into()], expires_at: Some("2099-01-01T00:00:00Z".into()) };
        let (old, old_value) = api_keys::create(&api.s.db, &op, Creator::User(&owner), input).await.unwrap();
        let works = |value: String| {
            let api = &api;
            async move { api.call(Who::Key(&value), "GET", "/api/v1/environments/DEV/connections", None).await.0.as_u16() }
        };
        assert_eq!(works(old_value.expose_secret().to_string()).await, 200);

        // A DEV administrator may not rotate it into their hands: it also reaches QA.
        let admin = users::create(&api.s.db, &op, "admin@example.com", &SecretString::from("a long enough password"), false).await.unwrap();
        users::set_role(&api.s.db, &op, admin.id, "DEV", Some(Role::Administrator)).await.unwrap();
        let admin = users::get(&api.s.db, admin.id).await.unwrap();
        let before = db.content_digest().await;
        assert!(matches!(api_keys::rotate(&api.s.db, &op, &admin, old.id).await, Err(server::Error::Forbidden(_))));
        assert_eq!(db.content_digest().await, before, "a refused rotation writes nothing");

        // A rotation that fails half-way (here: the old key cannot be revoked) leaves nothing
        // behind: no new key, the old one still works.
        let trigger = match db.kind {
            Kind::Sqlite => vec!["CREATE TRIGGER no_revoke BEFORE UPDATE ON api_keys BEGIN SELECT RAISE(ABORT, 'refused by the test'); END".to_string()],
            Kind::Postgres => vec![
                "CREATE FUNCTION no_revoke() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'refused by the test'; END $$ LANGUAGE plpgsql".to_string(),
                "CREATE TRIGGER no_revoke BEFORE UPDATE ON api_keys FOR EACH ROW EXECUTE FUNCTION no_revoke()".to_string(),
            ],
        };
        for sql in &trigger {
            db.exec(sql).await;
        }
        let before = db.content_digest().await;
        assert!(api_keys::rotate(&api.s.db, &op, &owner, old.id).await.is_err());
        assert_eq!(db.content_digest().await, before, "a failed rotation writes nothing");
        db.exec(if db.kind == Kind::Postgres { "DROP TRIGGER no_revoke ON api_keys" } else { "DROP TRIGGER no_revoke" }).await;
        assert_eq!(works(old_value.expose_secret().to_string()).await, 200);

        // Rotated: the same name, grants, addresses and expiry; the old key is refused at once.
        let (new, new_value) = api_keys::rotate(&api.s.db, &op, &owner, old.id).await.unwrap();
        assert_ne!(new.id, old.id);
        assert_ne!(new.prefix, old.prefix);
        assert_eq!((new.name.as_str(), &new.grants, &new.allowed_addresses, &new.expires_at), ("billing app", &old.grants, &old.allowed_addresses, &old.expires_at));
        assert_eq!(new.created_by_user_id, Some(owner.id));
        assert_eq!(works(new_value.expose_secret().to_string()).await, 200);
        assert_eq!(works(old_value.expose_secret().to_string()).await, 401);
        assert!(api_keys::get(&api.s.db, old.id).await.unwrap().revoked_at.is_some());
        let events = server::audit::recent(&api.s.db, 5).await.unwrap();
        let actions: Vec<&str> = events.iter().map(|e| e.action.as_str()).collect();
        assert_eq!(actions[..2], ["api_key.rotate", "api_key.revoke"]);
        assert_eq!(events[0].detail["replaces"], old.prefix.as_str());
        assert_eq!(events[1].detail["rotated_to"], new.prefix.as_str());
        assert!(!events.iter().any(|e| e.detail.to_string().contains(new_value.expose_secret())), "the value is never audited");
        // A revoked key cannot be rotated again.
        assert!(matches!(api_keys::rotate(&api.s.db, &op, &owner, old.id).await, Err(server::Error::Conflict { code: "key_revoked", .. })));
    }
}
