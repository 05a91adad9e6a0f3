//! The REST API through the real router, on every backend: promises 6, 7, 8, 10 (API keys),
//! 11 (audit of changes) and the error format.

use crate::common;

use axum::body::Body;
use axum::http::Request;
use common::{backends, key, session, Api, Who};
use serde_json::{json, Value};
use server::users::Role;
use tower::ServiceExt;

const MARKER: &str = "MARKER-api-6f2b-never-in-a-response";

fn conn(name: &str) -> Value {
    json!({"name": name, "provider": "http", "settings": {"base_url": "https://x.example.com", "auth": "bearer"}, "secrets": {"token": MARKER}})
}

/// Promise 8: deny by default, per environment and resource, for sessions and keys alike.
#[tokio::test]
async fn promise_8_role_and_grant_by_resource_by_method_table() {
    for db in backends().await {
        let api = Api::new(db.open().await);
        let s = &api.s;
        let owner = session(s, "owner@example.com", None, true).await;
        let admin = session(s, "admin@example.com", Some(("DEV", Role::Administrator)), false).await;
        let dev = session(s, "dev@example.com", Some(("DEV", Role::Developer)), false).await;
        let viewer = session(s, "viewer@example.com", Some(("DEV", Role::Viewer)), false).await;
        let qa_dev = session(s, "qa@example.com", Some(("QA", Role::Developer)), false).await;
        let k_read = key(s, &["DEV:connections:read"]).await;
        let k_write = key(s, &["DEV:connections:write"]).await;
        let k_all = key(s, &["*:*:rw"]).await;
        let k_tokens = key(s, &["DEV:tokens:read"]).await;

        // (who, GET list, POST create, GET one, PATCH, DELETE) on DEV connections.
        type Row<'a> = (&'a str, Who<'a>, [u16; 5]);
        let table: Vec<Row> = vec![
            ("nobody", Who::Nobody, [401, 401, 401, 401, 401]),
            ("owner", Who::Session(&owner), [200, 201, 200, 200, 204]),
            ("DEV administrator", Who::Session(&admin), [200, 201, 200, 200, 204]),
            ("DEV developer", Who::Session(&dev), [200, 201, 200, 200, 204]),
            ("DEV viewer", Who::Session(&viewer), [200, 403, 200, 403, 403]),
            ("QA developer", Who::Session(&qa_dev), [403, 403, 403, 403, 403]),
            ("key DEV:connections:read", Who::Key(&k_read), [200, 403, 200, 403, 403]),
            ("key DEV:connections:write (no read)", Who::Key(&k_write), [403, 201, 403, 200, 204]),
            ("key *:*:rw", Who::Key(&k_all), [200, 201, 200, 200, 204]),
            ("key DEV:tokens:read", Who::Key(&k_tokens), [403, 403, 403, 403, 403]),
            ("forged key", Who::Key("cvk_00000000_forged"), [401, 401, 401, 401, 401]),
        ];
        for (i, (label, who, expected)) in table.into_iter().enumerate() {
            // A connection each row may read, change and delete.
            let name = format!("Row{i}");
            let (st, _, body) = api.call(Who::Session(&owner), "POST", "/api/v1/environments/DEV/connections", Some(conn(&name))).await;
            assert_eq!(st, 201, "{body}");
            let got = [
                api.call(who, "GET", "/api/v1/environments/dev/connections", None).await.0.as_u16(),
                api.call(who, "POST", "/api/v1/environments/DEV/connections", Some(conn(&format!("New{i}")))).await.0.as_u16(),
                api.call(who, "GET", &format!("/api/v1/environments/DEV/connections/{name}"), None).await.0.as_u16(),
                api.call(
                    who,
                    "PATCH",
                    &format!("/api/v1/environments/DEV/connections/{name}"),
                    Some(json!({"settings": {"base_url": "https://y.example.com"}})),
                )
                .await
                .0
                .as_u16(),
                api.call(who, "DELETE", &format!("/api/v1/environments/DEV/connections/{name}"), None).await.0.as_u16(),
            ];
            assert_eq!(got, expected, "{:?} {label}", db.kind);
        }
        // QA is closed to DEV-only people; global resources need an owner or a * key.
        assert_eq!(api.call(Who::Session(&dev), "GET", "/api/v1/environments/QA/connections", None).await.0, 403);
        for path in ["/api/v1/users", "/api/v1/api-keys", "/api/v1/audit"] {
            assert_eq!(api.call(Who::Session(&admin), "GET", path, None).await.0, 403, "{path}");
            assert_eq!(api.call(Who::Session(&owner), "GET", path, None).await.0, 200, "{path}");
            assert_eq!(api.call(Who::Key(&k_all), "GET", path, None).await.0, 200, "{path}");
        }
        let (st, body, _) = api.call(Who::Session(&dev), "GET", "/api/v1/environments", None).await;
        assert_eq!(st, 200);
        assert_eq!(body["items"].as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap()).collect::<Vec<_>>(), ["DEV"]);
        let (_, body, _) = api.call(Who::Session(&dev), "GET", "/api/v1/audit?environment=DEV", None).await;
        assert!(body["items"].as_array().unwrap().iter().any(|e| e["action"] == "connection.create"), "{body}");
    }
}

/// Promise 8: nobody mints a key wider than their own rights.
#[tokio::test]
async fn promise_8_no_key_wider_than_its_creator() {
    for db in backends().await {
        let api = Api::new(db.open().await);
        let s = &api.s;
        let admin = session(s, "admin@example.com", Some(("DEV", Role::Administrator)), false).await;
        let dev = session(s, "dev@example.com", Some(("DEV", Role::Developer)), false).await;
        let body = |env: &str, res: &str, access: &str| json!({"name": "k", "grants": [{"environment": env, "resource": res, "access": access}]});
        assert_eq!(api.call(Who::Session(&admin), "POST", "/api/v1/api-keys", Some(body("DEV", "tokens", "read"))).await.0, 201);
        assert_eq!(api.call(Who::Session(&admin), "POST", "/api/v1/api-keys", Some(body("QA", "tokens", "read"))).await.0, 403, "no role in QA");
        assert_eq!(api.call(Who::Session(&admin), "POST", "/api/v1/api-keys", Some(body("*", "connections", "read"))).await.0, 403, "* covers QA and PROD");
        assert_eq!(
            api.call(Who::Session(&dev), "POST", "/api/v1/api-keys", Some(body("DEV", "connections", "read"))).await.0,
            403,
            "developers do not manage keys by default"
        );
        let k = key(s, &["DEV:connections:read", "*:api_keys:write"]).await;
        assert_eq!(api.call(Who::Key(&k), "POST", "/api/v1/api-keys", Some(body("DEV", "connections", "write"))).await.0, 403, "a key cannot mint a wider key");
        // Read-only resources offer only read; bad grants are explained with their path.
        let (st, b, _) = api.call(Who::Session(&admin), "POST", "/api/v1/api-keys", Some(body("DEV", "audit", "write"))).await;
        assert_eq!(st, 422);
        assert_eq!(b["error"]["details"][0]["field"], "grants[0].access");
    }
}

/// Promise 7: keys are random, stored only as a hash with a short prefix, shown exactly once.
/// Promise 10 (API keys): the 11th bad key from one address gets 429.
#[tokio::test]
async fn promise_7_and_10_api_keys() {
    for db in backends().await {
        let api = Api::new(db.open().await);
        let owner = session(&api.s, "owner@example.com", None, true).await;
        let (st, body, _) = api
            .call(
                Who::Session(&owner),
                "POST",
                "/api/v1/api-keys",
                Some(json!({"name": "release tool", "grants": [{"environment": "DEV", "resource": "connections", "access": "read"}]})),
            )
            .await;
        assert_eq!(st, 201, "{body}");
        let value = body["key"].as_str().unwrap().to_string();
        let prefix = body["prefix"].as_str().unwrap();
        assert!(value.starts_with(prefix) && prefix.starts_with("cvk_") && prefix.len() == 12, "{value}");
        assert!(value.len() >= prefix.len() + 1 + 43, "256 random bits");
        // Works; then never shown again, nor stored.
        assert_eq!(api.call(Who::Key(&value), "GET", "/api/v1/environments/DEV/connections", None).await.0, 200);
        let (_, _, listed) = api.call(Who::Session(&owner), "GET", "/api/v1/api-keys", None).await;
        assert!(listed.contains(prefix) && !listed.contains(&value), "{listed}");
        assert!(!db.all_text().await.contains(&value[prefix.len() + 1..]), "the key is stored");
        let (_, _, audit) = api.call(Who::Session(&owner), "GET", "/api/v1/audit", None).await;
        assert!(!audit.contains(&value));
        // Revoked at once.
        let id = body["id"].as_i64().unwrap();
        assert_eq!(api.call(Who::Session(&owner), "DELETE", &format!("/api/v1/api-keys/{id}"), None).await.0, 204);
        assert_eq!(api.call(Who::Key(&value), "GET", "/api/v1/environments/DEV/connections", None).await.0, 401);

        // Address limits.
        let (_, limited, _) = api
            .call(
                Who::Session(&owner),
                "POST",
                "/api/v1/api-keys",
                Some(
                    json!({"name": "ci", "grants": [{"environment": "DEV", "resource": "connections", "access": "read"}], "allowed_addresses": ["10.0.0.0/8"]}),
                ),
            )
            .await;
        let limited = limited["key"].as_str().unwrap();
        assert_eq!(api.call_from(Who::Key(limited), "GET", "/api/v1/environments/DEV/connections", None, "10.9.8.7:1").await.0, 200);
        assert_eq!(api.call_from(Who::Key(limited), "GET", "/api/v1/environments/DEV/connections", None, "192.0.2.9:1").await.0, 403);

        // Rate limit per address.
        for i in 0..10 {
            let st = api.call_from(Who::Key("cvk_deadbeef_guess"), "GET", "/api/v1/environments", None, "203.0.113.5:1").await.0;
            assert_eq!(st, 401, "attempt {}", i + 1);
        }
        let (st, body, _) = api.call_from(Who::Key("cvk_deadbeef_guess"), "GET", "/api/v1/environments", None, "203.0.113.5:1").await;
        assert_eq!(st, 429, "{body}");
        assert_eq!(body["error"]["code"], "too_many_requests");
        assert_eq!(api.call_from(Who::Key(limited), "GET", "/api/v1/environments", None, "10.1.1.1:1").await.0, 200, "other clients unaffected");
    }
}

/// Promise 6: a seeded secret never comes back from any GET route. Promise 11: every change
/// is audited without the value. Plus the error format.
#[tokio::test]
async fn promise_6_no_get_route_returns_a_secret_and_errors_are_explained() {
    for db in backends().await {
        let api = Api::new(db.open().await);
        let owner = session(&api.s, "owner@example.com", None, true).await;
        let k = key(&api.s, &["*:*:rw"]).await;
        assert_eq!(api.call(Who::Session(&owner), "POST", "/api/v1/environments/DEV/connections", Some(conn("Marked"))).await.0, 201);
        let (st, _, _) =
            api.call(Who::Key(&k), "PATCH", "/api/v1/environments/DEV/connections/Marked", Some(json!({"secrets": {"token": format!("{MARKER}-2")}}))).await;
        assert_eq!(st, 200);
        // An integration bound to it, so that its routes answer too.
        let (st, _, _) = api.call(Who::Key(&k), "PUT", "/api/v1/environments/DEV/integrations/Marked", Some(json!({"provider": "http"}))).await;
        assert_eq!(st, 201);
        let (st, _, _) = api.call(Who::Key(&k), "PUT", "/api/v1/environments/DEV/integrations/Marked/binding", Some(json!({"connection": "Marked"}))).await;
        assert_eq!(st, 200);
        // An email in the outbox (no mail server is configured), so that its routes answer too.
        let email = server::mail::Email {
            to: "admin@example.com".into(),
            subject: "A request".into(),
            text: "text".into(),
            html: "<p>html</p>".into(),
            attachments: vec![],
        };
        let server::mail::Delivery::Outbox { id: outbox_id } = api.s.mailer.send(&api.s.db, &api.s.vault, &email).await.unwrap() else { panic!("not kept") };
        // A Salesforce connection with a certificate and an open admin request, for its routes:
        // its private key must never come back either.
        let sf = json!({"name": "SF_Marked", "provider": "salesforce", "settings": {"login_url": "https://login.salesforce.com", "username": "int@acme.com"}});
        assert_eq!(api.call(Who::Key(&k), "POST", "/api/v1/environments/DEV/connections", Some(sf)).await.0, 201);
        let (st, issued, text) = api
            .call(
                Who::Key(&k),
                "POST",
                "/api/v1/environments/DEV/connections/SF_Marked/certificate",
                Some(json!({"send_request": true, "admin_email": "a@acme.com"})),
            )
            .await;
        assert_eq!(st, 201, "{text}");
        let (_, eml) = server::mail::eml(&api.s.db, &api.s.vault, issued["request"]["outbox_id"].as_i64().unwrap()).await.unwrap();
        let eml = String::from_utf8_lossy(&eml).replace("=\r\n", "").replace("=3D", "=");
        let link_token: String = eml[eml.find("token=").unwrap() + 6..].chars().take_while(|c| c.is_ascii_alphanumeric() || "-_".contains(*c)).collect();
        // A connection that signs in (its status route), its client secret the marker too.
        let oa = json!({"name": "OA_Marked", "provider": "oauth2", "settings": {"authorize_url": "https://auth.example.com/authorize", "token_url": "https://auth.example.com/token", "client_id": "abc"}, "secrets": {"client_secret": format!("{MARKER}-oauth")}});
        assert_eq!(api.call(Who::Key(&k), "POST", "/api/v1/environments/DEV/connections", Some(oa)).await.0, 201);
        // And a request for Marked's credentials, so that its page is read too.
        let (st, asked, text) =
            api.call(Who::Key(&k), "POST", "/api/v1/environments/DEV/connections/Marked/credential-request", Some(json!({"admin_email": "a@acme.com"}))).await;
        assert_eq!(st, 201, "{text}");
        let (_, eml) = server::mail::eml(&api.s.db, &api.s.vault, asked["outbox_id"].as_i64().unwrap()).await.unwrap();
        let eml = String::from_utf8_lossy(&eml).replace("=\r\n", "").replace("=3D", "=");
        let credential_token: String = eml[eml.find("token=").unwrap() + 6..].chars().take_while(|c| c.is_ascii_alphanumeric() || "-_".contains(*c)).collect();
        let private_key = server::connections::open_secret(&api.s.db, &api.s.vault, "DEV", "SF_Marked", "private_key").await.unwrap();
        let key_sample = private_key.expose_secret()[40..104].to_string();
        assert!(!eml.contains(&key_sample), "the request email carries only the certificate");
        let (st, hook, text) =
            api.call(Who::Key(&k), "POST", "/api/v1/environments/DEV/webhooks", Some(json!({"url": "https://hooks.example.com/in", "events": ["*"]}))).await;
        assert_eq!(st, 201, "{text}");
        let hook_id = hook["id"].as_i64().unwrap().to_string();
        // Every GET route the OpenAPI document lists (a test below checks it against the
        // router, so a new route cannot be left out), plus the list filters and feeds.
        let doc: Value = serde_json::from_str(server::api::openapi_json()).unwrap();
        let mut paths: Vec<String> = doc["paths"]
            .as_object()
            .unwrap()
            .iter()
            .filter(|(_, item)| item.get("get").is_some())
            .map(|(path, _)| {
                let salesforce = ["/certificate", "/status", "/admin-response"].iter().any(|p| path.ends_with(p));
                let name = if salesforce {
                    "SF_Marked"
                } else if path.ends_with("/sign-in") {
                    "OA_Marked"
                } else {
                    "Marked"
                };
                let id = if path.contains("/webhooks/") { hook_id.clone() } else { outbox_id.to_string() };
                let path = path.replace("{env}", "DEV").replace("{name}", name).replace("{id}", &id);
                if path.ends_with("/admin-response") {
                    format!("{path}?token={link_token}")
                } else if path.ends_with("/credential-response") {
                    format!("{path}?token={credential_token}")
                } else {
                    path
                }
            })
            .collect();
        assert!(paths.len() >= 7, "{paths:?}");
        for extra in [
            "/api/v1/environments/DEV/connections?provider=http",
            "/api/v1/environments/DEV/connections?q=mark",
            "/api/v1/environments/DEV/connections?since_id=0",
            "/api/v1/environments/DEV/connections?updated_since=2000-01-01T00:00:00Z",
            "/api/v1/audit?environment=DEV",
            "/api/v1/audit?since_id=0&limit=1000",
            "/health",
        ] {
            paths.push(extra.to_string());
        }
        for who in [Who::Session(&owner), Who::Key(&k)] {
            for path in &paths {
                let (st, _, text) = api.call(who, "GET", path, None).await;
                if matches!(who, Who::Key(_)) && path.starts_with("/api/v1/outbox") {
                    // Signed-in owners only (tests/mail.rs).
                    assert_eq!(st, 403, "{path}: {text}");
                    continue;
                }
                assert_eq!(st, 200, "{path}: {text}");
                assert!(!text.contains("MARKER-api-6f2b"), "{path} returned the secret");
                assert!(!text.contains(&key_sample), "{path} returned the Salesforce private key");
            }
        }
        let (_, one, _) = api.call(Who::Key(&k), "GET", "/api/v1/environments/dev/connections/marked", None).await;
        assert!(one["secrets_set"]["token"].as_str().unwrap().ends_with('Z'), "{one}");
        assert!(one["id"].as_i64().is_some() && one["created_at"].is_string() && one["updated_at"].is_string());
        let (_, audit, _) = api.call(Who::Key(&k), "GET", "/api/v1/audit?environment=DEV", None).await;
        let actions: Vec<&str> =
            audit["items"].as_array().unwrap().iter().filter(|e| e["object_name"] == "Marked").map(|e| e["action"].as_str().unwrap()).collect();
        assert_eq!(&actions[..6], ["credential_request.send", "binding.set", "integration.publish", "connection.secret_replace", "connection.update", "connection.create"]);
        assert!(audit["items"][0]["actor"].as_str().unwrap().starts_with("API key test (cvk_"));

        // Errors: the format, the status, what to fix.
        let (st, b, _) = api.call(Who::Key(&k), "POST", "/api/v1/environments/DEV/connections", Some(conn("Marked"))).await;
        assert_eq!((st.as_u16(), b["error"]["code"].as_str()), (409, Some("connection_exists")));
        let (st, b, _) = api
            .call(
                Who::Key(&k),
                "POST",
                "/api/v1/environments/DEV/connections",
                Some(json!({"name": "Bad", "provider": "http", "settings": {"auth": "bearer", "header_name": "X-Key"}, "secrets": {"password": "p"}})),
            )
            .await;
        assert_eq!(st, 422);
        let fields: Vec<&str> = b["error"]["details"].as_array().unwrap().iter().map(|d| d["field"].as_str().unwrap()).collect();
        assert_eq!(fields, ["settings.header_name", "settings.base_url", "secrets.password"], "every mistake at once: {b}");
        let (st, b, _) = api.call(Who::Key(&k), "GET", "/api/v1/environments/NOPE/connections", None).await;
        assert_eq!((st.as_u16(), b["error"]["code"].as_str()), (404, Some("not_found")));
        let (st, b, _) = api.call(Who::Key(&k), "POST", "/api/v1/environments/DEV/connections", Some(json!({"name": 5}))).await;
        assert_eq!(st, 422, "{b}");
        let (st, b, _) = api.call(Who::Nobody, "GET", "/api/v1/environments", None).await;
        assert_eq!((st.as_u16(), b["error"]["code"].as_str()), (401, Some("unauthorized")));
        let (st, _, _) = api.call(Who::Key(&k), "GET", "/api/v1/nothing", None).await;
        assert_eq!(st, 404);
    }
}

/// Promise 14: a state-changing REST call made with a session cookie from another site fails.
#[tokio::test]
async fn promise_14_cross_site_requests_with_a_session_are_refused() {
    for db in backends().await {
        let api = Api::new(db.open().await);
        let owner = session(&api.s, "owner@example.com", None, true).await;
        let req = Request::builder()
            .method("POST")
            .uri("/api/v1/environments/DEV/connections")
            .header("Cookie", format!("cv_session={owner}"))
            .header("Origin", "https://attacker.example")
            .header("Content-Type", "application/json")
            .body(Body::from(conn("Evil").to_string()))
            .unwrap();
        let res = api.router.clone().oneshot(req).await.unwrap();
        assert_eq!(res.status(), 403);
        assert_eq!(api.call(Who::Session(&owner), "GET", "/api/v1/environments/DEV/connections/Evil", None).await.0, 404, "nothing was created");
    }
}

/// Every path and method in the OpenAPI document exists in the router (none falls through to
/// the API's 404 or answers 405), and the document is served.
#[tokio::test]
async fn the_openapi_document_matches_the_router() {
    let db = backends().await.into_iter().next().unwrap();
    let api = Api::new(db.open().await);
    let k = key(&api.s, &["*:*:rw"]).await;
    let (st, served, _) = api.call(Who::Nobody, "GET", "/api/v1/openapi.json", None).await;
    assert_eq!(st, 200);
    assert_eq!(served["openapi"], "3.1.0");
    let doc: Value = serde_json::from_str(server::api::openapi_json()).unwrap();
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        let concrete = path.replace("{env}", "DEV").replace("{name}", "nothing-here").replace("{id}", "999999");
        for method in ["get", "post", "patch", "put", "delete"] {
            if item.get(method).is_none() {
                continue;
            }
            let body = matches!(method, "post" | "patch" | "put").then(|| json!({}));
            let (st, _, text) = api.call(Who::Key(&k), &method.to_uppercase(), &concrete, body).await;
            assert_ne!(st, 405, "{method} {path} is documented but not routed");
            assert!(!text.contains("no such API route"), "{method} {path} is documented but not routed");
            checked += 1;
        }
    }
    assert_eq!(checked, 50);
}

/// What the contract test (scripts/contract.sh) relies on in the generated OpenAPI document:
/// every status each operation answers, the error format, the headers and content types, the
/// security schemes, and request schemas that refuse what the server refuses (unknown fields,
/// names, each provider's settings and secrets). A change to an annotation or a schema that
/// loosens any of it fails here.
#[test]
fn the_openapi_document_keeps_its_strictness() {
    let doc: Value = serde_json::from_str(server::api::openapi_json()).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let resolve = |v: &Value| -> Value {
        match v["$ref"].as_str() {
            Some(r) => doc.pointer(r.trim_start_matches('#')).unwrap_or_else(|| panic!("{r} does not resolve")).clone(),
            None => v.clone(),
        }
    };
    // Every reference resolves.
    fn refs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    out.push(r.clone());
                }
                m.values().for_each(|v| refs(v, out));
            }
            Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    refs(&doc, &mut all);
    for r in &all {
        assert!(doc.pointer(r.trim_start_matches('#')).is_some(), "{r} does not resolve");
    }
    // Each operation, with every status it is documented to answer.
    let expected: &[(&str, &[u16])] = &[
        ("health", &[200, 503]),
        ("listEnvironments", &[200, 401, 403, 422, 429]),
        ("listConnections", &[200, 401, 403, 404, 422, 429]),
        ("createConnection", &[201, 400, 401, 403, 404, 409, 413, 422, 429]),
        ("getConnection", &[200, 401, 403, 404, 429]),
        ("updateConnection", &[200, 400, 401, 403, 404, 409, 413, 422, 429]),
        ("deleteConnection", &[204, 401, 403, 404, 409, 422, 429]),
        ("testConnection", &[200, 401, 403, 404, 429, 500]),
        ("listApiKeys", &[200, 401, 403, 422, 429]),
        ("createApiKey", &[201, 400, 401, 403, 413, 422, 429]),
        ("revokeApiKey", &[204, 401, 403, 404, 429]),
        ("listAudit", &[200, 401, 403, 404, 422, 429]),
        ("exportAudit", &[200, 401, 403, 404, 422, 429]),
        ("listUsers", &[200, 401, 403, 422, 429]),
        ("listOutbox", &[200, 401, 403, 422, 429]),
        ("downloadOutboxEml", &[200, 401, 403, 404, 429]),
        ("openapi", &[200]),
        ("listIntegrations", &[200, 401, 403, 404, 422, 429]),
        ("getIntegration", &[200, 401, 403, 404, 429]),
        ("publishIntegration", &[200, 201, 400, 401, 403, 404, 409, 413, 422, 429]),
        ("unpublishIntegration", &[204, 401, 403, 404, 429]),
        ("bindIntegration", &[200, 400, 401, 403, 404, 413, 422, 429]),
        ("unbindIntegration", &[200, 401, 403, 404, 429]),
        ("issueCertificate", &[201, 400, 401, 403, 404, 409, 413, 422, 429, 502]),
        ("downloadCertificate", &[200, 401, 403, 404, 409, 429]),
        ("uploadCertificate", &[200, 400, 401, 403, 404, 409, 413, 422, 429]),
        ("signingStatus", &[200, 401, 403, 404, 409, 429]),
        ("signInStatus", &[200, 401, 403, 404, 409, 429]),
        ("disconnectConnection", &[200, 401, 403, 404, 409, 429]),
        ("resendAdminRequest", &[201, 400, 401, 403, 404, 409, 413, 422, 429, 502]),
        ("cancelAdminRequest", &[204, 401, 403, 404, 409, 429]),
        ("requestCredentials", &[201, 400, 401, 403, 404, 409, 413, 422, 429, 502]),
        ("credentialRequest", &[200, 401, 403, 404, 409, 429]),
        ("cancelCredentialRequest", &[204, 401, 403, 404, 409, 429]),
        ("credentialLinkView", &[200, 403, 422]),
        ("answerCredentialRequest", &[200, 400, 403, 413, 422]),
        ("adminLinkView", &[200, 403, 422]),
        ("answerAdminRequest", &[200, 400, 403, 413, 422]),
        ("integrationToken", &[200, 401, 403, 404, 409, 422, 424, 429]),
        ("exportEnvironment", &[200, 401, 403, 404, 429]),
        ("importBundle", &[200, 400, 401, 403, 404, 409, 413, 422, 429]),
        ("listWebhooks", &[200, 401, 403, 404, 429]),
        ("createWebhook", &[201, 400, 401, 403, 404, 413, 422, 429]),
        ("getWebhook", &[200, 401, 403, 404, 429]),
        ("updateWebhook", &[200, 400, 401, 403, 404, 413, 422, 429]),
        ("deleteWebhook", &[204, 401, 403, 404, 429]),
        ("listWebhookDeliveries", &[200, 401, 403, 404, 422, 429]),
        ("retryWebhookDelivery", &[202, 401, 403, 404, 429]),
        ("rotateWebhookSecret", &[200, 401, 403, 404, 429]),
        ("testWebhook", &[202, 401, 403, 404, 429]),
    ];
    let mut operations = std::collections::BTreeMap::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let id = op["operationId"].as_str().unwrap_or_else(|| panic!("{method} {path} has no operationId")).to_string();
            assert!(operations.insert(id.clone(), (method.clone(), path.clone(), op.clone())).is_none(), "operationId {id} twice");
        }
    }
    assert_eq!(operations.len(), expected.len(), "{:?}", operations.keys().collect::<Vec<_>>());
    for (id, statuses) in expected {
        let (method, path, op) = operations.get(*id).unwrap_or_else(|| panic!("no operation {id}"));
        let documented: Vec<u16> = op["responses"].as_object().unwrap().keys().map(|s| s.parse().unwrap()).collect();
        assert_eq!(&documented, statuses, "{method} {path} ({id})");
        for (status, response) in op["responses"].as_object().unwrap() {
            let response = resolve(response);
            assert!(response["description"].as_str().is_some_and(|d| !d.is_empty()), "{id} {status}: no description");
            if status.starts_with(['4', '5']) && *id != "health" {
                assert_eq!(response["content"]["application/json"]["schema"]["$ref"], "#/components/schemas/Error", "{id} {status}");
            }
        }
        // Signed-in or key-authenticated operations take the document's security unless they
        // say otherwise; the public ones (health, the document, the admins' one-time links) say `[]` (an empty requirement).
        let public = matches!(*id, "health" | "openapi" | "adminLinkView" | "answerAdminRequest" | "credentialLinkView" | "answerCredentialRequest");
        if public {
            assert_eq!(op["security"], json!([]), "{id} is public");
        } else if id.contains("Outbox") {
            assert_eq!(op["security"], json!([{"session": []}]), "{id}: sessions only");
        } else {
            assert!(op.get("security").is_none(), "{id} takes the document's security");
        }
        // Path parameters are declared, and required.
        for name in ["env", "name", "id"] {
            if path.contains(&format!("{{{name}}}")) {
                let p = op["parameters"].as_array().unwrap().iter().find(|p| p["name"] == name && p["in"] == "path");
                assert!(p.is_some_and(|p| p["required"] == true), "{id}: path parameter {name}");
            }
        }
        // Every request body object refuses unknown fields (the one exception: an object of an
        // integration's `objects` list, which serde reads leniently).
        if let Some(body) = op.get("requestBody") {
            let schema = resolve(&body["content"]["application/json"]["schema"]);
            fn strict(v: &Value, doc: &Value, at: &str, seen: &mut Vec<String>) {
                match v {
                    Value::Object(m) => {
                        if let Some(Value::String(r)) = m.get("$ref") {
                            if !seen.contains(r) {
                                seen.push(r.clone());
                                strict(doc.pointer(r.trim_start_matches('#')).unwrap(), doc, r, seen);
                            }
                            return;
                        }
                        let lenient =
                            m.get("properties").is_some_and(|p| p.get("access").is_some() && p.get("name").is_some() && p.as_object().unwrap().len() == 2);
                        if m.get("type") == Some(&json!("object")) && m.contains_key("properties") && !lenient {
                            assert_eq!(m.get("additionalProperties"), Some(&json!(false)), "{at}: an object that takes unknown fields");
                        }
                        for (k, v) in m {
                            strict(v, doc, &format!("{at}/{k}"), seen);
                        }
                    }
                    Value::Array(a) => a.iter().for_each(|v| strict(v, doc, at, seen)),
                    _ => {}
                }
            }
            strict(&schema, &doc, id, &mut Vec::new());
        }
    }
    let schema = |name: &str| doc["components"]["schemas"][name].clone();
    // The error format is closed, its code snake_case.
    assert_eq!(schema("Error")["additionalProperties"], false);
    assert_eq!(schema("Error")["properties"]["error"]["additionalProperties"], false);
    assert_eq!(schema("Error")["properties"]["error"]["properties"]["code"]["pattern"], "^[a-z][a-z0-9_]*$");
    // One schema per provider, with its settings and secrets closed.
    let new_connection = schema("NewConnection");
    let providers: Vec<&str> = new_connection["oneOf"].as_array().unwrap().iter().map(|p| p["properties"]["provider"]["const"].as_str().unwrap()).collect();
    assert_eq!(providers, server::providers::ids());
    assert_eq!(providers, ["http", "salesforce", "sharepoint", "dataverse", "dynamics365", "sap_odata", "workato", "oauth2"]);
    for p in new_connection["oneOf"].as_array().unwrap() {
        assert_eq!(p["additionalProperties"], false);
        assert_eq!(p["properties"]["name"]["pattern"], "^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$");
        assert_eq!(p["properties"]["settings"]["additionalProperties"], false);
        assert!(p["properties"]["secrets"]["additionalProperties"] == false || p["properties"]["secrets"]["maxProperties"] == 0, "{p}");
    }
    let http = &new_connection["oneOf"][0];
    assert_eq!(http["properties"]["settings"]["properties"]["auth"]["enum"], json!(["bearer", "basic", "header"]));
    assert_eq!(http["properties"]["settings"]["properties"]["base_url"]["maxLength"], 2048);
    assert_eq!(http["allOf"].as_array().unwrap().len(), 3, "a rule per auth value");
    let sf = &new_connection["oneOf"][1];
    assert_eq!(sf["properties"]["settings"]["required"], json!(["login_url", "username"]));
    assert_eq!(sf["properties"]["settings"]["properties"]["session_lifetime_minutes"]["minimum"], 5);
    assert_eq!(sf["properties"]["settings"]["properties"]["consumer_key"]["maxLength"], 256);
    let sp = &new_connection["oneOf"][2];
    assert_eq!(sp["properties"]["settings"]["required"], json!(["site_url"]));
    assert_eq!(sp["properties"]["secrets"]["maxProperties"], 0, "SharePoint takes no typed secret: {sp}");
    assert!(sp["properties"]["settings"]["properties"]["client_id"]["pattern"].as_str().unwrap().contains("[0-9A-Fa-f]{8}"));
    for dv in [&new_connection["oneOf"][3], &new_connection["oneOf"][4]] {
        assert_eq!(dv["properties"]["settings"]["required"], json!(["environment_url"]));
        assert_eq!(dv["properties"]["settings"]["properties"]["auth"]["enum"], json!(["certificate", "secret"]));
        assert_eq!(dv["properties"]["secrets"]["additionalProperties"], false);
        assert_eq!(dv["allOf"].as_array().unwrap().len(), 3, "a rule per auth value, and one for auth left out: {dv}");
    }
    let wk = &new_connection["oneOf"][6];
    assert_eq!(wk["properties"]["settings"]["properties"]["data_center"]["enum"], json!(["us", "eu", "jp", "sg", "au", "il", "trial"]));
    assert_eq!(wk["properties"]["secrets"]["additionalProperties"], false);
    assert!(wk["properties"]["secrets"]["properties"]["api_token"].is_object(), "{wk}");
    assert_eq!(schema("CredentialAnswer")["additionalProperties"], false);
    assert_eq!(schema("Grant")["then"]["properties"]["access"]["const"], "read");
    assert_eq!(schema("NewApiKey")["properties"]["grants"]["minItems"], 1);
    assert_eq!(schema("Publish")["properties"]["objects"]["maxItems"], 200);
    assert_eq!(schema("Bundle")["properties"]["digest"]["pattern"], "^[0-9a-f]{64}$");
    // Headers and content types.
    let response = |id: &str, status: &str| resolve(&operations[id].2["responses"][status]);
    for (id, status) in [("createApiKey", "201"), ("integrationToken", "200"), ("exportEnvironment", "200"), ("downloadOutboxEml", "200")] {
        let header = &response(id, status)["headers"]["Cache-Control"];
        assert_eq!((&header["required"], &header["schema"]["const"]), (&json!(true), &json!("no-store")), "{id} {status}");
    }
    let retry = &doc["components"]["responses"]["TooManyRequests"]["headers"]["Retry-After"];
    assert_eq!((&retry["required"], &retry["schema"]["minimum"]), (&json!(true), &json!(1)));
    assert!(response("integrationToken", "424")["headers"]["Retry-After"].is_object());
    assert!(response("downloadCertificate", "200")["content"]["application/x-pem-file"].is_object());
    assert!(response("downloadOutboxEml", "200")["content"]["message/rfc822"].is_object());
    assert_eq!(response("downloadOutboxEml", "200")["headers"]["Content-Disposition"]["required"], true);
    // Bodies that may be left out, but when sent are an object (never `null`).
    for id in ["issueCertificate", "resendAdminRequest"] {
        let body = &operations[id].2["requestBody"];
        assert_eq!(body["required"], false, "{id}");
        let schema = resolve(&body["content"]["application/json"]["schema"]);
        assert_eq!((&schema["type"], &schema["additionalProperties"]), (&json!("object"), &json!(false)), "{id}: {schema}");
    }
    // Security schemes.
    assert_eq!(doc["security"], json!([{"apiKey": []}, {"session": []}]));
    assert_eq!(doc["components"]["securitySchemes"]["apiKey"], json!({"type": "http", "scheme": "bearer", "description": "cvk_… API key"}));
    assert_eq!(doc["components"]["securitySchemes"]["session"], json!({"type": "apiKey", "in": "cookie", "name": "cv_session"}));
    // Query parameters as the handlers read them.
    let import = &operations["importBundle"].2;
    let mode = import["parameters"].as_array().unwrap().iter().find(|p| p["name"] == "mode").unwrap();
    assert_eq!((&mode["required"], &mode["schema"]["enum"]), (&json!(true), &json!(["plan", "apply"])));
    let list = &operations["listConnections"].2;
    let limit = list["parameters"].as_array().unwrap().iter().find(|p| p["name"] == "limit").unwrap();
    assert_eq!((&limit["schema"]["minimum"], &limit["schema"]["maximum"]), (&json!(1), &json!(1000)));
}
