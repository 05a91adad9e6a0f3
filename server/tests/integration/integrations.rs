//! Integrations and bindings over the REST API: publishing (idempotent), validation, the
//! binding rules (same environment, same provider), status (bound, failing with the reason,
//! needs a connection), who may do what, and the integrations × environments overview. On
//! every backend.

use crate::common;

use common::{backends, key, session, Api, Who};
use serde_json::{json, Value};
use server::users::Role;

fn http_conn(name: &str, base_url: &str) -> Value {
    json!({"name": name, "provider": "http", "settings": {"base_url": base_url, "auth": "bearer"}, "secrets": {"token": "integration-test-token"}})
}

fn statuses(list: &Value) -> Vec<(String, String)> {
    list["items"].as_array().unwrap().iter().map(|i| (i["name"].as_str().unwrap().to_string(), i["status"].as_str().unwrap().to_string())).collect()
}

#[tokio::test]
async fn publishing_is_validated_idempotent_and_audited() {
    for db in backends().await {
        let api = Api::new(db.open().await);
        let k = key(&api.s, &["DEV:integrations:rw", "DEV:bindings:rw", "DEV:audit:read"]).await;
        let body =
            json!({"provider": "http", "objects": ["Invoice", {"name": "Customer", "access": "read_write"}], "description": "Billing app", "version": "1.4.0"});
        let (st, created, text) = api.call(Who::Key(&k), "PUT", "/api/v1/environments/DEV/integrations/Billing_Sync", Some(body.clone())).await;
        assert_eq!(st, 201, "{text}");
        assert_eq!(created["change"], "created");
        assert_eq!(created["objects"], json!([{"name": "Invoice", "access": "read"}, {"name": "Customer", "access": "read_write"}]));
        assert_eq!((created["status"].as_str(), created["connection"].is_null()), (Some("needs_connection"), true));
        assert!(created["status_reason"].as_str().unwrap().contains("bind a connection of provider http in DEV"));
        assert!(created["published_by"].as_str().unwrap().starts_with("API key test"));

        // The same body again: 200, unchanged, nothing written.
        let before = db.content_digest().await;
        let (st, again, _) = api.call(Who::Key(&k), "PUT", "/api/v1/environments/dev/integrations/billing_sync", Some(body.clone())).await;
        assert_eq!((st.as_u16(), again["change"].as_str()), (200, Some("unchanged")));
        assert_eq!(db.content_digest().await, before);

        let mut changed = body.clone();
        changed["version"] = json!("1.5.0");
        let (st, updated, _) = api.call(Who::Key(&k), "PUT", "/api/v1/environments/DEV/integrations/Billing_Sync", Some(changed)).await;
        assert_eq!((st.as_u16(), updated["change"].as_str(), updated["version"].as_str()), (200, Some("updated"), Some("1.5.0")));

        // Bad input: every problem named, nothing written.
        let before = db.content_digest().await;
        let bad = json!({"provider": "nope", "objects": ["Account", "account", {"name": "Contact", "access": "admin"}, "Two words"]});
        let (st, err, _) = api.call(Who::Key(&k), "PUT", "/api/v1/environments/DEV/integrations/Other", Some(bad)).await;
        assert_eq!(st, 422);
        let fields: Vec<&str> = err["error"]["details"].as_array().unwrap().iter().map(|d| d["field"].as_str().unwrap()).collect();
        assert_eq!(fields, ["provider", "objects[1].name", "objects[2].access", "objects[3].name"]);
        let (st, err, _) = api.call(Who::Key(&k), "PUT", "/api/v1/environments/DEV/integrations/bad%20name", Some(json!({"provider": "http"}))).await;
        assert_eq!((st.as_u16(), err["error"]["details"][0]["field"].as_str()), (422, Some("name")));
        let (st, _, _) = api.call(Who::Key(&k), "PUT", "/api/v1/environments/DEV/integrations/X", Some(json!({"provider": "http", "extra": 1}))).await;
        assert_eq!(st, 422);
        assert_eq!(db.content_digest().await, before);

        let (_, audit, _) = api.call(Who::Key(&k), "GET", "/api/v1/audit?environment=DEV&action=integration.publish", None).await;
        assert_eq!(audit["items"].as_array().unwrap().len(), 1);
        let (_, audit, _) = api.call(Who::Key(&k), "GET", "/api/v1/audit?environment=DEV&action=integration.update", None).await;
        assert_eq!(audit["items"].as_array().unwrap().len(), 1, "the unchanged publish wrote no event");

        let (st, _, _) = api.call(Who::Key(&k), "DELETE", "/api/v1/environments/DEV/integrations/Billing_Sync", None).await;
        assert_eq!(st, 204);
        let (st, _, _) = api.call(Who::Key(&k), "GET", "/api/v1/environments/DEV/integrations/Billing_Sync", None).await;
        assert_eq!(st, 404);
    }
}

#[tokio::test]
async fn bindings_join_one_environment_and_one_provider_and_report_status() {
    for db in backends().await {
        let s = server::startup::open(db.config_with(&[("CONNVAULT_ALLOW_LOOPBACK", "1")])).await.unwrap();
        let api = Api::new(s);
        let dev = session(&api.s, "dev@example.com", Some(("DEV", Role::Developer)), false).await;
        let owner = session(&api.s, "owner@example.com", None, true).await;
        for (env, name) in [("DEV", "Billing"), ("QA", "Billing_QA")] {
            let (st, _, text) =
                api.call(Who::Session(&owner), "POST", &format!("/api/v1/environments/{env}/connections"), Some(http_conn(name, "http://127.0.0.1:9/"))).await;
            assert_eq!(st, 201, "{text}");
        }
        // A connection of another provider (written directly: only its provider matters here).
        let env_id: i64 = api.call(Who::Session(&owner), "GET", "/api/v1/environments", None).await.1["items"][0]["id"].as_i64().unwrap();
        db.exec(&format!(
            "INSERT INTO connections (environment_id, name, name_key, provider, settings, created_by, updated_by, created_at, updated_at) \
             VALUES ({env_id}, 'SF_Main', 'sf_main', 'salesforce', '{{}}', 'x', 'x', '2026-01-01T00:00:00.000000Z', '2026-01-01T00:00:00.000000Z')"
        ))
        .await;
        for env in ["DEV", "QA"] {
            let (st, _, text) = api
                .call(Who::Session(&owner), "PUT", &format!("/api/v1/environments/{env}/integrations/Billing_Sync"), Some(json!({"provider": "http"})))
                .await;
            assert_eq!(st, 201, "{text}");
        }

        let path = "/api/v1/environments/DEV/integrations/Billing_Sync/binding";
        let (st, err, _) = api.call(Who::Session(&dev), "PUT", path, Some(json!({"connection": "Billing_QA"}))).await;
        assert_eq!(st, 422, "a connection of another environment");
        assert!(err["error"]["details"][0]["message"].as_str().unwrap().contains("no connection named Billing_QA in DEV"), "{err}");
        let (st, err, _) = api.call(Who::Session(&dev), "PUT", path, Some(json!({"connection": "SF_Main"}))).await;
        assert_eq!(st, 422, "a connection of another provider");
        assert!(err["error"]["details"][0]["message"].as_str().unwrap().contains("needs a http connection"), "{err}");
        let (st, bound, _) = api.call(Who::Session(&dev), "PUT", path, Some(json!({"connection": "billing"}))).await;
        assert_eq!(st, 200);
        assert_eq!(
            (bound["connection"].as_str(), bound["status"].as_str(), bound["bound_by"].as_str()),
            (Some("Billing"), Some("bound"), Some("dev@example.com"))
        );

        // A bound integration cannot switch provider under its binding.
        let before = db.content_digest().await;
        let (st, err, _) =
            api.call(Who::Session(&owner), "PUT", "/api/v1/environments/DEV/integrations/Billing_Sync", Some(json!({"provider": "salesforce"}))).await;
        assert_eq!((st.as_u16(), err["error"]["code"].as_str()), (409, Some("integration_bound")));
        assert!(err["error"]["message"].as_str().unwrap().contains("unbind it before changing its provider to salesforce"), "{err}");
        assert_eq!(db.content_digest().await, before);

        // A failed live check shows the integration as failing, with the reason.
        let (st, tested, _) = api.call(Who::Session(&dev), "POST", "/api/v1/environments/DEV/connections/Billing/test", None).await;
        assert_eq!((st.as_u16(), tested["ok"].as_bool()), (200, Some(false)));
        let (_, list, _) = api.call(Who::Session(&dev), "GET", "/api/v1/environments/DEV/integrations", None).await;
        assert_eq!(statuses(&list), [("Billing_Sync".to_string(), "failing".to_string())]);
        assert!(list["items"][0]["status_reason"].as_str().unwrap().contains(tested["detail"].as_str().unwrap()), "{list}");

        // The connection cannot go without force while it is bound.
        let (st, err, _) = api.call(Who::Session(&dev), "DELETE", "/api/v1/environments/DEV/connections/Billing", None).await;
        assert_eq!((st.as_u16(), err["error"]["code"].as_str()), (409, Some("connection_in_use")));
        assert!(err["error"]["message"].as_str().unwrap().contains("Billing_Sync"));

        let (st, unbound, _) = api.call(Who::Session(&dev), "DELETE", path, None).await;
        assert_eq!((st.as_u16(), unbound["status"].as_str()), (200, Some("needs_connection")));
        let (st, _, _) = api.call(Who::Session(&dev), "DELETE", "/api/v1/environments/DEV/connections/Billing", None).await;
        assert_eq!(st, 204);

        // The overview: integrations × environments in promotion order.
        let envs = server::environments::list(&api.s.db).await.unwrap();
        let grid = server::integrations::overview(&api.s.db, &envs).await.unwrap();
        assert_eq!(grid.len(), 1);
        let cells: Vec<Option<&str>> = grid[0].cells.iter().map(|c| c.as_ref().map(|(s, _)| s.as_str())).collect();
        assert_eq!(cells, [Some("needs_connection"), Some("needs_connection"), None]);
    }
}

#[tokio::test]
async fn who_may_publish_bind_and_read() {
    for db in backends().await {
        let api = Api::new(db.open().await);
        let owner = session(&api.s, "owner@example.com", None, true).await;
        let viewer = session(&api.s, "viewer@example.com", Some(("DEV", Role::Viewer)), false).await;
        let dev = session(&api.s, "dev@example.com", Some(("DEV", Role::Developer)), false).await;
        assert_eq!(
            api.call(Who::Session(&owner), "POST", "/api/v1/environments/DEV/connections", Some(http_conn("Billing", "https://b.example.com"))).await.0,
            201
        );
        let read_only = key(&api.s, &["DEV:integrations:read", "DEV:bindings:read"]).await;
        let publisher = key(&api.s, &["DEV:integrations:write"]).await;
        let body = Some(json!({"provider": "http", "objects": ["Invoice"]}));
        let p = "/api/v1/environments/DEV/integrations/Sync";
        assert_eq!(api.call(Who::Session(&viewer), "PUT", p, body.clone()).await.0, 403);
        assert_eq!(api.call(Who::Key(&read_only), "PUT", p, body.clone()).await.0, 403);
        assert_eq!(api.call(Who::Key(&publisher), "PUT", p, body.clone()).await.0, 201);
        assert_eq!(api.call(Who::Key(&publisher), "PUT", "/api/v1/environments/QA/integrations/Sync", body.clone()).await.0, 403);
        // Publishing is not binding: that takes bindings write.
        let bind = Some(json!({"connection": "Billing"}));
        assert_eq!(api.call(Who::Key(&publisher), "PUT", &format!("{p}/binding"), bind.clone()).await.0, 403);
        assert_eq!(api.call(Who::Session(&viewer), "PUT", &format!("{p}/binding"), bind.clone()).await.0, 403);
        assert_eq!(api.call(Who::Session(&dev), "PUT", &format!("{p}/binding"), bind.clone()).await.0, 200);
        assert_eq!(api.call(Who::Session(&viewer), "GET", "/api/v1/environments/DEV/integrations", None).await.0, 200);
        assert_eq!(api.call(Who::Key(&read_only), "GET", "/api/v1/environments/QA/integrations", None).await.0, 403);
        let (st, feed, _) = api.call(Who::Key(&read_only), "GET", "/api/v1/environments/DEV/integrations?since_id=0", None).await;
        assert_eq!((st.as_u16(), feed["items"].as_array().unwrap().len()), (200, 1));
        assert_eq!(api.call(Who::Nobody, "GET", "/api/v1/environments/DEV/integrations", None).await.0, 401);
    }
}

#[tokio::test]
async fn the_broker_answers_a_generic_connection_with_its_credential() {
    use base64::Engine;
    for db in backends().await {
        let api = Api::new(db.open().await);
        let k = key(&api.s, &["DEV:connections:rw", "DEV:integrations:rw", "DEV:bindings:rw", "DEV:tokens:read"]).await;
        let basic = json!({"name": "Basic", "provider": "http", "settings": {"base_url": "https://api.example.com", "auth": "basic", "username": "svc"}, "secrets": {"password": "pw-1"}});
        let header = json!({"name": "Keyed", "provider": "http", "settings": {"base_url": "https://api.example.com", "auth": "header", "header_name": "X-API-Key"}, "secrets": {"token": "k-2"}});
        for (c, integration) in [(http_conn("Bearer", "https://api.example.com"), "A"), (basic, "B"), (header, "C")] {
            let name = c["name"].as_str().unwrap().to_string();
            assert_eq!(api.call(Who::Key(&k), "POST", "/api/v1/environments/DEV/connections", Some(c)).await.0, 201);
            let path = format!("/api/v1/environments/DEV/integrations/{integration}");
            assert!(api.call(Who::Key(&k), "PUT", &path, Some(json!({"provider": "http"}))).await.0.is_success());
            assert_eq!(api.call(Who::Key(&k), "PUT", &format!("{path}/binding"), Some(json!({"connection": name}))).await.0, 200);
        }
        let token = |i: &'static str| {
            let api = &api;
            let k = k.clone();
            async move { api.call(Who::Key(&k), "POST", &format!("/api/v1/environments/DEV/integrations/{i}/token"), None).await.1 }
        };
        let a = token("A").await;
        assert_eq!(
            (a["access_token"].as_str(), a["token_type"].as_str(), a["connection"].as_str()),
            (Some("integration-test-token"), Some("Bearer"), Some("Bearer"))
        );
        assert!(a["expires_at"].is_null());
        let b = token("B").await;
        let expected = base64::engine::general_purpose::STANDARD.encode("svc:pw-1");
        assert_eq!((b["access_token"].as_str(), b["token_type"].as_str()), (Some(expected.as_str()), Some("Basic")));
        let c = token("C").await;
        assert_eq!((c["access_token"].as_str(), c["token_type"].as_str(), c["header_name"].as_str()), (Some("k-2"), Some("Header"), Some("X-API-Key")));

        // The one-query path checks the key like every other route.
        let (st, err, _) = api.call(Who::Key(&k), "POST", "/api/v1/environments/NOPE/integrations/A/token", None).await;
        assert_eq!(st, 404, "{err}");
        assert!(err["error"]["message"].as_str().unwrap().contains("DEV"), "names the environments there are: {err}");
        let (st, _, _) = api.call(Who::Key("cvk_00000000_not-a-real-key"), "POST", "/api/v1/environments/DEV/integrations/A/token", None).await;
        assert_eq!(st, 401);
        let other_env = key(&api.s, &["QA:tokens:read"]).await;
        let (st, err, _) = api.call(Who::Key(&other_env), "POST", "/api/v1/environments/DEV/integrations/A/token", None).await;
        assert_eq!((st.as_u16(), err["error"]["message"].as_str()), (403, Some("you may not read tokens in DEV")));
        let owner = session(&api.s, "owner@example.com", None, true).await;
        let (st, by_session, _) = api.call(Who::Session(&owner), "POST", "/api/v1/environments/dev/integrations/a/token", None).await;
        assert_eq!((st.as_u16(), by_session["access_token"].as_str()), (200, Some("integration-test-token")), "a signed-in owner may try it too");
        let id = server::api_keys::page(&api.s.db, &Default::default(), None).await.unwrap().items.into_iter().find(|x| k.starts_with(&x.prefix)).unwrap().id;
        server::api_keys::revoke(&api.s.db, &server::audit::Actor::operator(), id).await.unwrap();
        let (st, _, _) = api.call(Who::Key(&k), "POST", "/api/v1/environments/DEV/integrations/A/token", None).await;
        assert_eq!(st, 401, "a revoked key stops at once");
    }
}
