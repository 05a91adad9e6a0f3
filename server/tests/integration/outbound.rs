//! "Test connection" and promise 15 (outbound calls cannot reach internal addresses), on every
//! backend. The only servers called are fakes on 127.0.0.1; every internal address below is
//! refused before anything is sent.

use crate::common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use common::{backends, key, session, Api, Kind, TestDb, Who};
use serde_json::{json, Value};
use server::audit::Actor;
use server::outbound::{Outbound, OutboundOptions};
use server::users::Role;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const TOKEN: &str = "MARKER-tok-5d1e-never-echoed";
const PASSWORD: &str = "MARKER-pw-77ac-never-echoed";

type Handler = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// A tiny HTTP server on 127.0.0.1 that records every request head and answers with `handler`
/// (`None`: never answers).
struct Fake {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Fake {
    async fn start(handler: impl Fn(&str) -> Option<String> + Send + Sync + 'static) -> Fake {
        let handler: Handler = Arc::new(handler);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let (handler, log) = (handler.clone(), log.clone());
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 65536 {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                        if head[0] == 0x16 {
                            // A TLS ClientHello: answer in plain HTTP, as a misconfigured port would.
                            break;
                        }
                    }
                    let head = String::from_utf8_lossy(&head).into_owned();
                    log.lock().unwrap().push(head.clone());
                    match handler(&head) {
                        Some(response) => {
                            let _ = stream.write_all(response.as_bytes()).await;
                            let _ = stream.shutdown().await;
                        }
                        None => tokio::time::sleep(Duration::from_secs(30)).await,
                    }
                });
            }
        });
        Fake { addr, seen }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn requests(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

fn reply(status: &str, extra_headers: &str, body: &str) -> String {
    format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\nContent-Type: text/plain\r\nConnection: close\r\n{extra_headers}\r\n{body}", body.len())
}

/// The request's header `name` (lower case), if sent.
fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| l.split_once(':').filter(|(n, _)| n.trim().eq_ignore_ascii_case(name)).map(|(_, v)| v.trim()))
}

fn path(head: &str) -> &str {
    head.split_whitespace().nth(1).unwrap_or("")
}

fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
}

/// A fake API: `/api` wants the bearer token, the basic pair or the X-API-Key; `/missing` is
/// 404, `/broken` 500, `/echo` a 401 that echoes the Authorization header back, `/hop` a
/// same-origin redirect to `/api`.
async fn fake_api() -> Fake {
    Fake::start(|head| {
        let authorized = header(head, "authorization") == Some(&format!("Bearer {TOKEN}"))
            || header(head, "authorization") == Some(&basic("svc", PASSWORD))
            || header(head, "x-api-key") == Some(TOKEN);
        let ua_ok = header(head, "user-agent").is_some_and(|ua| ua.starts_with("connvault/"));
        Some(match path(head) {
            "/api" if authorized && ua_ok => reply("200 OK", "", "{\"hello\": true}"),
            "/api" => reply("401 Unauthorized", "", "{\"error\": \"invalid_token\"}"),
            "/missing" => reply("404 Not Found", "", "no such thing"),
            "/broken" => reply("500 Internal Server Error", "", "database exploded"),
            "/echo" => reply("401 Unauthorized", "", &format!("you sent: {}", header(head, "authorization").unwrap_or("nothing"))),
            "/hop" => reply("302 Found", "Location: /api\r\n", ""),
            _ => reply("400 Bad Request", "", ""),
        })
    })
    .await
}

fn http_conn(name: &str, base_url: &str, auth: &str) -> Value {
    let (settings, secrets) = match auth {
        "bearer" => (json!({"base_url": base_url, "auth": "bearer"}), json!({"token": TOKEN})),
        "basic" => (json!({"base_url": base_url, "auth": "basic", "username": "svc"}), json!({"password": PASSWORD})),
        "header" => (json!({"base_url": base_url, "auth": "header", "header_name": "X-API-Key"}), json!({"token": TOKEN})),
        _ => unreachable!(),
    };
    json!({"name": name, "provider": "http", "settings": settings, "secrets": secrets})
}

/// An API over `db` (loopback allowed or not) with an owner session.
async fn open(db: &TestDb, allow_loopback: bool) -> (Api, String) {
    let config = db.config_with(&[("CONNVAULT_ALLOW_LOOPBACK", if allow_loopback { "1" } else { "0" })]);
    let services = server::startup::open(config).await.unwrap();
    let api = Api::new(services);
    let owner = session(&api.s, "owner@example.com", None, true).await;
    (api, owner)
}

async fn create(api: &Api, owner: &str, body: Value) {
    let (st, _, text) = api.call(Who::Session(owner), "POST", "/api/v1/environments/DEV/connections", Some(body)).await;
    assert_eq!(st, 201, "{text}");
}

/// Runs the test of DEV/`name` as `who`: (status, body, raw text).
async fn run(api: &Api, who: Who<'_>, name: &str) -> (u16, Value, String) {
    let (st, body, text) = api.call(who, "POST", &format!("/api/v1/environments/DEV/connections/{name}/test"), None).await;
    (st.as_u16(), body, text)
}

fn assert_no_secret(text: &str) {
    for s in [TOKEN, PASSWORD, "MARKER-"] {
        assert!(!text.contains(s), "a secret came back: {text}");
    }
    for encoded in [basic("svc", PASSWORD), base64::engine::general_purpose::STANDARD.encode(TOKEN)] {
        assert!(!text.contains(encoded.trim_start_matches("Basic ")), "an encoded secret came back: {text}");
    }
}

#[tokio::test]
async fn each_kind_of_auth_is_sent_as_configured() {
    let fake = fake_api().await;
    for db in backends().await {
        let (api, owner) = open(&db, true).await;
        for auth in ["bearer", "basic", "header"] {
            create(&api, &owner, http_conn(auth, &fake.url("/api"), auth)).await;
            let (st, body, text) = run(&api, Who::Session(&owner), auth).await;
            assert_eq!(st, 200, "{text}");
            assert_eq!(body["ok"], true, "{auth}: {text}");
            assert!(body["detail"].as_str().unwrap().contains("200 OK"), "{text}");
            assert_no_secret(&text);
        }
        // A same-origin redirect is followed, with the credentials.
        create(&api, &owner, http_conn("Hop", &fake.url("/hop"), "bearer")).await;
        let (_, body, text) = run(&api, Who::Session(&owner), "Hop").await;
        assert_eq!(body["ok"], true, "{text}");
        // The wrong token: refused, with advice to replace it.
        create(&api, &owner, http_conn("Wrong", &fake.url("/api"), "bearer")).await;
        let (st, _, _) =
            api.call(Who::Session(&owner), "PATCH", "/api/v1/environments/DEV/connections/Wrong", Some(json!({"secrets": {"token": "not-the-token"}}))).await;
        assert_eq!(st, 200);
        let (st, body, text) = run(&api, Who::Session(&owner), "Wrong").await;
        assert_eq!(st, 200, "a failed check is still a result");
        assert_eq!(body["ok"], false, "{text}");
        assert!(body["detail"].as_str().unwrap().contains("refused the credentials (401 Unauthorized)"), "{text}");
        assert!(body["advice"].as_str().unwrap().contains("replace the token"), "{text}");
        assert!(!text.contains("not-the-token"));
    }
}

#[tokio::test]
async fn each_failure_has_its_own_detail_and_advice() {
    let fake = fake_api().await;
    let silent = Fake::start(|_| None).await;
    let (_reserved, closed_port) = crate::common::refusing_port();
    let closed = std::net::SocketAddr::from(([127, 0, 0, 1], closed_port));
    for db in backends().await {
        let (mut api, owner) = open(&db, true).await;
        // Short limits for the server that never answers.
        api.s.outbound = Outbound::with_options(OutboundOptions {
            connect_timeout: Duration::from_secs(1),
            total_timeout: Duration::from_millis(1500),
            ..*api.s.outbound.options()
        })
        .unwrap();
        api = Api::new(api.s);
        let cases = [
            ("Missing", fake.url("/missing"), "404 Not Found", "base URL's path"),
            ("Broken", fake.url("/broken"), "remote server is failing (500", "test again later"),
            ("Closed", format!("http://{closed}/"), "refused the connection", "port"),
            ("Silent", silent.url("/"), "did not answer in time (connvault waits 1 s to connect and 1.5 s in all)", "reachable"),
            ("NoTls", format!("https://{}/api", fake.addr), "secure (TLS) connection", "https://"),
        ];
        for (name, url, detail, advice) in cases {
            create(&api, &owner, http_conn(name, &url, "bearer")).await;
            let (st, body, text) = run(&api, Who::Session(&owner), name).await;
            assert_eq!(st, 200, "{name}: {text}");
            assert_eq!(body["ok"], false, "{name}: {text}");
            assert!(body["detail"].as_str().unwrap().contains(detail), "{name}: {text}");
            assert!(body["advice"].as_str().unwrap().contains(advice), "{name}: {text}");
            assert_no_secret(&text);
        }
        let (st, body, _) = run(&api, Who::Session(&owner), "Nothing").await;
        assert_eq!((st, body["error"]["code"].as_str()), (404, Some("not_found")));
    }
}

#[tokio::test]
async fn a_server_that_echoes_the_credentials_cannot_leak_them() {
    let fake = fake_api().await;
    for db in backends().await {
        let (api, owner) = open(&db, true).await;
        for auth in ["bearer", "basic"] {
            let name = format!("Echo-{auth}");
            create(&api, &owner, http_conn(&name, &fake.url("/echo"), auth)).await;
            let (st, body, text) = run(&api, Who::Session(&owner), &name).await;
            assert_eq!((st, &body["ok"]), (200, &json!(false)), "{text}");
            assert!(body["detail"].as_str().unwrap().contains("you sent: "), "the excerpt is there, scrubbed: {text}");
            assert!(body["detail"].as_str().unwrap().contains("[redacted]"), "{text}");
            assert_no_secret(&text);
        }
        let (_, _, audit) = api.call(Who::Session(&owner), "GET", "/api/v1/audit?environment=DEV", None).await;
        assert!(audit.contains("connection.test"));
        assert_no_secret(&audit);
        assert_no_secret(&db.all_text().await);
        assert!(fake.requests().iter().any(|h| h.contains(TOKEN)), "the fake did get the token");
    }
}

#[tokio::test]
async fn promise_15_internal_addresses_are_refused_without_a_request() {
    let fake = fake_api().await;
    let port = fake.addr.port();
    for db in backends().await {
        let (api, owner) = open(&db, false).await;
        let urls = [
            format!("http://127.0.0.1:{port}/api"),
            format!("http://2130706433:{port}/api"),
            format!("http://0x7f000001:{port}/api"),
            format!("http://0177.0.0.1:{port}/api"),
            format!("http://127.1:{port}/api"),
            format!("http://[::ffff:127.0.0.1]:{port}/api"),
            format!("http://localhost:{port}/api"),
            "http://169.254.169.254/latest/meta-data/".to_string(),
            "http://10.0.0.1/".to_string(),
            "http://192.168.1.1/".to_string(),
            "http://[fd00:ec2::254]/".to_string(),
        ];
        for (i, url) in urls.iter().enumerate() {
            let name = format!("Internal{i}");
            create(&api, &owner, http_conn(&name, url, "bearer")).await;
            let (st, body, text) = run(&api, Who::Session(&owner), &name).await;
            assert_eq!(st, 200, "{url}: {text}");
            assert_eq!(body["ok"], false, "{url}: {text}");
            assert!(body["detail"].as_str().unwrap().starts_with("this address is internal"), "{url}: {text}");
            assert!(body["detail"].as_str().unwrap().contains("CONNVAULT_ALLOW_LOOPBACK=1"), "{url}: {text}");
        }
        assert!(fake.requests().is_empty(), "the fake server saw a request: {:?}", fake.requests());
        let (_, audit, _) = api.call(Who::Session(&owner), "GET", "/api/v1/audit?environment=DEV", None).await;
        let refused = audit["items"].as_array().unwrap().iter().filter(|e| e["action"] == "connection.test" && e["outcome"] == "failed").count();
        assert_eq!(refused, urls.len(), "every refused test is audited");
    }
}

#[tokio::test]
async fn redirects_to_internal_addresses_are_refused_and_others_are_not_followed() {
    let other = fake_api().await;
    let other_url = other.url("/api");
    let redirector = Fake::start(move |head| {
        Some(match path(head) {
            "/metadata" => reply("302 Found", "Location: http://169.254.169.254/latest/meta-data/\r\n", ""),
            "/private" => reply("301 Moved Permanently", "Location: http://0x0a000001/\r\n", ""),
            "/mapped" => reply("307 Temporary Redirect", "Location: http://[::ffff:10.0.0.1]/\r\n", ""),
            "/elsewhere" => reply("302 Found", &format!("Location: {other_url}\r\n"), ""),
            _ => reply("302 Found", "Location: /loop\r\n", ""),
        })
    })
    .await;
    for db in backends().await {
        let (api, owner) = open(&db, true).await;
        for (name, p) in [("Metadata", "/metadata"), ("Private", "/private"), ("Mapped", "/mapped")] {
            create(&api, &owner, http_conn(name, &redirector.url(p), "bearer")).await;
            let (_, body, text) = run(&api, Who::Session(&owner), name).await;
            assert_eq!(body["ok"], false, "{name}: {text}");
            assert!(body["detail"].as_str().unwrap().starts_with("this address is internal"), "{name}: {text}");
        }
        create(&api, &owner, http_conn("Loop", &redirector.url("/loop"), "bearer")).await;
        let (_, body, text) = run(&api, Who::Session(&owner), "Loop").await;
        assert_eq!(body["ok"], false, "{text}");
        assert!(body["detail"].as_str().unwrap().contains("redirected more than 5 times"), "{text}");
        // Another origin: the 3xx is the answer; the credentials do not follow.
        create(&api, &owner, http_conn("Elsewhere", &redirector.url("/elsewhere"), "header")).await;
        let (_, body, text) = run(&api, Who::Session(&owner), "Elsewhere").await;
        assert_eq!(body["ok"], true, "{text}");
        assert!(body["detail"].as_str().unwrap().contains("does not follow redirects"), "{text}");
        assert!(other.requests().is_empty(), "credentials followed a redirect to another origin");
    }
}

#[tokio::test]
async fn only_those_who_may_change_connections_may_test_them() {
    let fake = fake_api().await;
    for db in backends().await {
        let (api, owner) = open(&db, true).await;
        create(&api, &owner, http_conn("Api", &fake.url("/api"), "bearer")).await;
        let dev = session(&api.s, "dev@example.com", Some(("DEV", Role::Developer)), false).await;
        let viewer = session(&api.s, "viewer@example.com", Some(("DEV", Role::Viewer)), false).await;
        let qa_dev = session(&api.s, "qa@example.com", Some(("QA", Role::Developer)), false).await;
        let k_read = key(&api.s, &["DEV:connections:read"]).await;
        let k_write = key(&api.s, &["DEV:connections:write"]).await;
        for (label, who, expected) in [
            ("nobody", Who::Nobody, 401),
            ("developer", Who::Session(&dev), 200),
            ("viewer", Who::Session(&viewer), 403),
            ("QA developer", Who::Session(&qa_dev), 403),
            ("key connections:read", Who::Key(&k_read), 403),
            ("key connections:write", Who::Key(&k_write), 200),
        ] {
            let before = fake.requests().len();
            let (st, _, text) = run(&api, who, "Api").await;
            assert_eq!(st, expected, "{label}: {text}");
            if expected != 200 {
                assert_eq!(fake.requests().len(), before, "{label}: a refused caller made a call");
            }
        }
        let (_, audit, _) = api.call(Who::Session(&owner), "GET", "/api/v1/audit?environment=DEV", None).await;
        let tests: Vec<&Value> = audit["items"].as_array().unwrap().iter().filter(|e| e["action"] == "connection.test").collect();
        assert_eq!(tests.len(), 2, "{audit}");
        assert!(tests.iter().all(|e| e["outcome"] == "ok" && e["object_name"] == "Api" && e["detail"]["secrets_used"] == json!(["token"])), "{audit}");
        assert!(tests[0]["actor"].as_str().unwrap().starts_with("API key"), "{audit}");
        assert_no_secret(&audit.to_string());
    }
}

/// Promise 11: if the audit record cannot be written, the test answers an error and no result.
#[tokio::test]
async fn promise_11_a_test_that_cannot_be_audited_returns_no_result() {
    let fake = fake_api().await;
    for db in backends().await {
        let (api, owner) = open(&db, true).await;
        create(&api, &owner, http_conn("Api", &fake.url("/api"), "bearer")).await;
        match db.kind {
            Kind::Sqlite => {
                db.exec("CREATE TRIGGER audit_down BEFORE INSERT ON audit_events BEGIN SELECT RAISE(ABORT, 'audit store down'); END").await;
            }
            Kind::Postgres => {
                db.exec("CREATE FUNCTION audit_down() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'audit store down'; END $$").await;
                db.exec("CREATE TRIGGER audit_down BEFORE INSERT ON audit_events FOR EACH ROW EXECUTE FUNCTION audit_down()").await;
            }
        }
        let (st, body, text) = run(&api, Who::Session(&owner), "Api").await;
        assert!((500..600).contains(&st), "{st}: {text}");
        assert!(body.get("ok").is_none() && body.get("detail").is_none(), "{text}");
        assert_eq!(body["error"]["code"], "internal", "{text}");
        assert_no_secret(&text);
    }
}

/// The domain function the UI calls, directly.
#[tokio::test]
async fn the_domain_function_returns_the_same_result() {
    let fake = fake_api().await;
    for db in backends().await {
        let (api, owner) = open(&db, true).await;
        create(&api, &owner, http_conn("Api", &fake.url("/api"), "basic")).await;
        let s = &api.s;
        let result = server::checks::test(s.signing(), &Actor::operator(), "dev", "api").await.unwrap();
        assert!(result.ok, "{result:?}");
        assert!(result.advice.is_none());
        let err = server::checks::test(s.signing(), &Actor::operator(), "DEV", "nope").await.unwrap_err();
        assert_eq!(err.status(), 404);
    }
}
