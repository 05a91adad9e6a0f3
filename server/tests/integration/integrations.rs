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
        let cells: Vec<Option<&str>> = grid[0].cells.iter().map(|c| c.as_ref().map(|c| c.status.as_str())).collect();
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

/// Writes a connection's latest check as `connections::record_health` would (ok, and since when
/// it fails).
async fn set_health(db: &common::TestDb, env: &str, connection: &str, ok: bool, failing_since: Option<&str>) {
    let since = failing_since.map(|s| format!("'{s}'")).unwrap_or_else(|| "NULL".into());
    db.exec(&format!(
        "INSERT INTO connection_health (connection_id, ok, detail, advice, source, checked_at, failing_since) \
         SELECT c.id, {}, 'the service answered 401', NULL, 'test', '2026-12-01T10:00:00.000000Z', {since} FROM connections c \
         JOIN environments e ON e.id = c.environment_id WHERE e.name = '{env}' AND c.name = '{connection}'",
        ok as i64
    ))
    .await;
}

#[tokio::test]
async fn a_binding_is_good_only_when_its_connection_is_set_up_and_its_latest_check_passed() {
    for db in backends().await {
        let api = Api::new(db.open().await);
        let k = key(&api.s, &["QA:connections:rw", "QA:integrations:rw", "QA:bindings:rw"]).await;
        let post = |body: Value| {
            let (api, k) = (&api, k.clone());
            async move { api.call(Who::Key(&k), "POST", "/api/v1/environments/QA/connections", Some(body)).await.0 }
        };
        // A placeholder as promotion makes it (no secret), one with its token, a Salesforce
        // connection without a certificate.
        assert_eq!(post(json!({"name": "Placeholder", "provider": "http", "settings": {"base_url": "https://p.example.com", "auth": "bearer"}})).await, 201);
        assert_eq!(post(http_conn("Ready", "https://r.example.com")).await, 201);
        let sf = json!({"name": "SF", "provider": "salesforce", "settings": {"login_url": "https://login.salesforce.com", "username": "svc@example.com", "consumer_key": "3MVG9abc"}});
        let sf_status = post(sf).await;
        for (integration, provider, connection) in [("A", "http", "Placeholder"), ("B", "http", "Ready"), ("C", "http", "Ready"), ("D", "salesforce", "SF")] {
            let path = format!("/api/v1/environments/QA/integrations/{integration}");
            assert!(api.call(Who::Key(&k), "PUT", &path, Some(json!({"provider": provider}))).await.0.is_success());
            if provider == "salesforce" && sf_status != 201 {
                continue;
            }
            let (st, _, text) = api.call(Who::Key(&k), "PUT", &format!("{path}/binding"), Some(json!({"connection": connection}))).await;
            assert_eq!(st, 200, "{text}");
        }
        assert!(api.call(Who::Key(&k), "PUT", "/api/v1/environments/QA/integrations/E", Some(json!({"provider": "http"}))).await.0.is_success());
        let states = |list: &Value| -> Vec<(String, String, Option<String>)> {
            list["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| (i["name"].as_str().unwrap().into(), i["status"].as_str().unwrap().into(), i["connection_state"].as_str().map(str::to_string)))
                .collect()
        };
        let (_, list, _) = api.call(Who::Key(&k), "GET", "/api/v1/environments/QA/integrations", None).await;
        let s = |a: &str, b: &str, c: Option<&str>| (a.to_string(), b.to_string(), c.map(str::to_string));
        let mut expected = vec![s("A", "bound", Some("not_set_up")), s("B", "bound", Some("not_tested")), s("C", "bound", Some("not_tested"))];
        if sf_status == 201 {
            expected.push(s("D", "bound", Some("not_set_up")));
        } else {
            expected.push(s("D", "needs_connection", None));
        }
        expected.push(s("E", "needs_connection", None));
        assert_eq!(states(&list), expected, "{list}");
        assert!(list["items"][0]["status_reason"].as_str().unwrap().contains("Placeholder is not set up yet"), "{list}");
        if sf_status == 201 {
            assert!(list["items"][3]["status_reason"].as_str().unwrap().contains("SF has no certificate yet"), "{list}");
        }

        // A passing check makes it good; a failing one says since when.
        set_health(&db, "QA", "Ready", true, None).await;
        let (_, one, _) = api.call(Who::Key(&k), "GET", "/api/v1/environments/QA/integrations/B", None).await;
        assert_eq!((one["status"].as_str(), one["connection_state"].as_str(), one["failing_since"].as_str()), (Some("bound"), Some("works"), None), "{one}");
        db.exec("UPDATE connection_health SET ok = 0, failing_since = '2026-11-30T08:00:00.000000Z'").await;
        let (_, one, _) = api.call(Who::Key(&k), "GET", "/api/v1/environments/QA/integrations/C", None).await;
        assert_eq!(
            (one["status"].as_str(), one["connection_state"].as_str(), one["failing_since"].as_str()),
            (Some("failing"), Some("failing"), Some("2026-11-30T08:00:00.000000Z")),
            "{one}"
        );
        // A health row does not make a placeholder good: it is still not set up.
        set_health(&db, "QA", "Placeholder", true, None).await;
        let (_, one, _) = api.call(Who::Key(&k), "GET", "/api/v1/environments/QA/integrations/A", None).await;
        assert_eq!(one["connection_state"].as_str(), Some("not_set_up"), "{one}");

        // The grid shows the same, cell by cell.
        let envs = server::environments::list(&api.s.db).await.unwrap();
        let grid = server::integrations::overview(&api.s.db, &envs).await.unwrap();
        let qa = envs.iter().position(|e| e.name == "QA").unwrap();
        let cell = |name: &str| grid.iter().find(|r| r.name == name).unwrap().cells[qa].clone().unwrap();
        assert_eq!((cell("A").connection_state.as_deref(), cell("A").connection.as_deref()), (Some("not_set_up"), Some("Placeholder")));
        assert_eq!((cell("C").status.as_str(), cell("C").failing_since.as_deref()), ("failing", Some("2026-11-30T08:00:00.000000Z")));
        assert_eq!(cell("E").connection_state, None);
    }
}

#[tokio::test]
async fn the_connections_page_sorts_filters_and_counts_its_pages() {
    use server::connections::{browse, BrowseQuery, CheckFilter, Sort};
    for db in backends().await {
        let api = Api::new(db.open().await);
        let k = key(&api.s, &["DEV:connections:rw"]).await;
        for i in 0..23 {
            let (st, _, text) =
                api.call(Who::Key(&k), "POST", "/api/v1/environments/DEV/connections", Some(http_conn(&format!("Conn_{i:02}"), "https://x.example.com"))).await;
            assert_eq!(st, 201, "{text}");
        }
        // Two failing, three working; the rest never checked. Conn_05 changed last.
        for (name, ok) in [("Conn_20", false), ("Conn_03", false), ("Conn_01", true), ("Conn_02", true), ("Conn_04", true)] {
            set_health(&db, "DEV", name, ok, (!ok).then_some("2026-12-01T09:00:00.000000Z")).await;
        }
        db.exec("UPDATE connections SET updated_at = '2027-01-01T00:00:00.000000Z' WHERE name = 'Conn_05'").await;
        let q = |check: Option<CheckFilter>, sort: Sort, page: i64| BrowseQuery { check, sort, page, per_page: 10, ..Default::default() };
        let names = |b: &server::connections::Browse| b.items.iter().map(|c| c.name.clone()).collect::<Vec<_>>();

        let p1 = browse(&api.s.db, "DEV", &q(None, Sort::Name, 1)).await.unwrap();
        assert_eq!((p1.total, p1.page, p1.pages, p1.items.len()), (23, 1, 3, 10));
        assert_eq!(names(&p1)[..2], ["Conn_00", "Conn_01"]);
        let p3 = browse(&api.s.db, "DEV", &q(None, Sort::Name, 3)).await.unwrap();
        assert_eq!((p3.page, names(&p3)), (3, vec!["Conn_20".to_string(), "Conn_21".into(), "Conn_22".into()]));
        // Past the end is the last page; before the start the first.
        assert_eq!(browse(&api.s.db, "DEV", &q(None, Sort::Name, 9)).await.unwrap().page, 3);
        assert_eq!(browse(&api.s.db, "DEV", &q(None, Sort::Name, 0)).await.unwrap().page, 1);

        let by_status = browse(&api.s.db, "DEV", &q(None, Sort::Status, 1)).await.unwrap();
        assert_eq!(names(&by_status)[..3], ["Conn_03", "Conn_20", "Conn_00"], "failing first, then not tested");
        let last = browse(&api.s.db, "DEV", &q(None, Sort::Status, 3)).await.unwrap();
        assert_eq!(names(&last), ["Conn_01", "Conn_02", "Conn_04"], "working last");
        let changed = browse(&api.s.db, "DEV", &q(None, Sort::Changed, 1)).await.unwrap();
        assert_eq!(names(&changed)[0], "Conn_05");

        let failing = browse(&api.s.db, "DEV", &q(Some(CheckFilter::Failing), Sort::Name, 1)).await.unwrap();
        assert_eq!((failing.total, failing.pages, names(&failing)), (2, 1, vec!["Conn_03".to_string(), "Conn_20".into()]));
        let untested = browse(&api.s.db, "DEV", &q(Some(CheckFilter::NotTested), Sort::Name, 2)).await.unwrap();
        assert_eq!((untested.total, untested.pages, untested.items.len()), (18, 2, 8));
        let works = browse(&api.s.db, "DEV", &q(Some(CheckFilter::Works), Sort::Name, 1)).await.unwrap();
        assert_eq!(works.total, 3);
        // Filters combine with the search; secrets come along (set, never their values).
        let mut search = q(Some(CheckFilter::Failing), Sort::Name, 1);
        search.search = Some("_2".into());
        let found = browse(&api.s.db, "DEV", &search).await.unwrap();
        assert_eq!((found.total, names(&found)), (1, vec!["Conn_20".to_string()]));
        assert!(found.items[0].secrets_set.contains_key("token"));
        // An empty environment is one empty page.
        let empty = browse(&api.s.db, "QA", &q(None, Sort::Name, 1)).await.unwrap();
        assert_eq!((empty.total, empty.page, empty.pages, empty.items.len()), (0, 1, 1, 0));
        assert!(browse(&api.s.db, "DEV", &BrowseQuery { per_page: 0, ..Default::default() }).await.is_err());
        assert!(Sort::parse("size").is_err() && CheckFilter::parse("broken").is_err());
    }
}
