//! The proxy (`/proxy/v1/{env}/{integration}/{path…}`) on every backend: the credential added
//! and the caller's left behind, paths that could leave the connection's origin refused before
//! anything is sent, grants per method, a revoked key refused at once by a second server,
//! renewal after a 401 (once, single flight) for Salesforce and after SAP's CSRF 403, a
//! credential refused twice marking the connection failing, the other side's limits passed
//! through, and bodies streamed both ways within their limits.

use crate::common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Request, StatusCode};
use common::{backends, key, Api, Kind, TestDb, Who};
use futures::StreamExt;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use server::api_keys::{self, Creator, NewApiKey};
use server::audit::Actor;
use server::secret::SecretString;
use server::users::{self, Role};
use server::startup::{self, Services};
use tower::ServiceExt;

const STORED: &str = "stored-upstream-token-5f2a9c";

async fn open(db: &TestDb, extra: &[(&str, &str)]) -> Services {
    let mut vars = vec![("CONNVAULT_ALLOW_LOOPBACK", "1")];
    vars.extend_from_slice(extra);
    startup::open(db.config_with(&vars)).await.expect("open")
}

/// What the upstream saw of one request.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    target: String,
    headers: HeaderMap,
    body_len: usize,
}

/// How the upstream answers.
#[derive(Debug, Clone)]
struct Answer {
    status: u16,
    headers: Vec<(&'static str, &'static str)>,
    /// Bytes of body, sent in 64 KiB chunks; with a length header unless `chunked`.
    body_len: usize,
    chunked: bool,
}

impl Default for Answer {
    fn default() -> Self {
        Answer { status: 200, headers: vec![("content-type", "application/json")], body_len: 0, chunked: false }
    }
}

/// A loopback HTTP server that records every request and answers as told.
#[derive(Clone, Default)]
struct Upstream {
    seen: Arc<Mutex<Vec<Seen>>>,
    answer: Arc<Mutex<Answer>>,
}

impl Upstream {
    async fn spawn(&self) -> String {
        let this = self.clone();
        let app = axum::Router::new().fallback(move |req: Request<Body>| {
            let this = this.clone();
            async move {
                let (parts, body) = req.into_parts();
                let body = body.collect().await.map(|b| b.to_bytes().len()).unwrap_or(0);
                this.seen.lock().unwrap().push(Seen {
                    method: parts.method.to_string(),
                    target: parts.uri.path_and_query().map(|p| p.to_string()).unwrap_or_default(),
                    headers: parts.headers,
                    body_len: body,
                });
                let a = this.answer.lock().unwrap().clone();
                let chunks = futures::stream::iter((0..a.body_len).step_by(64 * 1024).map(move |at| {
                    Ok::<_, std::io::Error>(axum::body::Bytes::from(vec![b'x'; (a.body_len - at).min(64 * 1024)]))
                }));
                let mut r = axum::response::Response::builder().status(a.status);
                for (n, v) in &a.headers {
                    r = r.header(*n, *v);
                }
                if !a.chunked {
                    r = r.header("content-length", a.body_len.to_string());
                }
                r.body(Body::from_stream(chunks)).unwrap()
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        url
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn answer(&self, a: Answer) {
        *self.answer.lock().unwrap() = a;
    }
}

struct World {
    api: Api,
    admin: String,
    upstream: Upstream,
    base: String,
}

/// An `http` connection `Api` (bearer `STORED`, base URL `{upstream}/api/v1`) bound to
/// integration `Orders` in DEV, and a key that manages DEV.
async fn world(db: &TestDb, extra: &[(&str, &str)]) -> World {
    let upstream = Upstream::default();
    let base = upstream.spawn().await;
    let api = Api::new(open(db, extra).await);
    let admin = key(&api.s, &["DEV:connections:rw", "DEV:integrations:rw", "DEV:bindings:rw", "DEV:audit:read"]).await;
    let w = World { api, admin, upstream, base };
    let body = json!({"name": "Api", "provider": "http", "settings": {"base_url": format!("{}/api/v1", w.base), "auth": "bearer"}, "secrets": {"token": STORED}});
    w.ok("POST", "/api/v1/environments/DEV/connections", body).await;
    w.ok("PUT", "/api/v1/environments/DEV/integrations/Orders", json!({"provider": "http", "objects": ["orders"]})).await;
    w.ok("PUT", "/api/v1/environments/DEV/integrations/Orders/binding", json!({"connection": "Api"})).await;
    w
}

impl World {
    async fn ok(&self, method: &str, path: &str, body: Value) -> Value {
        let (st, v, text) = self.api.call(Who::Key(&self.admin), method, path, Some(body)).await;
        assert!(st.is_success(), "{method} {path}: {st} {text}");
        v
    }
}

/// A call through the router as it arrived on the wire: the raw target, the caller's headers.
async fn raw(api: &Api, method: &str, target: &str, headers: &[(&str, &str)], body: &str) -> (StatusCode, HeaderMap, String) {
    let mut req = Request::builder().method(method).uri(target);
    for (n, v) in headers {
        req = req.header(*n, *v);
    }
    let mut req = req.body(Body::from(body.to_string())).unwrap();
    req.extensions_mut().insert(ConnectInfo("192.0.2.1:5000".parse::<SocketAddr>().unwrap()));
    let res = api.router.clone().oneshot(req).await.unwrap();
    let (status, headers) = (res.status(), res.headers().clone());
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8_lossy(&bytes).into_owned())
}

fn bearer(key: &str) -> String {
    format!("Bearer {key}")
}

/// The router on a real loopback port, for clients that stream.
async fn listen(api: &Api) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let router = api.router.clone();
    tokio::spawn(async move { axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>()).await.unwrap() });
    url
}

async fn audit_actions(w: &World) -> Vec<Value> {
    let (_, audit, _) = w.api.call(Who::Key(&w.admin), "GET", "/api/v1/audit?environment=DEV&limit=1000", None).await;
    audit["items"].as_array().unwrap().clone()
}

#[tokio::test]
async fn path_escapes_are_refused_before_anything_is_sent() {
    for db in backends().await {
        let w = world(&db, &[]).await;
        let k = key(&w.api.s, &["DEV:proxy:rw"]).await;
        let auth = bearer(&k);
        let attacks = [
            "..",
            "../../admin",
            "orders/../../admin",
            "./orders",
            "%2e%2e/admin",
            ".%2E/admin",
            "%2E%2e%2Fadmin",
            "orders%2F..%2F..%2Fadmin",
            "orders%2f..",
            "//evil.example.com/x",
            "https://evil.example.com/x",
            "http:%2F%2Fevil.example.com",
            "orders\\..\\admin",
            "orders%5C..%5Cadmin",
            "@evil.example.com/x",
            "orders%40evil.example.com",
            "%252e%252e/admin",
            "orders%00.json",
            "orders%0d%0aHost:%20evil.example.com",
            "orders%zz",
        ];
        for attack in attacks {
            let target = format!("/proxy/v1/DEV/Orders/{attack}");
            let (st, _, text) = raw(&w.api, "GET", &target, &[("authorization", &auth)], "").await;
            assert_eq!(st, 400, "{attack}: {text}");
            assert!(text.contains("nothing was sent"), "{attack}: {text}");
        }
        assert!(w.upstream.seen().is_empty(), "nothing reached the system: {:?}", w.upstream.seen());
        // A plain path goes to the connection's base URL, with the query as it came.
        let (st, _, text) = raw(&w.api, "GET", "/proxy/v1/dev/orders/orders/42?expand=lines&a=b%20c", &[("authorization", &auth)], "").await;
        assert_eq!(st, 200, "{text}");
        assert_eq!(w.upstream.seen()[0].target, "/api/v1/orders/42?expand=lines&a=b%20c");
    }
}

#[tokio::test]
async fn the_credential_is_added_the_callers_stays_behind_and_limits_pass_through() {
    for db in backends().await {
        let w = world(&db, &[]).await;
        let k = key(&w.api.s, &["DEV:proxy:rw"]).await;
        let auth = bearer(&k);
        w.upstream.answer(Answer {
            headers: vec![("content-type", "application/json"), ("set-cookie", "upstream_session=s3cr3t; Path=/"), ("x-request-id", "r-1")],
            body_len: 10,
            ..Answer::default()
        });
        let headers = [
            ("authorization", auth.as_str()),
            ("cookie", "app_session=the-callers-session"),
            ("connection", "x-private"),
            ("x-private", "hop"),
            ("x-forwarded-for", "10.1.2.3"),
            ("accept", "application/json"),
            ("content-type", "application/json"),
            ("x-app-header", "kept"),
        ];
        let (st, got, text) = raw(&w.api, "POST", "/proxy/v1/DEV/Orders/orders", &headers, r#"{"item":"A-1"}"#).await;
        assert_eq!(st, 200, "{text}");
        let seen = &w.upstream.seen()[0];
        assert_eq!((seen.method.as_str(), seen.target.as_str(), seen.body_len), ("POST", "/api/v1/orders", 14));
        assert_eq!(seen.headers["authorization"], format!("Bearer {STORED}").as_str());
        assert_eq!(seen.headers["x-app-header"], "kept");
        assert_eq!(seen.headers["accept"], "application/json");
        for gone in ["cookie", "x-private", "x-forwarded-for"] {
            assert!(!seen.headers.contains_key(gone), "{gone} travelled on: {:?}", seen.headers);
        }
        for (name, value) in &seen.headers {
            assert!(!value.to_str().unwrap_or_default().contains(&k), "the API key travelled on in {name}");
        }
        assert!(!got.contains_key("set-cookie"), "the system's session cookie came back: {got:?}");
        assert_eq!(got["x-request-id"], "r-1");

        // 429 and 503 come back as they came, Retry-After included, and are not retried.
        for status in [429, 503] {
            w.upstream.answer(Answer { status, headers: vec![("retry-after", "17")], ..Answer::default() });
            let before = w.upstream.seen().len();
            let (st, got, _) = raw(&w.api, "GET", "/proxy/v1/DEV/Orders/orders", &[("authorization", &auth)], "").await;
            assert_eq!((st.as_u16(), got["retry-after"].to_str().unwrap()), (status, "17"));
            assert_eq!(w.upstream.seen().len() - before, 1, "{status} was not retried");
        }

        // Every call counts toward proxy.use, per key, integration and minute.
        w.api.s.broker.flush_usage(&w.api.s.db, true).await.unwrap();
        let uses: Vec<Value> = audit_actions(&w).await.into_iter().filter(|e| e["action"] == "proxy.use").collect();
        // One event per minute the three calls fell in (two when they straddled a minute's end).
        let minutes: std::collections::BTreeSet<&str> = uses.iter().map(|e| e["detail"]["minute"].as_str().unwrap()).collect();
        assert_eq!((uses.len(), minutes.len() <= 2), (minutes.len(), true), "{uses:?}");
        assert_eq!(uses.iter().map(|e| e["detail"]["calls"].as_i64().unwrap()).sum::<i64>(), 3, "{uses:?}");
        assert!(uses.iter().all(|e| e["object_name"] == "Orders"), "{uses:?}");
    }
}

#[tokio::test]
async fn a_credential_refused_twice_is_answered_as_it_came_and_marks_the_connection_failing() {
    for db in backends().await {
        let w = world(&db, &[]).await;
        let k = key(&w.api.s, &["DEV:proxy:read"]).await;
        w.upstream.answer(Answer { status: 401, headers: vec![("www-authenticate", "Bearer error=\"invalid_token\"")], body_len: 3, ..Answer::default() });
        let (st, got, body) = raw(&w.api, "GET", "/proxy/v1/DEV/Orders/orders", &[("authorization", &bearer(&k))], "").await;
        assert_eq!((st, body.as_str()), (StatusCode::UNAUTHORIZED, "xxx"), "the system's answer as it came");
        assert_eq!(got["www-authenticate"], "Bearer error=\"invalid_token\"");
        assert_eq!(w.upstream.seen().len(), 2, "renewed once and sent once more");
        let c = server::connections::get(&w.api.s.db, "DEV", "Api").await.unwrap();
        let health = server::connections::health_of(&w.api.s.db, &[c.id]).await.unwrap();
        let h = &health[&c.id];
        assert!(!h.ok && h.detail.contains("refused a freshly renewed credential on a proxied call (401"), "{h:?}");
        let failures: Vec<Value> = audit_actions(&w).await.into_iter().filter(|e| e["action"] == "proxy.failure").collect();
        assert_eq!(failures.len(), 1, "{failures:?}");
        assert!(!serde_json::to_string(&failures).unwrap().contains(STORED));
    }
}

#[tokio::test]
async fn grants_decide_reads_and_writes_and_a_revoked_key_stops_at_once_on_every_server() {
    for db in backends().await {
        let w = world(&db, &[]).await;
        let read = key(&w.api.s, &["DEV:proxy:read"]).await;
        let tokens_only = key(&w.api.s, &["DEV:tokens:read"]).await;
        let target = "/proxy/v1/DEV/Orders/orders";
        assert_eq!(raw(&w.api, "GET", target, &[], "").await.0, 401);
        assert_eq!(raw(&w.api, "GET", target, &[("authorization", &bearer(&tokens_only))], "").await.0, 403);
        assert_eq!(raw(&w.api, "GET", target, &[("authorization", &bearer(&read))], "").await.0, 200);
        assert_eq!(raw(&w.api, "HEAD", target, &[("authorization", &bearer(&read))], "").await.0, 200);
        let (st, _, text) = raw(&w.api, "DELETE", target, &[("authorization", &bearer(&read))], "").await;
        assert_eq!(st, 403, "{text}");
        assert!(text.contains("DEV:proxy:write"), "{text}");
        assert_eq!(w.upstream.seen().len(), 2, "only the allowed calls reached the system");
        let (st, _, _) = raw(&w.api, "GET", "/proxy/v1/QA/Orders/orders", &[("authorization", &bearer(&read))], "").await;
        assert!(st == 403 || st == 404, "another environment: {st}");

        // A second server on the same database: the key revoked on the first stops there at once.
        let (made, value) = api_keys::create(
            &w.api.s.db,
            &Actor::operator(),
            Creator::Operator,
            NewApiKey {
                name: "app".into(),
                grants: api_keys::parse_grant("DEV:proxy:rw").unwrap(),
                allowed_addresses: vec![],
                expires_at: None,
            },
        )
        .await
        .unwrap();
        let app = bearer(value.expose_secret());
        let other = Api::new(open(&db, &[]).await);
        assert_eq!(raw(&other, "GET", target, &[("authorization", &app)], "").await.0, 200);
        api_keys::revoke(&w.api.s.db, &Actor::operator(), made.id).await.unwrap();
        let (st, _, text) = raw(&other, "GET", target, &[("authorization", &app)], "").await;
        assert_eq!(st, 401, "{text}");
        assert_eq!(raw(&w.api, "GET", target, &[("authorization", &app)], "").await.0, 401);
    }
}

/// A server keeps what it read for a key, an environment and an integration while none of it
/// has changed, and answers from it without a query of its own (on PostgreSQL after a shared
/// read of the epoch that began after the call); whatever another server commits
/// (a new binding, a changed role, a deactivated creator, an unpublished integration) is seen by
/// the very next call. The key itself is checked every time: a forged one with the kept key's
/// prefix is refused.
#[tokio::test]
async fn a_kept_route_gives_way_at_once_to_changes_made_by_another_server() {
    for db in backends().await {
        let w = world(&db, &[]).await;
        let second = Upstream::default();
        let second_base = second.spawn().await;
        let api2 = json!({"name": "Api2", "provider": "http", "settings": {"base_url": format!("{second_base}/v2"), "auth": "bearer"}, "secrets": {"token": "second-token-81c3"}});
        w.ok("POST", "/api/v1/environments/DEV/connections", api2).await;
        let (s, operator) = (&w.api.s, Actor::operator());
        let user = users::create(&s.db, &operator, "dev@example.com", &SecretString::from("a long enough password 1"), false).await.unwrap();
        let user = users::set_role(&s.db, &operator, user.id, "DEV", Some(Role::Administrator)).await.unwrap();
        let grants = api_keys::parse_grant("DEV:proxy:rw").unwrap();
        let new = NewApiKey { name: "app".into(), grants, allowed_addresses: vec![], expires_at: None };
        let (_, value) = api_keys::create(&s.db, &operator, Creator::User(&user), new).await.unwrap();
        let app = bearer(value.expose_secret());
        // The epoch moves with what decides a route, and only with it.
        let before = s.db.route_epoch().await;
        let unrelated = "INSERT INTO usage_counts (kind, caller, environment_id, environment, integration, minute, n) VALUES ('token.use', 'x', 1, 'DEV', 'Orders', 1, 1)";
        sqlx::query(unrelated).execute(s.db.pool()).await.unwrap();
        sqlx::query("UPDATE api_keys SET last_used_at = $1").bind("2026-12-01T00:00:00.000000Z").execute(s.db.pool()).await.unwrap();
        assert!(before.is_some(), "both backends keep an epoch");
        assert_eq!(s.db.route_epoch().await, before, "usage counts and a key's last use decide nothing");
        let other = Api::new(open(&db, &[]).await);
        let target = "/proxy/v1/DEV/Orders/orders";
        let call = |auth: String| {
            let other = &other;
            async move { raw(other, "GET", target, &[("authorization", &auth)], "").await }
        };
        for _ in 0..3 {
            assert_eq!(call(app.clone()).await.0, 200);
        }
        assert_eq!(other.s.broker.kept_routes(), 1, "the route is kept");
        // The kept route does not vouch for the key: the digest is checked on every call.
        let forged = format!("{}{}", &app[..bearer("").len() + 12], "x".repeat(app.len() - bearer("").len() - 12));
        assert_ne!(forged, app);
        let (st, _, text) = call(forged).await;
        assert_eq!(st, 401, "{text}");

        // Re-bound on the first server: the next call on the other goes to the new connection.
        w.ok("PUT", "/api/v1/environments/DEV/integrations/Orders/binding", json!({"connection": "Api2"})).await;
        assert!(s.db.route_epoch().await > before, "a new binding moves the epoch");
        assert_eq!(call(app.clone()).await.0, 200);
        let seen = second.seen();
        assert_eq!(seen.len(), 1, "the call went to the new connection");
        assert_eq!(seen[0].target, "/v2/orders");
        assert_eq!(seen[0].headers["authorization"], "Bearer second-token-81c3");

        // The creator's role, then the creator's account.
        users::set_role(&s.db, &operator, user.id, "DEV", Some(Role::Viewer)).await.unwrap();
        let (st, _, text) = call(app.clone()).await;
        assert_eq!(st, 403, "a viewer's key may not call through the proxy: {text}");
        users::set_role(&s.db, &operator, user.id, "DEV", Some(Role::Administrator)).await.unwrap();
        assert_eq!(call(app.clone()).await.0, 200);
        users::deactivate(&s.db, &operator, user.id).await.unwrap();
        let (st, _, text) = call(app.clone()).await;
        assert_eq!(st, 401, "{text}");
        assert!(text.contains("deactivated"), "{text}");

        // Unbound, then unpublished.
        let reader = bearer(&key(s, &["DEV:proxy:read"]).await);
        assert_eq!(call(reader.clone()).await.0, 200);
        let (st, _, text) = w.api.call(Who::Key(&w.admin), "DELETE", "/api/v1/environments/DEV/integrations/Orders/binding", None).await;
        assert!(st.is_success(), "{text}");
        let (st, _, text) = call(reader.clone()).await;
        assert_eq!(st, 409, "an unbound integration: {text}");
        let (st, _, text) = w.api.call(Who::Key(&w.admin), "DELETE", "/api/v1/environments/DEV/integrations/Orders", None).await;
        assert!(st.is_success(), "{text}");
        let (st, _, text) = call(reader).await;
        assert_eq!(st, 404, "an unpublished integration: {text}");
        assert_eq!(second.seen().len(), 3, "nothing was sent after the binding went");
    }
}

/// The epoch moves with each committed transaction that changes what decides a route (on
/// PostgreSQL once however many rows and statements it took), and not for one rolled back; a
/// read that begins after a commit on another connection sees it.
#[tokio::test]
async fn the_route_epoch_moves_once_per_committed_change() {
    for db in backends().await {
        let w = world(&db, &[]).await;
        let s = &w.api.s;
        let before = s.db.route_epoch().await.expect("an epoch");
        let mut tx = s.db.begin().await.unwrap();
        for _ in 0..3 {
            sqlx::query("UPDATE connections SET updated_at = $1").bind(server::db::now()).execute(&mut *tx).await.unwrap();
        }
        tx.commit().await.unwrap();
        let after = s.db.route_epoch().await.expect("an epoch");
        assert!(after > before, "a committed change moves the epoch");
        if db.kind == Kind::Postgres {
            assert_eq!(after, before + 1, "one transaction, one step");
        }
        let mut tx = s.db.begin().await.unwrap();
        sqlx::query("UPDATE integrations SET updated_at = $1").bind(server::db::now()).execute(&mut *tx).await.unwrap();
        tx.rollback().await.unwrap();
        assert_eq!(s.db.route_epoch().await, Some(after), "a rolled-back change moves nothing");
        sqlx::query("UPDATE environments SET updated_at = $1").bind(server::db::now()).execute(s.db.pool()).await.unwrap();
        let last = s.db.route_epoch().await.expect("an epoch");
        assert!(last > after, "a statement of its own is a transaction");
        // Many callers at once share reads, and each sees what was committed before it asked.
        let reads = futures::future::join_all((0..50).map(|_| s.db.route_epoch())).await;
        assert!(reads.iter().all(|r| *r == Some(last)), "{reads:?}");
    }
}

/// Promise 17 through the proxy: whoever re-points a connection must bring the secret again,
/// so the new place never sees the stored one.
#[tokio::test]
async fn a_repointed_connection_sends_nothing_stored_through_the_proxy() {
    for db in backends().await {
        let w = world(&db, &[]).await;
        let capture = Upstream::default();
        let capture_url = capture.spawn().await;
        let k = key(&w.api.s, &["DEV:proxy:rw"]).await;
        let writer = key(&w.api.s, &["DEV:connections:write"]).await;
        let (st, _, text) = w
            .api
            .call(Who::Key(&writer), "PATCH", "/api/v1/environments/DEV/connections/Api", Some(json!({"settings": {"base_url": capture_url}})))
            .await;
        assert!(st.is_success(), "{text}");
        let (st, _, text) = raw(&w.api, "GET", "/proxy/v1/DEV/Orders/orders", &[("authorization", &bearer(&k))], "").await;
        assert_eq!(st, 409, "{text}");
        assert!(text.contains("connection_incomplete"), "{text}");
        assert!(capture.seen().is_empty() && w.upstream.seen().is_empty(), "nothing was sent anywhere");
    }
}

#[tokio::test]
async fn bodies_stream_both_ways_within_their_limits() {
    const MIB: usize = 1 << 20;
    for db in backends().await {
        let limits = [("CONNVAULT_PROXY_MAX_REQUEST_BYTES", "4194304"), ("CONNVAULT_PROXY_MAX_RESPONSE_BYTES", "6291456")];
        let w = world(&db, &limits).await;
        let url = listen(&w.api).await;
        let k = key(&w.api.s, &["DEV:proxy:rw"]).await;
        let http = reqwest::Client::new();
        let target = format!("{url}/proxy/v1/DEV/Orders/files");

        // A 5 MiB download arrives whole, as it streams.
        w.upstream.answer(Answer { body_len: 5 * MIB, headers: vec![("content-type", "application/octet-stream")], ..Answer::default() });
        let r = http.get(&target).bearer_auth(&k).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.bytes().await.unwrap().len(), 5 * MIB);

        // More than the limit: refused when the length says so, cut off when it does not.
        w.upstream.answer(Answer { body_len: 7 * MIB, ..Answer::default() });
        let r = http.get(&target).bearer_auth(&k).send().await.unwrap();
        assert_eq!(r.status(), 502);
        assert!(r.text().await.unwrap().contains("CONNVAULT_PROXY_MAX_RESPONSE_BYTES"));
        w.upstream.answer(Answer { body_len: 7 * MIB, chunked: true, ..Answer::default() });
        let r = http.get(&target).bearer_auth(&k).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let mut got = 0;
        let mut stream = r.bytes_stream();
        let mut cut = false;
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(c) => got += c.len(),
                Err(_) => {
                    cut = true;
                    break;
                }
            }
        }
        assert!(cut && got <= 6 * MIB + 64 * 1024, "cut off near the limit: {got} bytes");

        // Uploads: a 3 MiB streamed body (no length) arrives whole; 5 MiB with a length is
        // refused before anything is sent; 5 MiB streamed is cut off with 413.
        w.upstream.answer(Answer::default());
        let before = w.upstream.seen().len();
        let chunks = |n: usize| reqwest::Body::wrap_stream(futures::stream::iter((0..n).map(|_| Ok::<_, std::io::Error>(vec![b'y'; 256 * 1024]))));
        let r = http.post(&target).bearer_auth(&k).body(chunks(12)).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(w.upstream.seen()[before].body_len, 3 * MIB);
        let r = http.put(&target).bearer_auth(&k).body(vec![b'z'; 5 * MIB]).send().await.unwrap();
        assert_eq!(r.status(), 413);
        assert_eq!(w.upstream.seen().len(), before + 1, "a body known to be too large is never sent");
        let r = http.put(&target).bearer_auth(&k).body(chunks(20)).send().await;
        if let Ok(r) = r {
            assert_eq!(r.status(), 413);
        }
        assert!(w.upstream.seen().iter().all(|s| s.body_len <= 4 * MIB), "no more than the limit went on");

        // After a 401 a streamed body cannot be sent again: the answer says so.
        w.upstream.answer(Answer { status: 401, ..Answer::default() });
        let before = w.upstream.seen().len();
        let r = http.post(&target).bearer_auth(&k).body(chunks(8)).send().await.unwrap();
        assert_eq!(r.status(), 401);
        assert!(r.headers()[server::proxy::NOT_RETRIED].to_str().unwrap().contains("send the request again"));
        assert_eq!(w.upstream.seen().len() - before, 1);
    }
}

mod salesforce {
    use super::*;
    use server::providers::salesforce::standin::{ConnectedApp, StandIn, ACCOUNTS};
    use std::collections::BTreeSet;

    const USER: &str = "proxy+dev@acme.com";

    /// The connected-app flow, done: connection `SF` bound to integration `Accounts`.
    pub async fn bound(w: &World) -> StandIn {
        let sf = StandIn::new();
        let base = sf.spawn().await.unwrap();
        sf.add_user(USER, true);
        w.ok("POST", "/api/v1/environments/DEV/connections", json!({"name": "SF", "provider": "salesforce", "settings": {"login_url": base, "username": USER}}))
            .await;
        w.ok("POST", "/api/v1/environments/DEV/connections/SF/certificate", json!({})).await;
        let (_, _, pem) = w.api.call(Who::Key(&w.admin), "GET", "/api/v1/environments/DEV/connections/SF/certificate", None).await;
        let consumer_key = "3MVG9proxy".to_string();
        sf.add_app(ConnectedApp {
            consumer_key: consumer_key.clone(),
            certificate_pem: pem,
            admin_approved: true,
            assigned_users: BTreeSet::from([USER.to_string()]),
            ip_restricted: false,
        })
        .unwrap();
        w.ok("PATCH", "/api/v1/environments/DEV/connections/SF", json!({"settings": {"consumer_key": consumer_key}})).await;
        w.ok("PUT", "/api/v1/environments/DEV/integrations/Accounts", json!({"provider": "salesforce", "objects": ["Account"]})).await;
        w.ok("PUT", "/api/v1/environments/DEV/integrations/Accounts/binding", json!({"connection": "SF"})).await;
        sf
    }

    #[tokio::test]
    async fn an_expired_session_is_renewed_once_for_many_callers_without_them_noticing() {
        for db in backends().await {
            let w = world(&db, &[]).await;
            let sf = bound(&w).await;
            let k = key(&w.api.s, &["DEV:proxy:read"]).await;
            let auth = bearer(&k);
            let target = "/proxy/v1/DEV/Accounts/services/data/v60.0/query?q=SELECT+Id,+Name+FROM+Account";
            let (st, _, text) = raw(&w.api, "GET", target, &[("authorization", &auth)], "").await;
            assert_eq!(st, 200, "{text}");
            let answer: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(answer["totalSize"], ACCOUNTS.len());
            assert_eq!(answer["records"][0]["Name"], ACCOUNTS[0].1);
            let mints = sf.token_requests();
            assert_eq!(mints, 1);

            // Every session ends (timed out, or an admin revoked them): 20 callers at once all
            // get their answer, and Salesforce sees one new mint.
            sf.revoke_all_tokens();
            let headers = [("authorization", auth.as_str())];
            let calls = (0..20).map(|_| raw(&w.api, "GET", target, &headers, ""));
            let answers = futures::future::join_all(calls).await;
            assert!(answers.iter().all(|a| a.0 == 200), "{:?}", answers.iter().find(|a| a.0 != 200));
            assert_eq!(sf.token_requests() - mints, 1, "one mint for all of them");
        }
    }
}

mod sap {
    use super::*;
    use server::providers::sap_odata::standin::StandIn;

    #[tokio::test]
    async fn writes_get_the_csrf_token_and_every_call_the_sap_client() {
        for db in backends().await {
            let w = world(&db, &[]).await;
            let sap = StandIn::new();
            let urls = sap.spawn().await.unwrap();
            sap.add_user("CC_PROXY", "Pa55-proxy-word", true);
            sap.add_client("sb-proxy", "xsuaa-proxy-secret", true);
            let settings = json!({"service_url": urls.service_url, "auth": "basic", "username": "CC_PROXY", "sap_client": "100"});
            w.ok("POST", "/api/v1/environments/DEV/connections", json!({"name": "S4", "provider": "sap_odata", "settings": settings, "secrets": {"password": "Pa55-proxy-word"}}))
                .await;
            let settings = json!({"service_url": urls.service_url, "auth": "oauth_client_credentials", "token_url": urls.token_url, "client_id": "sb-proxy"});
            w.ok(
                "POST",
                "/api/v1/environments/DEV/connections",
                json!({"name": "S4_OAuth", "provider": "sap_odata", "settings": settings, "secrets": {"client_secret": "xsuaa-proxy-secret"}}),
            )
            .await;
            for (integration, connection) in [("Partners", "S4"), ("PartnersOAuth", "S4_OAuth")] {
                w.ok("PUT", &format!("/api/v1/environments/DEV/integrations/{integration}"), json!({"provider": "sap_odata", "objects": ["A_BusinessPartner"]})).await;
                w.ok("PUT", &format!("/api/v1/environments/DEV/integrations/{integration}/binding"), json!({"connection": connection})).await;
            }
            let k = key(&w.api.s, &["DEV:proxy:rw"]).await;
            let auth = bearer(&k);
            let json_headers = [("authorization", auth.as_str()), ("accept", "application/json"), ("content-type", "application/json")];
            let seen_before = sap.sap_clients_seen().len();
            let (st, _, text) = raw(&w.api, "GET", "/proxy/v1/DEV/Partners/A_BusinessPartner?sap-client=999", &json_headers, "").await;
            assert_eq!(st, 200, "{text}");
            let partner = r#"{"BusinessPartnerCategory":"1","BusinessPartnerFullName":"Proxy GmbH"}"#;
            let (st, _, text) = raw(&w.api, "POST", "/proxy/v1/DEV/Partners/A_BusinessPartner", &json_headers, partner).await;
            assert_eq!(st, 201, "{text}");
            // SAP's CSRF session ends: the write is refused with 403 Required, the proxy fetches
            // a new token and sends it once more.
            sap.expire_csrf_tokens();
            let fetches = sap.csrf_fetches();
            let (st, _, text) = raw(&w.api, "POST", "/proxy/v1/DEV/Partners/A_BusinessPartner", &json_headers, partner).await;
            assert_eq!(st, 201, "{text}");
            assert_eq!(sap.csrf_fetches() - fetches, 1);
            assert!(sap.partners().iter().filter(|p| p["BusinessPartnerFullName"] == "Proxy GmbH").count() == 2);
            let clients = sap.sap_clients_seen();
            assert!(clients[seen_before..].iter().all(|c| c.as_deref() == Some("100")), "the connection's client, never the caller's: {clients:?}");

            // An OAuth token that expired: renewed without the caller noticing.
            let (st, _, text) = raw(&w.api, "GET", "/proxy/v1/DEV/PartnersOAuth/A_BusinessPartner", &json_headers, "").await;
            assert_eq!(st, 200, "{text}");
            let tokens = sap.token_requests();
            sap.expire_tokens();
            let (st, _, text) = raw(&w.api, "GET", "/proxy/v1/DEV/PartnersOAuth/A_BusinessPartner", &json_headers, "").await;
            assert_eq!(st, 200, "{text}");
            assert_eq!(sap.token_requests() - tokens, 1);
            assert!(!text.contains("xsuaa-proxy-secret") && !text.contains("Pa55-proxy-word"));
        }
    }
}
