//! Promises 17 and 18: a credential only goes where it went when it was stored, and an API
//! key is never wider than its creator is now. Each test is a way in that was tried, and would
//! pass again if the promise broke. On every backend.

use crate::common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use common::{backends, key, Api, TestDb, Who};
use serde_json::{json, Value};
use server::audit::Actor;
use server::providers::salesforce::standin::{ConnectedApp, StandIn};
use server::secret::SecretString;
use server::startup::{self, Services};
use server::users::{self, Role};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PROD_TOKEN: &str = "prod-secret-token-7c1f";
const USER: &str = "integration@acme.com";
const PASSWORD: &str = "a long enough password";

async fn open(db: &TestDb) -> Services {
    startup::open(db.config_with(&[("CONNVAULT_ALLOW_LOOPBACK", "1")])).await.expect("open")
}

/// A server on 127.0.0.1 that keeps every request it gets (head and body) and answers 200.
struct Capture {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Capture {
    async fn start() -> Capture {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let keep = seen.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let keep = keep.clone();
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut chunk = [0u8; 8192];
                    while !complete(&request) {
                        match socket.read(&mut chunk).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => request.extend_from_slice(&chunk[..n]),
                        }
                    }
                    keep.lock().unwrap().push(String::from_utf8_lossy(&request).into_owned());
                    let body = r#"{"access_token":"captured","instance_url":"http://127.0.0.1:1","id":"x/00D/005","token_type":"Bearer"}"#;
                    let answer =
                        format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
                    let _ = socket.write_all(answer.as_bytes()).await;
                });
            }
        });
        Capture { addr, seen }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn requests(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

/// Whether a request has arrived whole (its head, and as much body as Content-Length says).
fn complete(request: &[u8]) -> bool {
    let text = String::from_utf8_lossy(request);
    let Some(end) = text.find("\r\n\r\n") else { return false };
    let length = text[..end]
        .lines()
        .find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("content-length")).map(|(_, v)| v.trim().parse::<usize>().unwrap_or(0)))
        .unwrap_or(0);
    request.len() >= end + 4 + length
}

fn http_conn(name: &str, base_url: &str, token: &str) -> Value {
    json!({"name": name, "provider": "http", "settings": {"base_url": base_url, "auth": "bearer"}, "secrets": {"token": token}})
}

async fn call_ok(api: &Api, who: Who<'_>, method: &str, path: &str, body: Option<Value>) -> Value {
    let (st, v, text) = api.call(who, method, path, body).await;
    assert!(st.is_success(), "{method} {path}: {st} {text}");
    v
}

fn audit_details(audit: &Value, action: &str) -> Vec<Value> {
    audit["items"].as_array().unwrap().iter().filter(|e| e["action"] == action).map(|e| e["detail"].clone()).collect()
}

// ---------------------------------------------------------------------------------------------
// Promise 17

/// A key with only `PROD:connections:rw` re-points a PROD http connection at a server it
/// controls and runs the test, then fetches the run-time credential: the stored token goes
/// nowhere, because the new destination dropped it. A re-point that brings its own token sends
/// that one.
#[tokio::test]
async fn promise_17_a_repointed_connection_never_sends_its_stored_token() {
    let capture = Capture::start().await;
    for db in backends().await {
        let api = Api::new(open(&db).await);
        let admin = key(&api.s, &["PROD:connections:rw", "PROD:integrations:rw", "PROD:bindings:rw", "PROD:tokens:read", "PROD:audit:read"]).await;
        call_ok(&api, Who::Key(&admin), "POST", "/api/v1/environments/PROD/connections", Some(http_conn("Billing", "https://billing.example.com", PROD_TOKEN)))
            .await;
        call_ok(&api, Who::Key(&admin), "PUT", "/api/v1/environments/PROD/integrations/Billing_Sync", Some(json!({"provider": "http"}))).await;
        call_ok(&api, Who::Key(&admin), "PUT", "/api/v1/environments/PROD/integrations/Billing_Sync/binding", Some(json!({"connection": "Billing"}))).await;

        let attacker = key(&api.s, &["PROD:connections:rw"]).await;
        let moved = call_ok(
            &api,
            Who::Key(&attacker),
            "PATCH",
            "/api/v1/environments/PROD/connections/Billing",
            Some(json!({"settings": {"base_url": capture.url()}})),
        )
        .await;
        assert_eq!(moved["settings"]["base_url"], capture.url());
        assert_eq!(moved["secrets_set"], json!({}), "the token did not move with the connection: {moved}");

        let result = call_ok(&api, Who::Key(&attacker), "POST", "/api/v1/environments/PROD/connections/Billing/test", None).await;
        assert_eq!(result["ok"], false, "{result}");
        assert!(result["detail"].as_str().unwrap().contains("token is not set"), "the test says the secret must be set again: {result}");
        let (st, _, text) = api.call(Who::Key(&admin), "POST", "/api/v1/environments/PROD/integrations/Billing_Sync/token", None).await;
        assert!(!text.contains(PROD_TOKEN), "the broker handed out the old token for the new address: {st} {text}");
        assert!(server::connections::open_secret(&api.s.db, &api.s.vault, "PROD", "Billing", "token").await.is_err(), "the token is gone");
        assert!(!capture.requests().iter().any(|r| r.contains(PROD_TOKEN)), "the capture server saw the PROD token");

        // The audit trail says which secrets ended, and why.
        let audit = call_ok(&api, Who::Key(&admin), "GET", "/api/v1/audit?environment=PROD", None).await;
        let update = audit_details(&audit, "connection.update").into_iter().next().expect("audited");
        assert_eq!((&update["destination_changed"], &update["dropped_secrets"]), (&json!(["base_url"]), &json!(["token"])), "{update}");

        // Whoever re-points with a token of their own sends that one, and only that one.
        call_ok(
            &api,
            Who::Key(&attacker),
            "PATCH",
            "/api/v1/environments/PROD/connections/Billing",
            Some(json!({"settings": {"base_url": format!("{}/v2", capture.url())}, "secrets": {"token": "the-new-token"}})),
        )
        .await;
        let result = call_ok(&api, Who::Key(&attacker), "POST", "/api/v1/environments/PROD/connections/Billing/test", None).await;
        assert_eq!(result["ok"], true, "{result}");
        let seen = capture.requests();
        assert!(seen.iter().any(|r| r.contains("the-new-token")), "{seen:?}");
        assert!(!seen.iter().any(|r| r.contains(PROD_TOKEN)), "{seen:?}");

        // Settings that do not say where the credential goes keep it; so does the same URL
        // written differently.
        let same = call_ok(
            &api,
            Who::Key(&attacker),
            "PATCH",
            "/api/v1/environments/PROD/connections/Billing",
            Some(json!({"settings": {"base_url": format!("{}/v2/", capture.url().replace("http://", "HTTP://")), "auth": "header", "header_name": "X-Key"}})),
        )
        .await;
        assert!(same["secrets_set"]["token"].is_string(), "{same}");
    }
}

/// A stand-in Salesforce with a working connection, its certificate and connected app.
async fn salesforce_connection(api: &Api, k: &str, sf: &StandIn, base: &str) {
    sf.add_user(USER, true);
    let settings = json!({"login_url": base, "username": USER, "admin_email": "sf-admin@acme.com"});
    call_ok(api, Who::Key(k), "POST", "/api/v1/environments/PROD/connections", Some(json!({"name": "SF", "provider": "salesforce", "settings": settings})))
        .await;
    call_ok(api, Who::Key(k), "POST", "/api/v1/environments/PROD/connections/SF/certificate", Some(json!({}))).await;
    let (_, _, pem) = api.call(Who::Key(k), "GET", "/api/v1/environments/PROD/connections/SF/certificate", None).await;
    let consumer_key = "3MVG9security".to_string();
    sf.add_app(ConnectedApp {
        consumer_key: consumer_key.clone(),
        certificate_pem: pem,
        admin_approved: true,
        assigned_users: [USER.to_string()].into(),
        ip_restricted: false,
    })
    .unwrap();
    call_ok(api, Who::Key(k), "PATCH", "/api/v1/environments/PROD/connections/SF", Some(json!({"settings": {"consumer_key": consumer_key}}))).await;
    let result = call_ok(api, Who::Key(k), "POST", "/api/v1/environments/PROD/connections/SF/test", None).await;
    assert_eq!(result["ok"], true, "{result}");
}

/// The same key re-points a Salesforce connection's login URL (keeping the audience at
/// Salesforce's): the new host never receives an assertion signed with the connection's key,
/// because the key is retired with the change. A host that is not Salesforce's is refused.
#[tokio::test]
async fn promise_17_a_repointed_salesforce_login_url_retires_the_key() {
    let capture = Capture::start().await;
    for db in backends().await {
        let api = Api::new(open(&db).await);
        let admin = key(&api.s, &["PROD:connections:rw", "PROD:audit:read"]).await;
        let sf = StandIn::new();
        let base = sf.spawn().await.unwrap();
        salesforce_connection(&api, &admin, &sf, &base).await;

        let attacker = key(&api.s, &["PROD:connections:rw"]).await;
        let path = "/api/v1/environments/PROD/connections/SF";
        for bad in ["https://login.salesforce.com.evil.example", "https://evil.example.com"] {
            let (st, err, text) = api.call(Who::Key(&attacker), "PATCH", path, Some(json!({"settings": {"login_url": bad}}))).await;
            assert_eq!(st, 422, "{text}");
            assert_eq!(err["error"]["details"][0]["field"], "settings.login_url", "{text}");
            assert!(err["error"]["details"][0]["message"].as_str().unwrap().contains("not a Salesforce login host"), "{text}");
        }
        let (st, _, text) = api.call(Who::Key(&attacker), "PATCH", path, Some(json!({"settings": {"audience": "https://evil.example.com"}}))).await;
        assert_eq!(st, 422, "{text}");

        // A loopback address is a local stand-in's: accepted as a setting (and reached only
        // under CONNVAULT_ALLOW_LOOPBACK=1), but the key does not go with it.
        let moved = call_ok(
            &api,
            Who::Key(&attacker),
            "PATCH",
            path,
            Some(json!({"settings": {"login_url": capture.url(), "audience": "https://login.salesforce.com"}})),
        )
        .await;
        assert!(moved["secrets_set"].as_object().unwrap().is_empty(), "the private key and the session are dropped: {moved}");
        let result = call_ok(&api, Who::Key(&attacker), "POST", &format!("{path}/test"), None).await;
        assert_eq!(result["ok"], false, "{result}");
        assert!(result["detail"].as_str().unwrap().contains("no certificate"), "{result}");
        assert!(capture.requests().is_empty(), "the new login host received: {:?}", capture.requests());
        let status = call_ok(&api, Who::Key(&attacker), "GET", &format!("{path}/status"), None).await;
        assert!(status["certificate"].is_null() && status["summary"].as_str().unwrap().contains("no certificate"), "{status}");
        let (st, _, _) = api.call(Who::Key(&attacker), "GET", &format!("{path}/certificate"), None).await;
        assert_eq!(st, 404, "the certificate is retired with its key");
        let audit = call_ok(&api, Who::Key(&admin), "GET", "/api/v1/audit?environment=PROD", None).await;
        let update = audit_details(&audit, "connection.update").into_iter().find(|d| d["destination_changed"].is_array()).expect("audited");
        assert_eq!(update["retired_signing_key"], true, "{update}");
        assert!(update["dropped_secrets"].as_array().unwrap().contains(&json!("private_key")), "{update}");

        // Back at Salesforce, the connection needs a new certificate: the old one is gone.
        call_ok(&api, Who::Key(&admin), "PATCH", path, Some(json!({"settings": {"login_url": base, "audience": null}}))).await;
        let result = call_ok(&api, Who::Key(&admin), "POST", &format!("{path}/test"), None).await;
        assert!(result["detail"].as_str().unwrap().contains("no certificate"), "{result}");
        assert!(capture.requests().is_empty());
    }
}

/// A changed audience alone retires the key as well.
#[tokio::test]
async fn promise_17_a_changed_audience_retires_the_key() {
    for db in backends().await {
        let api = Api::new(open(&db).await);
        let admin = key(&api.s, &["PROD:connections:rw"]).await;
        let sf = StandIn::new();
        let base = sf.spawn().await.unwrap();
        salesforce_connection(&api, &admin, &sf, &base).await;
        let path = "/api/v1/environments/PROD/connections/SF";
        // A setting that is not a destination keeps the key (the cached session goes).
        let kept = call_ok(&api, Who::Key(&admin), "PATCH", path, Some(json!({"settings": {"session_lifetime_minutes": 60}}))).await;
        assert!(kept["secrets_set"]["private_key"].is_string(), "{kept}");
        let moved = call_ok(&api, Who::Key(&admin), "PATCH", path, Some(json!({"settings": {"audience": "https://test.salesforce.com"}}))).await;
        assert!(moved["secrets_set"].as_object().unwrap().is_empty(), "{moved}");
        let status = call_ok(&api, Who::Key(&admin), "GET", &format!("{path}/status"), None).await;
        assert_eq!(status["state"], "no_certificate", "{status}");
    }
}

/// Import with `overwrite_settings` (and placeholders) from a bundle that someone with DEV
/// rights shaped: where a credential goes is an environment setting, which a bundle does not
/// carry (issue 18) and an import never compares or writes, not even from an older bundle that
/// still has it. PROD keeps its own destination and token; nothing is sent anywhere.
#[tokio::test]
async fn promise_17_an_import_never_changes_a_destination() {
    let capture = Capture::start().await;
    for db in backends().await {
        let api = Api::new(open(&db).await);
        let prod = key(&api.s, &["PROD:connections:rw", "PROD:promotion:rw"]).await;
        call_ok(&api, Who::Key(&prod), "POST", "/api/v1/environments/PROD/connections", Some(http_conn("Billing", "https://billing.example.com", PROD_TOKEN)))
            .await;
        let dev = key(&api.s, &["DEV:connections:rw", "DEV:promotion:read"]).await;
        call_ok(&api, Who::Key(&dev), "POST", "/api/v1/environments/DEV/connections", Some(http_conn("Billing", &capture.url(), "dev-token"))).await;
        call_ok(&api, Who::Key(&dev), "POST", "/api/v1/environments/DEV/connections", Some(http_conn("Other", &capture.url(), "dev-token"))).await;
        let bundle = call_ok(&api, Who::Key(&dev), "GET", "/api/v1/environments/DEV/export", None).await;
        assert!(!bundle.to_string().contains(&capture.url()), "the bundle carries no destination: {bundle}");
        // The same bundle as an older export (format_version 1) would have it: DEV's URL in it.
        let mut old = bundle.clone();
        old["format_version"] = json!(1);
        for c in old["connections"].as_array_mut().unwrap() {
            c["settings"]["base_url"] = json!(capture.url());
        }
        old["digest"] = json!(server::promotion::digest_of(&old));

        for b in [&bundle, &old] {
            let path = "/api/v1/environments/PROD/import?mode=plan&overwrite_settings=true&create_placeholders=true";
            let (st, plan, text) = api.call(Who::Key(&prod), "POST", path, Some(b.clone())).await;
            assert_eq!(st, 200, "{text}");
            let change = plan["changes"].as_array().unwrap().iter().find(|c| c["name"] == "Billing").unwrap().clone();
            assert_eq!(change["action"], "unchanged", "{plan}");
            let path = "/api/v1/environments/PROD/import?mode=apply&overwrite_settings=true&create_placeholders=true";
            let (st, _, text) = api.call(Who::Key(&prod), "POST", path, Some(b.clone())).await;
            assert_eq!(st, 200, "{text}");
            let billing = call_ok(&api, Who::Key(&prod), "GET", "/api/v1/environments/PROD/connections/Billing", None).await;
            assert_eq!(billing["settings"]["base_url"], "https://billing.example.com");
            let token = server::connections::open_secret(&api.s.db, &api.s.vault, "PROD", "Billing", "token").await.unwrap();
            assert_eq!(token.expose_secret(), PROD_TOKEN);
            // The placeholder goes nowhere until PROD says where.
            let other = call_ok(&api, Who::Key(&prod), "GET", "/api/v1/environments/PROD/connections/Other", None).await;
            assert_eq!(other["settings"], json!({"auth": "bearer"}), "{other}");
        }
        assert!(capture.requests().is_empty());
    }
}

// ---------------------------------------------------------------------------------------------
// Promise 18

/// A person with a role in each environment (or none), signed in.
async fn person(s: &Services, email: &str, roles: &[(&str, Role)]) -> (i64, String) {
    let op = Actor::operator();
    let u = users::create(&s.db, &op, email, &SecretString::from(PASSWORD), false).await.unwrap();
    for (env, role) in roles {
        users::set_role(&s.db, &op, u.id, env, Some(*role)).await.unwrap();
    }
    let (_, token) = server::sessions::sign_in(s.sessions(), email, &SecretString::from(PASSWORD), None).await.unwrap();
    (u.id, token.expose_secret().to_string())
}

/// A key made through the API by a signed-in person; returns (id, key).
async fn key_of(api: &Api, session: &str, grants: Value) -> (i64, String) {
    let made = call_ok(api, Who::Session(session), "POST", "/api/v1/api-keys", Some(json!({"name": "made", "grants": grants}))).await;
    (made["id"].as_i64().unwrap(), made["key"].as_str().unwrap().to_string())
}

fn rw(env: &str, resource: &str) -> Vec<Value> {
    vec![json!({"environment": env, "resource": resource, "access": "read"}), json!({"environment": env, "resource": resource, "access": "write"})]
}

const ADMIN_EVERYWHERE: [(&str, Role); 3] = [("DEV", Role::Administrator), ("QA", Role::Administrator), ("PROD", Role::Administrator)];

/// A non-owner who is Administrator in every environment makes a `*` key; an owner then adds
/// SECURE: the key does not reach SECURE, because its creator does not.
#[tokio::test]
async fn promise_18_a_star_key_of_a_non_owner_does_not_reach_a_later_environment() {
    for db in backends().await {
        let api = Api::new(db.open().await);
        let (_, admin) = person(&api.s, "admin@example.com", &ADMIN_EVERYWHERE).await;
        let (_, k) = key_of(&api, &admin, json!(rw("*", "connections"))).await;
        server::environments::add(&api.s.db, &Actor::operator(), "SECURE", None).await.unwrap();
        let owner = key(&api.s, &["SECURE:connections:rw"]).await;
        call_ok(&api, Who::Key(&owner), "POST", "/api/v1/environments/SECURE/connections", Some(http_conn("Vault", "https://secure.example.com", "s"))).await;

        let (st, _, text) = api.call(Who::Key(&k), "GET", "/api/v1/environments/SECURE/connections", None).await;
        assert_eq!(st, 403, "{text}");
        assert!(text.contains("admin@example.com, who made the key, does not have it now"), "{text}");
        let (st, _, text) =
            api.call(Who::Key(&k), "POST", "/api/v1/environments/SECURE/connections", Some(http_conn("Mine", "https://x.example.com", "t"))).await;
        assert_eq!(st, 403, "{text}");
        let (st, _, _) = api.call(Who::Key(&k), "GET", "/api/v1/environments/DEV/connections", None).await;
        assert_eq!(st, 200, "where the creator is administrator, the key works");
    }
}

/// Deactivation ends a person's keys at once (401), on the API and on the token broker's fast
/// path; a demotion narrows them at once (403), and a role given back widens them again.
#[tokio::test]
async fn promise_18_deactivated_or_demoted_creators_take_their_keys_with_them() {
    for db in backends().await {
        let api = Api::new(db.open().await);
        let setup = key(&api.s, &["DEV:connections:rw", "DEV:integrations:rw", "DEV:bindings:rw"]).await;
        call_ok(&api, Who::Key(&setup), "POST", "/api/v1/environments/DEV/connections", Some(http_conn("Billing", "https://billing.example.com", "tok"))).await;
        call_ok(&api, Who::Key(&setup), "PUT", "/api/v1/environments/DEV/integrations/Sync", Some(json!({"provider": "http"}))).await;
        call_ok(&api, Who::Key(&setup), "PUT", "/api/v1/environments/DEV/integrations/Sync/binding", Some(json!({"connection": "Billing"}))).await;

        let (dev_id, dev) = person(&api.s, "dev@example.com", &[("DEV", Role::Administrator)]).await;
        let mut grants = rw("DEV", "connections");
        grants.push(json!({"environment": "DEV", "resource": "tokens", "access": "read"}));
        let (_, k) = key_of(&api, &dev, json!(grants)).await;
        let token_path = "/api/v1/environments/DEV/integrations/Sync/token";
        assert_eq!(api.call(Who::Key(&k), "POST", token_path, None).await.0, 200);

        // Demoted to viewer: no tokens, no changes to connections, still reading them; no role:
        // nothing; administrator again: everything the key grants.
        let op = Actor::operator();
        users::set_role(&api.s.db, &op, dev_id, "DEV", Some(Role::Viewer)).await.unwrap();
        let (st, _, text) = api.call(Who::Key(&k), "POST", token_path, None).await;
        assert_eq!(st, 403, "{text}");
        let (st, _, text) =
            api.call(Who::Key(&k), "PATCH", "/api/v1/environments/DEV/connections/Billing", Some(json!({"settings": {"auth": "bearer"}}))).await;
        assert_eq!(st, 403, "{text}");
        assert_eq!(api.call(Who::Key(&k), "GET", "/api/v1/environments/DEV/connections", None).await.0, 200, "a viewer reads connections");
        users::set_role(&api.s.db, &op, dev_id, "DEV", None).await.unwrap();
        assert_eq!(api.call(Who::Key(&k), "GET", "/api/v1/environments/DEV/connections", None).await.0, 403);
        users::set_role(&api.s.db, &op, dev_id, "DEV", Some(Role::Administrator)).await.unwrap();
        assert_eq!(api.call(Who::Key(&k), "POST", token_path, None).await.0, 200);

        users::deactivate(&api.s.db, &op, dev_id).await.unwrap();
        for (method, path) in [("GET", "/api/v1/environments/DEV/connections"), ("POST", token_path)] {
            let (st, _, text) = api.call(Who::Key(&k), method, path, None).await;
            assert_eq!(st, 401, "{method} {path}: {text}");
            assert!(text.contains("dev@example.com who made it is deactivated"), "{text}");
        }
    }
}

/// A key with `api_keys:write` makes keys only inside itself: within its addresses, expiring
/// no later, no wider; and revoking it revokes what it made, and what those made.
#[tokio::test]
async fn promise_18_a_key_made_by_a_key_stays_within_it_and_ends_with_it() {
    for db in backends().await {
        let api = Api::new(db.open().await);
        let expires = server::db::days_from_now(10);
        let grants = server::api_keys::parse_grant("*:api_keys:rw").unwrap().into_iter().chain(server::api_keys::parse_grant("DEV:connections:read").unwrap());
        let (parent, parent_key) = server::api_keys::create(
            &api.s.db,
            &Actor::operator(),
            server::api_keys::Creator::Operator,
            server::api_keys::NewApiKey {
                name: "pipeline".into(),
                grants: grants.collect(),
                allowed_addresses: vec!["192.0.2.0/24".into()],
                expires_at: Some(expires.clone()),
            },
        )
        .await
        .unwrap();
        let parent_key = parent_key.expose_secret().to_string();
        let read_dev = json!([{"environment": "DEV", "resource": "connections", "access": "read"}]);
        let child = |extra: Value| {
            let mut body = json!({"name": "child", "grants": read_dev});
            body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            body
        };

        // No address limit under a limited parent: refused, saying what to do.
        let (st, err, text) = api.call(Who::Key(&parent_key), "POST", "/api/v1/api-keys", Some(child(json!({})))).await;
        assert_eq!(st, 422, "{text}");
        assert_eq!(err["error"]["details"][0]["field"], "allowed_addresses", "{text}");
        assert!(text.contains("192.0.2.0/24"), "{text}");
        let (st, err, text) = api.call(Who::Key(&parent_key), "POST", "/api/v1/api-keys", Some(child(json!({"allowed_addresses": ["10.0.0.0/8"]})))).await;
        assert_eq!((st.as_u16(), err["error"]["details"][0]["field"].as_str()), (422, Some("allowed_addresses[0]")), "{text}");
        let (st, _, text) = api.call(Who::Key(&parent_key), "POST", "/api/v1/api-keys", Some(child(json!({"allowed_addresses": ["192.0.0.0/16"]})))).await;
        assert_eq!(st, 422, "a wider range is not within: {text}");
        // Outliving the parent: refused. Wider grants: refused.
        let later = server::db::days_from_now(30);
        let (st, err, text) =
            api.call(Who::Key(&parent_key), "POST", "/api/v1/api-keys", Some(child(json!({"allowed_addresses": ["192.0.2.1"], "expires_at": later})))).await;
        assert_eq!((st.as_u16(), err["error"]["details"][0]["field"].as_str()), (422, Some("expires_at")), "{text}");
        let wider =
            json!({"name": "child", "grants": [{"environment": "DEV", "resource": "connections", "access": "write"}], "allowed_addresses": ["192.0.2.1"]});
        assert_eq!(api.call(Who::Key(&parent_key), "POST", "/api/v1/api-keys", Some(wider)).await.0, 403);

        // Inside it: made, expiring when the parent does, recording its parent.
        let body = child(json!({"allowed_addresses": ["192.0.2.128/25"]}));
        let mut body_with_keys = body.clone();
        body_with_keys["grants"].as_array_mut().unwrap().extend(rw("*", "api_keys"));
        let (st, made, text) = api.call(Who::Key(&parent_key), "POST", "/api/v1/api-keys", Some(body_with_keys)).await;
        assert_eq!(st, 201, "{text}");
        assert_eq!(made["parent_id"].as_i64(), Some(parent.id), "{made}");
        assert_eq!(made["expires_at"].as_str(), Some(expires.as_str()), "a missing expiry is the parent's: {made}");
        let child_key = made["key"].as_str().unwrap().to_string();
        let (st, _, text) = api.call_from(Who::Key(&child_key), "GET", "/api/v1/environments/DEV/connections", None, "192.0.2.200:5000").await;
        assert_eq!(st, 200, "{text}");
        // A grandchild, inside the child.
        let (st, grand, text) = api
            .call_from(Who::Key(&child_key), "POST", "/api/v1/api-keys", Some(child(json!({"allowed_addresses": ["192.0.2.200"]}))), "192.0.2.200:5000")
            .await;
        assert_eq!(st, 201, "{text}");
        let grand_key = grand["key"].as_str().unwrap().to_string();
        assert_eq!(api.call_from(Who::Key(&grand_key), "GET", "/api/v1/environments/DEV/connections", None, "192.0.2.200:5000").await.0, 200);

        // Revoking the parent revokes both at once.
        server::api_keys::revoke(&api.s.db, &Actor::operator(), parent.id).await.unwrap();
        for k in [&child_key, &grand_key] {
            let (st, _, text) = api.call_from(Who::Key(k), "GET", "/api/v1/environments/DEV/connections", None, "192.0.2.200:5000").await;
            assert_eq!(st, 401, "{text}");
        }
        let listed = server::api_keys::page(&api.s.db, &Default::default(), None).await.unwrap().items;
        assert!(listed.iter().all(|k| k.revoked_at.is_some()), "{listed:?}");
    }
}

/// A key made by a person's key acts for that person: it ends when they are deactivated.
#[tokio::test]
async fn promise_18_a_key_made_by_a_persons_key_ends_with_the_person() {
    for db in backends().await {
        let api = Api::new(db.open().await);
        let (admin_id, admin) = person(&api.s, "admin@example.com", &ADMIN_EVERYWHERE).await;
        let mut grants = rw("*", "api_keys");
        grants.push(json!({"environment": "DEV", "resource": "connections", "access": "read"}));
        let (_, k) = key_of(&api, &admin, json!(grants)).await;
        let made = call_ok(
            &api,
            Who::Key(&k),
            "POST",
            "/api/v1/api-keys",
            Some(json!({"name": "child", "grants": [{"environment": "DEV", "resource": "connections", "access": "read"}]})),
        )
        .await;
        let child = made["key"].as_str().unwrap().to_string();
        assert_eq!(api.call(Who::Key(&child), "GET", "/api/v1/environments/DEV/connections", None).await.0, 200);
        // The parent cannot make keys for an environment its creator no longer manages.
        users::set_role(&api.s.db, &Actor::operator(), admin_id, "QA", Some(Role::Viewer)).await.unwrap();
        let c2 = json!({"name": "c2", "grants": [{"environment": "DEV", "resource": "connections", "access": "read"}]});
        let (st, _, text) = api.call(Who::Key(&k), "POST", "/api/v1/api-keys", Some(c2)).await;
        assert_eq!(st, 403, "api_keys on * needs its creator to manage keys everywhere now: {text}");
        users::deactivate(&api.s.db, &Actor::operator(), admin_id).await.unwrap();
        let (st, _, text) = api.call(Who::Key(&child), "GET", "/api/v1/environments/DEV/connections", None).await;
        assert_eq!(st, 401, "{text}");
    }
}

/// Grants follow the environment, not its name: a rename keeps keys working (and lists them
/// under the new name), and a new environment with the old name inherits nothing.
#[tokio::test]
async fn promise_18_grants_follow_the_environment_through_a_rename() {
    for db in backends().await {
        let api = Api::new(db.open().await);
        let k = key(&api.s, &["DEV:connections:read"]).await;
        let (_, admin) = person(&api.s, "admin@example.com", &[("DEV", Role::Administrator)]).await;
        let (_, made) = key_of(&api, &admin, json!([{"environment": "dev", "resource": "connections", "access": "read"}])).await;
        server::environments::rename(&api.s.db, &Actor::operator(), "DEV", "DEVELOPMENT").await.unwrap();
        server::environments::add(&api.s.db, &Actor::operator(), "DEV", None).await.unwrap();
        for k in [&k, &made] {
            let (st, _, text) = api.call(Who::Key(k), "GET", "/api/v1/environments/DEVELOPMENT/connections", None).await;
            assert_eq!(st, 200, "{text}");
            let (st, _, text) = api.call(Who::Key(k), "GET", "/api/v1/environments/DEV/connections", None).await;
            assert_eq!(st, 403, "the new DEV inherited a grant: {text}");
        }
        let all = key(&api.s, &["*:api_keys:read"]).await;
        let listed = call_ok(&api, Who::Key(&all), "GET", "/api/v1/api-keys", None).await;
        let environments: Vec<&str> =
            listed["items"].as_array().unwrap().iter().flat_map(|k| k["grants"].as_array().unwrap()).filter_map(|g| g["environment"].as_str()).collect();
        assert!(environments.contains(&"DEVELOPMENT") && !environments.contains(&"DEV"), "{environments:?}");
    }
}

/// The revoke check of a key whose environment was renamed: someone without rights there
/// cannot revoke it (it used to find no environment by the old name, and let anyone through).
#[tokio::test]
async fn promise_18_the_revoke_check_holds_after_a_rename() {
    for db in backends().await {
        let api = Api::new(db.open().await);
        let (_, admin) = person(&api.s, "admin@example.com", &[("DEV", Role::Administrator)]).await;
        let (id, _) = key_of(&api, &admin, json!([{"environment": "DEV", "resource": "connections", "access": "read"}])).await;
        let (_, nobody) = person(&api.s, "viewer@example.com", &[("QA", Role::Viewer)]).await;
        server::environments::rename(&api.s.db, &Actor::operator(), "DEV", "SANDBOX").await.unwrap();
        let (st, _, text) = api.call(Who::Session(&nobody), "DELETE", &format!("/api/v1/api-keys/{id}"), None).await;
        assert_eq!(st, 403, "{text}");
        let (_, other_admin) = person(&api.s, "admin2@example.com", &[("SANDBOX", Role::Administrator)]).await;
        let (st, _, text) = api.call(Who::Session(&other_admin), "DELETE", &format!("/api/v1/api-keys/{id}"), None).await;
        assert_eq!(st, 204, "an administrator of the renamed environment may: {text}");
    }
}

/// Section 4: an expiry that does not read as a time counts as passed, not as "never".
#[tokio::test]
async fn an_unreadable_expiry_fails_closed() {
    for db in backends().await {
        let api = Api::new(db.open().await);
        let k = key(&api.s, &["DEV:connections:read"]).await;
        assert_eq!(api.call(Who::Key(&k), "GET", "/api/v1/environments/DEV/connections", None).await.0, 200);
        db.exec("UPDATE api_keys SET expires_at = 'next tuesday'").await;
        let (st, _, text) = api.call(Who::Key(&k), "GET", "/api/v1/environments/DEV/connections", None).await;
        assert_eq!(st, 401, "{text}");
        assert!(text.contains("expiry cannot be read"), "{text}");
        // The token broker reads the key in its own query: refused the same.
        let (st, _, _) = api.call(Who::Key(&k), "POST", "/api/v1/environments/DEV/integrations/X/token", None).await;
        assert_eq!(st, 401);
        // A supplied expiry that does not read is refused, in any form.
        let input = server::api_keys::NewApiKey {
            name: "x".into(),
            grants: server::api_keys::parse_grant("DEV:connections:read").unwrap(),
            allowed_addresses: vec![],
            expires_at: Some("2027-02-30T00:00:00Z".into()),
        };
        assert!(server::api_keys::create(&api.s.db, &Actor::operator(), server::api_keys::Creator::Operator, input).await.is_err());
    }
}

/// The migration's conversion of name-based grants (and of keys made by keys before parents
/// were recorded), run on rows in the old form: names become ids (case-insensitively), `*`
/// stays `*`, a grant for a name no environment has is dropped, and a key-made key is linked to
/// its maker and ends with it.
#[tokio::test]
async fn the_migration_moves_name_grants_to_ids_and_links_key_made_keys() {
    for db in backends().await {
        let api = Api::new(db.open().await);
        let file = match db.kind {
            common::Kind::Sqlite => include_str!("../../../migrations/sqlite/20261201000001_api_key_grants_by_id.sql"),
            common::Kind::Postgres => include_str!("../../../migrations/postgres/20261201000001_api_key_grants_by_id.sql"),
        };
        let t = server::db::now();
        let legacy = r#"[{"environment": "qa", "resource": "tokens", "access": "read"}, {"environment": "*", "resource": "*", "access": "write"}, {"environment": "GONE", "resource": "connections", "access": "read"}]"#;
        let parent_value = "cvk_0000aaaa_parent-secret";
        let child_value = "cvk_0000bbbb_child-secret";
        for (name, prefix, value, by) in
            [("parent", "cvk_0000aaaa", parent_value, "operator"), ("child", "cvk_0000bbbb", child_value, "API key parent (cvk_0000aaaa)")]
        {
            db.exec(&format!(
                "INSERT INTO api_keys (name, prefix, key_hash, grants, allowed_addresses, created_by, created_at, updated_at) VALUES ('{name}', '{prefix}', '{}', '{legacy}', '[]', '{by}', '{t}', '{t}')",
                server::tokens::digest(value)
            ))
            .await;
        }
        // The statements that convert data (the schema changes have run already).
        let statements: Vec<String> = file
            .split(";\n")
            .map(|st| st.lines().filter(|l| !l.trim_start().starts_with("--")).collect::<Vec<_>>().join("\n"))
            .filter(|st| st.trim_start().starts_with("UPDATE"))
            .collect();
        assert_eq!(statements.len(), 2, "{statements:?}");
        for st in &statements {
            db.exec(st).await;
        }
        let keys = server::api_keys::page(&api.s.db, &Default::default(), None).await.unwrap().items;
        let envs = server::environments::list(&api.s.db).await.unwrap();
        let qa = envs.iter().find(|e| e.name == "QA").unwrap().id;
        let (parent, child) = (keys.iter().find(|k| k.name == "parent").unwrap(), keys.iter().find(|k| k.name == "child").unwrap());
        for k in [parent, child] {
            let scopes: Vec<(server::api_keys::Scope, &str)> = k.grants.iter().map(|g| (g.scope, g.resource.as_str())).collect();
            assert_eq!(scopes, [(server::api_keys::Scope::Env(qa), "tokens"), (server::api_keys::Scope::All, "*")], "{k:?}");
        }
        assert_eq!((parent.parent_id, child.parent_id), (None, Some(parent.id)));
        assert_eq!(api.call(Who::Key(child_value), "POST", "/api/v1/environments/QA/integrations/X/token", None).await.0, 404, "works: no such integration");
        server::api_keys::revoke(&api.s.db, &Actor::operator(), parent.id).await.unwrap();
        assert_eq!(api.call(Who::Key(child_value), "POST", "/api/v1/environments/QA/integrations/X/token", None).await.0, 401);
    }
}
