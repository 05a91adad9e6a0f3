//! The audit trail as people read it: before → after from each change's event, the object's
//! page, and the CSV export (safe in a spreadsheet, the page's filters and access). On every
//! backend.

use crate::common;

use common::{backends, key, session, Api, Who};
use serde_json::json;
use server::users::Role;

#[tokio::test]
async fn changes_read_before_and_after_and_the_csv_export_is_safe_in_a_spreadsheet() {
    for db in backends().await {
        let api = Api::new(db.open().await);
        let k = key(&api.s, &["DEV:connections:rw", "DEV:integrations:rw", "DEV:bindings:rw", "DEV:audit:read"]).await;
        let dev = session(&api.s, "dev@example.com", Some(("QA", Role::Developer)), false).await;
        for name in ["One", "Two"] {
            let c = json!({"name": name, "provider": "http", "settings": {"base_url": format!("https://{name}.example.com"), "auth": "bearer"}, "secrets": {"token": "t-1"}});
            assert_eq!(api.call(Who::Key(&k), "POST", "/api/v1/environments/DEV/connections", Some(c)).await.0, 201);
        }
        let (st, _, text) = api
            .call(Who::Key(&k), "PATCH", "/api/v1/environments/DEV/connections/One", Some(json!({"settings": {"base_url": "https://one-v2.example.com"}, "secrets": {"token": "t-2"}})))
            .await;
        assert_eq!(st, 200, "{text}");
        assert!(api.call(Who::Key(&k), "PUT", "/api/v1/environments/DEV/integrations/Sync", Some(json!({"provider": "http"}))).await.0.is_success());
        for c in ["One", "Two"] {
            assert_eq!(api.call(Who::Key(&k), "PUT", "/api/v1/environments/DEV/integrations/Sync/binding", Some(json!({"connection": c}))).await.0, 200);
        }
        assert_eq!(api.call(Who::Key(&k), "DELETE", "/api/v1/environments/DEV/integrations/Sync/binding", None).await.0, 200);

        let events = server::audit::recent(&api.s.db, 50).await.unwrap();
        let of = |action: &str| events.iter().filter(|e| e.action == action).map(server::audit::changes).collect::<Vec<_>>();
        let c = |what: &str, before: &str, after: &str| server::audit::Change { what: what.into(), before: before.into(), after: after.into() };
        assert_eq!(of("connection.update"), [vec![c("base_url", "https://One.example.com", "https://one-v2.example.com")]]);
        // Newest first: the second binding replaced the first; the unbinding removed it.
        assert_eq!(of("binding.set"), [vec![c("connection", "One", "Two")], vec![c("connection", "none", "One")]]);
        assert_eq!(of("binding.remove"), [vec![c("connection", "Two", "none")]]);
        let update = events.iter().find(|e| e.action == "connection.update").unwrap();
        assert_eq!(server::audit::object_path(update).as_deref(), Some("/env/DEV/connections/One"));
        assert_eq!(server::audit::action_label("binding.set"), "Integration bound to a connection");

        // A recorded value a spreadsheet would run, with a comma, quotes and a line break.
        let env_id = server::environments::find(&api.s.db, "DEV").await.unwrap().id;
        db.exec(&format!(
            "INSERT INTO audit_events (actor_kind, actor_id, actor_label, action, outcome, environment_id, environment, object_kind, object_name, detail, client_addr, created_at, updated_at) \
             VALUES ('system', NULL, '=HYPERLINK(\"http://evil.example\",\"x\")', 'connection.test', 'success', {env_id}, 'DEV', 'connection', 'a,b \"c\"\nd', '{{}}', NULL, \
             '2026-12-01T10:00:00.000000Z', '2026-12-01T10:00:00.000000Z')"
        ))
        .await;
        let (st, _, csv) = api.call(Who::Key(&k), "GET", "/api/v1/audit/export?environment=DEV", None).await;
        assert_eq!(st, 200, "{csv}");
        assert!(csv.starts_with("id,time_utc,actor,action,what,outcome,environment,object_kind,object,change,client_addr,detail\r\n"), "{csv}");
        assert!(csv.contains(",\"'=HYPERLINK(\"\"http://evil.example\"\",\"\"x\"\")\",connection.test,Connection tested,success,DEV,connection,\"a,b \"\"c\"\"\nd\","), "{csv}");
        assert!(csv.contains(",Connection changed,success,DEV,connection,One,base_url: https://One.example.com → https://one-v2.example.com,"), "{csv}");
        assert!(!csv.contains("t-1") && !csv.contains("t-2"), "no secret in the export");
        // Its lines: the header, then every DEV event (the inserted one's object spans two).
        let dev_events = server::audit::search(&api.s.db, &server::audit::AuditQuery { environment_id: Some(env_id), limit: Some(1000), ..Default::default() }).await.unwrap().items.len();
        assert_eq!(csv.matches("\r\n").count(), 1 + dev_events);
        // The filters narrow it; a bad time is refused; other environments take their own access.
        let (_, _, only) = api.call(Who::Key(&k), "GET", "/api/v1/audit/export?environment=DEV&action=binding.set", None).await;
        assert_eq!(only.matches("\r\n").count(), 3, "{only}");
        let (_, _, before) = api.call(Who::Key(&k), "GET", "/api/v1/audit/export?environment=DEV&to=2026-12-02T00:00:00Z", None).await;
        assert_eq!(before.matches("\r\n").count(), 2, "only the inserted event is older: {before}");
        assert_eq!(api.call(Who::Key(&k), "GET", "/api/v1/audit/export?environment=DEV&from=yesterday", None).await.0, 422);
        assert_eq!(api.call(Who::Key(&k), "GET", "/api/v1/audit/export?environment=DEV&limit=5", None).await.0, 422);
        assert_eq!(api.call(Who::Session(&dev), "GET", "/api/v1/audit/export?environment=DEV", None).await.0, 403);
        assert_eq!(api.call(Who::Session(&dev), "GET", "/api/v1/audit/export", None).await.0, 403);
        assert_eq!(api.call(Who::Session(&dev), "GET", "/api/v1/audit/export?environment=QA", None).await.0, 200);
        assert_eq!(api.call(Who::Nobody, "GET", "/api/v1/audit/export?environment=DEV", None).await.0, 401);
    }
}
