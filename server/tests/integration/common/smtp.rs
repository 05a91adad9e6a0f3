//! A minimal SMTP server for tests, listening on 127.0.0.1: what connvault sends through a real
//! mail server arrives here and can be parsed.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use base64::Engine;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// What one SMTP session delivered.
#[derive(Debug, Clone, Default)]
pub struct Received {
    pub auth: Option<(String, String)>,
    pub mechanism: Option<String>,
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    pub data: Vec<u8>,
}

#[derive(Clone, Copy, Default)]
pub struct Behaviour {
    /// The AUTH mechanisms advertised after EHLO (none: no AUTH line).
    pub auth: &'static str,
    /// Answer RCPT TO with 550.
    pub refuse_rcpt: bool,
}

/// A minimal SMTP server (RFC 5321 replies): EHLO/HELO, AUTH PLAIN and LOGIN (recording the
/// credentials), MAIL FROM, RCPT TO, DATA with dot-unstuffing, RSET, NOOP, QUIT.
pub struct SmtpServer {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
}

impl SmtpServer {
    pub async fn start(behaviour: Behaviour) -> SmtpServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let store = received.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let store = store.clone();
                tokio::spawn(async move {
                    let _ = session_loop(stream, behaviour, store).await;
                });
            }
        });
        SmtpServer { addr, received }
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

fn unb64(text: &str) -> String {
    String::from_utf8(base64::engine::general_purpose::STANDARD.decode(text.trim()).unwrap()).unwrap()
}

async fn session_loop(stream: tokio::net::TcpStream, behaviour: Behaviour, store: Arc<Mutex<Vec<Received>>>) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    let mut line = String::new();
    let mut current = Received::default();
    let mut auth: Option<(String, String)> = None;
    let mut mechanism = None;
    write.write_all(b"220 mail.test ESMTP ready\r\n").await?;
    macro_rules! read_line {
        () => {{
            line.clear();
            if lines.read_line(&mut line).await? == 0 {
                return Ok(());
            }
            line.trim_end_matches(['\r', '\n']).to_string()
        }};
    }
    loop {
        let command = read_line!();
        let upper = command.to_ascii_uppercase();
        let reply: String = if upper.starts_with("EHLO ") {
            let mut r = String::from("250-mail.test greets you\r\n250-8BITMIME\r\n");
            if !behaviour.auth.is_empty() {
                r.push_str(&format!("250-AUTH {}\r\n", behaviour.auth));
            }
            r.push_str("250 SIZE 10485760\r\n");
            r
        } else if upper.starts_with("HELO ") {
            "250 mail.test\r\n".into()
        } else if upper.starts_with("AUTH PLAIN") {
            let initial = command.get(10..).unwrap_or("").trim().to_string();
            let encoded = if initial.is_empty() {
                write.write_all(b"334 \r\n").await?;
                read_line!()
            } else {
                initial
            };
            let decoded = unb64(&encoded);
            let mut fields = decoded.split('\0');
            let (_authzid, user, pass) = (fields.next().unwrap_or(""), fields.next().unwrap_or(""), fields.next().unwrap_or(""));
            auth = Some((user.to_string(), pass.to_string()));
            mechanism = Some("PLAIN".to_string());
            "235 2.7.0 Authentication successful\r\n".into()
        } else if upper.starts_with("AUTH LOGIN") {
            write.write_all(format!("334 {}\r\n", b64("Username:")).as_bytes()).await?;
            let user = unb64(&read_line!());
            write.write_all(format!("334 {}\r\n", b64("Password:")).as_bytes()).await?;
            let pass = unb64(&read_line!());
            auth = Some((user, pass));
            mechanism = Some("LOGIN".to_string());
            "235 2.7.0 Authentication successful\r\n".into()
        } else if upper.starts_with("MAIL FROM:") {
            current = Received { auth: auth.clone(), mechanism: mechanism.clone(), mail_from: command[10..].trim().to_string(), ..Received::default() };
            "250 2.1.0 OK\r\n".into()
        } else if upper.starts_with("RCPT TO:") {
            let to = command[8..].trim().to_string();
            if behaviour.refuse_rcpt {
                format!("550 5.1.1 {to}: mailbox unavailable, no such user here\r\n")
            } else {
                current.rcpt_to.push(to);
                "250 2.1.5 OK\r\n".into()
            }
        } else if upper == "DATA" {
            if current.rcpt_to.is_empty() {
                "503 5.5.1 no valid recipients\r\n".into()
            } else {
                write.write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n").await?;
                let mut data = Vec::new();
                loop {
                    let mut raw = Vec::new();
                    if lines.read_until(b'\n', &mut raw).await? == 0 {
                        return Ok(());
                    }
                    if raw == b".\r\n" {
                        break;
                    }
                    // Dot-unstuffing (RFC 5321 4.5.2).
                    data.extend_from_slice(if raw.starts_with(b"..") { &raw[1..] } else { &raw });
                }
                current.data = data;
                store.lock().unwrap().push(std::mem::take(&mut current));
                "250 2.0.0 OK queued\r\n".into()
            }
        } else if upper == "RSET" {
            current = Received::default();
            "250 2.0.0 OK\r\n".into()
        } else if upper == "NOOP" {
            "250 2.0.0 OK\r\n".into()
        } else if upper == "QUIT" {
            write.write_all(b"221 2.0.0 Bye\r\n").await?;
            return Ok(());
        } else {
            "500 5.5.2 command not recognized\r\n".into()
        };
        write.write_all(reply.as_bytes()).await?;
    }
}
