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

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A minimal HTTP/1.1 GET on loopback: (status, body).
fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let status = buf.split_whitespace().nth(1)?.parse().ok()?;
    let body = buf.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Some((status, body))
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(data: &Path, port: u16) -> Server {
    let mut c = cmd(data);
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
    for c in ["serve", "rotate-master-key", "environment", "connection"] {
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
    assert!(dir.path().join("connvault.db").exists());

    // SIGTERM: a clean shutdown.
    Command::new("kill").arg("-TERM").arg(server.0.id().to_string()).status().unwrap();
    let status = server.0.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let mut stderr = String::new();
    server.0.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert!(stderr.contains("BACK IT UP"), "{stderr}");
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
    let ok = |args: &[&str], stdin: &str| {
        let mut c = cmd(dir.path());
        c.args(args);
        let out = run(c, stdin);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        text(&out.stdout)
    };
    assert!(ok(&["environment", "add", "UAT", "--position", "3"], "").contains("Added UAT at position 3"));
    assert!(ok(&["environment", "move", "uat", "--position", "4"], "").contains("DEV → QA → PROD → UAT"));
    ok(&["environment", "rename", "UAT", "Staging"], "");
    assert_eq!(ok(&["environment", "list"], ""), "1. DEV\n2. QA\n3. PROD\n4. Staging\n");

    let secret = "cli-secret-from-stdin-4242";
    ok(&["connection", "create", "--env", "dev", "--name", "Billing", "--provider", "http", "--setting", "base_url=https://billing.example.com", "--setting", "auth=bearer", "--secret", "token=-"], &format!("{secret}\n"));
    let listed = ok(&["connection", "list", "--env", "DEV"], "");
    assert!(listed.starts_with("Billing\thttp\ttoken set "), "{listed}");
    assert!(!listed.contains(secret));

    // Bad input: a clear message naming the field, exit code 1.
    let mut c = cmd(dir.path());
    c.args(["connection", "create", "--env", "DEV", "--name", "Bad", "--provider", "http", "--setting", "base_url=ftp://x", "--setting", "auth=bearer"]);
    let out = run(c, "");
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("settings.base_url") && err.contains("secrets.token"), "{err}");
}
