//! Workato connections through connvault, against the Workato stand-in (users/me, folders,
//! members; API clients with a role and an environment): the live check and what each refusal
//! means, the broker's answer, and the token's destination. On every backend.

use crate::common;

use common::{backends, key, Api, TestDb, Who};
use serde_json::{json, Value};
use server::providers::workato::standin::{Privilege, StandIn};
use server::startup::{self, Services};

async fn open(db: &TestDb) -> Services {
    startup::open(db.config_with(&[("CONNVAULT_ALLOW_LOOPBACK", "1")])).await.expect("open")
}

struct World {
    api: Api,
    key: String,
    wk: StandIn,
    base: String,
}

async fn world(db: &TestDb) -> World {
    let wk = StandIn::new("Acme Automation");
    let base = wk.spawn().await.unwrap();
    let api = Api::new(open(db).await);
    let key = key(&api.s, &["DEV:connections:rw", "DEV:integrations:rw", "DEV:bindings:rw", "DEV:tokens:read"]).await;
    World { api, key, wk, base }
}

const ALL: &[Privilege] = &[Privilege::WorkspaceDetails, Privilege::Folders, Privilege::Collaborators];

impl World {
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value, String) {
        let (st, v, text) = self.api.call(Who::Key(&self.key), method, &format!("/api/v1/environments/DEV/{path}"), body).await;
        (st.as_u16(), v, text)
    }

    /// A connection to the stand-in with `token`, tested: the result.
    async fn connect(&self, name: &str, settings: Value, token: &str) -> Value {
        let mut settings = settings;
        settings["base_url"] = json!(self.base);
        let body = json!({"name": name, "provider": "workato", "settings": settings, "secrets": {"api_token": token}});
        let (st, _, text) = self.call("POST", "connections", Some(body)).await;
        assert_eq!(st, 201, "{text}");
        let (st, r, text) = self.call("POST", &format!("connections/{name}/test"), None).await;
        assert_eq!(st, 200, "{text}");
        r
    }
}

#[tokio::test]
async fn a_dev_client_names_its_workspace_and_the_broker_hands_out_its_token() {
    for db in backends().await {
        let w = world(&db).await;
        let token = w.wk.add_client("connvault", "dev", ALL);
        let r = w.connect("WK", json!({"data_center": "eu"}), &token).await;
        assert_eq!(r["ok"], true, "{r}");
        let detail = r["detail"].as_str().unwrap();
        assert!(detail.contains("workspace Acme Automation") && detail.contains("at 127.0.0.1") && detail.contains("dev environment"), "{detail}");
        assert!(!detail.contains(&token));

        let (st, _, text) = w.call("PUT", "integrations/Recipes", Some(json!({"provider": "workato", "objects": ["recipes"]}))).await;
        assert!((200..300).contains(&st), "{text}");
        let (st, _, text) = w.call("PUT", "integrations/Recipes/binding", Some(json!({"connection": "WK"}))).await;
        assert_eq!(st, 200, "{text}");
        let (st, tok, text) = w.call("POST", "integrations/Recipes/token", None).await;
        assert_eq!(st, 200, "{text}");
        assert_eq!(tok["access_token"], token.as_str());
        assert_eq!(tok["token_type"], "Bearer");
        assert_eq!(tok["instance_url"], w.base.as_str(), "the API root the token belongs to");
    }
}

#[tokio::test]
async fn each_refusal_says_what_to_fix() {
    for db in backends().await {
        let w = world(&db).await;

        // A revoked token: which host was called, and that it may be another data center's.
        let revoked = w.wk.add_client("old", "dev", ALL);
        w.wk.revoke(&revoked);
        let r = w.connect("Revoked", json!({}), &revoked).await;
        assert_eq!(r["ok"], false);
        assert!(r["detail"].as_str().unwrap().contains("401") && r["detail"].as_str().unwrap().contains("127.0.0.1 called"), "{r}");
        assert!(r["advice"].as_str().unwrap().contains("revoked") && r["advice"].as_str().unwrap().contains("another data center"), "{r}");

        // A PROD client may not read the workspace's details: the folders answer says the
        // token works, and the missing privilege is named.
        let prod = w.wk.add_client("prod", "prod", &[Privilege::Folders]);
        let r = w.connect("Prod", json!({"environment": "prod"}), &prod).await;
        assert_eq!(r["ok"], true, "{r}");
        assert!(r["detail"].as_str().unwrap().contains("folders answer") && r["detail"].as_str().unwrap().contains("PROD environment client"), "{r}");
        assert!(r["advice"].as_str().unwrap().contains("Workspace details privilege"), "{r}");

        // A DEV client whose role lacks Workspace details.
        let no_details = w.wk.add_client("nodetails", "dev", &[Privilege::Folders]);
        let r = w.connect("NoDetails", json!({}), &no_details).await;
        assert_eq!(r["ok"], true, "{r}");
        assert!(r["detail"].as_str().unwrap().contains("role lacks the Workspace details privilege"), "{r}");

        // Neither privilege: a failure that names both.
        let bare = w.wk.add_client("bare", "test", &[]);
        let r = w.connect("Bare", json!({"environment": "test"}), &bare).await;
        assert_eq!(r["ok"], false, "{r}");
        let advice = r["advice"].as_str().unwrap();
        assert!(advice.contains("Workspace details") && advice.contains("Folders") && advice.contains("test environment"), "{advice}");

        // Not Workato's API root: the path is named.
        let token = w.wk.add_client("ok", "dev", ALL);
        let body = json!({"name": "Path", "provider": "workato", "settings": {"base_url": format!("{}v2/", w.base)}, "secrets": {"api_token": token}});
        assert_eq!(w.call("POST", "connections", Some(body)).await.0, 201);
        let (_, r, _) = w.call("POST", "connections/Path/test", None).await;
        assert_eq!(r["ok"], false);
        assert!(r["detail"].as_str().unwrap().contains("404") && r["advice"].as_str().unwrap().contains("/api/"), "{r}");

        // Nothing listening: the outbound client's words.
        let (_reserved, port) = common::refusing_port();
        let body =
            json!({"name": "Down", "provider": "workato", "settings": {"base_url": format!("http://127.0.0.1:{port}/api/")}, "secrets": {"api_token": token}});
        assert_eq!(w.call("POST", "connections", Some(body)).await.0, 201);
        let (_, r, _) = w.call("POST", "connections/Down/test", None).await;
        assert_eq!(r["ok"], false);
        assert!(r["detail"].as_str().unwrap().contains("refused"), "{r}");
    }
}

#[tokio::test]
async fn bad_settings_are_refused_with_what_to_fix() {
    let db = backends().await.into_iter().next().unwrap();
    let w = world(&db).await;
    let (st, err, _) = w
        .call(
            "POST",
            "connections",
            Some(json!({"name": "X", "provider": "workato", "settings": {"data_center": "mars", "environment": "staging"}, "secrets": {}})),
        )
        .await;
    assert_eq!(st, 422);
    let fields: Vec<&str> = err["error"]["details"].as_array().unwrap().iter().map(|d| d["field"].as_str().unwrap()).collect();
    assert_eq!(fields, ["settings.data_center", "settings.environment"], "{err}");
}

#[tokio::test]
async fn a_new_data_center_needs_the_token_again() {
    for db in backends().await {
        let w = world(&db).await;
        let token = w.wk.add_client("connvault", "dev", ALL);
        assert_eq!(w.connect("Moved", json!({}), &token).await["ok"], true);
        // Re-pointed without a token: the stored one is dropped (it would go to another host).
        let (st, c, text) = w.call("PATCH", "connections/Moved", Some(json!({"settings": {"data_center": "eu", "base_url": null}}))).await;
        assert_eq!(st, 200, "{text}");
        assert_eq!(c["secrets_set"], json!({}), "the token did not move with the connection: {c}");
        let calls = w.wk.calls();
        let (_, r, _) = w.call("POST", "connections/Moved/test", None).await;
        assert_eq!(r["ok"], false);
        assert!(r["detail"].as_str().unwrap().contains("token is not set"), "{r}");
        assert_eq!(w.wk.calls(), calls, "the old token went nowhere");
    }
}

#[tokio::test]
async fn the_connection_page_lists_the_workspace_collaborators_and_their_roles() {
    for db in backends().await {
        let w = world(&db).await;
        let actor = server::audit::Actor { kind: server::audit::ActorKind::User, id: None, label: "dev@acme.example".into(), client_addr: None };
        let token = w.wk.add_client("connvault", "dev", ALL);
        assert_eq!(w.connect("WK", json!({}), &token).await["ok"], true);
        let d = server::checks::details(w.api.s.signing(), &actor, "DEV", "WK").await.unwrap().expect("the collaborators");
        assert_eq!((d.title.as_str(), d.columns.len()), ("Collaborators", 6));
        assert_eq!(d.rows.len(), 2);
        assert_eq!(d.rows[0][..5], ["Ada Admin", "ada@acme.example", "Admin", "Admin", "Admin"]);
        assert_eq!(d.rows[1][..5], ["Obi Operator", "obi@acme.example", "Analyst", "", "Operator"]);
        assert!(d.rows[0][5].starts_with("2026-11-30"), "{:?}", d.rows[0]);

        // A role without the Collaborators privilege: the privilege is named.
        let limited = w.wk.add_client("limited", "dev", &[Privilege::WorkspaceDetails]);
        assert_eq!(w.connect("Limited", json!({}), &limited).await["ok"], true);
        let refused = server::checks::details(w.api.s.signing(), &actor, "DEV", "Limited").await.unwrap().expect_err("refused");
        assert!(refused.advice.unwrap().contains("Collaborators privilege"));

        // Each read is audited, like a test; providers without details say so.
        let reads: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM audit_events WHERE action = 'connection.details'").fetch_one(w.api.s.db.pool()).await.unwrap();
        assert_eq!(reads, 2);
        let body = json!({"name": "H", "provider": "http", "settings": {"base_url": "https://api.example.com", "auth": "bearer"}});
        assert_eq!(w.call("POST", "connections", Some(body)).await.0, 201);
        let err = server::checks::details(w.api.s.signing(), &actor, "DEV", "H").await.unwrap_err();
        assert_eq!(err.status(), 409);
    }
}
