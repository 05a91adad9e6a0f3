//! SAP OData connections through connvault, against the SAP stand-in (an OData v2 service with
//! CSRF tokens and an XSUAA-style token endpoint): every auth mode from creation to a write with
//! the broker's answer, the `sap-client` sent, every failure with its advice, the CSRF round
//! trip (a write refused with 403 Required succeeds after one forced refresh), and a re-pointed
//! service URL that drops the stored secret. On every backend.

use crate::common;

use std::time::Duration;

use base64::Engine;
use common::{backends, key, Api, TestDb, Who};
use serde_json::{json, Value};
use server::outbound::{Outbound, OutboundOptions};
use server::providers::sap_odata::standin::{StandIn, Urls, ENTITY_SETS};
use server::startup::{self, Services};

const USER: &str = "CC_INTEGRATION";
const PASSWORD: &str = "Pa55w0rd!with:colon";
const API_KEY: &str = "hubKey7f3c9a2e41d8b6";
const CLIENT: &str = "sb-connvault!b1234|it!b56";
const SECRET: &str = "xsuaa$ecret/with+chars=";
const SECRETS: &[&str] = &[PASSWORD, API_KEY, SECRET];

async fn open(db: &TestDb) -> Services {
    startup::open(db.config_with(&[("CONNVAULT_ALLOW_LOOPBACK", "1")])).await.expect("open")
}

struct World {
    api: Api,
    key: String,
    sap: StandIn,
    urls: Urls,
    http: reqwest::Client,
}

async fn world(db: &TestDb) -> World {
    let sap = StandIn::new();
    let urls = sap.spawn().await.unwrap();
    sap.add_user(USER, PASSWORD, true);
    sap.add_user("NO_ROLE", PASSWORD, false);
    sap.add_api_key(API_KEY, true);
    sap.add_client(CLIENT, SECRET, true);
    sap.add_client("sb-no-grant", SECRET, false);
    let api = Api::new(open(db).await);
    let key = key(&api.s, &["DEV:connections:rw", "DEV:integrations:rw", "DEV:bindings:rw", "DEV:tokens:read", "DEV:audit:read"]).await;
    World { api, key, sap, urls, http: reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap() }
}

fn assert_no_secret(text: &str) {
    for s in SECRETS {
        assert!(!text.contains(s), "a secret leaked: {text}");
    }
}

impl World {
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value, String) {
        let (st, v, text) = self.api.call(Who::Key(&self.key), method, &format!("/api/v1/environments/DEV/{path}"), body).await;
        (st.as_u16(), v, text)
    }

    async fn create(&self, name: &str, settings: Value, secrets: Value) {
        let body = json!({"name": name, "provider": "sap_odata", "settings": settings, "secrets": secrets});
        let (st, _, text) = self.call("POST", "connections", Some(body)).await;
        assert_eq!(st, 201, "{text}");
    }

    fn basic(&self, user: &str, password: &str) -> (Value, Value) {
        (json!({"service_url": self.urls.service_url, "auth": "basic", "username": user}), json!({"password": password}))
    }

    fn oauth(&self, client: &str, secret: &str) -> (Value, Value) {
        (
            json!({"service_url": self.urls.service_url, "auth": "oauth_client_credentials", "token_url": self.urls.token_url, "client_id": client}),
            json!({"client_secret": secret}),
        )
    }

    /// "Test connection": the result, checked to hold no secret.
    async fn test(&self, name: &str) -> Value {
        let (st, r, text) = self.call("POST", &format!("connections/{name}/test"), None).await;
        assert_eq!(st, 200, "{text}");
        assert_no_secret(&text);
        r
    }

    async fn bind(&self, integration: &str, connection: &str) {
        let (st, _, text) =
            self.call("PUT", &format!("integrations/{integration}"), Some(json!({"provider": "sap_odata", "objects": ["A_BusinessPartner"]}))).await;
        assert!((200..300).contains(&st), "{text}");
        let (st, _, text) = self.call("PUT", &format!("integrations/{integration}/binding"), Some(json!({"connection": connection}))).await;
        assert_eq!(st, 200, "{text}");
    }

    async fn token(&self, integration: &str, force_refresh: bool) -> Value {
        let query = if force_refresh { "?force_refresh=true" } else { "" };
        let (st, tok, text) = self.call("POST", &format!("integrations/{integration}/token{query}"), None).await;
        assert_eq!(st, 200, "{text}");
        tok
    }

    /// A write as an app makes it with the broker's answer: the credential, the CSRF token and
    /// its cookies.
    async fn create_partner(&self, tok: &Value, name: &str) -> reqwest::Response {
        let mut request = self
            .http
            .post(format!("{}A_BusinessPartner", tok["instance_url"].as_str().unwrap()))
            .header("Accept", "application/json")
            .header("Content-Type", "application/json")
            .body(json!({"BusinessPartnerCategory": "2", "BusinessPartnerFullName": name}).to_string());
        let credential = tok["access_token"].as_str().unwrap();
        request = match tok["token_type"].as_str().unwrap() {
            "Header" => request.header(tok["header_name"].as_str().unwrap(), credential),
            scheme => request.header("Authorization", format!("{scheme} {credential}")),
        };
        if let Some(csrf) = tok["csrf_token"].as_str() {
            request = request.header("X-CSRF-Token", csrf);
        }
        if let Some(cookies) = tok["cookies"].as_str() {
            request = request.header("Cookie", cookies);
        }
        request.send().await.unwrap()
    }
}

fn summary() -> String {
    format!("service API_BUSINESS_PARTNER answers (OData v2, {} entity sets); writes get a CSRF token", ENTITY_SETS.len())
}

#[tokio::test]
async fn every_auth_mode_tests_hands_out_its_credential_and_writes() {
    for db in backends().await {
        let w = world(&db).await;
        let (mut basic, password) = w.basic("cc_integration", PASSWORD);
        basic["sap_client"] = json!("100");
        w.create("SAP_Basic", basic, password).await;
        w.create("SAP_Key", json!({"service_url": w.urls.service_url, "auth": "api_key"}), json!({"api_key": API_KEY})).await;
        let (oauth, secret) = w.oauth(CLIENT, SECRET);
        w.create("SAP_OAuth", oauth, secret).await;

        for name in ["SAP_Basic", "SAP_Key", "SAP_OAuth"] {
            let r = w.test(name).await;
            assert_eq!((r["ok"].as_bool(), r["detail"].as_str()), (Some(true), Some(summary().as_str())), "{name}: {r}");
            assert!(r["advice"].is_null(), "{name}: {r}");
        }
        // Only the basic connection names a client, and it is sent as ?sap-client=.
        let seen = w.sap.sap_clients_seen();
        assert_eq!(seen.iter().filter(|c| c.as_deref() == Some("100")).count(), 1, "{seen:?}");
        assert_eq!(seen.iter().filter(|c| c.is_none()).count(), 2, "{seen:?}");
        assert_eq!(w.sap.token_requests(), 1, "the OAuth test minted once");

        w.bind("Partners_Basic", "SAP_Basic").await;
        w.bind("Partners_Key", "SAP_Key").await;
        w.bind("Partners_OAuth", "SAP_OAuth").await;

        let basic = w.token("Partners_Basic", false).await;
        let expected = base64::engine::general_purpose::STANDARD.encode(format!("cc_integration:{PASSWORD}"));
        assert_eq!((basic["token_type"].as_str(), basic["access_token"].as_str()), (Some("Basic"), Some(expected.as_str())), "{basic}");
        assert_eq!(basic["instance_url"].as_str(), Some(w.urls.service_url.as_str()));
        assert!(basic["expires_at"].is_null());
        assert!(basic["cookies"].as_str().unwrap().contains("SAP_SESSIONID_CV1_100="), "{basic}");
        assert_eq!(w.sap.sap_clients_seen().last().cloned().flatten().as_deref(), Some("100"), "the CSRF fetch names the client too");

        let key = w.token("Partners_Key", false).await;
        assert_eq!((key["token_type"].as_str(), key["header_name"].as_str(), key["access_token"].as_str()), (Some("Header"), Some("APIKey"), Some(API_KEY)));
        assert!(key["csrf_token"].is_string(), "{key}");

        let oauth = w.token("Partners_OAuth", false).await;
        assert_eq!(oauth["token_type"], "Bearer");
        assert_eq!(oauth["instance_url"].as_str(), Some(w.urls.service_url.as_str()));
        let expires = chrono::DateTime::parse_from_rfc3339(oauth["expires_at"].as_str().unwrap()).unwrap();
        let left = expires.signed_duration_since(chrono::Utc::now()).num_seconds();
        assert!((42_000..=43_200).contains(&left), "XSUAA's expires_in: {left}s");
        assert!(oauth["csrf_token"].is_string(), "{oauth}");

        for (tok, name) in [(&basic, "Basic GmbH"), (&key, "Key AG"), (&oauth, "OAuth Ltd")] {
            let r = w.create_partner(tok, name).await;
            assert_eq!(r.status(), 201, "{name}: {}", r.text().await.unwrap());
        }
        let names: Vec<String> = w.sap.partners().iter().filter_map(|p| p["BusinessPartnerFullName"].as_str().map(str::to_string)).collect();
        assert!(names.ends_with(&["Basic GmbH".to_string(), "Key AG".to_string(), "OAuth Ltd".to_string()]), "{names:?}");
        // Each connection's session is its own: three credentials, three CSRF tokens.
        assert_ne!(basic["csrf_token"], key["csrf_token"]);
        assert_ne!(key["csrf_token"], oauth["csrf_token"]);

        // The broker's answers are in the audit trail without a secret.
        let (st, audit, text) = w.api.call(Who::Key(&w.key), "GET", "/api/v1/audit?environment=DEV", None).await;
        assert_eq!(st, 200, "{text}");
        assert!(audit["items"].as_array().unwrap().iter().any(|e| e["action"] == "connection.secret_release"), "{text}");
        let sessions: Vec<&Value> = audit["items"].as_array().unwrap().iter().filter(|e| e["action"] == "token.session").collect();
        assert_eq!(sessions.len(), 3, "one audited CSRF fetch per connection: {text}");
        assert_eq!(sessions[0]["detail"]["fields"], json!(["csrf_token", "cookies"]), "{text}");
        assert_no_secret(&text);
        for tok in [&basic, &key, &oauth] {
            assert!(!text.contains(tok["csrf_token"].as_str().unwrap()) && !text.contains(tok["access_token"].as_str().unwrap()));
        }
    }
}

#[tokio::test]
async fn a_write_refused_with_csrf_required_succeeds_after_one_forced_refresh() {
    for db in backends().await {
        let w = world(&db).await;
        let (settings, secrets) = w.basic(USER, PASSWORD);
        w.create("SAP_Writes", settings, secrets).await;
        let (settings, secrets) = w.oauth(CLIENT, SECRET);
        w.create("SAP_Writes_OAuth", settings, secrets).await;
        w.bind("Writes", "SAP_Writes").await;
        w.bind("Writes_OAuth", "SAP_Writes_OAuth").await;
        for integration in ["Writes", "Writes_OAuth"] {
            let fetches = w.sap.csrf_fetches();
            let tok = w.token(integration, false).await;
            let again = w.token(integration, false).await;
            assert_eq!(again["csrf_token"], tok["csrf_token"], "cached per connection");
            assert_eq!(w.sap.csrf_fetches(), fetches + 1, "one fetch for two answers");
            let r = w.create_partner(&tok, "Before").await;
            assert_eq!(r.status(), 201);

            // Without the token, or with the token but not its cookies, SAP refuses.
            let mut bare = tok.clone();
            bare.as_object_mut().unwrap().remove("cookies");
            let r = w.create_partner(&bare, "No cookies").await;
            assert_eq!((r.status().as_u16(), r.headers()["x-csrf-token"].to_str().unwrap()), (403, "Required"));

            // SAP ends the session: the write is refused with 403 Required …
            w.sap.expire_csrf_tokens();
            let r = w.create_partner(&tok, "After").await;
            assert_eq!(r.status(), 403);
            assert_eq!(r.headers()["x-csrf-token"], "Required");
            let (writes, refused) = w.sap.writes();
            // … the app asks again with force_refresh, gets a new token, and one retry works.
            let fresh = w.token(integration, true).await;
            assert_ne!(fresh["csrf_token"], tok["csrf_token"], "{integration}: a new CSRF token");
            assert_ne!(fresh["cookies"], tok["cookies"], "{integration}: the new session's cookies");
            let r = w.create_partner(&fresh, "After").await;
            assert_eq!(r.status(), 201, "{integration}");
            assert_eq!(w.sap.writes(), (writes + 1, refused), "exactly one retry");
            // The fresh session is what later callers get.
            assert_eq!(w.token(integration, false).await["csrf_token"], fresh["csrf_token"]);
        }
        // The forced refresh of the OAuth connection minted a new access token too.
        assert_eq!(w.sap.token_requests(), 2);
    }
}

#[tokio::test]
async fn each_failure_has_its_own_detail_and_advice() {
    let (_reserved, closed) = common::refusing_port();
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    for db in backends().await {
        let mut w = world(&db).await;
        // Short limits for the server that never answers.
        let mut s = w.api.s.clone();
        s.outbound = Outbound::with_options(OutboundOptions {
            connect_timeout: Duration::from_secs(1),
            total_timeout: Duration::from_millis(1500),
            ..*w.api.s.outbound.options()
        })
        .unwrap();
        w.api = Api::new(s);
        let root = |path: &str| format!("{}/sap/opu/odata/sap/{path}/", w.urls.base);
        let basic = |url: &str, user: &str, password: &str| (json!({"service_url": url, "auth": "basic", "username": user}), json!({"password": password}));
        let with_key = |url: &str, key: &str| (json!({"service_url": url, "auth": "api_key"}), json!({"api_key": key}));
        let oauth_at = |token_url: &str| {
            let (mut settings, secrets) = w.oauth(CLIENT, SECRET);
            settings["token_url"] = json!(token_url);
            (settings, secrets)
        };
        let cases: Vec<(&str, (Value, Value), &str, &str)> = vec![
            (
                "WrongPassword",
                basic(&w.urls.service_url, USER, "not-the-password"),
                "SAP refused the user name or password (401 Unauthorized)",
                "replace the password",
            ),
            ("WrongKey", with_key(&w.urls.service_url, "not-the-key"), "SAP refused the API key (401 Unauthorized): Invalid ApiKey", "Show API Key"),
            (
                "NoRole",
                basic(&w.urls.service_url, "NO_ROLE", PASSWORD),
                "refused access to service API_BUSINESS_PARTNER (403 Forbidden)",
                "communication arrangement",
            ),
            ("NoService", basic(&root("API_NOPE"), USER, PASSWORD), "/sap/opu/odata/sap/API_NOPE/$metadata answered 404 Not Found", "/IWFND/MAINT_SERVICE"),
            ("Closed", with_key(&format!("http://127.0.0.1:{closed}/sap/opu/odata/sap/X/"), API_KEY), "refused the connection", "check the port"),
            ("Silent", with_key(&format!("http://{silent_addr}/sap/opu/odata/sap/X/"), API_KEY), "did not answer in time", "firewall"),
            ("NoTls", with_key(&w.urls.service_url.replace("http://", "https://"), API_KEY), "secure (TLS) connection", "certificate"),
            (
                "WrongSecret",
                w.oauth(CLIENT, "not-the-secret"),
                "the token endpoint refused client sb-connvault!b1234|it!b56 or its secret (401 unauthorized: Bad credentials)",
                "client secret",
            ),
            ("NoGrant", w.oauth("sb-no-grant", SECRET), "may not use the client credentials grant (400 unauthorized_client", "client_credentials grant"),
            ("TokenPath", oauth_at(&format!("{}/wrong/path", w.urls.base)), "did not answer like an OAuth 2.0 token endpoint", "/oauth/token"),
            ("TokenClosed", oauth_at(&format!("http://127.0.0.1:{closed}/oauth/token")), "token URL: 127.0.0.1 refused the connection", "check the port"),
        ];
        for (name, (settings, secrets), detail, advice) in &cases {
            w.create(name, settings.clone(), secrets.clone()).await;
            let r = w.test(name).await;
            assert_eq!(r["ok"], false, "{name}: {r}");
            assert!(r["detail"].as_str().unwrap().contains(detail), "{name}: {r}");
            assert!(r["advice"].as_str().unwrap().contains(advice), "{name}: {r}");
            assert!(!r.to_string().contains("not-the-"), "{name}: a wrong secret echoed: {r}");
        }
        // The 404 says which URL was called.
        let r = w.test("NoService").await;
        assert!(r["detail"].as_str().unwrap().contains(&format!("{}/sap/opu/odata/sap/API_NOPE/$metadata", w.urls.base)), "{r}");

        // Single sign-on in front of the service: a sign-in page with 200 is not a success.
        let (settings, secrets) = basic(&w.urls.service_url, USER, PASSWORD);
        w.create("Sso", settings, secrets).await;
        w.sap.set_sso(true);
        let r = w.test("Sso").await;
        w.sap.set_sso(false);
        assert_eq!(r["ok"], false, "{r}");
        assert!(r["detail"].as_str().unwrap().contains("answered with an HTML page instead of the service's metadata"), "{r}");
        assert!(r["advice"].as_str().unwrap().contains("communication user"), "{r}");
        assert_eq!(w.test("Sso").await["ok"], true, "the same connection without SSO");

        // The broker cannot get a session with a refused credential: 424 with SAP's reason.
        w.bind("Refused", "WrongPassword").await;
        let (st, body, text) = w.call("POST", "integrations/Refused/token", None).await;
        assert_eq!((st, body["error"]["code"].as_str()), (424, Some("connection_failing")), "{text}");
        assert!(text.contains("SAP refused the user name or password"), "{text}");
        assert_no_secret(&text);

        // A session refused for a while (SSO switched on in front of the service) shows the
        // integration failing; once SAP answers again the next token says it works.
        w.bind("Flaky", "Sso").await;
        let status = |list: &Value| list["items"].as_array().unwrap().iter().find(|i| i["name"] == "Flaky").map(|i| i["status"].clone()).unwrap();
        w.sap.set_sso(true);
        let (st, _, text) = w.call("POST", "integrations/Flaky/token", None).await;
        assert_eq!(st, 424, "{text}");
        assert!(text.contains("HTML page instead of a CSRF token"), "{text}");
        assert_eq!(audit_count(&w, "token.session").await, 2, "refused fetches are audited too (Refused, then Flaky)");
        let (_, list, _) = w.call("GET", "integrations", None).await;
        assert_eq!(status(&list), "failing", "{list}");
        w.sap.set_sso(false);
        // It backs off: asking again at once reaches neither SAP nor the secret.
        let (calls, releases) = (w.sap.sap_clients_seen().len(), audit_count(&w, "connection.secret_release").await);
        let (st, _, text) = w.call("POST", "integrations/Flaky/token", None).await;
        assert_eq!(st, 424, "{text}");
        assert_eq!((w.sap.sap_clients_seen().len(), audit_count(&w, "connection.secret_release").await), (calls, releases));
        // When the wait is over, the next token works and says so.
        tokio::time::sleep(Duration::from_millis(5100)).await;
        let tok = w.token("Flaky", false).await;
        assert!(tok["csrf_token"].is_string(), "{tok}");
        let (_, list, _) = w.call("GET", "integrations", None).await;
        assert_eq!(status(&list), "bound", "{list}");
    }
}

async fn audit_count(w: &World, action: &str) -> usize {
    let (_, audit, _) = w.api.call(Who::Key(&w.key), "GET", "/api/v1/audit?environment=DEV&limit=1000", None).await;
    audit["items"].as_array().unwrap().iter().filter(|e| e["action"] == action).count()
}

/// A proxy in front of SAP drops the CSRF token: the test passes for reads and says why writes
/// will fail; the broker's answer has no CSRF fields; a write is refused.
#[tokio::test]
async fn without_a_csrf_token_the_test_says_writes_will_fail() {
    for db in backends().await {
        let w = world(&db).await;
        w.sap.set_drop_csrf_header(true);
        w.create("NoCsrf", json!({"service_url": w.urls.service_url, "auth": "api_key"}), json!({"api_key": API_KEY})).await;
        let r = w.test("NoCsrf").await;
        assert_eq!(r["ok"], true, "{r}");
        assert!(r["detail"].as_str().unwrap().contains("SAP sent no CSRF token, so writes will be refused with 403"), "{r}");
        assert!(r["advice"].as_str().unwrap().contains("passes the X-CSRF-Token header and the cookies through"), "{r}");
        w.bind("NoCsrf", "NoCsrf").await;
        let tok = w.token("NoCsrf", false).await;
        assert!(tok.get("csrf_token").is_none() && tok.get("cookies").is_none(), "{tok}");
        let r = w.create_partner(&tok, "Refused").await;
        assert_eq!((r.status().as_u16(), r.headers()["x-csrf-token"].to_str().unwrap()), (403, "Required"));
    }
}

/// Promise 17 for SAP: the service URL and the token URL say where the credential goes; a
/// change of either drops the stored secrets unless new ones come with it. Other settings keep
/// them.
#[tokio::test]
async fn a_repointed_service_or_token_url_drops_the_stored_secret() {
    for db in backends().await {
        let w = world(&db).await;
        let (settings, secrets) = w.basic(USER, PASSWORD);
        w.create("Moved", settings, secrets).await;
        let (st, kept, text) = w.call("PATCH", "connections/Moved", Some(json!({"settings": {"sap_client": "200"}}))).await;
        assert_eq!(st, 200, "{text}");
        assert!(kept["secrets_set"]["password"].is_string(), "not a destination: {kept}");
        let (st, same, _) = w.call("PATCH", "connections/Moved", Some(json!({"settings": {"service_url": w.urls.service_url.trim_end_matches('/')}}))).await;
        assert_eq!(st, 200);
        assert!(same["secrets_set"]["password"].is_string(), "the same root without its trailing slash: {same}");
        let elsewhere = format!("{}/sap/opu/odata/sap/API_OTHER/", w.urls.base);
        let (st, moved, text) = w.call("PATCH", "connections/Moved", Some(json!({"settings": {"service_url": elsewhere}}))).await;
        assert_eq!(st, 200, "{text}");
        assert_eq!(moved["secrets_set"], json!({}), "{moved}");
        let r = w.test("Moved").await;
        assert_eq!(r["ok"], false);
        assert!(r["detail"].as_str().unwrap().contains("password is not set"), "{r}");

        let (settings, secrets) = w.oauth(CLIENT, SECRET);
        w.create("MovedToken", settings, secrets).await;
        assert_eq!(w.test("MovedToken").await["ok"], true);
        let (st, moved, text) =
            w.call("PATCH", "connections/MovedToken", Some(json!({"settings": {"token_url": format!("{}/other/oauth/token", w.urls.base)}}))).await;
        assert_eq!(st, 200, "{text}");
        assert_eq!(moved["secrets_set"], json!({}), "the client secret and the cached token went: {moved}");
        let before = w.sap.token_requests();
        let r = w.test("MovedToken").await;
        assert_eq!(r["ok"], false, "{r}");
        assert_eq!(w.sap.token_requests(), before, "nothing was sent without a secret");
    }
}

/// The token answer's schema lists the SAP session fields and nothing else unnamed.
#[tokio::test]
async fn the_token_answer_schema_names_the_csrf_fields() {
    let doc: Value = serde_json::from_str(server::api::openapi_json()).unwrap();
    let (_, path) = doc["paths"].as_object().unwrap().iter().find(|(p, _)| p.ends_with("/integrations/{name}/token")).expect("the token path");
    let schema = &path["post"]["responses"]["200"]["content"]["application/json"]["schema"];
    assert_eq!(schema["additionalProperties"], false, "{schema}");
    for field in ["csrf_token", "cookies"] {
        assert_eq!(schema["properties"][field]["type"], "string", "{schema}");
        assert!(!schema["required"].as_array().unwrap().iter().any(|r| r == field));
    }
    // The connection's own schema: the fixed field names, closed, a rule per auth value.
    let sap = doc["components"]["schemas"]["NewConnection"]["oneOf"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["properties"]["provider"]["const"] == "sap_odata")
        .cloned()
        .unwrap();
    assert_eq!(sap["properties"]["settings"]["required"], json!(["service_url", "auth"]), "{sap}");
    let settings: Vec<&String> = sap["properties"]["settings"]["properties"].as_object().unwrap().keys().collect();
    assert_eq!(settings, ["auth", "client_id", "sap_client", "service_url", "token_url", "username"]);
    let secrets: Vec<&String> = sap["properties"]["secrets"]["properties"].as_object().unwrap().keys().collect();
    assert_eq!(secrets, ["api_key", "client_secret", "password"]);
    assert_eq!(sap["properties"]["secrets"]["additionalProperties"], false);
    assert_eq!(sap["properties"]["settings"]["properties"]["sap_client"]["pattern"], "^[0-9]{3}$");
    assert_eq!(sap["allOf"].as_array().unwrap().len(), 3, "{sap}");
}
