//! Email delivery. With `CONNVAULT_SMTP_URL` set, messages go to that SMTP server (plain, with
//! STARTTLS required, or over TLS from the first byte, optionally authenticated). Without it they
//! land in the outbox: an owner reads them at `/outbox` (or `GET /api/v1/outbox`) and passes
//! them on by hand, so that a vault without a mail server can still ask a Salesforce admin for
//! something.
//!
//! Every message is one MIME message built with lettre: `multipart/mixed` holding a
//! `multipart/alternative` (plain text, HTML) and the attachments, each with its file name. The
//! messages carry one-time links, so an outbox row seals the whole message (and, for the page,
//! its text part) like any other secret; only the recipient, subject, size and attachment names
//! stay readable, so that the list needs no unsealing.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use lettre::message::header::{ContentTransferEncoding, ContentType};
use lettre::message::{Body, Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::transport::smtp::{AsyncSmtpTransport, AsyncSmtpTransportBuilder};
use lettre::{Address, AsyncTransport, Message, Tokio1Executor};
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::db::{now, Db, Tx};
use crate::error::{Error, FieldError, Result};
use crate::feed::{self, Feed, Filter, Listing, Page, SortKey};
use crate::seal::{self, Place, Vault};

/// How long the mail server may take to accept the connection, or to answer any one command.
pub const SMTP_TIMEOUT: Duration = Duration::from_secs(20);
/// How long one whole delivery may take (connect, TLS, AUTH, the message, its answer).
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(60);
pub const OUTBOX_TABLE: &str = "outbox";

/// One attached file.
#[derive(Clone, PartialEq, Eq)]
pub struct Attachment {
    /// The name the recipient sees, e.g. `connvault-SF_Main-DEV.crt`.
    pub filename: String,
    /// A MIME type, e.g. `application/x-x509-ca-cert`.
    pub content_type: String,
    pub body: Vec<u8>,
}

/// Text for an email's HTML part (or any HTML page or attribute).
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// One message to one recipient.
#[derive(Clone, PartialEq, Eq)]
pub struct Email {
    /// A bare address, e.g. `admin@example.com`.
    pub to: String,
    pub subject: String,
    /// The plain-text part.
    pub text: String,
    /// The HTML part (the same content).
    pub html: String,
    pub attachments: Vec<Attachment>,
}

// Emails carry one-time links: their Debug output shows who and what, never the bodies.
impl std::fmt::Debug for Email {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Email")
            .field("to", &self.to)
            .field("subject", &self.subject)
            .field("attachments", &self.attachments.iter().map(|a| a.filename.as_str()).collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Attachment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attachment").field("filename", &self.filename).field("content_type", &self.content_type).field("size", &self.body.len()).finish()
    }
}

/// The job that delivers a queued message (payload `{"outbox_id": N}`).
pub const MAIL_JOB: &str = "mail.send";
/// The pauses between delivery attempts: eleven attempts over about 16 hours.
pub const MAIL_BACKOFF: [Duration; 10] = [
    Duration::from_secs(30),
    Duration::from_secs(60),
    Duration::from_secs(120),
    Duration::from_secs(300),
    Duration::from_secs(600),
    Duration::from_secs(1800),
    Duration::from_secs(3600),
    Duration::from_secs(7200),
    Duration::from_secs(14400),
    Duration::from_secs(28800),
];

/// A kept message: its outbox row and its delivery state (`queued` for the mail server,
/// `outbox` without one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Queued {
    pub id: i64,
    pub delivery: &'static str,
}

/// What became of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "delivery", rename_all = "snake_case")]
pub enum Delivery {
    /// The mail server accepted it.
    Sent,
    /// No mail server is configured: it waits in the outbox, row `id`.
    Outbox { id: i64 },
}

/// A mail setting that cannot work. The message names the setting and what to write instead;
/// it never repeats the URL, which may hold a password.
#[derive(Debug, thiserror::Error)]
pub enum MailConfigError {
    #[error(
        "CONNVAULT_SMTP_URL is not a valid URL ({0}); expected smtp://host:25, smtp://user:password@host:587?tls=starttls or smtps://user:password@host:465"
    )]
    Url(String),
    #[error(
        "CONNVAULT_SMTP_URL must start with smtp:// (plain, or STARTTLS with ?tls=starttls) or smtps:// (TLS from the first byte, usually port 465), not {0}://"
    )]
    Scheme(String),
    #[error("CONNVAULT_SMTP_URL names no mail server: write its host name, e.g. smtp://mail.example.com:587?tls=starttls")]
    MissingHost,
    #[error(
        "CONNVAULT_SMTP_URL: tls={0:?} is not a TLS mode; write ?tls=starttls to require STARTTLS, leave it out for plain SMTP (loopback only), or use smtps:// for TLS from the first byte"
    )]
    TlsMode(String),
    #[error("CONNVAULT_SMTP_URL: smtps:// is TLS from the first byte; remove ?tls=starttls, or use smtp://…?tls=starttls (usually port 587)")]
    TlsTwice,
    #[error("CONNVAULT_SMTP_URL: unknown parameter {0:?}; the only parameter is tls=starttls")]
    Parameter(String),
    #[error("CONNVAULT_SMTP_URL: a path ({0}) means nothing here; remove it (smtp://host:port)")]
    Path(String),
    #[error(
        "CONNVAULT_SMTP_URL: the user name and password must both be given (smtps://user:password@host:465), percent-encoded as UTF-8 (@ as %40, : as %3A, / as %2F, % as %25)"
    )]
    Credentials,
    #[error("CONNVAULT_SMTP_URL: TLS cannot be set up for {host}: {reason}")]
    Tls { host: String, reason: String },
    #[error(
        "CONNVAULT_SMTP_FROM {from:?} is not a sender address ({reason}); write an address such as connvault@example.com, or a name and address such as \"connvault <connvault@example.com>\""
    )]
    From { from: String, reason: String },
}

/// How the connection to the mail server is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Security {
    /// `smtp://`: no TLS at all. Only sensible for a relay on the same machine.
    Plain,
    /// `smtp://…?tls=starttls`: STARTTLS, and the message is not sent without it.
    StartTls,
    /// `smtps://`: TLS from the first byte.
    Tls,
}

#[derive(Clone)]
struct Smtp {
    /// `host:port`, for messages and the log (never the credentials).
    server: String,
    security: Security,
    builder: AsyncSmtpTransportBuilder,
    /// Built on first use: the transport's connection pool starts a task on the running Tokio
    /// runtime, which a configuration check must not need.
    transport: Arc<OnceLock<AsyncSmtpTransport<Tokio1Executor>>>,
}

/// Sends email, or keeps it in the outbox when no mail server is configured. Cheap to clone.
#[derive(Clone)]
pub struct Mailer {
    from: Mailbox,
    smtp: Option<Smtp>,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer").field("from", &self.from.to_string()).field("delivery", &self.describe()).finish()
    }
}

impl Mailer {
    /// A mailer for `smtp_url` (`CONNVAULT_SMTP_URL`; `None` for the outbox) sending as `from`
    /// (`CONNVAULT_SMTP_FROM`). Accepted URLs:
    ///
    /// - `smtp://host[:25]`: plain SMTP, only sensible for a relay on loopback;
    /// - `smtp://host[:587]?tls=starttls`: STARTTLS required;
    /// - `smtps://host[:465]`: TLS from the first byte;
    ///
    /// each optionally with `user:password@` (percent-encoded) for AUTH PLAIN or LOGIN.
    /// Certificates are checked against the Web PKI roots.
    pub fn from_config(smtp_url: Option<&str>, from: &str) -> Result<Mailer, MailConfigError> {
        let from_box: Mailbox =
            from.trim().parse().map_err(|e: lettre::address::AddressError| MailConfigError::From { from: from.to_string(), reason: e.to_string() })?;
        let smtp = smtp_url.map(str::trim).filter(|u| !u.is_empty()).map(parse_smtp_url).transpose()?;
        if let Some(s) = &smtp {
            if s.security == Security::Plain && !is_loopback_server(&s.server) {
                tracing::warn!(
                    server = %s.server,
                    "CONNVAULT_SMTP_URL is plain smtp:// to a server that is not on this machine: messages (one-time links included) and any password cross the network unencrypted; use ?tls=starttls or smtps://"
                );
            }
        }
        Ok(Mailer { from: from_box, smtp })
    }

    /// Whether messages go to the outbox (no mail server configured).
    pub fn is_outbox(&self) -> bool {
        self.smtp.is_none()
    }

    /// Where messages go, for the log and the outbox page: `outbox`, or the server and its TLS
    /// mode (never the credentials).
    pub fn describe(&self) -> String {
        match &self.smtp {
            None => "outbox".into(),
            Some(s) => {
                let mode = match s.security {
                    Security::Plain => "plain SMTP",
                    Security::StartTls => "SMTP with STARTTLS",
                    Security::Tls => "SMTP over TLS",
                };
                format!("{mode} to {}", s.server)
            }
        }
    }

    /// Keeps `email` in `tx`: sealed in the outbox table and, with a mail server, queued for
    /// delivery by the job queue ([`MAIL_JOB`]; call `jobs::wake(MAIL_JOB)` after commit).
    /// Without one it waits in the outbox for an owner. A recipient that is not an email
    /// address is a validation error on `admin_email` (the form field the address comes from).
    /// Nothing is sent here: a mail server that is down delays the message, it never fails the
    /// change that caused it.
    pub async fn queue(&self, tx: &mut Tx<'_>, vault: &Vault, email: &Email) -> Result<Queued> {
        let Queued { id, delivery } = self.keep(tx, vault, email).await?;
        if self.smtp.is_some() {
            crate::jobs::enqueue(tx, MAIL_JOB, &serde_json::json!({ "outbox_id": id })).await?;
        } else {
            tracing::info!(outbox_id = id, subject = %email.subject, "no mail server configured (CONNVAULT_SMTP_URL): the email waits in the outbox");
        }
        Ok(Queued { id, delivery })
    }

    /// Keeps `email` and makes one delivery attempt now (the queue retries it if this one
    /// fails): [`Delivery::Sent`], [`Delivery::Outbox`] without a mail server, or the mail
    /// server's refusal ([`Error::MailServer`]) with the message still queued.
    pub async fn send(&self, db: &Db, vault: &Vault, email: &Email) -> Result<Delivery> {
        let mut tx = db.begin().await?;
        let Queued { id, .. } = self.keep(&mut tx, vault, email).await?;
        tx.commit().await?;
        if self.smtp.is_none() {
            return Ok(Delivery::Outbox { id });
        }
        match self.deliver(db, vault, id).await {
            Ok(()) => Ok(Delivery::Sent),
            Err(e) => {
                let mut tx = db.begin().await?;
                let at = crate::db::format_time(chrono::Utc::now() + chrono::Duration::from_std(MAIL_BACKOFF[0]).unwrap_or_default());
                crate::jobs::enqueue_at(&mut tx, MAIL_JOB, &serde_json::json!({ "outbox_id": id }), &at, None).await?;
                tx.commit().await?;
                Err(e)
            }
        }
    }

    /// Builds the message and stores it sealed (`queued` with a mail server, `outbox` without).
    async fn keep(&self, tx: &mut Tx<'_>, vault: &Vault, email: &Email) -> Result<Queued> {
        let eml = self.message(email)?.formatted();
        check_wire_format(&eml)?;
        let delivery = if self.smtp.is_some() { "queued" } else { "outbox" };
        Ok(Queued { id: store(tx, vault, email, &eml, delivery).await?, delivery })
    }

    /// One delivery attempt of outbox message `id` (the [`MAIL_JOB`] handler): sends the sealed
    /// message as stored and records the attempt on the row (`sent`, or its error; `failed`
    /// once [`MAIL_BACKOFF`]'s attempts are used up). A message already sent, or kept in the
    /// outbox, is left alone.
    pub async fn deliver(&self, db: &Db, vault: &Vault, id: i64) -> Result<()> {
        let row =
            sqlx::query("SELECT to_address, subject, delivery, attempts, sealed_eml FROM outbox WHERE id = $1").bind(id).fetch_optional(db.pool()).await?;
        let Some(row) = row else { return Ok(()) };
        let state: String = row.try_get("delivery")?;
        if state != "queued" {
            return Ok(());
        }
        let Some(smtp) = &self.smtp else {
            // The mail server was removed from the configuration since: an owner passes it on.
            sqlx::query("UPDATE outbox SET delivery = 'outbox', updated_at = $1 WHERE id = $2").bind(now()).bind(id).execute(db.pool()).await?;
            return Ok(());
        };
        let to: String = row.try_get("to_address")?;
        let subject: String = row.try_get("subject")?;
        let attempts: i64 = row.try_get::<i64, _>("attempts")? + 1;
        let eml = vault.open(&place(id, "eml"), &row.try_get::<Vec<u8>, _>("sealed_eml")?)?;
        let to_address: Address = to.parse().map_err(|_| Error::Internal(format!("outbox message {id}: the recipient {to:?} is not an address")))?;
        let envelope = lettre::address::Envelope::new(Some(self.from.email.clone()), vec![to_address])
            .map_err(|e| Error::Internal(format!("outbox message {id}: {e}")))?;
        let outcome = smtp.send_raw(&envelope, &eml).await;
        let t = now();
        match &outcome {
            Ok(()) => {
                sqlx::query("UPDATE outbox SET delivery = 'sent', attempts = $1, last_error = NULL, sent_at = $2, updated_at = $2 WHERE id = $3")
                    .bind(attempts)
                    .bind(&t)
                    .bind(id)
                    .execute(db.pool())
                    .await?;
                tracing::info!(server = %smtp.server, outbox_id = id, subject = %subject, "email sent");
            }
            Err(e) => {
                let state = if attempts as usize > MAIL_BACKOFF.len() { "failed" } else { "queued" };
                sqlx::query("UPDATE outbox SET delivery = $1, attempts = $2, last_error = $3, updated_at = $4 WHERE id = $5")
                    .bind(state)
                    .bind(attempts)
                    .bind(e.public_message())
                    .bind(&t)
                    .bind(id)
                    .execute(db.pool())
                    .await?;
                tracing::warn!(server = %smtp.server, outbox_id = id, attempt = attempts, error = %e, "email not delivered yet");
            }
        }
        outcome
    }

    fn message(&self, email: &Email) -> Result<Message> {
        let to_text = email.to.trim();
        let to: Address = to_text
            .parse()
            .map_err(|_| Error::field("admin_email", format!("{to_text:?} is not an email address; write one address such as admin@example.com")))?;
        let mut errors = Vec::new();
        let mut parts = Vec::new();
        for (i, a) in email.attachments.iter().enumerate() {
            if a.filename.trim().is_empty() || a.filename.chars().any(|c| c.is_control() || matches!(c, '/' | '\\')) {
                errors.push(FieldError::new(format!("attachments[{i}].filename"), "a file name must not be empty, nor contain / \\ or control characters"));
            }
            match ContentType::parse(&a.content_type) {
                // Base64 whatever the bytes: a PEM certificate sent as 7bit kept its bare LF line
                // endings, one 1,100-character line to a mail server (RFC 5321 allows 998).
                Ok(ct) => parts.push(
                    lettre::message::Attachment::new(a.filename.clone()).body(
                        Body::new_with_encoding(a.body.clone(), ContentTransferEncoding::Base64)
                            .map_err(|_| Error::Internal("an attachment could not be base64-encoded".into()))?,
                        ct,
                    ),
                ),
                Err(_) => errors.push(FieldError::new(
                    format!("attachments[{i}].content_type"),
                    format!("{:?} is not a MIME type such as application/x-x509-ca-cert", a.content_type),
                )),
            }
        }
        if !errors.is_empty() {
            return Err(Error::Validation(errors));
        }
        let alternative = MultiPart::alternative_plain_html(email.text.clone(), email.html.clone());
        let body = if parts.is_empty() {
            alternative
        } else {
            parts.into_iter().fold(MultiPart::mixed().multipart(alternative), |mixed, part| mixed.singlepart(part))
        };
        // A Message-ID in the sender's domain: lettre's default would reveal this machine's
        // host name.
        let mut random = [0u8; 16];
        getrandom::fill(&mut random).map_err(|e| Error::Internal(format!("the operating system's random source failed: {e}")))?;
        let message_id = format!("<{}@{}>", hex::encode(random), self.from.email.domain());
        Message::builder()
            .from(self.from.clone())
            .to(Mailbox::new(None, to))
            .subject(email.subject.clone())
            .message_id(Some(message_id))
            .multipart(body)
            .map_err(|e| Error::Internal(format!("the email could not be put together: {e}")))
    }
}

/// The longest line RFC 5321 (4.5.3.1.6) lets a message carry, CRLF not counted.
pub const MAX_LINE_OCTETS: usize = 998;

/// Every line of `raw` ends in CRLF (no bare CR or LF) and has at most [`MAX_LINE_OCTETS`]
/// octets: what standards-conformant mail servers accept, unchanged. A message that is not is
/// never sent, nor kept in the outbox.
pub fn check_wire_format(raw: &[u8]) -> Result<()> {
    for (i, line) in raw.split_inclusive(|b| *b == b'\n').enumerate() {
        let ended = line.ends_with(b"\n");
        let text = if ended {
            line.strip_suffix(b"\r\n").ok_or_else(|| Error::Internal(format!("the email's line {} ends in a bare LF, which mail servers refuse", i + 1)))?
        } else {
            line
        };
        if text.contains(&b'\r') {
            return Err(Error::Internal(format!("the email's line {} holds a bare CR, which mail servers refuse", i + 1)));
        }
        if text.len() > MAX_LINE_OCTETS {
            return Err(Error::Internal(format!("the email's line {} has {} octets; mail servers accept at most {MAX_LINE_OCTETS}", i + 1, text.len())));
        }
    }
    Ok(())
}

fn is_loopback_server(server: &str) -> bool {
    let host = server.rsplit_once(':').map_or(server, |(h, _)| h).trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn parse_smtp_url(text: &str) -> Result<Smtp, MailConfigError> {
    let url = url::Url::parse(text).map_err(|e| MailConfigError::Url(e.to_string()))?;
    let mut tls_param = None;
    for (name, value) in url.query_pairs() {
        match name.as_ref() {
            "tls" => tls_param = Some(value.into_owned()),
            other => return Err(MailConfigError::Parameter(other.to_string())),
        }
    }
    let security = match (url.scheme(), tls_param.as_deref()) {
        ("smtp", None) => Security::Plain,
        ("smtp", Some("starttls" | "required")) => Security::StartTls,
        ("smtps", None) => Security::Tls,
        ("smtps", Some("starttls" | "required")) => return Err(MailConfigError::TlsTwice),
        ("smtp" | "smtps", Some(other)) => return Err(MailConfigError::TlsMode(other.to_string())),
        (other, _) => return Err(MailConfigError::Scheme(other.to_string())),
    };
    let host = url.host_str().filter(|h| !h.is_empty()).ok_or(MailConfigError::MissingHost)?;
    // TLS checks the certificate against the bare host name (an IPv6 address without brackets).
    let tls_host = host.trim_start_matches('[').trim_end_matches(']').to_string();
    if !matches!(url.path(), "" | "/") {
        return Err(MailConfigError::Path(url.path().to_string()));
    }
    let port = url.port().unwrap_or(match security {
        Security::Plain => 25,
        Security::StartTls => 587,
        Security::Tls => 465,
    });
    let server = format!("{host}:{port}");
    let tls_parameters = || TlsParameters::new(tls_host.clone()).map_err(|e| MailConfigError::Tls { host: tls_host.clone(), reason: e.to_string() });
    let tls = match security {
        Security::Plain => Tls::None,
        Security::StartTls => Tls::Required(tls_parameters()?),
        Security::Tls => Tls::Wrapper(tls_parameters()?),
    };
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(tls_host.clone()).port(port).tls(tls).timeout(Some(SMTP_TIMEOUT));
    let decode = |s: &str| percent_decode(s).ok_or(MailConfigError::Credentials);
    match (url.username(), url.password()) {
        ("", None) => {}
        (user, Some(password)) if !user.is_empty() && !password.is_empty() => {
            builder = builder.credentials(Credentials::new(decode(user)?, decode(password)?));
        }
        _ => return Err(MailConfigError::Credentials),
    }
    Ok(Smtp { server, security, builder, transport: Arc::new(OnceLock::new()) })
}

/// Percent-decoding of a URL's user or password; `None` if the result is not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

impl Smtp {
    async fn send_raw(&self, envelope: &lettre::address::Envelope, eml: &[u8]) -> Result<()> {
        let transport = self.transport.get_or_init(|| self.builder.clone().build());
        match tokio::time::timeout(DELIVERY_TIMEOUT, transport.send_raw(envelope, eml)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(Error::MailServer(self.explain(&e))),
            Err(_) => Err(Error::MailServer(format!(
                "the mail server {} did not finish taking the message within {} seconds; nothing was sent. Check that it is up, or try again later",
                self.server,
                DELIVERY_TIMEOUT.as_secs()
            ))),
        }
    }

    /// The failure in words: which server, what it said or what went wrong, what to check.
    fn explain(&self, e: &lettre::transport::smtp::Error) -> String {
        let server = &self.server;
        if let Some(code) = e.status() {
            let code = code.to_string();
            let said = match std::error::Error::source(e).map(|s| s.to_string()).filter(|s| !s.trim().is_empty()) {
                Some(reason) => format!("{code} {}", reason.trim()),
                None => code.clone(),
            };
            let hint = match code.as_str() {
                "530" | "534" | "535" | "538" => " Check the user name and password in CONNVAULT_SMTP_URL.",
                _ if e.is_transient() => " This is temporary; try again later.",
                _ => "",
            };
            return format!("the mail server {server} refused the message: {said}.{hint}");
        }
        if e.is_timeout() {
            return format!(
                "the mail server {server} did not answer within {} seconds; check the host and port in CONNVAULT_SMTP_URL and that the server is reachable",
                SMTP_TIMEOUT.as_secs()
            );
        }
        if e.is_tls() {
            return format!(
                "TLS with the mail server {server} failed ({e}); check that the port matches the mode (465 for smtps://, 587 with ?tls=starttls) and that the server's certificate is valid for its name"
            );
        }
        let text = e.to_string();
        if text.contains("authentication mechanism") {
            return format!(
                "the mail server {server} offers no authentication connvault can use (PLAIN or LOGIN); over plain smtp:// many servers offer none: use ?tls=starttls or smtps://"
            );
        }
        format!("cannot deliver through the mail server {server}: {text}; check the host and port in CONNVAULT_SMTP_URL and that the server is reachable")
    }
}

/// One message in the outbox, as lists show it (nothing sealed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct OutboxItem {
    pub id: i64,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
    /// The recipient's address.
    pub to: String,
    pub subject: String,
    /// The size of the whole message (`.eml`), in bytes.
    pub size: i64,
    /// The attachments' file names.
    pub attachments: Vec<String>,
    /// `outbox` (no mail server: an owner passes it on), `queued` (waiting for the mail
    /// server, or being retried), `sent` or `failed` (every attempt failed).
    pub delivery: String,
    /// Delivery attempts so far.
    pub attempts: i64,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    #[schema(format = DateTime)]
    pub sent_at: Option<String>,
}

fn place(id: i64, field: &str) -> Place<'_> {
    Place { table: OUTBOX_TABLE, row: id, field, environment: 0 }
}

/// Stores a message in the outbox table in `tx`: the row first, then its blobs sealed to its id
/// (no row without its message).
async fn store(tx: &mut Tx<'_>, vault: &Vault, email: &Email, eml: &[u8], delivery: &str) -> Result<i64> {
    let names: Vec<&str> = email.attachments.iter().map(|a| a.filename.as_str()).collect();
    let names = serde_json::to_string(&names).map_err(|e| Error::Internal(format!("attachment names: {e}")))?;
    let t = now();
    let id: i64 = sqlx::query(
        "INSERT INTO outbox (to_address, subject, attachments, size, sealed_eml, sealed_text, key_id, delivery, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $5, '', $7, $6, $6) RETURNING id",
    )
    .bind(email.to.trim())
    .bind(&email.subject)
    .bind(names)
    .bind(eml.len() as i64)
    .bind(Vec::<u8>::new())
    .bind(&t)
    .bind(delivery)
    .fetch_one(&mut **tx)
    .await?
    .try_get("id")?;
    // One keyring for both blobs and the key id, even if the key file is re-read meanwhile.
    let keyring = vault.keyring();
    let key = keyring.current();
    sqlx::query("UPDATE outbox SET sealed_eml = $1, sealed_text = $2, key_id = $3 WHERE id = $4")
        .bind(seal::seal_with(key, &place(id, "eml"), eml))
        .bind(seal::seal_with(key, &place(id, "text"), email.text.as_bytes()))
        .bind(key.id().to_string())
        .bind(id)
        .execute(&mut **tx)
        .await?;
    Ok(id)
}

const COLUMNS: &str = "id, to_address, subject, attachments, size, delivery, attempts, last_error, sent_at, created_at, updated_at";
const LISTING: Listing = Listing { name: "outbox", columns: COLUMNS, table: OUTBOX_TABLE, order: SortKey::Id, descending: true };

fn item_from_row(r: &AnyRow) -> Result<OutboxItem> {
    let id: i64 = r.try_get("id")?;
    let names: String = r.try_get("attachments")?;
    let attachments = serde_json::from_str(&names).map_err(|e| Error::Internal(format!("outbox message {id}: the attachment names are damaged: {e}")))?;
    Ok(OutboxItem {
        id,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
        to: r.try_get("to_address")?,
        subject: r.try_get("subject")?,
        size: r.try_get("size")?,
        attachments,
        delivery: r.try_get("delivery")?,
        attempts: r.try_get("attempts")?,
        last_error: r.try_get("last_error")?,
        sent_at: r.try_get("sent_at")?,
    })
}

/// One page of the outbox: newest first, or a change feed.
pub async fn list(db: &Db, feed: &Feed, limit: Option<i64>) -> Result<Page<OutboxItem>> {
    feed::page(db, &LISTING, Filter::new(), feed, limit).await?.try_map(|r| item_from_row(&r))
}

async fn sealed(db: &Db, id: i64, column: &'static str) -> Result<(OutboxItem, Vec<u8>)> {
    let sql = match column {
        "sealed_eml" => "SELECT id, to_address, subject, attachments, size, delivery, attempts, last_error, sent_at, created_at, updated_at, sealed_eml AS blob FROM outbox WHERE id = $1",
        _ => "SELECT id, to_address, subject, attachments, size, delivery, attempts, last_error, sent_at, created_at, updated_at, sealed_text AS blob FROM outbox WHERE id = $1",
    };
    let row = sqlx::query(sql).bind(id).fetch_optional(db.pool()).await?.ok_or_else(|| Error::NotFound(format!("there is no outbox message {id}")))?;
    Ok((item_from_row(&row)?, row.try_get("blob")?))
}

/// One outbox message and the whole message as sent (`.eml`, `message/rfc822`).
pub async fn eml(db: &Db, vault: &Vault, id: i64) -> Result<(OutboxItem, Vec<u8>)> {
    let (item, blob) = sealed(db, id, "sealed_eml").await?;
    let eml = vault.open(&place(id, "eml"), &blob)?;
    Ok((item, eml.to_vec()))
}

/// One outbox message and its plain-text part, to read on the page.
pub async fn text(db: &Db, vault: &Vault, id: i64) -> Result<(OutboxItem, String)> {
    let (item, blob) = sealed(db, id, "sealed_text").await?;
    let text = vault.open(&place(id, "text"), &blob)?;
    let text = String::from_utf8(text.to_vec()).map_err(|_| seal::SealError::NotText)?;
    Ok((item, text))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_error(url: &str) -> String {
        Mailer::from_config(Some(url), "connvault@example.com").unwrap_err().to_string()
    }

    #[test]
    fn urls_are_understood() {
        let m = Mailer::from_config(Some("smtp://127.0.0.1:2525"), "connvault <noreply@example.test>").unwrap();
        assert_eq!(m.describe(), "plain SMTP to 127.0.0.1:2525");
        let m = Mailer::from_config(Some("smtp://u%40x:p%3Ass@mail.example.com?tls=starttls"), "connvault@example.com").unwrap();
        assert_eq!(m.describe(), "SMTP with STARTTLS to mail.example.com:587");
        let m = Mailer::from_config(Some("smtps://user:secret-pw@mail.example.com"), "connvault@example.com").unwrap();
        assert_eq!(m.describe(), "SMTP over TLS to mail.example.com:465");
        assert!(!format!("{m:?}").contains("secret-pw"), "{m:?}");
        assert!(Mailer::from_config(None, "connvault@localhost").unwrap().is_outbox());
        assert!(Mailer::from_config(Some(" "), "connvault@localhost").unwrap().is_outbox());
        assert_eq!(percent_decode("a%40b%3A%2F"), Some("a@b:/".into()));
        assert_eq!(percent_decode("%zz"), None);
        assert!(is_loopback_server("127.0.0.1:25") && is_loopback_server("[::1]:25") && is_loopback_server("localhost:25"));
        assert!(!is_loopback_server("mail.example.com:25"));
    }

    #[test]
    fn bad_settings_say_what_to_fix_without_the_password() {
        for (url, expected) in [
            ("mail.example.com", "not a valid URL"),
            ("http://mail.example.com", "must start with smtp://"),
            ("smtp://", "names no mail server"),
            ("smtp://mail.example.com?tls=maybe", "tls=\"maybe\" is not a TLS mode"),
            ("smtps://mail.example.com?tls=starttls", "remove ?tls=starttls"),
            ("smtp://mail.example.com?port=25", "unknown parameter \"port\""),
            ("smtp://mail.example.com/relay", "a path (/relay)"),
            ("smtp://user-only@mail.example.com", "must both be given"),
            ("smtp://user:%FF%FE@mail.example.com", "percent-encoded"),
        ] {
            let err = config_error(url);
            assert!(err.contains(expected), "{url}: {err}");
            assert!(err.starts_with("CONNVAULT_SMTP_URL"), "{url}: {err}");
        }
        let err = config_error("smtps://user:hunter2@mail.example.com?tls=opportunistic");
        assert!(!err.contains("hunter2"), "{err}");
        let err = Mailer::from_config(None, "not an address").unwrap_err().to_string();
        assert!(err.starts_with("CONNVAULT_SMTP_FROM \"not an address\""), "{err}");
    }

    /// A PEM with LF line endings, a text part with a 1,500-character line and LF endings: on
    /// the wire every line ends in CRLF and is at most 998 octets; the attachment is base64.
    #[test]
    fn messages_are_crlf_clean_with_short_lines() {
        let m = Mailer::from_config(None, "connvault <noreply@example.test>").unwrap();
        let pem = format!("-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n", "QUJD".repeat(275));
        let email = Email {
            to: "admin@example.com".into(),
            subject: "A request".into(),
            text: format!("first line\nsecond: {}\nthird\n", "x".repeat(1500)),
            html: format!("<p>{}</p>\n<p>next</p>", "y".repeat(1500)),
            attachments: vec![Attachment { filename: "c.crt".into(), content_type: "application/x-x509-ca-cert".into(), body: pem.into_bytes() }],
        };
        let raw = m.message(&email).unwrap().formatted();
        check_wire_format(&raw).unwrap();
        let text = String::from_utf8(raw).unwrap();
        let at = text.find("filename=\"c.crt\"").unwrap();
        let headers = &text[text[..at].rfind("\r\n\r\n").unwrap()..at + text[at..].find("\r\n\r\n").unwrap()];
        assert!(headers.contains("Content-Transfer-Encoding: base64"), "{headers}");

        assert!(check_wire_format(b"a\r\nb\nc\r\n").unwrap_err().to_string().contains("line 2 ends in a bare LF"));
        assert!(check_wire_format(b"a\rb\r\n").unwrap_err().to_string().contains("bare CR"));
        assert!(check_wire_format(format!("{}\r\n", "z".repeat(999)).as_bytes()).unwrap_err().to_string().contains("999 octets"));
        assert!(check_wire_format(format!("{}\r\n", "z".repeat(998)).as_bytes()).is_ok());
    }

    #[test]
    fn the_message_is_mixed_with_an_alternative_and_named_attachments() {
        let m = Mailer::from_config(None, "connvault <noreply@example.test>").unwrap();
        let email = Email {
            to: "admin@example.com".into(),
            subject: "Please upload a certificate".into(),
            text: "plain words".into(),
            html: "<p>html words</p>".into(),
            attachments: vec![Attachment { filename: "c.crt".into(), content_type: "application/x-x509-ca-cert".into(), body: b"CERT".to_vec() }],
        };
        let text = String::from_utf8(m.message(&email).unwrap().formatted()).unwrap();
        assert!(text.contains("multipart/mixed") && text.contains("multipart/alternative"), "{text}");
        assert!(text.contains("filename=\"c.crt\""), "{text}");
        assert!(text.contains("Message-ID: <") && text.contains("@example.test>"), "{text}");
        assert!(!format!("{email:?}").contains("plain words"));

        let bad = Email { to: "admin at example".into(), ..email.clone() };
        let Err(Error::Validation(errors)) = m.message(&bad) else { panic!("accepted a bad address") };
        assert_eq!(errors[0].field, "admin_email");
        let bad = Email { attachments: vec![Attachment { filename: "../x".into(), content_type: "nonsense".into(), body: vec![] }], ..email };
        let Err(Error::Validation(errors)) = m.message(&bad) else { panic!("accepted a bad attachment") };
        assert_eq!(errors.iter().map(|e| e.field.as_str()).collect::<Vec<_>>(), ["attachments[0].filename", "attachments[0].content_type"]);
    }
}
