//! The `connvault` binary as an operator uses it: start-up, refusal with a wrong key, the
//! health endpoint, the key file, and the command line.

#![cfg(feature = "ssr")]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_connvault");

fn cmd(data: &Path) -> Command {
    let mut c = Command::new(BIN);
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("CONNVAULT_DATA_DIR", data)
        .env("RUST_LOG", "info")
        .env("LEPTOS_SITE_ROOT", data.join("site"));
    c
}

fn run(mut c: Command, stdin: &str) -> Output {
    let mut child = c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A command on the data folder `data` that must succeed: its standard output.
fn ok_in(data: &Path, args: &[&str], stdin: &str) -> String {
    let mut c = cmd(data);
    c.args(args);
    let out = run(c, stdin);
    assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
    text(&out.stdout)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A minimal HTTP/1.1 GET on loopback: (status, body).
fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let (status, _, body) = request(port, "GET", path, &[], "")?;
    Some((status, body))
}

/// A minimal HTTP/1.1 request on loopback: (status, raw header block, body).
fn request(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Option<(u16, String, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(20))).ok()?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let status = buf.split_whitespace().nth(1)?.parse().ok()?;
    let (head, body) = buf.split_once("\r\n\r\n").map(|(h, b)| (h.to_string(), b.to_string())).unwrap_or_default();
    Some((status, head, body))
}

fn header<'a>(head: &'a str, name: &str) -> Vec<&'a str> {
    head.lines().filter_map(|l| l.split_once(':')).filter(|(k, _)| k.trim().eq_ignore_ascii_case(name)).map(|(_, v)| v.trim()).collect()
}

const FORM: (&str, &str) = ("Content-Type", "application/x-www-form-urlencoded");

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(data: &Path, port: u16) -> Server {
    serve_with(data, port, &[])
}

fn serve_with(data: &Path, port: u16, vars: &[(&str, &str)]) -> Server {
    let mut c = cmd(data);
    c.envs(vars.iter().copied());
    c.arg("serve").env("LEPTOS_SITE_ADDR", format!("127.0.0.1:{port}")).stdout(Stdio::null()).stderr(Stdio::piped());
    let server = Server(c.spawn().unwrap());
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(60) {
        if get(port, "/health").is_some() {
            return server;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("the server did not answer /health within 60 s");
}

#[test]
fn help_lists_the_commands() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = text(&out.stdout);
    for c in ["serve", "rotate-master-key", "environment", "connection", "promote", "export", "import", "backup"] {
        assert!(help.contains(c), "{help}");
    }
}

#[test]
fn serve_creates_a_private_key_file_and_answers_health() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut server = serve(dir.path(), port);
    assert_eq!(get(port, "/health").unwrap(), (200, "{\"status\":\"ok\"}".to_string()));
    let (status, body) = get(port, "/api/v1/nothing-here").unwrap();
    assert_eq!(status, 404);
    assert!(body.contains("\"code\":\"not_found\""), "{body}");

    let key = dir.path().join("master.key");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    for file in ["connvault.db", "connvault.db-wal"] {
        let mode = std::fs::metadata(dir.path().join(file)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{file} must be private");
    }

    // SIGTERM: a clean shutdown.
    Command::new("kill").arg("-TERM").arg(server.0.id().to_string()).status().unwrap();
    let status = server.0.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let mut stderr = String::new();
    server.0.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert!(stderr.contains("BACK IT UP"), "{stderr}");
}

/// Promise 20 through the real `connvault serve`: a client that sends half a request header is
/// closed within CONNVAULT_HEADER_TIMEOUT_SECS (before, it was still open after 75 s).
#[test]
fn serve_closes_a_half_sent_header_within_the_header_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _server = serve_with(dir.path(), port, &[("CONNVAULT_HEADER_TIMEOUT_SECS", "2")]);
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Half: ").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let started = Instant::now();
    let mut rest = Vec::new();
    let read = s.read_to_end(&mut rest);
    let took = started.elapsed();
    assert!(read.is_ok(), "still open after 10 s: {read:?}");
    assert!(took >= Duration::from_millis(1500) && took < Duration::from_secs(6), "closed after {took:?}");
    assert_eq!(get(port, "/health").unwrap().0, 200, "whole requests are still served");
}

#[test]
fn a_wrong_key_refuses_to_start_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cmd(dir.path());
    c.args(["environment", "list"]);
    let out = run(c, "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "1. DEV\n2. QA\n3. PROD\n");
    let db = dir.path().join("connvault.db");
    let before = std::fs::read(&db).unwrap();
    let key_before = std::fs::read(dir.path().join("master.key")).unwrap();

    let port = free_port();
    let mut c = cmd(dir.path());
    c.arg("serve").env("LEPTOS_SITE_ADDR", format!("127.0.0.1:{port}")).env("CONNVAULT_MASTER_KEY", "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=");
    let out = run(c, "");
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("wrong master key") && stderr.contains("sealed with master key"), "{stderr}");
    assert!(!stderr.contains("listening"), "{stderr}");
    assert!(get(port, "/health").is_none(), "nothing may listen");
    assert_eq!(std::fs::read(&db).unwrap(), before, "the database file changed");
    assert_eq!(std::fs::read(dir.path().join("master.key")).unwrap(), key_before);

    let mut c = cmd(dir.path());
    c.arg("serve").env("CONNVAULT_MASTER_KEY", "definitely not a key");
    let out = run(c, "");
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("must be 32 bytes"), "{}", text(&out.stderr));
    assert_eq!(std::fs::read(&db).unwrap(), before);
}

#[test]
fn operators_manage_environments_and_connections_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let ok = |args: &[&str], stdin: &str| ok_in(dir.path(), args, stdin);
    assert!(ok(&["environment", "add", "UAT", "--position", "3"], "").contains("Added UAT at position 3"));
    assert!(ok(&["environment", "move", "uat", "--position", "4"], "").contains("DEV → QA → PROD → UAT"));
    ok(&["environment", "rename", "UAT", "Staging"], "");
    assert_eq!(ok(&["environment", "list"], ""), "1. DEV\n2. QA\n3. PROD\n4. Staging\n");

    let secret = "cli-secret-from-stdin-4242";
    ok(
        &[
            "connection",
            "create",
            "--env",
            "dev",
            "--name",
            "Billing",
            "--provider",
            "http",
            "--setting",
            "base_url=https://billing.example.com",
            "--setting",
            "auth=bearer",
            "--secret",
            "token=-",
        ],
        &format!("{secret}\n"),
    );
    let listed = ok(&["connection", "list", "--env", "DEV"], "");
    assert!(listed.starts_with("Billing\thttp\ttoken set "), "{listed}");
    assert!(!listed.contains(secret));

    // Bad input: a clear message naming the field, exit code 1.
    let mut c = cmd(dir.path());
    c.args(["connection", "create", "--env", "DEV", "--name", "Bad", "--provider", "http", "--setting", "base_url=ftp://x", "--setting", "auth=bearer"]);
    let out = run(c, "");
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("settings.base_url") && err.contains("ftp"), "{err}");
}

fn setup_link(stderr: &mut impl Read) -> String {
    // The banner is printed before the server starts listening; read until it appears.
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(30) {
        let n = stderr.read(&mut buf).unwrap();
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        if let Some(i) = seen.find("/setup?token=") {
            let rest = &seen[i..];
            if let Some(end) = rest.find(char::is_whitespace) {
                return rest[..end].to_string();
            }
        }
    }
    panic!("no setup link printed: {seen}");
}

#[test]
fn setup_link_sign_in_cookies_csrf_and_rate_limit_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut server = serve(dir.path(), port);
    let origin = format!("http://127.0.0.1:{port}");
    let path = setup_link(server.0.stderr.as_mut().unwrap());
    let token = path.split("token=").nth(1).unwrap();

    // The setup link creates the owner and signs them in (cookie flags: promise 14).
    let body = format!("token={token}&email=owner%40example.com&password=correct+horse+battery&confirm=correct+horse+battery");
    let (status, head, _) = request(port, "POST", "/rpc/complete_setup", &[FORM, ("Origin", &origin)], &body).unwrap();
    assert!(status < 400, "{status} {head}");
    let cookie = header(&head, "set-cookie").into_iter().find(|c| c.starts_with("cv_session=")).expect("a session cookie").to_string();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax") && !cookie.contains("Secure"), "{cookie}");
    let session = cookie.split(';').next().unwrap().to_string();

    // Used once: a second use is refused (promise 16).
    let (status, _, body2) = request(port, "POST", "/rpc/complete_setup", &[FORM, ("Origin", &origin)], &body.replace("owner%40", "second%40")).unwrap();
    assert!(status >= 400, "{status} {body2}");

    // The session works…
    let (status, _, me) = request(port, "POST", "/rpc/whoami", &[FORM, ("Origin", &origin), ("Cookie", &session)], "").unwrap();
    assert_eq!(status, 200, "{me}");
    assert!(me.contains("owner@example.com"), "{me}");
    // …but not from another site: a state-changing request with a foreign Origin (or none) is refused.
    for headers in [vec![FORM, ("Origin", "https://evil.example"), ("Cookie", &session)], vec![FORM, ("Cookie", &session)]] {
        let (status, _, body) = request(port, "POST", "/rpc/sign_out", &headers, "").unwrap();
        assert_eq!(status, 403, "{body}");
        assert!(body.contains("cross-site"), "{body}");
    }
    let (status, _, me) = request(port, "POST", "/rpc/whoami", &[FORM, ("Origin", &origin), ("Cookie", &session)], "").unwrap();
    assert!(status == 200 && me.contains("owner@example.com"), "still signed in: {me}");

    // Login CSRF: a sign-in posted from another site is refused, cookie or not.
    let (status, _, _) =
        request(port, "POST", "/rpc/sign_in", &[FORM, ("Origin", "https://evil.example")], "email=owner%40example.com&password=correct+horse+battery").unwrap();
    assert_eq!(status, 403);

    // Changing the password: the current one is checked; this session survives, the password moves.
    let (status, _, body) = request(
        port,
        "POST",
        "/rpc/change_password",
        &[FORM, ("Origin", &origin), ("Cookie", &session)],
        "current=wrong+wrong+wrong&new=a+new+long+password&confirm=a+new+long+password",
    )
    .unwrap();
    assert_eq!(status, 422, "{body}");
    let (status, _, body) = request(
        port,
        "POST",
        "/rpc/change_password",
        &[FORM, ("Origin", &origin), ("Cookie", &session)],
        "current=correct+horse+battery&new=a+new+long+password&confirm=a+new+long+password",
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");

    // Promise 10 over HTTP: the 11th bad attempt gets 429 with Retry-After. A wrong current
    // password above counted as one, so nine more sign-ins are refused plainly, then 429, and the
    // limit covers changing a password as well.
    let bad = "email=owner%40example.com&password=not+the+password";
    for i in 0..9 {
        let (status, _, _) = request(port, "POST", "/rpc/sign_in", &[FORM, ("Origin", &origin)], bad).unwrap();
        assert_eq!(status, 401, "attempt {}", i + 2);
    }
    let (status, head, _) = request(port, "POST", "/rpc/sign_in", &[FORM, ("Origin", &origin)], bad).unwrap();
    assert_eq!(status, 429, "{head}");
    assert!(!header(&head, "retry-after").is_empty(), "{head}");
    let (status, head, _) = request(
        port,
        "POST",
        "/rpc/change_password",
        &[FORM, ("Origin", &origin), ("Cookie", &session)],
        "current=guess+guess+guess&new=another+long+password&confirm=another+long+password",
    )
    .unwrap();
    assert_eq!(status, 429, "{head}");

    // Sign-out ends the session.
    let (status, _, _) = request(port, "POST", "/rpc/sign_out", &[FORM, ("Origin", &origin), ("Cookie", &session)], "").unwrap();
    assert!(status < 400);
    let (status, _, me) = request(port, "POST", "/rpc/whoami", &[FORM, ("Origin", &origin), ("Cookie", &session)], "").unwrap();
    assert_eq!(status, 200, "asking who is signed in is not an error");
    assert!(!me.contains("owner@example.com"), "{me}");
}

#[test]
fn session_cookies_are_secure_behind_https() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cmd(dir.path());
    c.args(["user", "create", "--email", "o@example.com", "--owner"]);
    let out = run(c, "owner password 123\n");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let port = free_port();
    let _server = serve_with(dir.path(), port, &[("CONNVAULT_PUBLIC_URL", "https://vault.example.com")]);
    let (status, head, body) =
        request(port, "POST", "/rpc/sign_in", &[FORM, ("Origin", "https://vault.example.com")], "email=o%40example.com&password=owner+password+123").unwrap();
    assert!(status < 400, "{status} {body}");
    let cookie = header(&head, "set-cookie").into_iter().find(|c| c.starts_with("cv_session=")).expect("cookie").to_string();
    assert!(cookie.ends_with("; Secure"), "{cookie}");
}

#[test]
fn pages_and_server_functions_require_a_session() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _server = serve(dir.path(), port);
    let origin = format!("http://127.0.0.1:{port}");
    let (status, _, body) = request(port, "POST", "/rpc/list_connections", &[FORM, ("Origin", &origin)], "environment=DEV&search=").unwrap();
    assert_eq!(status, 401);
    assert!(body.contains("sign in required"), "{body}");
    let (status, _, page) = request(port, "GET", "/sign-in", &[], "").unwrap();
    assert_eq!(status, 200, "the sign-in page itself is not an error: {page}");
    let (_, _, body) = request(port, "POST", "/rpc/list_environments", &[FORM, ("Origin", &origin)], "").unwrap();
    assert!(body.contains("sign in required"), "{body}");
}

/// Promise 6, logs included: with debug logging on, a server that stores, replaces, lists,
/// reads and uses a marked secret (every documented GET route, the pages' server functions, a
/// live test) never writes the marker to its log, and no response carries it.
#[test]
fn promise_6_a_secret_never_reaches_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let marker = "LOGSCAN-marker-secret-91c3";
    let ok = |args: &[&str], stdin: &str| ok_in(dir.path(), args, stdin);
    ok(&["user", "create", "--email", "owner@example.com", "--owner"], "owner password 123\n");
    ok(
        &[
            "connection",
            "create",
            "--env",
            "DEV",
            "--name",
            "Marked",
            "--provider",
            "http",
            "--setting",
            "base_url=http://127.0.0.1:9/",
            "--setting",
            "auth=bearer",
            "--secret",
            "token=-",
        ],
        &format!("{marker}\n"),
    );
    let stdout = ok(&["api-key", "create", "--name", "scan", "--grant", "*:*:rw"], "");
    let key = stdout.trim().to_string();
    assert!(key.starts_with("cvk_"), "{stdout}");

    let port = free_port();
    let mut server = serve_with(dir.path(), port, &[("RUST_LOG", "debug"), ("CONNVAULT_ALLOW_LOOPBACK", "1")]);
    // Drain the log as it is written (a full pipe would stall the server).
    let mut stderr = server.0.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut log = String::new();
        let _ = stderr.read_to_string(&mut log);
        log
    });
    let origin = format!("http://127.0.0.1:{port}");
    let bearer = format!("Bearer {key}");
    let json = ("Content-Type", "application/json");
    let api = |method: &str, path: &str, body: &str| {
        let (status, _, text) = request(port, method, path, &[("Authorization", &bearer), json], body).unwrap();
        assert!(!text.contains("LOGSCAN-marker"), "{method} {path} answered with the secret");
        (status, text)
    };
    assert_eq!(api("PATCH", "/api/v1/environments/DEV/connections/Marked", &format!(r#"{{"secrets": {{"token": "{marker}-2"}}}}"#)).0, 200);
    assert_eq!(api("PUT", "/api/v1/environments/DEV/integrations/Marked", r#"{"provider": "http"}"#).0, 201);
    assert_eq!(api("PUT", "/api/v1/environments/DEV/integrations/Marked/binding", r#"{"connection": "Marked"}"#).0, 200);
    assert_eq!(api("POST", "/api/v1/environments/DEV/connections/Marked/test", "").0, 200);
    // A Salesforce connection with a certificate and a request waiting in the outbox.
    let sf = r#"{"name": "SF_Marked", "provider": "salesforce", "settings": {"login_url": "https://login.salesforce.com", "username": "int@acme.com"}}"#;
    assert_eq!(api("POST", "/api/v1/environments/DEV/connections", sf).0, 201);
    let (status, issued) = api("POST", "/api/v1/environments/DEV/connections/SF_Marked/certificate", r#"{"send_request": true, "admin_email": "a@acme.com"}"#);
    assert_eq!(status, 201, "{issued}");
    assert!(!issued.contains("PRIVATE"));
    // A webhook subscription (id 1), so that its routes answer too.
    let (status, hook) = api("POST", "/api/v1/environments/DEV/webhooks", r#"{"url": "http://127.0.0.1:9/hook", "events": ["*"]}"#);
    assert_eq!(status, 201, "{hook}");
    // A connection that signs in, its client secret the marker too.
    let oa = format!(
        r#"{{"name": "OA_Marked", "provider": "oauth2", "settings": {{"authorize_url": "https://auth.example.com/a", "token_url": "https://auth.example.com/t", "client_id": "abc"}}, "secrets": {{"client_secret": "{marker}-oauth"}}}}"#
    );
    assert_eq!(api("POST", "/api/v1/environments/DEV/connections", &oa).0, 201);
    let doc: serde_json::Value = serde_json::from_str(server::api::openapi_json()).unwrap();
    for (path, item) in doc["paths"].as_object().unwrap() {
        if item.get("get").is_some() {
            let salesforce = ["/certificate", "/status", "/admin-response"].iter().any(|p| path.ends_with(p));
            let name = if salesforce {
                "SF_Marked"
            } else if path.ends_with("/sign-in") {
                "OA_Marked"
            } else {
                "Marked"
            };
            let concrete = path.replace("{env}", "DEV").replace("{name}", name).replace("{id}", "1");
            let link = concrete.ends_with("/admin-response") || concrete.ends_with("/credential-response");
            let (status, text) = if link { api("GET", &format!("{concrete}?token=not-the-link"), "") } else { api("GET", &concrete, "") };
            let expected = if concrete.starts_with("/api/v1/outbox") || link {
                403
            } else if concrete.ends_with("/credential-request") {
                404 // nobody asked for Marked's credentials
            } else {
                200
            };
            assert_eq!(status, expected, "{concrete}: {text}");
            assert!(!text.contains("PRIVATE KEY"), "{concrete}");
        }
    }
    // The pages' server functions, with a session.
    let (status, head, _) =
        request(port, "POST", "/rpc/sign_in", &[FORM, ("Origin", &origin)], "email=owner%40example.com&password=owner+password+123").unwrap();
    assert!(status < 400, "{head}");
    let session = header(&head, "set-cookie").into_iter().find(|c| c.starts_with("cv_session=")).unwrap().split(';').next().unwrap().to_string();
    for (path, body) in [
        ("/rpc/list_connections", "environment=DEV"),
        ("/rpc/connection_form", "environment=DEV&name=Marked"),
        ("/rpc/test_connection", "environment=DEV&name=Marked"),
        ("/rpc/list_integrations", "environment=DEV"),
        ("/rpc/list_audit", "environment=DEV"),
        ("/rpc/signing_status", "environment=DEV&name=SF_Marked"),
    ] {
        let (status, _, text) = request(port, "POST", path, &[FORM, ("Origin", &origin), ("Cookie", &session)], body).unwrap();
        assert_eq!(status, 200, "{path}: {text}");
        assert!(!text.contains("LOGSCAN-marker"), "{path} answered with the secret");
    }
    for page in
        ["/env/DEV/connections", "/env/DEV/connections/Marked", "/env/DEV/connections/SF_Marked", "/audit?environment=DEV", "/outbox", "/api/v1/outbox/1"]
    {
        let (status, _, text) = request(port, "GET", page, &[("Cookie", &session)], "").unwrap();
        assert_eq!(status, 200, "{page}");
        assert!(!text.contains("LOGSCAN-marker"), "{page} carried the secret");
        assert!(!text.contains("PRIVATE KEY"), "{page} carried the Salesforce key");
    }

    let _ = server.0.kill();
    let _ = server.0.wait();
    let log = reader.join().unwrap();
    assert!(log.contains("DEBUG") || log.contains("INFO"), "the log was captured: {log}");
    assert!(log.contains("/api/v1/environments/DEV/connections/Marked/test"), "requests are logged");
    assert!(!log.contains("LOGSCAN-marker"), "the secret reached the log");
    assert!(!log.contains("PRIVATE KEY") && !log.contains("/respond/DEV/SF_Marked?token="), "the key or the one-time link reached the log");
}

/// Starts a stand-in command with its standard output read line by line, and waits up to 30 s
/// for a line that `done` accepts: the process and the lines printed until then.
fn stand_in_printing(mut c: Command, what: &str, done: impl Fn(&str) -> bool) -> (Server, Vec<String>) {
    use std::io::BufRead;
    c.stdout(Stdio::piped()).stderr(Stdio::null());
    let mut stand_in = Server(c.spawn().unwrap());
    let stdout = stand_in.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut printed: Vec<String> = Vec::new();
    while !printed.iter().any(|l| done(l)) {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => printed.push(line),
            Err(_) => panic!("{what} did not print what was expected within 30 s: {printed:?}"),
        }
    }
    (stand_in, printed)
}

#[test]
fn dev_salesforce_serves_the_demo_page_at_the_url_it_prints() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut c = cmd(dir.path());
    c.args(["dev-salesforce", "--addr", &format!("127.0.0.1:{port}")]);
    let url = format!("http://127.0.0.1:{port}/");
    let (mut stand_in, _) = stand_in_printing(c, "dev-salesforce", |l| l.contains(&url));
    let (status, body) = get(port, "/").unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("for local demos, not Salesforce") && body.contains("action=\"/apps\"") && body.contains("name=\"certificate\""), "{body}");
    assert!(body.contains(&format!("http://127.0.0.1:{port}/services/oauth2/token")), "the page names the token endpoint: {body}");
    let _ = stand_in.0.kill();
    assert!(!stand_in.0.wait().unwrap().success(), "killed, not ended by itself");
}

#[test]
fn dev_microsoft_serves_the_demo_page_at_the_url_it_prints() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut c = cmd(dir.path());
    c.args(["dev-microsoft", "--addr", &format!("127.0.0.1:{port}")]);
    let (mut stand_in, printed) = stand_in_printing(c, "dev-microsoft", |l| l.contains("Dataverse environment URL"));
    let url = format!("http://127.0.0.1:{port}/");
    assert!(printed.iter().any(|l| l.contains(&url)), "{printed:?}");
    let (status, body) = get(port, "/").unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("for local demos, not Microsoft") && body.contains("action=\"/apps\"") && body.contains("name=\"certificate\""), "{body}");
    let tenant = body.split("<code id=\"tenant-id\">").nth(1).and_then(|r| r.split('<').next()).expect("the page shows the tenant ID").to_string();
    assert_eq!(tenant.len(), 36, "{tenant}");
    assert!(body.contains(&format!("http://127.0.0.1:{port}/{tenant}/oauth2/v2.0/token")), "the page names the token endpoint: {body}");
    assert!(printed.iter().any(|l| l.contains(&tenant)), "the tenant is printed too: {printed:?}");
    let _ = stand_in.0.kill();
    assert!(!stand_in.0.wait().unwrap().success(), "killed, not ended by itself");
}

#[test]
fn dev_sap_serves_the_metadata_with_the_user_it_prints() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut c = cmd(dir.path());
    c.args(["dev-sap", "--addr", &format!("127.0.0.1:{port}")]);
    let (mut stand_in, printed) = stand_in_printing(c, "dev-sap", |l| l.contains("oauth_client_credentials"));
    let service = printed.iter().find_map(|l| l.split("service URL: ").nth(1)).and_then(|r| r.split_whitespace().next()).unwrap().to_string();
    assert!(service.starts_with(&format!("http://127.0.0.1:{port}/")) && service.ends_with('/'), "{printed:?}");
    let password = printed.iter().find_map(|l| l.split("password ").nth(1)).unwrap().trim().to_string();
    let path = format!("{}$metadata", service.trim_start_matches(&format!("http://127.0.0.1:{port}")));
    let pair = server::credential::Credential::basic("CONNVAULT_DEMO", &server::secret::SecretString::new(password));
    let basic = format!("Basic {}", pair.value.expose_secret());
    let (status, _, body) = request(port, "GET", &path, &[("Authorization", &basic)], "").unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("EntitySet") && body.contains("A_BusinessPartner"), "{body}");
    assert_eq!(request(port, "GET", &path, &[("Authorization", "Basic d3Jvbmc6d3Jvbmc=")], "").unwrap().0, 401);
    let _ = stand_in.0.kill();
    assert!(!stand_in.0.wait().unwrap().success(), "killed, not ended by itself");
}

#[test]
fn dev_workato_answers_users_me_for_the_token_it_prints() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut c = cmd(dir.path());
    c.args(["dev-workato", "--addr", &format!("127.0.0.1:{port}")]);
    let (mut stand_in, printed) = stand_in_printing(c, "dev-workato", |l| l.contains("API client token"));
    assert!(printed.iter().any(|l| l.contains(&format!("http://127.0.0.1:{port}/api/"))), "{printed:?}");
    let token = printed.iter().find_map(|l| l.rsplit_once(": ").filter(|_| l.contains("API client token")).map(|(_, t)| t.trim().to_string())).unwrap();
    assert_eq!(token.len(), 64, "{token}");
    let ask = |auth: &str| request(port, "GET", "/api/users/me", &[("Authorization", auth)], "").unwrap();
    let (status, _, body) = ask(&format!("Bearer {token}"));
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("Acme Automation"), "{body}");
    assert_eq!(ask("Bearer not-the-token").0, 401);
    let _ = stand_in.0.kill();
    assert!(!stand_in.0.wait().unwrap().success(), "killed, not ended by itself");
}

/// Two `connvault serve` processes on one PostgreSQL database: 50 concurrent callers on a stale
/// Salesforce token, half on each server, cause exactly one call to Salesforce (the mint holds
/// a PostgreSQL advisory lock; the other server finds the new token in the database).
#[test]
fn two_server_processes_on_one_postgresql_mint_once_between_them() {
    use server::providers::salesforce::standin::{ConnectedApp, StandIn};
    let Some(admin) = std::env::var("CONNVAULT_TEST_POSTGRES_URL").ok().filter(|v| !v.is_empty()) else {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "CONNVAULT_TEST_POSTGRES_URL is not set: under CI the PostgreSQL test must run");
        eprintln!("SKIPPED: two servers on one PostgreSQL (CONNVAULT_TEST_POSTGRES_URL not set)");
        return;
    };
    let db_name = format!("cv_two_servers_{}_{}", std::process::id(), free_port());
    let created = Command::new("psql")
        .args([admin.as_str(), "-v", "ON_ERROR_STOP=1", "-q", "-c", &format!("CREATE DATABASE {db_name}")])
        .output()
        .unwrap_or_else(|e| panic!("psql (Debian's postgresql-client, installed with postgresql) is needed to create the test database: {e}"));
    assert!(created.status.success(), "psql: {}", text(&created.stderr));
    let url = format!("{}/{db_name}", admin.rsplit_once('/').unwrap().0);

    // Salesforce, in this process, so that its calls can be counted.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let sf = StandIn::new();
    let sf_url = runtime.block_on(sf.spawn()).unwrap();
    sf.add_user("int@acme.com", true);

    let key_b64 = "c2hhcmVkLW1hc3Rlci1rZXktZm9yLXR3by1zZXJ2ZXI="; // 32 bytes
    let vars = [("DATABASE_URL", url.as_str()), ("CONNVAULT_MASTER_KEY", key_b64), ("CONNVAULT_ALLOW_LOOPBACK", "1")];
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut c = cmd(dir_a.path());
    c.envs(vars).args(["api-key", "create", "--name", "two", "--grant", "*:*:rw"]);
    let out = run(c, "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let bearer = format!("Bearer {}", text(&out.stdout).trim());
    let (port_a, port_b) = (free_port(), free_port());
    let _a = serve_with(dir_a.path(), port_a, &vars);
    let _b = serve_with(dir_b.path(), port_b, &vars);
    let api = |port: u16, method: &str, path: &str, body: &str| {
        let (status, _, text) = request(port, method, path, &[("Authorization", &bearer), ("Content-Type", "application/json")], body).unwrap();
        (status, text)
    };
    let sf_conn = format!(r#"{{"name": "SF", "provider": "salesforce", "settings": {{"login_url": "{sf_url}", "username": "int@acme.com"}}}}"#);
    assert_eq!(api(port_a, "POST", "/api/v1/environments/DEV/connections", &sf_conn).0, 201);
    assert_eq!(api(port_a, "POST", "/api/v1/environments/DEV/connections/SF/certificate", "{}").0, 201);
    let (_, pem) = api(port_b, "GET", "/api/v1/environments/DEV/connections/SF/certificate", "");
    let app = ConnectedApp {
        consumer_key: "3MVG9twoservers".into(),
        certificate_pem: pem,
        admin_approved: true,
        assigned_users: ["int@acme.com".to_string()].into(),
        ip_restricted: false,
    };
    sf.add_app(app).unwrap();
    assert_eq!(api(port_a, "PATCH", "/api/v1/environments/DEV/connections/SF", r#"{"settings": {"consumer_key": "3MVG9twoservers"}}"#).0, 200);
    assert!(api(port_a, "PUT", "/api/v1/environments/DEV/integrations/Accounts", r#"{"provider": "salesforce"}"#).0 < 300);
    assert_eq!(api(port_b, "PUT", "/api/v1/environments/DEV/integrations/Accounts/binding", r#"{"connection": "SF"}"#).0, 200);

    let before = sf.token_requests();
    let callers: Vec<_> = (0..50)
        .map(|i| {
            let (port, bearer) = (if i % 2 == 0 { port_a } else { port_b }, bearer.clone());
            std::thread::spawn(move || {
                request(port, "POST", "/api/v1/environments/DEV/integrations/Accounts/token", &[("Authorization", &bearer)], "").unwrap()
            })
        })
        .collect();
    let answers: Vec<(u16, String, String)> = callers.into_iter().map(|t| t.join().unwrap()).collect();
    let tokens: std::collections::BTreeSet<String> = answers
        .iter()
        .map(|(status, _, body)| {
            assert_eq!(*status, 200, "{body}");
            let v: serde_json::Value = serde_json::from_str(body).unwrap();
            v["access_token"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(sf.token_requests() - before, 1, "one mint across both server processes");
    assert_eq!(tokens.len(), 1, "every caller got the same token");
    drop(runtime);
}

/// Issue 6 from the command line: `promote`, `export` and `import` against a running server,
/// with the exit codes a pipeline acts on (0 done, 2 conflicts, 1 any other error) and errors
/// that say what to fix.
#[test]
fn promote_export_and_import_against_a_running_server() {
    use serde_json::{json, Value};
    let dir = tempfile::tempdir().unwrap();
    let local = |args: &[&str], stdin: &str| ok_in(dir.path(), args, stdin).trim().to_string();
    let http = ["--provider", "http", "--setting", "auth=bearer", "--secret", "token=-"];
    local(
        &[&["connection", "create", "--env", "DEV", "--name", "Billing", "--setting", "base_url=https://billing.example.com"][..], &http].concat(),
        "dev-token\n",
    );
    let promoter = local(&["api-key", "create", "--name", "promoter", "--grant", "*:promotion:rw"], "");
    let seeder = local(&["api-key", "create", "--name", "seeder", "--grant", "DEV:integrations:rw", "--grant", "DEV:bindings:rw"], "");
    let reader = local(&["api-key", "create", "--name", "reader", "--grant", "DEV:promotion:read"], "");
    let port = free_port();
    let _server = serve(dir.path(), port);
    let seed = |method: &str, path: &str, body: &str| {
        let auth = format!("Bearer {seeder}");
        let (status, _, answer) = request(port, method, path, &[("Authorization", &auth), ("Content-Type", "application/json")], body).unwrap();
        assert!(status < 300, "{method} {path}: {status} {answer}");
    };
    seed("PUT", "/api/v1/environments/DEV/integrations/Orders", r#"{"provider": "http", "description": "order sync", "version": "1.0"}"#);
    seed("PUT", "/api/v1/environments/DEV/integrations/Orders/binding", r#"{"connection": "Billing"}"#);

    let url = format!("http://127.0.0.1:{port}");
    // (exit code, stdout, stderr) of a command against the server, with the promoter's key.
    let cli = |args: &[&str], vars: &[(&str, &str)], stdin: &str| {
        let mut c = cmd(dir.path());
        c.env("CONNVAULT_URL", &url).env("CONNVAULT_API_KEY", &promoter).envs(vars.iter().copied()).args(args);
        let out = run(c, stdin);
        (out.status.code(), text(&out.stdout), text(&out.stderr))
    };
    let qa = || {
        let (code, out, err) = cli(&["export", "--env", "QA"], &[], "");
        assert_eq!(code, Some(0), "{err}");
        let v: Value = serde_json::from_str(&out).unwrap();
        assert!(!out.contains('\r') && err.is_empty(), "a pipe gets the bundle only: {err}");
        json!([v["integrations"], v["connections"], v["bindings"]])
    };

    // The server is never guessed; a mistake on the command line is exit 1 too (2 is for conflicts).
    let mut c = cmd(dir.path());
    c.env("CONNVAULT_API_KEY", &promoter).args(["promote", "--from", "DEV", "--to", "QA"]);
    let out = run(c, "");
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("--url URL or set CONNVAULT_URL"), "{}", text(&out.stderr));
    let (code, _, err) = cli(&["promote", "--from", "DEV"], &[], "");
    assert_eq!(code, Some(1), "{err}");

    // A plan: the creates, what will still need a connection, nothing written.
    let before = qa();
    let (code, out, err) = cli(&["promote", "--from", "DEV", "--to", "QA", "--plan"], &[], "");
    assert_eq!(code, Some(0), "{out}{err}");
    let row = out.lines().find(|l| l.contains("Orders") && l.contains("create")).unwrap_or_else(|| panic!("no planned create: {out}"));
    assert!(row.trim_start().starts_with("integration") && row.contains("will be published"), "{out}");
    assert!(out.contains("needs a connection: Orders will need a connection in QA") && out.contains("let the import create the connections QA lacks"), "{out}");
    assert!(!out.contains("=true"), "plain words: {out}");
    assert!(out.contains("1 to create, 0 to update, 0 unchanged, 0 conflicts (planned; nothing was written"), "{out}");
    assert!(out.contains(&format!("Still to do in QA after this:\n  - Bind a Generic HTTP connection to Orders in QA: {url}/env/QA/integrations\n")), "{out}");
    assert_eq!(qa(), before, "a plan writes nothing");

    // Applied, then again: nothing left to change.
    let (code, out, err) = cli(&["promote", "--from", "DEV", "--to", "QA"], &[], "");
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.starts_with("Imported into QA:") && out.contains("1 created, 0 updated, 0 unchanged, 0 conflicts"), "{out}");
    assert!(out.contains("was published") && out.contains("needs a connection: Orders needs a connection in QA"), "the past tense: {out}");
    assert!(out.contains(&format!("Still to do in QA:\n  - Bind a Generic HTTP connection to Orders in QA: {url}/env/QA/integrations\n")), "{out}");
    assert_eq!(qa()[0][0]["name"], "Orders", "QA has the integration");
    assert_eq!(qa()[0][0]["version"], "1.0");
    let (code, out, err) = cli(&["promote", "--from", "DEV", "--to", "QA"], &[], "");
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("0 created, 0 updated, 1 unchanged, 0 conflicts (nothing to change)"), "{out}");

    // QA's own Billing, with other shared settings (and its own destination, which an import
    // never compares: issue 18): a conflict (exit 2, named), planned or not.
    local(
        &[
            "connection",
            "create",
            "--env",
            "QA",
            "--name",
            "Billing",
            "--provider",
            "http",
            "--setting",
            "base_url=https://billing-qa.example.com",
            "--setting",
            "auth=header",
            "--setting",
            "header_name=X-Billing-Key",
            "--secret",
            "token=-",
        ],
        "qa-token\n",
    );
    let before = qa();
    for plan in [true, false] {
        let args: &[&str] = if plan { &["promote", "--from", "DEV", "--to", "QA", "--plan"] } else { &["promote", "--from", "DEV", "--to", "QA"] };
        let (code, out, err) = cli(args, &[], "");
        assert_eq!(code, Some(2), "{out}{err}");
        let row = out.lines().find(|l| l.contains("Billing") && l.contains("conflict")).unwrap_or_else(|| panic!("the conflict is not named: {out}"));
        assert!(row.trim_start().starts_with("connection") && row.contains("(auth, header_name)") && row.contains("QA keeps its own base_url"), "{row}");
        assert!(out.contains("1 to create, 0 to update, 1 unchanged, 1 conflict (planned; nothing was written)"), "{out}");
        assert!(err.contains("1 conflict with QA: nothing was imported") && err.contains("--overwrite-settings"), "{err}");
    }
    assert_eq!(qa(), before, "a conflict writes nothing");
    let (code, out, err) = cli(&["promote", "--from", "DEV", "--to", "QA", "--overwrite-settings"], &[], "");
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("1 created, 1 updated, 1 unchanged, 0 conflicts"), "the settings and the binding: {out}");
    let after = qa();
    // QA's export carries no base_url at all (QA's own stays QA's: the plan said so above).
    assert_eq!(after[1][0]["settings"], json!({"auth": "bearer"}));
    assert_eq!(after[2], json!([{"integration": "Orders", "connection": "Billing"}]));

    // Files: export, then a plan as JSON for a pipeline (and the same bundle on standard input).
    let file = dir.path().join("dev.json");
    let file = file.to_str().unwrap();
    let (code, out, err) = cli(&["export", "--env", "DEV", "--out", file], &[], "");
    assert_eq!(code, Some(0), "{err}");
    assert!(out.is_empty() && err.contains("1 integration, 1 connection, 1 binding"), "{out}{err}");
    let (code, out, err) = cli(&["import", "--env", "QA", "--file", file, "--plan", "--json"], &[], "");
    assert_eq!(code, Some(0), "{err}");
    let report: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"));
    assert_eq!((report["mode"].as_str(), report["applied"].as_bool()), (Some("plan"), Some(false)), "{report}");
    assert_eq!(report["changes"].as_array().map(Vec::len), Some(3), "{report}");
    assert!(report["changes"].as_array().unwrap().iter().all(|c| c["action"] == "unchanged" && c["kind"].is_string()), "{report}");
    let bundle = std::fs::read_to_string(file).unwrap();
    let (code, out, err) = cli(&["import", "--env", "QA", "--file", "-"], &[], &bundle);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("0 created, 0 updated, 3 unchanged, 0 conflicts"), "{out}");
    // An older bundle (format_version 1) that still carries DEV's base_url: accepted, the
    // setting ignored, and the report says so.
    let mut old: Value = serde_json::from_str(&bundle).unwrap();
    old["format_version"] = json!(1);
    old["connections"][0]["settings"]["base_url"] = json!("https://billing.example.com");
    old["digest"] = json!(server::promotion::digest_of(&old));
    let old_file = dir.path().join("old.json");
    std::fs::write(&old_file, old.to_string()).unwrap();
    let (code, out, err) = cli(&["import", "--env", "QA", "--file", old_file.to_str().unwrap(), "--plan"], &[], "");
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("ignored: Billing's base_url (settings of one environment are never carried)"), "{out}");
    assert!(out.contains("0 to create, 0 to update, 3 unchanged, 0 conflicts"), "{out}");

    // A wrong key: the variable that holds it is named; a key without write on the target too.
    let (code, out, err) = cli(&["export", "--env", "DEV"], &[("CONNVAULT_API_KEY", "cvk_not_a_real_key_0000000000")], "");
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(out.is_empty() && err.contains("refused the key in CONNVAULT_API_KEY: 401") && err.contains("promotion:read on DEV"), "{err}");
    let (code, _, err) = cli(&["promote", "--from", "DEV", "--to", "QA", "--plan"], &[("CONNVAULT_TARGET_API_KEY", &reader)], "");
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("the key in CONNVAULT_TARGET_API_KEY may not import into QA") && err.contains("403"), "{err}");
    assert!(err.contains("CONNVAULT_TARGET_API_KEY to a key with promotion:write on QA"), "{err}");

    // An unknown environment.
    let (code, _, err) = cli(&["promote", "--from", "NOPE", "--to", "QA"], &[], "");
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("404") && err.contains("NOPE"), "{err}");

    // A corrupted file: each problem by its path in the bundle; a file that is not JSON at all.
    let mut v: Value = serde_json::from_str(&bundle).unwrap();
    v["integrations"][0]["provider"] = json!("nonsense");
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, v.to_string()).unwrap();
    let (code, out, err) = cli(&["import", "--env", "QA", "--file", bad.to_str().unwrap()], &[], "");
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(err.contains("422") && err.contains("\n  integrations[0].provider: unknown provider") && err.contains("\n  digest: "), "{err}");
    std::fs::write(&bad, &bundle[..bundle.len() / 2]).unwrap();
    let (code, _, err) = cli(&["import", "--env", "QA", "--file", bad.to_str().unwrap(), "--plan"], &[], "");
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("is not a bundle: it is not JSON"), "{err}");

    // A large body through a pipe: no progress anywhere (it is for terminals), only the answer.
    v["padding"] = json!("x".repeat(2 * 1024 * 1024));
    std::fs::write(&bad, v.to_string()).unwrap();
    let (code, out, err) = cli(&["import", "--env", "QA", "--file", bad.to_str().unwrap(), "--json"], &[], "");
    assert_eq!(code, Some(1), "{err}");
    assert!(out.is_empty() && !err.contains('\r') && !err.contains("MB"), "{out}{err}");
    assert!(err.contains("\n  padding: is not part of a connvault-bundle"), "{err}");
}

/// A `connvault serve` killed (SIGKILL) while it writes an import leaves the target as it was:
/// the apply is one transaction. The kill lands once the import's writes have reached the
/// database's write-ahead log (it grows past what the server wrote before), so it is really in
/// the middle; afterwards the same bundle applies in full on the restarted server.
#[test]
fn a_server_killed_in_the_middle_of_an_apply_leaves_the_target_unchanged() {
    use serde_json::Value;
    let dir = tempfile::tempdir().unwrap();
    let key = ok_in(dir.path(), &["api-key", "create", "--name", "release", "--grant", "*:promotion:rw"], "").trim().to_string();
    let auth = format!("Bearer {key}");
    let bundle = server::promotion::sample_bundle("DEV", 12_000, 12_000).to_string();
    let port = free_port();
    let mut server = serve(dir.path(), port);
    let export_qa = |port: u16| {
        let (status, _, body) = request(port, "GET", "/api/v1/environments/QA/export", &[("Authorization", &auth)], "").unwrap();
        assert_eq!(status, 200, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        (v["integrations"].as_array().unwrap().len(), v["connections"].as_array().unwrap().len(), v["bindings"].as_array().unwrap().len())
    };
    assert_eq!(export_qa(port), (0, 0, 0));

    let wal = dir.path().join("connvault.db-wal");
    let wal_size = || std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    let before = wal_size();
    let sender = {
        let (auth, bundle) = (auth.clone(), bundle.clone());
        std::thread::spawn(move || {
            request(
                port,
                "POST",
                "/api/v1/environments/QA/import?mode=apply&create_placeholders=true",
                &[("Authorization", &auth), ("Content-Type", "application/json")],
                &bundle,
            )
        })
    };
    let start = Instant::now();
    while wal_size() < before + 256 * 1024 {
        assert!(start.elapsed() < Duration::from_secs(120), "the import never started writing");
        assert!(!sender.is_finished(), "the import finished before it could be killed: {:?}", sender.join().unwrap().map(|r| r.0));
        std::thread::sleep(Duration::from_millis(2));
    }
    server.0.kill().unwrap();
    server.0.wait().unwrap();
    let answer = sender.join().unwrap();
    assert!(answer.as_ref().is_none_or(|(status, _, _)| *status != 200), "the import answered 200 before the kill: {answer:?}");

    let mut server = serve(dir.path(), port);
    assert_eq!(export_qa(port), (0, 0, 0), "a killed apply left part of the bundle in QA");
    let (status, _, body) = request(
        port,
        "POST",
        "/api/v1/environments/QA/import?mode=apply&create_placeholders=true",
        &[("Authorization", &auth), ("Content-Type", "application/json")],
        &bundle,
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(export_qa(port), (12_000, 12_000, 6_000));
    server.0.kill().unwrap();
}

/// `backup create` in one data folder, `backup restore` in another with its own master key: the
/// connection and its secret come across; a wrong passphrase leaves the second folder untouched.
#[test]
fn a_backup_moves_an_instance_to_another_data_folder() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let secret = "cli-backup-marker-7e21";
    let passphrase = "a backup passphrase for the test";
    let run_in = |dir: &Path, args: &[&str], vars: &[(&str, &str)], stdin: &str| {
        let mut c = cmd(dir);
        c.args(args).envs(vars.iter().copied());
        run(c, stdin)
    };
    let create =
        "connection create --env DEV --name Billing --provider http --setting base_url=https://billing.example.com --setting auth=bearer --secret token=-";
    let out = run_in(a.path(), &create.split(' ').collect::<Vec<_>>(), &[], &format!("{secret}\n"));
    assert!(out.status.success(), "{}", text(&out.stderr));

    let file = a.path().join("instance.cvbackup");
    let file_arg = file.to_str().unwrap();
    let with_passphrase = [("CONNVAULT_BACKUP_PASSPHRASE", passphrase)];
    let out = run_in(a.path(), &["backup", "create", "--out", file_arg], &with_passphrase, "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("1 connection with 1 secret"), "{}", text(&out.stdout));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    let bytes = std::fs::read(&file).unwrap();
    assert!(bytes.starts_with(b"connvault-backup\n"));
    assert!(!bytes.windows(secret.len()).any(|w| w == secret.as_bytes()), "the secret is in the file in clear");
    let out = run_in(a.path(), &["backup", "create", "--out", file_arg], &with_passphrase, "");
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("--force"), "{}", text(&out.stderr));
    let short = run_in(a.path(), &["backup", "create", "--out", file_arg, "--force"], &[("CONNVAULT_BACKUP_PASSPHRASE", "too short")], "");
    assert!(text(&short.stderr).contains("at least 12 characters"), "{}", text(&short.stderr));

    // A wrong passphrase (read from standard input): refused, and nothing is created in B.
    let out = run_in(b.path(), &["backup", "restore", "--file", file_arg], &[], "not the passphrase at all\n");
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("passphrase is wrong"), "{}", text(&out.stderr));
    assert_eq!(std::fs::read_dir(b.path()).unwrap().count(), 0, "a refused restore wrote something");

    let out = run_in(b.path(), &["backup", "restore", "--file", file_arg], &[], &format!("{passphrase}\n"));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("Restored"), "{}", text(&out.stdout));
    assert_ne!(std::fs::read(a.path().join("master.key")).unwrap(), std::fs::read(b.path().join("master.key")).unwrap());
    let out = run_in(b.path(), &["connection", "list", "--env", "DEV"], &[], "");
    assert!(text(&out.stdout).starts_with("Billing\thttp\ttoken set "), "{}", text(&out.stdout));
    // Restoring again over it is refused without --replace.
    let out = run_in(b.path(), &["backup", "restore", "--file", file_arg], &with_passphrase, "");
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("--replace"), "{}", text(&out.stderr));
    let out = run_in(b.path(), &["backup", "restore", "--file", file_arg, "--replace"], &with_passphrase, "");
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// A webhook receiver on loopback that records each request's `webhook-id` and leaves the first
/// one unanswered (the delivery is in flight when the server is killed); later ones get 200.
fn hanging_receiver() -> (u16, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let ids = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = ids.clone();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            // The head and the body (Content-Length).
            loop {
                let n = stream.read(&mut chunk).unwrap_or(0);
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf).to_string();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let len: usize = header(head, "content-length").first().and_then(|v| v.parse().ok()).unwrap_or(0);
                    if body.len() >= len {
                        break;
                    }
                }
            }
            let text = String::from_utf8_lossy(&buf).to_string();
            let id = header(&text, "webhook-id").first().map(|s| s.to_string()).unwrap_or_default();
            let first = {
                let mut ids = seen.lock().unwrap();
                ids.push(id);
                ids.len() == 1
            };
            if first {
                held.push(stream); // never answered
            } else {
                let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
            }
        }
    });
    (port, ids)
}

/// The server killed with SIGKILL while a webhook delivery is in flight: after the restart the
/// event is delivered, with the same `webhook-id` (on SQLite the restarted server queues the job
/// its predecessor left running; on PostgreSQL the dead server's row lock went with its
/// connection, so the job is free at once).
#[test]
fn a_webhook_in_flight_when_the_server_is_killed_is_delivered_after_the_restart() {
    let mut databases = vec![None];
    match std::env::var("CONNVAULT_TEST_POSTGRES_URL").ok().filter(|v| !v.is_empty()) {
        Some(admin) => {
            let db_name = format!("cv_killed_hook_{}_{}", std::process::id(), free_port());
            let created =
                Command::new("psql").args([admin.as_str(), "-v", "ON_ERROR_STOP=1", "-q", "-c", &format!("CREATE DATABASE {db_name}")]).output().unwrap();
            assert!(created.status.success(), "psql: {}", text(&created.stderr));
            databases.push(Some(format!("{}/{db_name}", admin.rsplit_once('/').unwrap().0)));
        }
        None => assert!(std::env::var("CI").as_deref() != Ok("true"), "CONNVAULT_TEST_POSTGRES_URL is not set: under CI the PostgreSQL test must run"),
    }
    for database in databases {
        let dir = tempfile::tempdir().unwrap();
        let mut vars =
            vec![("CONNVAULT_ALLOW_LOOPBACK", "1".to_string()), ("CONNVAULT_MASTER_KEY", "a2lsbGVkLXdlYmhvb2stdGVzdC1tYXN0ZXIta2V5ISE=".to_string())];
        if let Some(url) = &database {
            vars.push(("DATABASE_URL", url.clone()));
        }
        let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let mut c = cmd(dir.path());
        c.envs(vars.iter().copied()).args(["api-key", "create", "--name", "hooks", "--grant", "*:*:rw"]);
        let out = run(c, "");
        assert!(out.status.success(), "{}", text(&out.stderr));
        let bearer = format!("Bearer {}", text(&out.stdout).trim());
        let (receiver, ids) = hanging_receiver();
        let port = free_port();
        let mut server = serve_with(dir.path(), port, &vars);
        let api = |method: &str, path: &str, body: &str| {
            let (status, _, text) = request(port, method, path, &[("Authorization", &bearer), ("Content-Type", "application/json")], body).unwrap();
            (status, text)
        };
        let (status, hook) = api("POST", "/api/v1/environments/DEV/webhooks", &format!(r#"{{"url": "http://127.0.0.1:{receiver}/hook", "events": ["*"]}}"#));
        assert_eq!(status, 201, "{hook}");
        let hook: serde_json::Value = serde_json::from_str(&hook).unwrap();
        let id = hook["id"].as_i64().unwrap();
        let (status, text) = api("POST", &format!("/api/v1/environments/DEV/webhooks/{id}/test"), "");
        assert_eq!(status, 202, "{text}");
        let start = Instant::now();
        while ids.lock().unwrap().is_empty() {
            assert!(start.elapsed() < Duration::from_secs(30), "the delivery never started");
            std::thread::sleep(Duration::from_millis(20));
        }
        server.0.kill().unwrap();
        server.0.wait().unwrap();

        let _server = serve_with(dir.path(), port, &vars);
        let start = Instant::now();
        loop {
            let (_, log) = api("GET", &format!("/api/v1/environments/DEV/webhooks/{id}/deliveries"), "");
            let log: serde_json::Value = serde_json::from_str(&log).unwrap();
            if log[0]["state"] == "delivered" {
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(30), "not delivered after the restart: {log}");
            std::thread::sleep(Duration::from_millis(100));
        }
        let ids = ids.lock().unwrap().clone();
        assert_eq!(ids.len(), 2, "{ids:?}");
        assert!(ids[0].starts_with("msg_") && ids[0] == ids[1], "the same webhook-id after the restart: {ids:?}");
    }
}
