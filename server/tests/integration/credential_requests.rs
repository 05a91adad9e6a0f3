//! "Request credentials": the system's admin enters a connection's typed secrets through a
//! one-time link (7 days, single use, this connection only); connvault seals and tests them at
//! once; the developer sees who set them and when, never the value. Against the Workato
//! stand-in, on every backend.

use crate::common;

use common::{backends, key, Api, TestDb, Who};
use serde_json::{json, Value};
use server::providers::workato::standin::{Privilege, StandIn};
use server::startup::{self, Services};

async fn open(db: &TestDb) -> Services {
    startup::open(db.config_with(&[("CONNVAULT_ALLOW_LOOPBACK", "1"), ("CONNVAULT_PUBLIC_URL", "https://vault.example.com")])).await.expect("open")
}

const ADMIN: &str = "workato-admin@acme.example";

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
    let key = key(&api.s, &["DEV:connections:rw", "DEV:audit:read"]).await;
    World { api, key, wk, base }
}

impl World {
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value, String) {
        let (st, v, text) = self.api.call(Who::Key(&self.key), method, &format!("/api/v1/environments/DEV/{path}"), body).await;
        (st.as_u16(), v, text)
    }

    async fn public(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value, String) {
        let (st, v, text) = self.api.call(Who::Nobody, method, &format!("/api/v1/environments/DEV/{path}"), body).await;
        (st.as_u16(), v, text)
    }

    /// A Workato connection with no token yet.
    async fn connection(&self, name: &str) {
        let body = json!({"name": name, "provider": "workato", "settings": {"base_url": self.base, "environment": "dev"}});
        let (st, _, text) = self.call("POST", "connections", Some(body)).await;
        assert_eq!(st, 201, "{text}");
    }

    /// Requests credentials for `name`; returns the link's token, read from the email.
    async fn request(&self, name: &str) -> String {
        let (st, r, text) = self.call("POST", &format!("connections/{name}/credential-request"), Some(json!({"admin_email": ADMIN}))).await;
        assert_eq!(st, 201, "{text}");
        assert_eq!((r["admin_email"].as_str(), r["state"].as_str(), r["delivery"].as_str()), (Some(ADMIN), Some("open"), Some("outbox")), "{r}");
        let (item, eml) = server::mail::eml(&self.api.s.db, &self.api.s.vault, r["outbox_id"].as_i64().unwrap()).await.unwrap();
        assert!(item.subject.contains("Workato credentials of") && item.subject.contains(name), "{}", item.subject);
        let eml = String::from_utf8_lossy(&eml).replace("=\r\n", "").replace("=3D", "=");
        assert!(eml.contains("API platform") && eml.contains("DEV environment"), "the provider's steps: {eml}");
        let marker = format!("https://vault.example.com/credentials/DEV/{name}?token=");
        let start = eml.find(&marker).expect("the link in the email") + marker.len();
        eml[start..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-').collect()
    }
}

#[tokio::test]
async fn the_admin_enters_the_token_through_the_link_and_the_developer_never_sees_it() {
    for db in backends().await {
        let w = world(&db).await;
        w.connection("WK").await;
        let (_, r, _) = w.call("POST", "connections/WK/test", None).await;
        assert!(r["advice"].as_str().unwrap().contains("Request credentials"), "a missing token points at the request: {r}");
        let token = w.request("WK").await;

        // The page: who asked, the steps, what to enter.
        let (st, view, text) = w.public("GET", &format!("connections/WK/credential-response?token={token}"), None).await;
        assert_eq!(st, 200, "{text}");
        assert_eq!((view["admin"].as_str(), view["provider"].as_str()), (Some("Workato workspace admin"), Some("workato")));
        assert!(view["requested_by"].as_str().unwrap().starts_with("API key "), "{view}");
        let fields: Vec<(&str, bool)> =
            view["fields"].as_array().unwrap().iter().map(|f| (f["name"].as_str().unwrap(), f["secret"].as_bool().unwrap())).collect();
        assert_eq!(fields, [("api_token", true), ("environment", false)]);
        assert!(view["steps"].as_array().unwrap().len() >= 3);

        // Mistakes do not use the link up: a missing token, a setting that is not the admin's.
        let path = "connections/WK/credential-response";
        let (st, err, _) = w.public("POST", path, Some(json!({"token": token, "secrets": {}}))).await;
        assert_eq!(st, 422);
        assert_eq!(err["error"]["details"][0]["field"], "secrets.api_token");
        let client = w.wk.add_client("connvault", "dev", &[Privilege::WorkspaceDetails, Privilege::Folders]);
        let (st, err, _) =
            w.public("POST", path, Some(json!({"token": token, "secrets": {"api_token": client}, "settings": {"base_url": "https://evil.example"}}))).await;
        assert_eq!(st, 422, "the admin may not re-point the connection");
        assert_eq!(err["error"]["details"][0]["field"], "settings.base_url");

        // A token that does not work (revoked): the admin is told, and the link stays usable.
        let old = w.wk.add_client("old", "dev", &[Privilege::WorkspaceDetails]);
        w.wk.revoke(&old);
        let (st, failed, text) = w.public("POST", path, Some(json!({"token": token, "secrets": {"api_token": old}}))).await;
        assert_eq!(st, 200, "{text}");
        assert_eq!(failed["ok"], false);
        assert!(failed["advice"].as_str().unwrap().contains("4 more tries with this link"), "{failed}");
        let (_, req, _) = w.call("GET", "connections/WK/credential-request", None).await;
        assert_eq!(req["state"], "open", "a failed answer does not close the request");

        // The answer: sealed, tested at once, the result for the admin.
        let (st, result, text) =
            w.public("POST", path, Some(json!({"token": token, "secrets": {"api_token": client}, "settings": {"environment": "dev"}}))).await;
        assert_eq!(st, 200, "{text}");
        assert_eq!(result["ok"], true, "{result}");
        assert!(result["detail"].as_str().unwrap().contains("workspace Acme Automation"), "{result}");
        assert!(!text.contains(&client));

        // Single use.
        let (st, _, _) = w.public("POST", path, Some(json!({"token": token, "secrets": {"api_token": client}}))).await;
        assert_eq!(st, 403);
        let (st, _, _) = w.public("GET", &format!("connections/WK/credential-response?token={token}"), None).await;
        assert_eq!(st, 403);

        // The developer sees who set it and when, never the value.
        let (_, c, text) = w.call("GET", "connections/WK", None).await;
        assert_eq!(c["secrets_set_by"]["api_token"], format!("the admin ({ADMIN})"), "{c}");
        assert!(!text.contains(&client));
        let (_, req, _) = w.call("GET", "connections/WK/credential-request", None).await;
        assert_eq!(req["state"], "answered");
        let (_, audit, text) = w.api.call(Who::Key(&w.key), "GET", "/api/v1/audit?environment=DEV", None).await;
        assert!(!text.contains(&client), "the audit trail holds names, not values");
        let actions: Vec<&str> = audit["items"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
        assert!(actions.contains(&"credential_request.send") && actions.contains(&"credential_request.answer"), "{actions:?}");
        let answer = audit["items"].as_array().unwrap().iter().find(|e| e["action"] == "credential_request.answer").unwrap();
        assert_eq!(answer["detail"]["secrets_set"], json!(["api_token"]));
        assert_eq!(answer["actor"], format!("the admin ({ADMIN}) (request link)"), "{answer}");
    }
}

#[tokio::test]
async fn a_link_serves_one_connection_until_it_is_replaced_cancelled_or_expired() {
    for db in backends().await {
        let w = world(&db).await;
        w.connection("A").await;
        w.connection("B").await;
        let token = w.wk.add_client("connvault", "dev", &[Privilege::WorkspaceDetails]);
        let answer = |link: &str| json!({"token": link, "secrets": {"api_token": token}});

        // Scoped: A's link does nothing for B.
        let a = w.request("A").await;
        let (st, _, _) = w.public("POST", "connections/B/credential-response", Some(answer(&a))).await;
        assert_eq!(st, 403);
        // Replaced: sending again ends the old link.
        let a2 = w.request("A").await;
        assert_eq!(w.public("POST", "connections/A/credential-response", Some(answer(&a))).await.0, 403);
        // Cancelled.
        assert_eq!(w.call("DELETE", "connections/A/credential-request", None).await.0, 204);
        assert_eq!(w.public("POST", "connections/A/credential-response", Some(answer(&a2))).await.0, 403);
        assert_eq!(w.call("DELETE", "connections/A/credential-request", None).await.0, 409, "nothing open to cancel");
        // Expired.
        let b = w.request("B").await;
        sqlx::query("UPDATE one_time_links SET expires_at = '2000-01-01T00:00:00.000000Z' WHERE purpose = 'credential_request'")
            .execute(w.api.s.db.pool())
            .await
            .unwrap();
        assert_eq!(w.public("POST", "connections/B/credential-response", Some(answer(&b))).await.0, 403);
        // Nothing was stored on the way.
        let (_, c, _) = w.call("GET", "connections/B", None).await;
        assert_eq!(c["secrets_set"], json!({}), "{c}");
    }
}

/// Promise 16: an answer that fails its test leaves the link usable, at most 5 failed answers.
#[tokio::test]
async fn five_answers_that_do_not_work_use_the_link_up() {
    for db in backends().await {
        let w = world(&db).await;
        w.connection("WK").await;
        let token = w.request("WK").await;
        let path = "connections/WK/credential-response";
        for left in (0..5).rev() {
            let (st, r, text) = w.public("POST", path, Some(json!({"token": token, "secrets": {"api_token": format!("wrong-{left}")}}))).await;
            assert_eq!((st, r["ok"].as_bool()), (200, Some(false)), "{text}");
            let advice = r["advice"].as_str().unwrap();
            if left > 0 {
                assert!(advice.contains(&format!("{left} more")), "{advice}");
            } else {
                assert!(advice.contains("used up") && advice.contains("ask API key test"), "whom to ask: {advice}");
            }
        }
        let good = w.wk.add_client("connvault", "dev", &[Privilege::WorkspaceDetails]);
        let (st, _, _) = w.public("POST", path, Some(json!({"token": token, "secrets": {"api_token": good}}))).await;
        assert_eq!(st, 403, "the sixth answer is refused");
        let (_, c, _) = w.call("GET", "connections/WK", None).await;
        assert!(c["secrets_set"]["api_token"].is_string(), "the last answer stays (it is the admin's latest), but the link is gone");
        let (_, req, _) = w.call("GET", "connections/WK/credential-request", None).await;
        assert_eq!(req["state"], "answered");
    }
}

#[tokio::test]
async fn only_connections_with_typed_secrets_can_ask() {
    let db = backends().await.into_iter().next().unwrap();
    let w = world(&db).await;
    // A Dataverse connection that signs with a certificate has no secret to ask for.
    let body = json!({"name": "DV", "provider": "dataverse", "settings": {"environment_url": "https://contoso.crm4.dynamics.com", "admin_email": ADMIN}});
    assert_eq!(w.call("POST", "connections", Some(body)).await.0, 201);
    let (st, err, _) = w.call("POST", "connections/DV/credential-request", None).await;
    assert_eq!((st, err["error"]["code"].as_str()), (409, Some("no_typed_secret")), "{err}");
    // With a client secret it has: the admin email comes from the connection's setting.
    assert_eq!(w.call("PATCH", "connections/DV", Some(json!({"settings": {"auth": "secret"}}))).await.0, 200);
    let (st, r, text) = w.call("POST", "connections/DV/credential-request", None).await;
    assert_eq!(st, 201, "{text}");
    assert_eq!(r["admin_email"], ADMIN);
    // A Salesforce connection asks its admin for a connected app instead.
    let body = json!({"name": "SF", "provider": "salesforce", "settings": {"login_url": "https://login.salesforce.com", "username": "u@acme.example"}});
    assert_eq!(w.call("POST", "connections", Some(body)).await.0, 201);
    let (st, err, _) = w.call("POST", "connections/SF/credential-request", Some(json!({"admin_email": ADMIN}))).await;
    assert_eq!((st, err["error"]["code"].as_str()), (409, Some("no_credential_request")), "{err}");
}

/// An SAP OData connection with a communication user whose password only the SAP administrator
/// has: the administrator enters it (and corrects the user name) through the link, and the
/// service answers at once.
#[tokio::test]
async fn the_sap_administrator_enters_the_communication_users_password() {
    use server::providers::sap_odata::standin::StandIn as Sap;
    for db in backends().await {
        let w = world(&db).await;
        let sap = Sap::new();
        let urls = sap.spawn().await.unwrap();
        sap.add_user("CC_CONNVAULT", "s3cret-Pa55", true);
        let body = json!({"name": "BP", "provider": "sap_odata", "settings": {"service_url": urls.service_url, "auth": "basic", "username": "CC_TYPO"}});
        let (st, _, text) = w.call("POST", "connections", Some(body)).await;
        assert_eq!(st, 201, "{text}");
        let (st, r, text) = w.call("POST", "connections/BP/credential-request", Some(json!({"admin_email": ADMIN}))).await;
        assert_eq!(st, 201, "{text}");
        let (_, eml) = server::mail::eml(&w.api.s.db, &w.api.s.vault, r["outbox_id"].as_i64().unwrap()).await.unwrap();
        let eml = String::from_utf8_lossy(&eml).replace("=\r\n", "").replace("=3D", "=");
        assert!(eml.contains("communication arrangement"), "the SAP steps: {eml}");
        let start = eml.find("/credentials/DEV/BP?token=").unwrap() + "/credentials/DEV/BP?token=".len();
        let token: String = eml[start..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-').collect();
        let (_, view, _) = w.public("GET", &format!("connections/BP/credential-response?token={token}"), None).await;
        let fields: Vec<&str> = view["fields"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap()).collect();
        assert_eq!(fields, ["password", "username"], "the password, and the user name the admin owns");
        let answer = json!({"token": token, "secrets": {"password": "s3cret-Pa55"}, "settings": {"username": "CC_CONNVAULT"}});
        let (st, result, text) = w.public("POST", "connections/BP/credential-response", Some(answer)).await;
        assert_eq!(st, 200, "{text}");
        assert_eq!(result["ok"], true, "{result}");
        assert!(result["detail"].as_str().unwrap().contains("API_BUSINESS_PARTNER"), "{result}");
        let (_, c, text) = w.call("GET", "connections/BP", None).await;
        assert_eq!(c["settings"]["username"], "CC_CONNVAULT");
        assert!(!text.contains("s3cret-Pa55"));
    }
}
