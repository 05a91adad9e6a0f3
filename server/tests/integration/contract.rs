//! What the API contract test (scripts/contract.sh: schemathesis against the OpenAPI document)
//! found, each kept fixed here: every refusal in the API's JSON error format with a documented
//! status, parameters read as sent, limits counted in characters as documented, unknown fields
//! refused, and the failed-authentication limit as configured.

use crate::common;

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use common::{backends, key, Api, Who};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

/// A request with a raw body, as a client with an API key sends it.
async fn raw(api: &Api, key: &str, method: &str, path: &str, body: Vec<u8>) -> (StatusCode, String, Value) {
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("Authorization", format!("Bearer {key}"))
        .header("Content-Type", "application/json")
        .body(Body::from(body))
        .unwrap();
    req.extensions_mut().insert(ConnectInfo("192.0.2.1:5000".parse::<SocketAddr>().unwrap()));
    let res = api.router.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let content_type = res.headers().get("content-type").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    (status, content_type, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

fn fields(body: &Value) -> Vec<&str> {
    body["error"]["details"].as_array().map(|d| d.iter().map(|e| e["field"].as_str().unwrap()).collect()).unwrap_or_default()
}

/// Path and query parameters that cannot be read were answered by the framework in plain text
/// (400 `text/plain`), outside the document; now in the API's format, with documented codes.
#[tokio::test]
async fn unreadable_parameters_are_refused_in_the_api_format() {
    for db in backends().await {
        let api = Api::new(db.open().await);
        let k = key(&api.s, &["*:*:rw"]).await;
        for (method, path, status, field) in [
            ("DELETE", "/api/v1/api-keys/null,null", 404, None),
            ("GET", "/api/v1/outbox/abc", 404, None),
            ("GET", "/api/v1/environments/DEV/connections?updated_since=a&updated_since=b", 422, Some("query")),
            ("GET", "/api/v1/environments/DEV/integrations?limit=1&limit=2", 422, Some("query")),
            ("GET", "/api/v1/environments/DEV/connections/x/admin-response", 422, Some("query")),
            ("POST", "/api/v1/environments/DEV/integrations/x/token?force_refresh=maybe", 422, Some("query")),
            ("POST", "/api/v1/environments/DEV/integrations/x/token?refresh=true", 422, Some("query")),
            ("DELETE", "/api/v1/environments/DEV/connections/x?force=yes", 422, Some("query")),
        ] {
            let (st, content_type, body) = raw(&api, &k, method, path, vec![]).await;
            assert_eq!(st.as_u16(), status, "{method} {path}: {body}");
            assert_eq!(content_type, "application/json", "{method} {path}");
            assert!(body["error"]["message"].is_string(), "{method} {path}: {body}");
            if let Some(field) = field {
                assert_eq!(fields(&body), [field], "{method} {path}");
            }
        }
    }
}

/// A body past the limit got the framework's plain-text 400 or 413; now 413 in the API's format.
#[tokio::test]
async fn bodies_past_the_limit_are_413_in_the_api_format() {
    for db in backends().await {
        let api = Api::new(db.open().await);
        let k = key(&api.s, &["*:*:rw"]).await;
        let big = format!("{{\"name\": \"Big\", \"provider\": \"http\", \"settings\": {{\"x\": \"{}\"}}}}", "a".repeat(3 << 20)).into_bytes();
        for (method, path) in [
            ("POST", "/api/v1/environments/DEV/connections"),
            ("PATCH", "/api/v1/environments/DEV/connections/x"),
            ("POST", "/api/v1/api-keys"),
            ("POST", "/api/v1/environments/DEV/connections/x/certificate"),
            ("POST", "/api/v1/environments/DEV/connections/x/admin-request"),
        ] {
            let (st, content_type, body) = raw(&api, &k, method, path, big.clone()).await;
            assert_eq!(st, 413, "{method} {path}: {body}");
            assert_eq!(content_type, "application/json");
            assert_eq!(body["error"]["code"], "payload_too_large", "{method} {path}");
        }
        // Not JSON at all is 400, JSON of the wrong shape 422, as for every other body.
        let (st, _, body) = raw(&api, &k, "POST", "/api/v1/environments/DEV/connections/x/certificate", b"{nope".to_vec()).await;
        assert_eq!((st.as_u16(), body["error"]["code"].as_str()), (400, Some("bad_request")));
        let (st, _, body) = raw(&api, &k, "POST", "/api/v1/environments/DEV/connections/x/certificate", b"{\"key_bits\": \"big\"}".to_vec()).await;
        assert_eq!((st.as_u16(), fields(&body)), (422, vec!["body"]));
    }
}

/// Empty or padded list parameters were taken as absent (`?updated_since=` listed everything);
/// a value is now read as sent, and refused when it is not what the document says.
#[tokio::test]
async fn list_parameters_are_read_as_sent() {
    for db in backends().await {
        let api = Api::new(db.open().await);
        let k = key(&api.s, &["*:*:rw"]).await;
        for (query, field) in [
            ("limit=", "limit"),
            ("limit=%205", "limit"),
            ("since_id=", "since_id"),
            ("since_id=1%20", "since_id"),
            ("updated_since=", "updated_since"),
            ("updated_since=%202000-01-01T00:00:00Z", "updated_since"),
            ("cursor=", "cursor"),
        ] {
            for list in ["/api/v1/environments", "/api/v1/api-keys", "/api/v1/audit"] {
                let (st, body, _) = api.call(Who::Key(&k), "GET", &format!("{list}?{query}"), None).await;
                assert_eq!((st.as_u16(), fields(&body)), (422, vec![field]), "{list}?{query}: {body}");
            }
        }
        for query in ["from=", "to=", "from=%202000-01-01T00:00:00Z"] {
            let (st, _, _) = api.call(Who::Key(&k), "GET", &format!("/api/v1/audit?{query}"), None).await;
            assert_eq!(st, 422, "{query}");
        }
        for query in ["limit=5", "since_id=0", "updated_since=2000-01-01T00:00:00%2B01:00", "from=2000-01-01T00:00:00Z"] {
            assert_eq!(api.call(Who::Key(&k), "GET", &format!("/api/v1/audit?{query}"), None).await.0, 200, "{query}");
        }
    }
}

/// Limits the document gives in characters were counted in bytes, refusing shorter text in
/// other scripts; a grant with an unknown field was silently accepted.
#[tokio::test]
async fn limits_count_characters_and_grants_take_no_unknown_fields() {
    for db in backends().await {
        let api = Api::new(db.open().await);
        let k = key(&api.s, &["*:*:rw"]).await;
        let grants = json!([{"environment": "DEV", "resource": "tokens", "access": "read"}]);
        let st = |n: usize| {
            let body = json!({"name": "é".repeat(n), "grants": grants});
            let api = &api;
            let k = &k;
            async move { api.call(Who::Key(k), "POST", "/api/v1/api-keys", Some(body)).await.0.as_u16() }
        };
        assert_eq!(st(100).await, 201, "100 characters (200 bytes)");
        assert_eq!(st(101).await, 422);
        let (st, body, _) = api
            .call(
                Who::Key(&k),
                "POST",
                "/api/v1/api-keys",
                Some(json!({"name": "k", "grants": [{"environment": "DEV", "resource": "tokens", "access": "read", "extra": 1}]})),
            )
            .await;
        assert_eq!(st, 422, "{body}");

        let publish = |description: String| json!({"provider": "http", "objects": ["Ä".repeat(100)], "description": description});
        let (st, body, _) = api.call(Who::Key(&k), "PUT", "/api/v1/environments/DEV/integrations/Wide", Some(publish("ü".repeat(500)))).await;
        assert_eq!(st, 201, "{body}");
        let (st, body, _) = api.call(Who::Key(&k), "PUT", "/api/v1/environments/DEV/integrations/Wide", Some(publish(format!(" {}", "ü".repeat(500))))).await;
        assert_eq!((st.as_u16(), fields(&body)), (422, vec!["description"]), "the limit applies to the text as sent");

        let sf = |consumer_key: String| json!({"name": "SF", "provider": "salesforce", "settings": {"login_url": "https://login.salesforce.com", "username": "i@acme.com", "consumer_key": consumer_key}});
        let (st, body, _) = api.call(Who::Key(&k), "POST", "/api/v1/environments/DEV/connections", Some(sf("ß".repeat(257)))).await;
        assert_eq!((st.as_u16(), fields(&body)), (422, vec!["settings.consumer_key"]));
        let (st, body, _) = api.call(Who::Key(&k), "POST", "/api/v1/environments/DEV/connections", Some(sf("ß".repeat(256)))).await;
        assert_eq!(st, 201, "{body}");
        let base = format!("https://example.com/{}", "ä".repeat(2020));
        let http = json!({"name": "Long", "provider": "http", "settings": {"base_url": base, "auth": "bearer"}, "secrets": {"token": "t"}});
        let (st, body, _) = api.call(Who::Key(&k), "POST", "/api/v1/environments/DEV/connections", Some(http)).await;
        assert_eq!(st, 201, "2040 characters: {body}");
    }
}

/// CONNVAULT_AUTH_FAILURE_LIMIT sets how many failed attempts an address may make (the contract
/// run raises it; the default stays 10).
#[tokio::test]
async fn the_failed_authentication_limit_is_configurable() {
    let db = backends().await.into_iter().next().unwrap();
    let api = Api::new(server::startup::open(db.config_with(&[("CONNVAULT_AUTH_FAILURE_LIMIT", "3")])).await.unwrap());
    for _ in 0..3 {
        assert_eq!(api.call(Who::Key("cvk_00000000_forged"), "GET", "/api/v1/environments", None).await.0, 401);
    }
    let (st, _, _) = api.call(Who::Key("cvk_00000000_forged"), "GET", "/api/v1/environments", None).await;
    assert_eq!(st, 429);
}

/// A JSON array was read as a struct's fields in order (serde's sequence form): `[]` sent the
/// admin request again as if `{}` had been sent. Every body is an object.
#[tokio::test]
async fn bodies_are_json_objects() {
    for db in backends().await {
        let api = Api::new(db.open().await);
        let k = key(&api.s, &["*:*:rw"]).await;
        let sf = json!({"name": "SF", "provider": "salesforce", "settings": {"login_url": "https://login.salesforce.com", "username": "i@acme.com", "admin_email": "a@acme.com"}});
        assert_eq!(api.call(Who::Key(&k), "POST", "/api/v1/environments/DEV/connections", Some(sf)).await.0, 201);
        assert_eq!(api.call(Who::Key(&k), "POST", "/api/v1/environments/DEV/connections/SF/certificate", Some(json!({"send_request": true}))).await.0, 201);
        for (method, path, body) in [
            ("POST", "/api/v1/environments/DEV/connections/SF/admin-request", "[]"),
            ("POST", "/api/v1/environments/DEV/connections/SF/certificate", "[2048]"),
            ("POST", "/api/v1/environments/DEV/connections", r#"["Arr", "http", {"base_url": "https://x.example.com", "auth": "bearer"}, {"token": "t"}]"#),
            ("POST", "/api/v1/api-keys", r#"["k", [{"environment": "DEV", "resource": "tokens", "access": "read"}]]"#),
            ("PUT", "/api/v1/environments/DEV/integrations/Arr", r#"["http"]"#),
            ("POST", "/api/v1/environments/DEV/connections", "5"),
        ] {
            let (st, _, body) = raw(&api, &k, method, path, body.as_bytes().to_vec()).await;
            assert_eq!((st.as_u16(), fields(&body)), (422, vec!["body"]), "{method} {path}: {body}");
        }
        let (st, _, body) = raw(&api, &k, "POST", "/api/v1/api-keys", b"[nope".to_vec()).await;
        assert_eq!((st.as_u16(), body["error"]["code"].as_str()), (400, Some("bad_request")));
        let (_, status, _) = api.call(Who::Key(&k), "GET", "/api/v1/environments/DEV/connections/SF/status", None).await;
        assert_eq!(status["request"]["state"], "open", "{status}");
        assert_eq!(status["request"]["id"], 1, "no second request was sent: {status}");
    }
}

/// JSON does not tell 5 from 5.0: a whole number with a fraction part of zero is that number
/// (it was refused as "not a whole number"), and it is stored as an integer.
#[tokio::test]
async fn whole_numbers_may_be_written_with_a_fraction() {
    for db in backends().await {
        let api = Api::new(db.open().await);
        let k = key(&api.s, &["*:*:rw"]).await;
        let sf = json!({"name": "SF", "provider": "salesforce", "settings": {"login_url": "https://login.salesforce.com", "username": "i@acme.com", "session_lifetime_minutes": 60.0}});
        let (st, body, _) = api.call(Who::Key(&k), "POST", "/api/v1/environments/DEV/connections", Some(sf)).await;
        assert_eq!(st, 201, "{body}");
        assert_eq!(body["settings"]["session_lifetime_minutes"], json!(60));
        assert!(body["settings"]["session_lifetime_minutes"].is_i64());
        let patch = json!({"settings": {"session_lifetime_minutes": 4.0}});
        let (st, body, _) = api.call(Who::Key(&k), "PATCH", "/api/v1/environments/DEV/connections/SF", Some(patch)).await;
        assert_eq!((st.as_u16(), fields(&body)), (422, vec!["settings.session_lifetime_minutes"]), "the range still applies");
        let patch = json!({"settings": {"session_lifetime_minutes": 90.5}});
        let (st, _, _) = api.call(Who::Key(&k), "PATCH", "/api/v1/environments/DEV/connections/SF", Some(patch)).await;
        assert_eq!(st, 422);
        let patch = json!({"settings": {"session_lifetime_minutes": 90.0}});
        let (st, body, _) = api.call(Who::Key(&k), "PATCH", "/api/v1/environments/DEV/connections/SF", Some(patch)).await;
        assert_eq!(st, 200, "{body}");
        assert!(body["settings"]["session_lifetime_minutes"].is_i64(), "{body}");
    }
}

/// An admin email was checked only for its shape when saved, and again by the mail library when
/// sent: `a..b@acme.com` was saved, then refused (422) each time a request went out. One rule,
/// the document's, now applies when it is saved.
#[tokio::test]
async fn an_admin_email_that_is_saved_can_be_sent_to() {
    for db in backends().await {
        let api = Api::new(db.open().await);
        let k = key(&api.s, &["*:*:rw"]).await;
        let sf = |name: &str, email: &str| json!({"name": name, "provider": "salesforce", "settings": {"login_url": "https://login.salesforce.com", "username": "i@acme.com", "admin_email": email}});
        for bad in ["a..b@acme.com", ".a@acme.com", "Ö@acme.com", "a@-acme.com", "a@acme", "a@b@acme.com", &format!("{}@acme.com", "a".repeat(65))] {
            let (st, body, _) = api.call(Who::Key(&k), "POST", "/api/v1/environments/DEV/connections", Some(sf("Bad", bad))).await;
            assert_eq!((st.as_u16(), fields(&body)), (422, vec!["settings.admin_email"]), "{bad}");
        }
        let (st, body, _) = api.call(Who::Key(&k), "POST", "/api/v1/environments/DEV/connections", Some(sf("SF", "it.admin+sf@sub.acme-corp.com"))).await;
        assert_eq!(st, 201, "{body}");
        let (st, body, _) = api.call(Who::Key(&k), "POST", "/api/v1/environments/DEV/connections/SF/certificate", Some(json!({"send_request": true}))).await;
        assert_eq!(st, 201, "{body}");
        let (st, body, _) =
            api.call(Who::Key(&k), "POST", "/api/v1/environments/DEV/connections/SF/admin-request", Some(json!({"admin_email": "Ö@acme.com"}))).await;
        assert_eq!((st.as_u16(), fields(&body)), (422, vec!["admin_email"]));
        let (st, body, _) =
            api.call(Who::Key(&k), "POST", "/api/v1/environments/DEV/connections/SF/admin-request", Some(json!({"admin_email": " other@acme.com "}))).await;
        assert_eq!(st, 201, "{body}");
    }
}
