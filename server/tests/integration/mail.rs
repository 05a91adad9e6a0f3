//! Email delivery: through a real SMTP server (aiosmtpd, which enforces RFC 5321's limits)
//! started by each test on 127.0.0.1, and into the outbox when no server is configured; the
//! outbox's REST routes.

use crate::common;

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{header, Request, StatusCode};
use common::aiosmtpd::{assert_wire_clean, Behaviour, RealSmtp};
use common::{backends, key, session, Api, Who};
use http_body_util::BodyExt;
use mailparse::{MailHeaderMap, ParsedMail};
use server::error::Error;
use server::mail::{self, Attachment, Delivery, Email, Mailer};
use server::users::Role;
use tower::ServiceExt;

const FROM: &str = "connvault <noreply@example.test>";
/// Not ASCII: the header must be encoded (RFC 2047) and decode back.
const SUBJECT: &str = "Zertifikat für SF_Main (DEV) hochladen";
const LINK: &str = "https://vault.example.com/upload?token=MARKER-one-time-7c1e";
/// A DER-looking certificate with bytes that are not text (NUL, 0xFF, bare CR and LF).
const CERT: &[u8] = b"\x30\x82\x01\x0a\x00\xff\xfe\r\n.\r\n\nCERT-BYTES\x00";

/// A PEM certificate as connvault stores it: LF line endings, 64-character lines, about 1,100
/// characters in all (sent as 7bit, it was one 1,100-character line on the wire).
fn pem() -> Vec<u8> {
    let body: Vec<String> = (0..17).map(|i| format!("{:0>64}", i)).collect();
    format!("-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n", body.join("\n")).into_bytes()
}

fn request_email() -> Email {
    Email {
        to: "admin@example.com".into(),
        subject: SUBJECT.into(),
        text: format!("Hello,\r\n\r\nplease upload the attached certificate.\r\n.\r\nThen open {LINK}\r\n"),
        html: format!("<p>Hello,</p><p>please upload the attached certificate, then open <a href=\"{LINK}\">this link</a>.</p>"),
        attachments: vec![Attachment { filename: "connvault-SF_Main-DEV.crt".into(), content_type: "application/x-x509-ca-cert".into(), body: CERT.to_vec() }],
    }
}

/// Services without a mail server (the outbox), sending as [`FROM`].
async fn open_outbox(db: &common::TestDb) -> server::Services {
    server::startup::open(db.config_with(&[("CONNVAULT_SMTP_FROM", FROM)])).await.unwrap()
}

/// The parts of `mail`, depth first, with their MIME types.
fn part<'a>(mail: &'a ParsedMail<'a>, mimetype: &str) -> &'a ParsedMail<'a> {
    fn find<'a>(m: &'a ParsedMail<'a>, t: &str) -> Option<&'a ParsedMail<'a>> {
        if m.ctype.mimetype == t {
            return Some(m);
        }
        m.subparts.iter().find_map(|p| find(p, t))
    }
    find(mail, mimetype).unwrap_or_else(|| panic!("no {mimetype} part"))
}

/// The structure and content of a request email, as a mail program would read it.
fn check_message(raw: &[u8], subject: &str) {
    let mail = mailparse::parse_mail(raw).unwrap();
    assert_eq!(mail.headers.get_first_value("Subject").as_deref(), Some(subject));
    assert_eq!(mail.headers.get_first_value("To").as_deref(), Some("admin@example.com"));
    assert_eq!(mail.headers.get_first_value("From").as_deref(), Some("connvault <noreply@example.test>"));
    assert!(mail.headers.get_first_value("Message-ID").is_some_and(|id| id.ends_with("@example.test>")));
    assert!(mail.headers.get_first_value("Date").is_some());
    assert_eq!(mail.ctype.mimetype, "multipart/mixed");
    assert_eq!(mail.subparts.len(), 2);
    let alternative = &mail.subparts[0];
    assert_eq!(alternative.ctype.mimetype, "multipart/alternative");
    let kinds: Vec<&str> = alternative.subparts.iter().map(|p| p.ctype.mimetype.as_str()).collect();
    assert_eq!(kinds, ["text/plain", "text/html"]);
    let text = part(&mail, "text/plain").get_body().unwrap();
    assert!(text.contains(&format!("Then open {LINK}")), "{text:?}");
    assert!(text.contains("\r\n.\r\n") || text.contains("\n.\n"), "a line with a lone dot survives: {text:?}");
    let html = part(&mail, "text/html").get_body().unwrap();
    assert!(html.contains(&format!("<a href=\"{LINK}\">")), "{html}");
    let attachment = &mail.subparts[1];
    assert_eq!(attachment.ctype.mimetype, "application/x-x509-ca-cert");
    let disposition = attachment.get_content_disposition();
    assert_eq!(disposition.disposition, mailparse::DispositionType::Attachment);
    assert_eq!(disposition.params.get("filename").map(String::as_str), Some("connvault-SF_Main-DEV.crt"));
    assert_eq!(attachment.get_body_raw().unwrap(), CERT, "the attachment's exact bytes");
}

/// A real SMTP server, or a skip (see `common::aiosmtpd`).
macro_rules! real_smtp {
    ($behaviour:expr) => {
        match RealSmtp::start($behaviour) {
            Some(s) => s,
            None => return,
        }
    };
}

#[tokio::test]
async fn smtp_delivers_one_mime_message_with_auth_plain() {
    let smtp = real_smtp!(Behaviour { auth: "PLAIN LOGIN", ..Behaviour::default() });
    for db in backends().await {
        let s = db.open().await;
        let before = smtp.received().len();
        let mailer = Mailer::from_config(Some(&format!("smtp://user:pass@{}", smtp.addr)), FROM).unwrap();
        assert!(!mailer.is_outbox());
        assert_eq!(mailer.send(&s.db, &s.vault, &request_email()).await.unwrap(), Delivery::Sent);
        let got = smtp.received();
        assert_eq!(got.len(), before + 1);
        let r = got.last().unwrap();
        assert_eq!(r.mechanism.as_deref(), Some("PLAIN"));
        assert_eq!(r.auth, Some(("user".to_string(), "pass".to_string())));
        assert_eq!(r.mail_from, "noreply@example.test");
        assert_eq!(r.rcpt_to, ["admin@example.com"]);
        assert_wire_clean(&r.data);
        check_message(&r.data, SUBJECT);
        // Kept, sealed, as sent.
        let kept = mail::list(&s.db, &Default::default(), None).await.unwrap().items;
        assert_eq!((kept[0].delivery.as_str(), kept[0].attempts, kept[0].sent_at.is_some()), ("sent", 1, true));
    }
}

#[tokio::test]
async fn smtp_auth_login_with_percent_encoded_credentials() {
    let smtp = real_smtp!(Behaviour { auth: "LOGIN", ..Behaviour::default() });
    let db = backends().await.into_iter().next().unwrap();
    let s = db.open().await;
    let mailer = Mailer::from_config(Some(&format!("smtp://it%40example.com:p%40ss%3Aw%2Frd%25@{}", smtp.addr)), FROM).unwrap();
    assert_eq!(mailer.send(&s.db, &s.vault, &request_email()).await.unwrap(), Delivery::Sent);
    let r = smtp.received().pop().unwrap();
    assert_eq!(r.mechanism.as_deref(), Some("LOGIN"));
    assert_eq!(r.auth, Some(("it@example.com".to_string(), "p@ss:w/rd%".to_string())));
    check_message(&r.data, SUBJECT);
    assert!(!format!("{mailer:?}").contains("p@ss"), "{mailer:?}");
}

#[tokio::test]
async fn smtp_without_credentials_sends_without_auth() {
    let smtp = real_smtp!(Behaviour::default());
    let db = backends().await.into_iter().next().unwrap();
    let s = db.open().await;
    let mailer = Mailer::from_config(Some(&format!("smtp://{}", smtp.addr)), FROM).unwrap();
    assert_eq!(mailer.send(&s.db, &s.vault, &request_email()).await.unwrap(), Delivery::Sent);
    let r = smtp.received().pop().unwrap();
    assert_eq!(r.auth, None);
    check_message(&r.data, SUBJECT);
}

/// A standards-conformant server (aiosmtpd refuses lines over 1000 octets, as Postfix and
/// Exchange refuse bare LF) takes a message with a PEM attachment with LF line endings and a
/// text with a 1,500-character line: every line on the wire ends in CRLF and is at most 998
/// octets, and the attachment arrives byte for byte.
#[tokio::test]
async fn a_pem_attachment_and_long_lines_reach_a_conformant_server_intact() {
    let smtp = real_smtp!(Behaviour::default());
    let db = backends().await.into_iter().next().unwrap();
    let s = db.open().await;
    let mailer = Mailer::from_config(Some(&format!("smtp://{}", smtp.addr)), FROM).unwrap();
    let long = "word ".repeat(300);
    let email = Email {
        text: format!("Hello,\n{long}\nbye\n"),
        html: format!("<p>{long}</p>\n"),
        attachments: vec![Attachment { filename: "SF_Main-DEV.crt".into(), content_type: "application/x-x509-ca-cert".into(), body: pem() }],
        ..request_email()
    };
    assert_eq!(mailer.send(&s.db, &s.vault, &email).await.unwrap(), Delivery::Sent);
    let r = smtp.received().pop().expect("the server accepted the message");
    assert_wire_clean(&r.data);
    let mail = mailparse::parse_mail(&r.data).unwrap();
    let attachment = &mail.subparts[1];
    assert_eq!(attachment.headers.get_first_value("Content-Transfer-Encoding").as_deref(), Some("base64"));
    assert_eq!(attachment.get_body_raw().unwrap(), pem(), "the certificate's exact bytes");
    assert!(part(&mail, "text/plain").get_body().unwrap().contains(long.trim()));
}

#[tokio::test]
async fn a_refused_recipient_names_the_server_and_its_reason() {
    let smtp = real_smtp!(Behaviour { auth: "PLAIN", refuse_rcpt: true });
    let db = backends().await.into_iter().next().unwrap();
    let s = db.open().await;
    let mailer = Mailer::from_config(Some(&format!("smtp://user:pass@{}", smtp.addr)), FROM).unwrap();
    let err = mailer.send(&s.db, &s.vault, &request_email()).await.unwrap_err();
    assert!(matches!(err, Error::MailServer(_)), "{err:?}");
    assert_eq!(err.status(), StatusCode::BAD_GATEWAY);
    let text = err.public_message();
    assert!(text.contains(&format!("the mail server {} refused the message", smtp.addr)), "{text}");
    assert!(text.contains("550") && text.contains("no such user here"), "{text}");
    assert!(!text.contains("pass"), "{text}");
    assert!(smtp.received().is_empty());
    // Kept for the queue to try again, with the reason.
    let kept = mail::list(&s.db, &Default::default(), None).await.unwrap().items;
    assert_eq!((kept.len(), kept[0].delivery.as_str(), kept[0].attempts), (1, "queued", 1));
    assert!(kept[0].last_error.as_deref().is_some_and(|e| e.contains("no such user here")), "{:?}", kept[0].last_error);
}

#[tokio::test]
async fn an_unreachable_server_is_named() {
    let (_reserved, port) = common::refusing_port();
    let db = backends().await.into_iter().next().unwrap();
    let s = db.open().await;
    let mailer = Mailer::from_config(Some(&format!("smtp://user:secret-pw@127.0.0.1:{port}")), FROM).unwrap();
    let err = mailer.send(&s.db, &s.vault, &request_email()).await.unwrap_err();
    let text = err.public_message();
    assert!(matches!(err, Error::MailServer(_)), "{err:?}");
    assert!(text.contains(&format!("127.0.0.1:{port}")) && text.contains("CONNVAULT_SMTP_URL"), "{text}");
    assert!(!text.contains("secret-pw"), "{text}");
}

#[tokio::test]
async fn a_bad_recipient_is_a_validation_error() {
    let db = backends().await.into_iter().next().unwrap();
    let s = db.open().await;
    for to in ["", "admin", "admin@example.com\r\nBcc: evil@example.com", "a@b@c"] {
        let err = s.mailer.send(&s.db, &s.vault, &Email { to: to.into(), ..request_email() }).await.unwrap_err();
        let Error::Validation(fields) = &err else { panic!("{to:?}: {err:?}") };
        assert_eq!(fields[0].field, "admin_email", "{to:?}");
        assert!(fields[0].message.contains("not an email address"), "{}", fields[0].message);
    }
    assert!(mail::list(&s.db, &Default::default(), None).await.unwrap().items.is_empty());
}

/// Without CONNVAULT_SMTP_URL every email is kept, sealed, in the outbox.
#[tokio::test]
async fn the_outbox_keeps_sealed_messages() {
    for db in backends().await {
        let s = open_outbox(&db).await;
        assert!(s.mailer.is_outbox());
        let mut ids = Vec::new();
        for i in 0..3 {
            let email = Email { subject: format!("Request {i}"), ..request_email() };
            let Delivery::Outbox { id } = s.mailer.send(&s.db, &s.vault, &email).await.unwrap() else { panic!("sent without a server") };
            ids.push(id);
        }
        // Nothing of the message is readable in the database: not the link, not the text.
        let stored = db.all_text().await;
        assert!(!stored.contains("MARKER-one-time") && !stored.contains(&hex::encode("MARKER-one-time")), "the one-time link is stored readable");
        assert!(!stored.contains("please upload") && !stored.contains(&hex::encode("please upload")));
        assert!(stored.contains("admin@example.com") && stored.contains("connvault-SF_Main-DEV.crt"), "the list's columns are plain");

        // Newest first, a page at a time; and as a since_id feed.
        let first = mail::list(&s.db, &Default::default(), Some(2)).await.unwrap();
        assert_eq!(first.items.iter().map(|m| m.id).collect::<Vec<_>>(), [ids[2], ids[1]]);
        let item = &first.items[0];
        assert_eq!((item.to.as_str(), item.subject.as_str()), ("admin@example.com", "Request 2"));
        assert_eq!(item.attachments, ["connvault-SF_Main-DEV.crt"]);
        let feed = server::feed::Feed::default().with_cursor(first.next_cursor.clone());
        let second = mail::list(&s.db, &feed, Some(2)).await.unwrap();
        assert_eq!(second.items.iter().map(|m| m.id).collect::<Vec<_>>(), [ids[0]]);
        assert!(second.next_cursor.is_none());
        let since = server::feed::Feed::new(Some(ids[0]), None, None).unwrap();
        assert_eq!(mail::list(&s.db, &since, None).await.unwrap().items.iter().map(|m| m.id).collect::<Vec<_>>(), [ids[1], ids[2]]);

        // The whole message comes back as it would have been sent.
        let (item, eml) = mail::eml(&s.db, &s.vault, ids[0]).await.unwrap();
        assert_eq!(item.size, eml.len() as i64);
        assert_eq!(item.subject, "Request 0");
        check_message(&eml, "Request 0");
        let (_, text) = mail::text(&s.db, &s.vault, ids[0]).await.unwrap();
        assert_eq!(text, request_email().text);
        assert!(matches!(mail::eml(&s.db, &s.vault, 999_999).await, Err(Error::NotFound(_))));

        // A sealed message moved to another row does not open there.
        db.exec(&format!("UPDATE outbox SET sealed_eml = (SELECT sealed_eml FROM outbox WHERE id = {}) WHERE id = {}", ids[0], ids[1])).await;
        assert!(matches!(mail::eml(&s.db, &s.vault, ids[1]).await, Err(Error::Seal(_))));
    }
}

#[tokio::test]
async fn the_outbox_routes_are_for_signed_in_owners() {
    for db in backends().await {
        let api = Api::new(open_outbox(&db).await);
        let Delivery::Outbox { id } = api.s.mailer.send(&api.s.db, &api.s.vault, &request_email()).await.unwrap() else { panic!("sent") };
        let owner = session(&api.s, "owner@example.com", None, true).await;
        let admin = session(&api.s, "admin@example.com", Some(("DEV", Role::Administrator)), false).await;
        let k = key(&api.s, &["*:*:rw"]).await;

        let (st, body, _) = api.call(Who::Session(&owner), "GET", "/api/v1/outbox", None).await;
        assert_eq!(st, 200, "{body}");
        assert_eq!(body["items"][0]["id"], id);
        assert_eq!(body["items"][0]["to"], "admin@example.com");
        assert_eq!(body["items"][0]["attachments"][0], "connvault-SF_Main-DEV.crt");
        assert!(body["next_cursor"].is_null());
        assert!(!body.to_string().contains("MARKER"), "{body}");
        let (st, body, _) = api.call(Who::Session(&owner), "GET", "/api/v1/outbox?limit=0", None).await;
        assert_eq!((st.as_u16(), body["error"]["details"][0]["field"].as_str()), (422, Some("limit")));

        for (who, path) in [
            (Who::Session(&admin), "/api/v1/outbox".to_string()),
            (Who::Session(&admin), format!("/api/v1/outbox/{id}")),
            (Who::Key(&k), "/api/v1/outbox".to_string()),
            (Who::Key(&k), format!("/api/v1/outbox/{id}")),
        ] {
            let (st, body, text) = api.call(who, "GET", &path, None).await;
            assert_eq!(st, 403, "{who:?} {path}: {text}");
            assert_eq!(body["error"]["code"], "forbidden");
            assert!(!text.contains("MARKER"));
        }
        assert_eq!(api.call(Who::Nobody, "GET", "/api/v1/outbox", None).await.0, 401);
        assert_eq!(api.call(Who::Session(&owner), "GET", "/api/v1/outbox/999999", None).await.0, 404);

        // The .eml, as a download that no cache keeps.
        let mut req = Request::builder().uri(format!("/api/v1/outbox/{id}")).header("Cookie", format!("cv_session={owner}")).body(Body::empty()).unwrap();
        req.extensions_mut().insert(ConnectInfo("192.0.2.1:5000".parse::<SocketAddr>().unwrap()));
        let res = api.router.clone().oneshot(req).await.unwrap();
        assert_eq!(res.status(), 200);
        let h = res.headers();
        assert_eq!(h[header::CONTENT_TYPE], "message/rfc822");
        assert_eq!(h[header::CONTENT_DISPOSITION], format!("attachment; filename=\"outbox-{id}.eml\"").as_str());
        assert_eq!(h[header::CACHE_CONTROL], "no-store");
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        check_message(&bytes, SUBJECT);
    }
}

#[tokio::test]
async fn mail_settings_that_cannot_work_stop_the_start() {
    let db = backends().await.into_iter().next().unwrap();
    for (vars, expected) in [
        (&[("CONNVAULT_SMTP_URL", "smtp://user:hunter2@mail.example.com?tls=bogus")][..], "tls=\"bogus\" is not a TLS mode"),
        (&[("CONNVAULT_SMTP_URL", "smtps://:hunter2@mail.example.com")][..], "user name and password must both be given"),
        (
            &[("CONNVAULT_SMTP_URL", "smtp://mail.example.com"), ("CONNVAULT_SMTP_FROM", "connvault at example")][..],
            "CONNVAULT_SMTP_FROM \"connvault at example\"",
        ),
    ] {
        let err = server::startup::open(db.config_with(vars)).await.unwrap_err().to_string();
        assert!(err.contains(expected), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }
    // The configuration itself refuses other schemes and unparseable URLs.
    let err = server::config::Config::from_sources(None, |k| (k == "CONNVAULT_SMTP_URL").then(|| "http://mail.example.com".to_string())).unwrap_err();
    assert!(err.to_string().starts_with("CONNVAULT_SMTP_URL"), "{err}");
    // The refused starts wrote nothing (not even a key file): the database starts normally now.
    assert!(!db.data_dir().join("master.key").exists());
    let s = server::startup::open(db.config()).await.unwrap();
    assert!(s.mailer.is_outbox());
}
