//! A real SMTP server for the mail tests: aiosmtpd (PyPI), run from the project's virtualenv
//! (CONNVAULT_VENV, or ~/.cache/connvault/venv as scripts/common.sh has it; `scripts/tools.sh` installs it) as a child
//! process on 127.0.0.1, with its default limits, which enforce RFC 5321 (a line over 1000
//! octets with its CRLF is refused). Under CI a missing aiosmtpd is a failure; elsewhere the test
//! is skipped, loudly.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// What one SMTP transaction delivered.
#[derive(Debug, Clone, Default)]
pub struct Received {
    /// The user name and password AUTH gave, if any.
    pub auth: Option<(String, String)>,
    pub mechanism: Option<String>,
    /// The envelope's sender, e.g. `noreply@example.test`.
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    /// The message as it crossed the wire (dot-unstuffed), CRLFs and all.
    pub data: Vec<u8>,
}

/// How the server behaves.
#[derive(Clone, Copy, Default)]
pub struct Behaviour {
    /// The AUTH mechanisms offered, e.g. "PLAIN LOGIN" (none: no AUTH).
    pub auth: &'static str,
    /// Answer every RCPT TO with 550.
    pub refuse_rcpt: bool,
}

pub struct RealSmtp {
    pub addr: SocketAddr,
    dir: tempfile::TempDir,
    child: Child,
}

fn venv() -> PathBuf {
    match std::env::var("CONNVAULT_VENV").ok().filter(|v| !v.is_empty()) {
        Some(v) => PathBuf::from(v),
        None => match std::env::var("XDG_CACHE_HOME").ok().filter(|v| !v.is_empty()) {
            Some(cache) => PathBuf::from(cache).join("connvault/venv"),
            None => PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into())).join(".cache/connvault/venv"),
        },
    }
}

impl RealSmtp {
    /// The server, or `None` (after a loud notice) when aiosmtpd is not installed outside CI.
    pub fn start(behaviour: Behaviour) -> Option<RealSmtp> {
        RealSmtp::start_on(behaviour, 0)
    }

    /// [`RealSmtp::start`] on loopback port `port` (0: any free one).
    pub fn start_on(behaviour: Behaviour, port: u16) -> Option<RealSmtp> {
        let python = venv().join("bin/python");
        let present = Command::new(&python).args(["-c", "import aiosmtpd"]).stderr(Stdio::null()).status().is_ok_and(|s| s.success());
        if !present {
            let why = format!("aiosmtpd is not installed in {} (scripts/tools.sh installs it; CONNVAULT_VENV names another virtualenv)", venv().display());
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("{why}: under CI the mail tests must run against a real SMTP server");
            }
            eprintln!("\n!!!!!!!!!!\n! SKIPPED: {why}\n!!!!!!!!!!\n");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/integration/common/aiosmtpd_sink.py");
        let mut command = Command::new(&python);
        command.arg(&script).arg(dir.path());
        if !behaviour.auth.is_empty() {
            command.args(["--auth", behaviour.auth]);
        }
        if behaviour.refuse_rcpt {
            command.arg("--refuse-rcpt");
        }
        command.args(["--port", &port.to_string()]);
        // Its stdin is a pipe from us: when this process ends, so does the server.
        let mut child = command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let port: u16 = line.trim().strip_prefix("PORT ").and_then(|p| p.parse().ok()).unwrap_or_else(|| panic!("aiosmtpd_sink.py said {line:?}"));
        Some(RealSmtp { addr: SocketAddr::from(([127, 0, 0, 1], port)), dir, child })
    }

    /// Every message accepted so far, in order.
    pub fn received(&self) -> Vec<Received> {
        let mut names: Vec<PathBuf> =
            std::fs::read_dir(self.dir.path()).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "json")).collect();
        names.sort();
        names
            .iter()
            .map(|json| {
                let facts: serde_json::Value = serde_json::from_slice(&std::fs::read(json).unwrap()).unwrap();
                let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
                Received {
                    auth: facts["auth"].as_array().map(|a| (text(&a[0]), text(&a[1]))),
                    mechanism: facts["mechanism"].as_str().map(str::to_string),
                    mail_from: text(&facts["mail_from"]),
                    rcpt_to: facts["rcpt_tos"].as_array().unwrap().iter().map(text).collect(),
                    data: std::fs::read(json.with_extension("eml")).unwrap(),
                }
            })
            .collect()
    }
}

impl Drop for RealSmtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// No bare LF or CR and no line over 998 octets in `raw`, as it crossed the wire.
pub fn assert_wire_clean(raw: &[u8]) {
    for (i, line) in raw.split_inclusive(|b| *b == b'\n').enumerate() {
        let text = line.strip_suffix(b"\r\n").unwrap_or_else(|| panic!("line {} does not end in CRLF: {:?}", i + 1, String::from_utf8_lossy(line)));
        assert!(!text.contains(&b'\r'), "line {} holds a bare CR", i + 1);
        assert!(text.len() <= 998, "line {} has {} octets", i + 1, text.len());
    }
}
