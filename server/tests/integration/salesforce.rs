//! The Salesforce connected-app flow against the in-process stand-in of Salesforce's token
//! endpoint and userinfo: certificate, request email, the admin's one-time link, the JWT-bearer
//! exchange, every refusal's advice, retries, uploads, and the token broker on top. On every
//! backend.

use crate::common;

use std::collections::BTreeSet;

use common::{backends, key, Api, TestDb, Who};
use serde_json::{json, Value};
use server::providers::salesforce::standin::{ConnectedApp, StandIn};
use server::startup::{self, Services};

const USER: &str = "integration+dev@acme.com";

async fn open(db: &TestDb) -> Services {
    startup::open(db.config_with(&[("CONNVAULT_ALLOW_LOOPBACK", "1")])).await.expect("open")
}

/// A stand-in with the integration user, and an API with a key that may manage DEV.
async fn setup(db: &TestDb) -> (Api, String, StandIn, String) {
    let sf = StandIn::new();
    let base = sf.spawn().await.unwrap();
    sf.add_user(USER, true);
    let api = Api::new(open(db).await);
    let k = key(&api.s, &["DEV:connections:rw", "DEV:integrations:rw", "DEV:bindings:rw", "DEV:tokens:read", "DEV:audit:read"]).await;
    (api, k, sf, base)
}

async fn create(api: &Api, k: &str, name: &str, base: &str, extra: Value) -> Value {
    let mut settings = json!({"login_url": base, "username": USER, "admin_email": "sf-admin@acme.com"});
    settings.as_object_mut().unwrap().extend(extra.as_object().cloned().unwrap_or_default());
    let (st, c, text) = api
        .call(Who::Key(k), "POST", "/api/v1/environments/DEV/connections", Some(json!({"name": name, "provider": "salesforce", "settings": settings})))
        .await;
    assert_eq!(st, 201, "{text}");
    c
}

/// Issues a certificate and returns its PEM.
async fn certificate(api: &Api, k: &str, name: &str) -> String {
    let (st, issued, text) = api.call(Who::Key(k), "POST", &format!("/api/v1/environments/DEV/connections/{name}/certificate"), Some(json!({}))).await;
    assert_eq!(st, 201, "{text}");
    assert_eq!(issued["certificate"]["state"], "active");
    let (st, _, pem) = api.call(Who::Key(k), "GET", &format!("/api/v1/environments/DEV/connections/{name}/certificate"), None).await;
    assert_eq!(st, 200);
    pem
}

/// A connected app for `pem` with the user assigned; returns its consumer key.
fn register(sf: &StandIn, pem: &str, change: impl FnOnce(&mut ConnectedApp)) -> String {
    let key = format!("3MVG9test{}", rand_suffix());
    let mut app = ConnectedApp {
        consumer_key: key.clone(),
        certificate_pem: pem.to_string(),
        admin_approved: true,
        assigned_users: BTreeSet::from([USER.to_string()]),
        ip_restricted: false,
    };
    change(&mut app);
    sf.add_app(app).unwrap();
    key
}

fn rand_suffix() -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    format!("{}x{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

async fn set_consumer_key(api: &Api, k: &str, name: &str, consumer_key: &str) {
    let (st, _, text) = api
        .call(Who::Key(k), "PATCH", &format!("/api/v1/environments/DEV/connections/{name}"), Some(json!({"settings": {"consumer_key": consumer_key}})))
        .await;
    assert_eq!(st, 200, "{text}");
}

async fn test(api: &Api, k: &str, name: &str) -> Value {
    let (st, r, text) = api.call(Who::Key(k), "POST", &format!("/api/v1/environments/DEV/connections/{name}/test"), None).await;
    assert_eq!(st, 200, "{text}");
    r
}

/// The one-time link's token, from the request email in the outbox.
async fn link_token(s: &Services, outbox_id: i64) -> (String, String) {
    let (item, eml) = server::mail::eml(&s.db, &s.vault, outbox_id).await.unwrap();
    let eml = String::from_utf8_lossy(&eml).replace("=\r\n", "").replace("=3D", "=");
    let start = eml.find("token=").expect("a link in the email") + "token=".len();
    let token: String = eml[start..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-').collect();
    (token, item.subject)
}

#[tokio::test]
async fn request_admin_help_then_the_admin_answers_through_the_link_and_the_connection_works() {
    for db in backends().await {
        let (api, k, sf, base) = setup(&db).await;
        create(&api, &k, "SF_Main", &base, json!({})).await;
        let (_, st, _) = api.call(Who::Key(&k), "GET", "/api/v1/environments/DEV/connections/SF_Main/status", None).await;
        assert_eq!(st["state"], "no_certificate");

        // Request admin help: a key pair, a certificate, and the email.
        let (st, issued, text) =
            api.call(Who::Key(&k), "POST", "/api/v1/environments/DEV/connections/SF_Main/certificate", Some(json!({"send_request": true}))).await;
        assert_eq!(st, 201, "{text}");
        assert_eq!(issued["certificate"]["bits"], 2048);
        assert_eq!((issued["request"]["admin_email"].as_str(), issued["request"]["delivery"].as_str()), (Some("sf-admin@acme.com"), Some("outbox")));
        let (st, pem_resp, pem) = api.call(Who::Key(&k), "GET", "/api/v1/environments/DEV/connections/SF_Main/certificate", None).await;
        assert_eq!(st, 200);
        assert!(pem_resp.is_null() && pem.starts_with("-----BEGIN CERTIFICATE-----") && !pem.contains("PRIVATE"), "{pem}");
        let (_, status, _) = api.call(Who::Key(&k), "GET", "/api/v1/environments/DEV/connections/SF_Main/status", None).await;
        assert_eq!(status["state"], "waiting_for_admin");
        assert!(status["summary"].as_str().unwrap().contains("sf-admin@acme.com"), "{status}");

        // The email: subject, the steps with real values, the certificate attached.
        let outbox_id = issued["request"]["outbox_id"].as_i64().unwrap();
        let (token, subject) = link_token(&api.s, outbox_id).await;
        assert!(subject.ends_with("requests your help to create a Salesforce Connected App"), "{subject}");
        let (_, eml) = server::mail::eml(&api.s.db, &api.s.vault, outbox_id).await.unwrap();
        let eml = String::from_utf8_lossy(&eml).to_string();
        assert!(eml.contains("SF_Main-DEV.crt"), "the certificate is attached");
        assert!(!eml.contains("PRIVATE KEY"));

        // The admin creates the app with the attached certificate and answers through the link.
        let consumer_key = register(&sf, &pem, |_| {});
        let answer_path = "/api/v1/environments/DEV/connections/SF_Main/admin-response";
        let (st, view, text) = api.call(Who::Nobody, "GET", &format!("{answer_path}?token={token}"), None).await;
        assert_eq!(st, 200, "{text}");
        assert_eq!(
            (view["connection"].as_str(), view["provider"].as_str(), view["admin"].as_str()),
            (Some("SF_Main"), Some("salesforce"), Some("Salesforce admin"))
        );
        assert_eq!(view["facts"][0], json!({"label": "Integration user", "value": USER}), "{view}");
        assert_eq!(view["answer_fields"][0]["name"], "consumer_key");
        assert_eq!(view["certificate_pem"].as_str(), Some(pem.as_str()), "the page offers the certificate the email attached");
        let (st, result, text) = api.call(Who::Nobody, "POST", answer_path, Some(json!({"token": token, "consumer_key": consumer_key}))).await;
        assert_eq!(st, 200, "{text}");
        assert_eq!(result["ok"], true, "{result}");
        assert!(result["detail"].as_str().unwrap().contains(&sf.org_id()), "{result}");

        // Single use.
        let (st, _, _) = api.call(Who::Nobody, "POST", answer_path, Some(json!({"token": token, "consumer_key": consumer_key}))).await;
        assert_eq!(st, 403);

        let (_, status, _) = api.call(Who::Key(&k), "GET", "/api/v1/environments/DEV/connections/SF_Main/status", None).await;
        assert_eq!(status["state"], "connected", "{status}");
        assert_eq!(status["connected"]["org_id"].as_str(), Some(sf.org_id().as_str()));
        assert_eq!(status["request"]["state"], "answered");
        assert_eq!(test(&api, &k, "SF_Main").await["ok"], true);

        // Every step is audited, and no response or audit row carries the key or the token.
        let (_, audit, audit_text) = api.call(Who::Key(&k), "GET", "/api/v1/audit?environment=DEV", None).await;
        let actions: BTreeSet<&str> = audit["items"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
        for a in ["certificate.issue", "admin_request.send", "admin_request.answer", "token.mint", "connection.test"] {
            assert!(actions.contains(a), "{a} missing from {actions:?}");
        }
        assert!(!audit_text.contains("PRIVATE") && !audit_text.contains("!AR"), "no key or token in the audit trail");
        let (_, conn, conn_text) = api.call(Who::Key(&k), "GET", "/api/v1/environments/DEV/connections/SF_Main", None).await;
        assert!(conn["secrets_set"]["private_key"].is_string() && !conn_text.contains("PRIVATE"), "{conn_text}");
    }
}

#[tokio::test]
async fn each_salesforce_refusal_becomes_advice_that_names_the_setting() {
    for db in backends().await {
        let (api, k, sf, base) = setup(&db).await;
        // (connection, how the app or user is set up, words the advice must contain)
        type Setup = Box<dyn FnOnce(&StandIn, &str) -> String>;
        let cases: Vec<(&str, Setup, &str, &str)> = vec![
            (
                "Self_Authorize",
                Box::new(|sf, pem| register(sf, pem, |a| a.admin_approved = false)),
                "user hasn't approved this consumer",
                "Admin approved users are pre-authorized",
            ),
            ("Not_Assigned", Box::new(|sf, pem| register(sf, pem, |a| a.assigned_users.clear())), "invalid_app_access", "permission set"),
            ("Ip_Restricted", Box::new(|sf, pem| register(sf, pem, |a| a.ip_restricted = true)), "ip restricted", "Relax IP restrictions"),
            (
                "Wrong_Key",
                Box::new(|sf, pem| {
                    register(sf, pem, |_| {});
                    "3MVG9unknown".into()
                }),
                "client identifier invalid",
                "Manage Consumer Details",
            ),
            (
                "Other_Cert",
                Box::new(|sf, _| {
                    let other = server::certs::issue(2048, "Other", "DEV", time::OffsetDateTime::now_utc()).unwrap();
                    register(sf, &other.certificate_pem, |_| {})
                }),
                "invalid assertion",
                "Use digital signatures",
            ),
        ];
        for (name, app, said, advice) in cases {
            create(&api, &k, name, &base, json!({})).await;
            let pem = certificate(&api, &k, name).await;
            let consumer_key = app(&sf, &pem);
            set_consumer_key(&api, &k, name, &consumer_key).await;
            let r = test(&api, &k, name).await;
            assert_eq!(r["ok"], false, "{name}: {r}");
            assert!(r["detail"].as_str().unwrap().contains(said), "{name}: {r}");
            assert!(r["advice"].as_str().unwrap().contains(advice), "{name}: {r}");
            let (_, status, _) = api.call(Who::Key(&k), "GET", &format!("/api/v1/environments/DEV/connections/{name}/status"), None).await;
            assert_eq!((status["state"].as_str(), status["advice"].as_str()), (Some("failing"), r["advice"].as_str()), "{name}");
        }

        // A wrong audience.
        create(&api, &k, "Wrong_Aud", &base, json!({"audience": "https://login.salesforce.com"})).await;
        sf.set_audiences(vec![base.clone()]);
        let pem = certificate(&api, &k, "Wrong_Aud").await;
        set_consumer_key(&api, &k, "Wrong_Aud", &register(&sf, &pem, |_| {})).await;
        let r = test(&api, &k, "Wrong_Aud").await;
        assert!(r["detail"].as_str().unwrap().contains("audience is invalid") && r["advice"].as_str().unwrap().contains("Audience"), "{r}");

        // An inactive user.
        create(&api, &k, "Inactive", &base, json!({"username": "gone@acme.com"})).await;
        sf.add_user("gone@acme.com", false);
        let pem = certificate(&api, &k, "Inactive").await;
        set_consumer_key(&api, &k, "Inactive", &register(&sf, &pem, |a| a.assigned_users = BTreeSet::from(["gone@acme.com".to_string()]))).await;
        let r = test(&api, &k, "Inactive").await;
        assert!(r["advice"].as_str().unwrap().contains("reactivate"), "{r}");
    }
}

#[tokio::test]
async fn five_hundreds_and_timeouts_are_retried_a_bounded_number_of_times_four_hundreds_never() {
    let db = backends().await.remove(0);
    let (api, k, sf, base) = setup(&db).await;
    create(&api, &k, "SF", &base, json!({})).await;
    let pem = certificate(&api, &k, "SF").await;
    set_consumer_key(&api, &k, "SF", &register(&sf, &pem, |_| {})).await;

    sf.fail_next(2, 503);
    let before = sf.token_requests();
    assert_eq!(test(&api, &k, "SF").await["ok"], true);
    assert_eq!(sf.token_requests() - before, 3, "two 503s, then success");

    sf.fail_next(10, 503);
    let before = sf.token_requests();
    let r = test(&api, &k, "SF").await;
    assert_eq!(r["ok"], false);
    assert!(r["detail"].as_str().unwrap().contains("503 to 3 attempts"), "{r}");
    assert_eq!(sf.token_requests() - before, 3, "bounded");
    sf.fail_next(0, 503);

    set_consumer_key(&api, &k, "SF", "3MVG9nobody").await;
    let before = sf.token_requests();
    assert_eq!(test(&api, &k, "SF").await["ok"], false);
    assert_eq!(sf.token_requests() - before, 1, "a 400 is not retried");
}

#[tokio::test]
async fn uploads_are_checked_and_links_are_single_use_expiring_and_scoped() {
    for db in backends().await {
        let (api, k, sf, base) = setup(&db).await;
        create(&api, &k, "A", &base, json!({})).await;
        create(&api, &k, "B", &base, json!({})).await;
        let path = "/api/v1/environments/DEV/connections/A/certificate";

        // Uploads: an expired certificate, a key that is not the certificate's, garbage.
        let now = time::OffsetDateTime::now_utc();
        let good = server::certs::issue(2048, "A", "DEV", now).unwrap();
        let other = server::certs::issue(2048, "X", "DEV", now).unwrap();
        let key_pem = |der: &[u8]| {
            use base64::Engine;
            let b64 = base64::engine::general_purpose::STANDARD.encode(der);
            format!(
                "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
                b64.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap()).collect::<Vec<_>>().join("\n")
            )
        };
        let expired = expired_certificate(good.private_key.expose_secret());
        let before = db.content_digest().await;
        for (cert, key, field, words) in [
            (expired.as_str(), key_pem(good.private_key.expose_secret()), "certificate", "expired"),
            (good.certificate_pem.as_str(), key_pem(other.private_key.expose_secret()), "private_key", "does not belong"),
            ("not a certificate", key_pem(good.private_key.expose_secret()), "certificate", "not PEM"),
        ] {
            let (st, err, text) = api.call(Who::Key(&k), "PUT", path, Some(json!({"certificate": cert, "private_key": key}))).await;
            assert_eq!(st, 422, "{text}");
            assert_eq!(err["error"]["details"][0]["field"], field);
            assert!(err["error"]["details"][0]["message"].as_str().unwrap().contains(words), "{text}");
        }
        assert_eq!(db.content_digest().await, before, "a refused upload writes nothing");
        let (st, info, text) = api
            .call(Who::Key(&k), "PUT", path, Some(json!({"certificate": good.certificate_pem, "private_key": key_pem(good.private_key.expose_secret())})))
            .await;
        assert_eq!((st.as_u16(), info["origin"].as_str(), info["state"].as_str()), (200, Some("uploaded"), Some("active")), "{text}");

        // Links: one for A does not touch B; expired is refused; used twice is refused.
        let (_, req, text) = api.call(Who::Key(&k), "POST", "/api/v1/environments/DEV/connections/A/admin-request", None).await;
        let (token, _) = link_token(&api.s, req["outbox_id"].as_i64().unwrap_or_else(|| panic!("{text}"))).await;
        let consumer_key = register(&sf, &good.certificate_pem, |_| {});
        let answer = json!({"token": token, "consumer_key": consumer_key});
        let (st, _, _) = api.call(Who::Nobody, "POST", "/api/v1/environments/DEV/connections/B/admin-response", Some(answer.clone())).await;
        assert_eq!(st, 403, "a link for A cannot touch B");
        let (st, _, _) = api.call(Who::Nobody, "GET", &format!("/api/v1/environments/DEV/connections/B/admin-response?token={token}"), None).await;
        assert_eq!(st, 403);
        // A bad consumer key is refused without using the link up.
        let (st, _, _) = api
            .call(Who::Nobody, "POST", "/api/v1/environments/DEV/connections/A/admin-response", Some(json!({"token": token, "consumer_key": "two words"})))
            .await;
        assert_eq!(st, 422);
        let (st, r, text) = api.call(Who::Nobody, "POST", "/api/v1/environments/DEV/connections/A/admin-response", Some(answer.clone())).await;
        assert_eq!((st.as_u16(), r["ok"].as_bool()), (200, Some(true)), "{text}");
        let (st, _, _) = api.call(Who::Nobody, "POST", "/api/v1/environments/DEV/connections/A/admin-response", Some(answer)).await;
        assert_eq!(st, 403, "used twice");

        let pem_b = certificate(&api, &k, "B").await;
        let (_, req, _) = api.call(Who::Key(&k), "POST", "/api/v1/environments/DEV/connections/B/admin-request", None).await;
        let (token, _) = link_token(&api.s, req["outbox_id"].as_i64().unwrap()).await;
        sqlx::query("UPDATE one_time_links SET expires_at = '2020-01-01T00:00:00Z' WHERE purpose = 'admin_request'").execute(api.s.db.pool()).await.unwrap();
        let answer = json!({"token": token, "consumer_key": register(&sf, &pem_b, |_| {})});
        let (st, _, _) = api.call(Who::Nobody, "POST", "/api/v1/environments/DEV/connections/B/admin-response", Some(answer)).await;
        assert_eq!(st, 403, "expired");

        // Cancel: the link stops working.
        let (_, req, _) = api.call(Who::Key(&k), "POST", "/api/v1/environments/DEV/connections/B/admin-request", None).await;
        let (token, _) = link_token(&api.s, req["outbox_id"].as_i64().unwrap()).await;
        let (st, _, _) = api.call(Who::Key(&k), "DELETE", "/api/v1/environments/DEV/connections/B/admin-request", None).await;
        assert_eq!(st, 204);
        let (st, _, _) = api.call(Who::Nobody, "GET", &format!("/api/v1/environments/DEV/connections/B/admin-response?token={token}"), None).await;
        assert_eq!(st, 403, "cancelled");
    }
}

/// Promise 16: a consumer key that does not work leaves the admin's link usable (the page says
/// how many tries are left); a working one then uses it up; five that do not work use it up.
#[tokio::test]
async fn a_wrong_consumer_key_leaves_the_link_usable_five_times() {
    for db in backends().await {
        let (api, k, sf, base) = setup(&db).await;
        create(&api, &k, "SF_Retry", &base, json!({})).await;
        let pem = certificate(&api, &k, "SF_Retry").await;
        let (_, req, text) = api.call(Who::Key(&k), "POST", "/api/v1/environments/DEV/connections/SF_Retry/admin-request", None).await;
        let (token, _) = link_token(&api.s, req["outbox_id"].as_i64().unwrap_or_else(|| panic!("{text}"))).await;
        let path = "/api/v1/environments/DEV/connections/SF_Retry/admin-response";
        let wrong = json!({"token": token, "consumer_key": "3MVG9wrongKeyThatSalesforceDoesNotKnow"});
        let (st, r, text) = api.call(Who::Nobody, "POST", path, Some(wrong.clone())).await;
        assert_eq!((st.as_u16(), r["ok"].as_bool()), (200, Some(false)), "{text}");
        assert!(r["advice"].as_str().unwrap().contains("4 more tries with this link"), "{r}");
        let (st, _, _) = api.call(Who::Nobody, "GET", &format!("{path}?token={token}"), None).await;
        assert_eq!(st, 200, "the page still opens");
        let right = json!({"token": token, "consumer_key": register(&sf, &pem, |_| {})});
        let (st, r, text) = api.call(Who::Nobody, "POST", path, Some(right.clone())).await;
        assert_eq!((st.as_u16(), r["ok"].as_bool()), (200, Some(true)), "{text}");
        assert_eq!(api.call(Who::Nobody, "POST", path, Some(right)).await.0, 403, "used up by the answer that worked");
        let (_, status, _) = api.call(Who::Key(&k), "GET", "/api/v1/environments/DEV/connections/SF_Retry/status", None).await;
        assert_eq!(status["request"]["state"], "answered");

        // Five answers that do not work: the sixth is refused, and the fifth said whom to ask.
        let (_, req, _) = api.call(Who::Key(&k), "POST", "/api/v1/environments/DEV/connections/SF_Retry/admin-request", None).await;
        let (token, _) = link_token(&api.s, req["outbox_id"].as_i64().unwrap()).await;
        for left in (0..5).rev() {
            let (st, r, text) = api.call(Who::Nobody, "POST", path, Some(json!({"token": token, "consumer_key": format!("3MVG9wrong{left}")}))).await;
            assert_eq!((st.as_u16(), r["ok"].as_bool()), (200, Some(false)), "{text}");
            if left == 0 {
                assert!(r["advice"].as_str().unwrap().contains("used up") && r["advice"].as_str().unwrap().contains("ask API key test"), "{r}");
            }
        }
        let (st, _, _) = api.call(Who::Nobody, "POST", path, Some(json!({"token": token, "consumer_key": register(&sf, &pem, |_| {})}))).await;
        assert_eq!(st, 403, "the sixth answer is refused");
    }
}

/// A certificate for `key_der` that expired yesterday.
fn expired_certificate(key_der: &[u8]) -> String {
    let pkcs8 = rustls_pki_types::PrivatePkcs8KeyDer::from(key_der);
    let pair = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&pkcs8, &rcgen::PKCS_RSA_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(400);
    params.not_after = now - time::Duration::days(1);
    params.self_signed(&pair).unwrap().pem()
}

#[tokio::test]
async fn rotation_keeps_the_old_certificate_until_the_new_one_works() {
    let db = backends().await.remove(0);
    let (api, k, sf, base) = setup(&db).await;
    create(&api, &k, "SF", &base, json!({})).await;
    let old_pem = certificate(&api, &k, "SF").await;
    let consumer_key = register(&sf, &old_pem, |_| {});
    set_consumer_key(&api, &k, "SF", &consumer_key).await;
    assert_eq!(test(&api, &k, "SF").await["ok"], true);

    let (st, rotated, _) = api.call(Who::Key(&k), "POST", "/api/v1/environments/DEV/connections/SF/certificate", Some(json!({"key_bits": 2048}))).await;
    assert_eq!((st.as_u16(), rotated["certificate"]["state"].as_str()), (201, Some("pending")));
    let (_, _, new_pem) = api.call(Who::Key(&k), "GET", "/api/v1/environments/DEV/connections/SF/certificate", None).await;
    assert_ne!(new_pem, old_pem, "the download is the new certificate, for the admin");

    // Salesforce still has the old certificate: the test works with it and says so.
    let r = test(&api, &k, "SF").await;
    assert_eq!(r["ok"], true, "{r}");
    assert!(r["detail"].as_str().unwrap().contains("current one stays in use"), "{r}");
    // The admin uploads the new one: the next test switches over for good.
    sf.update_app(&consumer_key, |a| a.certificate_pem = new_pem.clone()).unwrap();
    let r = test(&api, &k, "SF").await;
    assert!(r["ok"] == true && r["detail"].as_str().unwrap().contains("new certificate works"), "{r}");
    let (_, status, _) = api.call(Who::Key(&k), "GET", "/api/v1/environments/DEV/connections/SF/status", None).await;
    assert!(status["pending_certificate"].is_null() && status["certificate"]["fingerprint_sha256"] == rotated["certificate"]["fingerprint_sha256"], "{status}");
}

async fn bound_integration(api: &Api, k: &str, connection: &str) {
    let (st, _, text) =
        api.call(Who::Key(k), "PUT", "/api/v1/environments/DEV/integrations/Accounts", Some(json!({"provider": "salesforce", "objects": ["Account"]}))).await;
    assert!(st.is_success(), "{text}");
    let (st, _, text) = api.call(Who::Key(k), "PUT", "/api/v1/environments/DEV/integrations/Accounts/binding", Some(json!({"connection": connection}))).await;
    assert_eq!(st, 200, "{text}");
}

#[tokio::test]
async fn the_broker_caches_mints_once_for_many_callers_and_backs_off_a_failing_connection() {
    for db in backends().await {
        let (api, k, sf, base) = setup(&db).await;
        let token_path = "/api/v1/environments/DEV/integrations/Accounts/token";
        let (st, _, _) = api.call(Who::Key(&k), "POST", token_path, None).await;
        assert_eq!(st, 404, "unknown integration");
        let (st, _, _) = api
            .call(Who::Key(&k), "PUT", "/api/v1/environments/DEV/integrations/Accounts", Some(json!({"provider": "salesforce", "objects": ["Account"]})))
            .await;
        assert!(st.is_success());
        let (st, err, _) = api.call(Who::Key(&k), "POST", token_path, None).await;
        assert_eq!(st, 409);
        assert!(err["error"]["message"].as_str().unwrap().contains("integration Accounts in DEV needs a connection"), "{err}");

        create(&api, &k, "SF", &base, json!({})).await;
        let pem = certificate(&api, &k, "SF").await;
        set_consumer_key(&api, &k, "SF", &register(&sf, &pem, |_| {})).await;
        bound_integration(&api, &k, "SF").await;
        let no_grant = key(&api.s, &["DEV:integrations:read"]).await;
        let (st, _, _) = api.call(Who::Key(&no_grant), "POST", token_path, None).await;
        assert_eq!(st, 403);

        // 50 concurrent callers on a stale token: one call to Salesforce.
        let before = sf.token_requests();
        let calls = (0..50).map(|_| api.call(Who::Key(&k), "POST", token_path, None));
        let answers = futures::future::join_all(calls).await;
        assert_eq!(sf.token_requests() - before, 1, "exactly one mint");
        let first = &answers[0].1;
        for (st, body, text) in &answers {
            assert_eq!(*st, 200, "{text}");
            assert_eq!(body["access_token"], first["access_token"]);
            assert_eq!((body["token_type"].as_str(), body["connection"].as_str()), (Some("Bearer"), Some("SF")));
            assert_eq!(body["instance_url"].as_str(), Some(base.as_str()));
        }
        assert_eq!(answers.iter().filter(|a| a.1["cached"] == false).count(), 1);

        // Cached: no database write, no outbound call.
        let digest = db.content_digest().await;
        let (_, again, _) = api.call(Who::Key(&k), "POST", token_path, None).await;
        assert_eq!((again["cached"].as_bool(), &again["access_token"]), (Some(true), &first["access_token"]));
        assert_eq!(db.content_digest().await, digest, "the cached path writes nothing");
        assert_eq!(sf.token_requests() - before, 1);

        // force_refresh after the app saw INVALID_SESSION_ID: a new token.
        let (_, fresh, _) = api.call(Who::Key(&k), "POST", &format!("{token_path}?force_refresh=true"), None).await;
        assert_ne!(fresh["access_token"], first["access_token"]);
        assert_eq!(sf.token_requests() - before, 2);

        // Hits are counted per key and minute, then written once.
        let written = api.s.broker.flush_usage(&api.s.db, true).await.unwrap();
        assert!(written >= 1);
        let (_, audit, _) = api.call(Who::Key(&k), "GET", "/api/v1/audit?environment=DEV&action=token.use", None).await;
        let hits: i64 = audit["items"].as_array().unwrap().iter().map(|e| e["detail"]["cached_hits"].as_i64().unwrap()).sum();
        assert_eq!(hits, 50, "49 waiters plus one cached call");

        // A failing connection: 424 with Salesforce's reason, then back-off without calls.
        let assigned = sf.apps()[0].assigned_users.clone();
        sf.update_app(&first_key(&sf), |a| a.assigned_users.clear()).unwrap();
        let (st, err, text) = api.call(Who::Key(&k), "POST", &format!("{token_path}?force_refresh=true"), None).await;
        assert_eq!(st, 424, "{text}");
        assert!(err["error"]["message"].as_str().unwrap().contains("permission set"), "{err}");
        let calls = sf.token_requests();
        let (st, _, _) = api.call(Who::Key(&k), "POST", &format!("{token_path}?force_refresh=true"), None).await;
        assert_eq!(st, 424);
        assert_eq!(sf.token_requests(), calls, "backing off: Salesforce is not called again");
        let (_, list, _) = api.call(Who::Key(&k), "GET", "/api/v1/environments/DEV/integrations", None).await;
        assert_eq!(list["items"][0]["status"], "failing");

        // Fixed on Salesforce's side and tested: the wait ends at once, since the broker reads
        // the latest check from the database (so a check on another server counts too).
        sf.update_app(&first_key(&sf), |a| a.assigned_users = assigned).unwrap();
        let (st, _, _) = api.call(Who::Key(&k), "POST", &format!("{token_path}?force_refresh=true"), None).await;
        assert_eq!(st, 424, "still backing off: nothing says it works yet");
        if db.kind == common::Kind::Postgres {
            // (Its mint is a check that worked, too: on PostgreSQL it ends this server's wait.)
            let other = Api::new(open(&db).await);
            let (st, _, _) = other.call(Who::Key(&k), "POST", &format!("{token_path}?force_refresh=true"), None).await;
            assert_eq!(st, 200, "a fresh server mints: it has no back-off of its own");
        }
        assert_eq!(test(&api, &k, "SF").await["ok"], true);
        let calls = sf.token_requests();
        let (st, body, text) = api.call(Who::Key(&k), "POST", &format!("{token_path}?force_refresh=true"), None).await;
        assert_eq!(st, 200, "a test that worked ends the back-off: {text}");
        assert_eq!(body["cached"], false);
        assert_eq!(sf.token_requests(), calls + 1);
    }
}

fn first_key(sf: &StandIn) -> String {
    sf.apps().into_iter().next().unwrap().consumer_key
}

#[tokio::test]
async fn two_servers_on_one_postgresql_mint_once_between_them() {
    let Some(db) = backends().await.into_iter().find(|d| d.kind == common::Kind::Postgres) else { return };
    let (api, k, sf, base) = setup(&db).await;
    create(&api, &k, "SF", &base, json!({})).await;
    let pem = certificate(&api, &k, "SF").await;
    set_consumer_key(&api, &k, "SF", &register(&sf, &pem, |_| {})).await;
    bound_integration(&api, &k, "SF").await;
    // A second server: its own pool, cache and locks, the same database.
    let other = Api::new(open(&db).await);
    let token_path = "/api/v1/environments/DEV/integrations/Accounts/token";
    let before = sf.token_requests();
    let calls = (0..25).flat_map(|_| [api.call(Who::Key(&k), "POST", token_path, None), other.call(Who::Key(&k), "POST", token_path, None)]);
    let answers = futures::future::join_all(calls).await;
    assert!(answers.iter().all(|a| a.0 == 200), "{:?}", answers.iter().find(|a| a.0 != 200));
    assert_eq!(sf.token_requests() - before, 1, "one mint across both servers");
    let first = &answers[0].1["access_token"];
    assert!(answers.iter().all(|a| &a.1["access_token"] == first));
}

#[tokio::test]
async fn certificates_expiring_within_30_days_are_flagged() {
    for db in backends().await {
        let (api, k, _sf, base) = setup(&db).await;
        create(&api, &k, "Soon", &base, json!({})).await;
        create(&api, &k, "Later", &base, json!({})).await;
        create(&api, &k, "Bare", &base, json!({})).await;
        certificate(&api, &k, "Soon").await;
        certificate(&api, &k, "Later").await;
        let envs: Vec<i64> = server::environments::list(&api.s.db).await.unwrap().iter().map(|e| e.id).collect();
        assert!(server::signing::expiring(&api.s.db, &envs).await.unwrap().is_empty(), "two fresh two-year certificates");

        let in_ten_days = server::db::format_time(chrono::Utc::now() + chrono::Duration::days(10));
        sqlx::query("UPDATE certificates SET not_after = $1 WHERE connection_id = (SELECT id FROM connections WHERE name = 'Soon')")
            .bind(&in_ten_days)
            .execute(api.s.db.pool())
            .await
            .unwrap();
        let soon = server::signing::expiring(&api.s.db, &envs).await.unwrap();
        assert_eq!(soon.iter().map(|e| (e.environment.as_str(), e.connection.as_str())).collect::<Vec<_>>(), [("DEV", "Soon")]);
        let (_, status, _) = api.call(Who::Key(&k), "GET", "/api/v1/environments/DEV/connections/Soon/status", None).await;
        assert_eq!(status["certificate"]["expires_soon"], true);

        let page = server::connections::list(&api.s.db, "DEV", &Default::default()).await.unwrap();
        let briefs = server::signing::briefs(&api.s.db, &page.items).await.unwrap();
        let by_name = |n: &str| briefs[&page.items.iter().find(|c| c.name == n).unwrap().id].clone();
        assert_eq!(by_name("Soon").certificate_expires.map(|(_, soon)| soon), Some(true));
        assert_eq!(by_name("Later").certificate_expires.map(|(_, soon)| soon), Some(false));
        assert_eq!((by_name("Bare").state.as_str(), by_name("Bare").certificate_expires), ("no_certificate", None));
        assert_eq!(by_name("Later").state, "waiting_for_admin");

        // The expiry warnings: due at 30, 14, 7 and 1 days, each sent once, to the owners and
        // the environment's administrators, and announced as certificate.expiring.
        common::api::session(&api.s, "owner@acme.com", None, true).await;
        let scan = || server::expiry::scan(&api.s.db, &api.s.vault, &api.s.mailer, &api.s.config.public_url);
        assert_eq!(scan().await.unwrap(), 1, "ten days left: the 14-day warning");
        assert_eq!(scan().await.unwrap(), 0, "sent once");
        let in_five_days = server::db::format_time(chrono::Utc::now() + chrono::Duration::days(5));
        sqlx::query("UPDATE certificates SET not_after = $1 WHERE connection_id = (SELECT id FROM connections WHERE name = 'Soon')")
            .bind(&in_five_days)
            .execute(api.s.db.pool())
            .await
            .unwrap();
        assert_eq!(scan().await.unwrap(), 1, "five days left: the 7-day warning");
        let mails = server::mail::list(&api.s.db, &Default::default(), None).await.unwrap().items;
        let warnings: Vec<_> = mails.iter().filter(|m| m.subject.contains("certificate of Soon in DEV expires")).collect();
        assert_eq!(warnings.len(), 2, "{mails:?}");
        assert!(warnings.iter().all(|m| m.to == "owner@acme.com"));
        assert!(warnings[0].subject.ends_with("in 5 days"), "{}", warnings[0].subject);
        let events = server::audit::recent(&api.s.db, 200).await.unwrap();
        assert_eq!(events.iter().filter(|e| e.action == "certificate.expiring" && e.object_name.as_deref() == Some("Soon")).count(), 2);
    }
}

/// An environment that renews by itself: `renew_days_before` days before a certificate
/// expires, the scan enqueues its renewal once, which issues a pending certificate and sends the
/// admin request (the current one stays active); one that cannot start is recorded with what
/// to fix and not tried again.
#[tokio::test]
async fn certificates_are_renewed_by_themselves_when_the_environment_says_so() {
    for db in backends().await {
        let (api, k, _sf, base) = setup(&db).await;
        create(&api, &k, "Auto", &base, json!({})).await;
        create(&api, &k, "NoAdmin", &base, json!({})).await;
        certificate(&api, &k, "Auto").await;
        certificate(&api, &k, "NoAdmin").await;
        let (st, _, text) =
            api.call(Who::Key(&k), "PATCH", "/api/v1/environments/DEV/connections/NoAdmin", Some(json!({"settings": {"admin_email": null}}))).await;
        assert_eq!(st, 200, "{text}");
        let in_days = |d: i64| server::db::format_time(chrono::Utc::now() + chrono::Duration::days(d));
        db.exec(&format!("UPDATE certificates SET not_after = '{}' WHERE state = 'active'", in_days(45))).await;
        let scan = || server::expiry::scan(&api.s.db, &api.s.vault, &api.s.mailer, &api.s.config.public_url);
        let drain = || server::jobs::drain(&api.s.db, &api.s, &server::workers::KINDS);
        scan().await.unwrap();
        drain().await.unwrap();
        let state = |name: &'static str| {
            let db = &api.s.db;
            async move {
                let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT s.state FROM certificates s JOIN connections c ON c.id = s.connection_id WHERE c.name = '{name}' ORDER BY s.id"
                )))
                .fetch_all(db.pool())
                .await
                .unwrap();
                rows.iter().map(|r| sqlx::Row::try_get::<String, _>(r, "state").unwrap()).collect::<Vec<_>>()
            }
        };
        assert_eq!(state("Auto").await, ["active"], "the environment does not renew by itself by default");

        // Bad settings say what to fix; nothing changes.
        let op = server::audit::Actor::operator();
        let bad = server::environments::Schedule { check_every_hours: -1, renew_days_before: 400 };
        let err = server::environments::set_schedule(&api.s.db, &op, "DEV", bad).await.unwrap_err();
        assert!(matches!(&err, server::Error::Validation(f) if f.len() == 2), "{err:?}");
        let good = server::environments::Schedule { check_every_hours: 6, renew_days_before: 60 };
        assert_eq!(server::environments::set_schedule(&api.s.db, &op, "DEV", good).await.unwrap(), good);
        assert_eq!(server::environments::schedule(&api.s.db, "DEV").await.unwrap(), good);

        scan().await.unwrap();
        drain().await.unwrap();
        assert_eq!(state("Auto").await, ["active", "pending"], "a pending certificate, the current one still in use");
        let (_, status, _) = api.call(Who::Key(&k), "GET", "/api/v1/environments/DEV/connections/Auto/status", None).await;
        assert_eq!(status["request"]["state"], "open", "{status}");
        assert_eq!(status["request"]["admin_email"], "sf-admin@acme.com", "{status}");
        let mails = server::mail::list(&api.s.db, &Default::default(), None).await.unwrap().items;
        assert_eq!(mails.iter().filter(|m| m.to == "sf-admin@acme.com").count(), 1, "{mails:?}");
        // NoAdmin: recorded with what to fix.
        assert_eq!(state("NoAdmin").await, ["active"]);
        let events = server::audit::recent(&api.s.db, 200).await.unwrap();
        let failed: Vec<_> = events.iter().filter(|e| e.action == "certificate.renew" && e.object_name.as_deref() == Some("NoAdmin")).collect();
        assert_eq!(failed.len(), 1, "{events:?}");
        assert!(failed[0].detail["reason"].as_str().unwrap().contains("admin"), "{:?}", failed[0].detail);
        let issued: Vec<_> = events.iter().filter(|e| e.action == "certificate.issue" && e.object_name.as_deref() == Some("Auto")).collect();
        assert_eq!(issued[0].actor, "connvault (automatic renewal)");

        // Once per certificate: scanning again renews nothing more.
        scan().await.unwrap();
        drain().await.unwrap();
        assert_eq!(state("Auto").await, ["active", "pending"]);
        let events = server::audit::recent(&api.s.db, 200).await.unwrap();
        assert_eq!(events.iter().filter(|e| e.action == "certificate.renew").count(), 1);
    }
}

/// A typed secret whose expiry date is known (an Entra client secret's, entered with it) is
/// warned about as certificates are, as `secret.expiring`; one due later is not yet.
#[tokio::test]
async fn secrets_whose_expiry_is_known_are_warned_about() {
    for db in backends().await {
        let api = Api::new(open(&db).await);
        let k = key(&api.s, &["DEV:connections:rw", "DEV:audit:read"]).await;
        common::api::session(&api.s, "owner@acme.com", None, true).await;
        let day = |d: i64| (chrono::Utc::now() + chrono::Duration::days(d)).format("%Y-%m-%d").to_string();
        let soon = day(10);
        for (name, date) in [("DV_Secret", day(10)), ("DV_Later", day(60))] {
            let body = json!({"name": name, "provider": "dataverse", "settings": {
                "environment_url": "https://contoso.crm4.dynamics.com", "auth": "secret", "tenant": "contoso.onmicrosoft.com",
                "client_id": "11111111-2222-3333-4444-555555555555", "client_secret_expires_on": date}});
            let (st, _, text) = api.call(Who::Key(&k), "POST", "/api/v1/environments/DEV/connections", Some(body)).await;
            assert_eq!(st, 201, "{text}");
        }
        let scan = || server::expiry::scan(&api.s.db, &api.s.vault, &api.s.mailer, &api.s.config.public_url);
        assert_eq!(scan().await.unwrap(), 1);
        assert_eq!(scan().await.unwrap(), 0, "sent once");
        let mails = server::mail::list(&api.s.db, &Default::default(), None).await.unwrap().items;
        let warned: Vec<_> = mails.iter().filter(|m| m.subject.contains("client secret of DV_Secret in DEV expires in")).collect();
        assert_eq!(warned.len(), 1, "{mails:?}");
        assert!(!mails.iter().any(|m| m.subject.contains("DV_Later")), "{mails:?}");
        let events = server::audit::recent(&api.s.db, 200).await.unwrap();
        let e = events.iter().find(|e| e.action == "secret.expiring").expect("announced");
        assert_eq!(e.object_name.as_deref(), Some("DV_Secret"));
        assert!(e.detail["expires_at"].as_str().unwrap().starts_with(&soon), "{:?}", e.detail);
    }
}

#[tokio::test]
async fn the_request_email_goes_through_a_real_smtp_server_with_the_certificate_and_the_steps() {
    use mailparse::MailHeaderMap;
    let db = backends().await.remove(0);
    // A real SMTP server, with RFC 5321's line limit (the 4096-bit certificate is a long PEM).
    let Some(smtp) = common::aiosmtpd::RealSmtp::start(common::aiosmtpd::Behaviour { auth: "PLAIN LOGIN", refuse_rcpt: false }) else { return };
    let url = format!("smtp://mailer:s3cret@{}", smtp.addr);
    let vars = [("CONNVAULT_ALLOW_LOOPBACK", "1"), ("CONNVAULT_SMTP_URL", url.as_str()), ("CONNVAULT_PUBLIC_URL", "https://vault.example.com")];
    let api = Api::new(startup::open(db.config_with(&vars)).await.unwrap());
    let k = key(&api.s, &["DEV:connections:rw"]).await;
    create(&api, &k, "SF_Main", "https://login.salesforce.com", json!({})).await;
    let (st, issued, text) =
        api.call(Who::Key(&k), "POST", "/api/v1/environments/DEV/connections/SF_Main/certificate", Some(json!({"send_request": true, "key_bits": 4096}))).await;
    assert_eq!(st, 201, "{text}");
    assert_eq!((issued["certificate"]["bits"].as_i64(), issued["request"]["delivery"].as_str()), (Some(4096), Some("queued")));
    let (_, _, pem) = api.call(Who::Key(&k), "GET", "/api/v1/environments/DEV/connections/SF_Main/certificate", None).await;
    // The email goes out from the job queue.
    assert_eq!(server::jobs::drain(&api.s.db, &api.s, &server::workers::KINDS).await.unwrap(), 1);
    let (_, status, _) = api.call(Who::Key(&k), "GET", "/api/v1/environments/DEV/connections/SF_Main/status", None).await;
    assert_eq!(status["request"]["delivery"], "sent", "{status}");

    let received = smtp.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].rcpt_to, ["sf-admin@acme.com"]);
    common::aiosmtpd::assert_wire_clean(&received[0].data);
    assert_eq!(received[0].auth, Some(("mailer".to_string(), "s3cret".to_string())));
    let mail = mailparse::parse_mail(&received[0].data).unwrap();
    let subject = mail.headers.get_first_value("Subject").unwrap();
    assert!(subject.ends_with(" requests your help to create a Salesforce Connected App") && subject.starts_with("API key test"), "{subject}");
    let mut parts = Vec::new();
    fn walk<'a>(m: &'a mailparse::ParsedMail<'a>, out: &mut Vec<&'a mailparse::ParsedMail<'a>>) {
        out.push(m);
        for p in &m.subparts {
            walk(p, out);
        }
    }
    walk(&mail, &mut parts);
    let text = parts.iter().find(|p| p.ctype.mimetype == "text/plain").unwrap().get_body().unwrap();
    let html = parts.iter().find(|p| p.ctype.mimetype == "text/html").unwrap().get_body().unwrap();
    for expected in [USER, "https://vault.example.com/oauth/callback", "Use digital signatures", "Admin approved users are pre-authorized", "(api)"] {
        assert!(text.contains(expected), "the steps name {expected}: {text}");
    }
    assert!(text.contains("https://vault.example.com/respond/DEV/SF_Main?token="), "{text}");
    assert!(html.contains("https://vault.example.com/respond/DEV/SF_Main?token="), "{html}");
    let attachment =
        parts.iter().find(|p| p.get_content_disposition().params.get("filename").map(String::as_str) == Some("SF_Main-DEV.crt")).expect("the .crt");
    assert_eq!(String::from_utf8(attachment.get_body_raw().unwrap()).unwrap(), pem, "the attached certificate is the one to upload");
    assert!(!String::from_utf8_lossy(&received[0].data).contains("PRIVATE KEY"));
}

/// A database written before certificates, admin requests and tokens belonged to every provider
/// (tables `salesforce_certificates`, `salesforce_requests`, `salesforce_sessions`, links for
/// `salesforce_admin`) is migrated in place: the connection stays connected with the same
/// certificate, the open request's link still opens, and the broker mints with the same key.
/// The old database is made by running today's flow and then putting the schema and the rows
/// back to the previous release's shape (the exact inverse of 20261202000001), as it would be
/// found on disk.
#[tokio::test]
async fn a_database_from_the_previous_release_keeps_its_salesforce_connections() {
    for db in backends().await {
        let (api, k, sf, base) = setup(&db).await;
        create(&api, &k, "SF_Old", &base, json!({})).await;
        let pem = certificate(&api, &k, "SF_Old").await;
        let consumer_key = register(&sf, &pem, |_| {});
        set_consumer_key(&api, &k, "SF_Old", &consumer_key).await;
        assert_eq!(test(&api, &k, "SF_Old").await["ok"], true);
        // An open request with a link, as the admin would still hold it.
        let (st, req, text) = api.call(Who::Key(&k), "POST", "/api/v1/environments/DEV/connections/SF_Old/admin-request", None).await;
        assert_eq!(st, 201, "{text}");
        let (token, _) = link_token(&api.s, req["outbox_id"].as_i64().unwrap()).await;
        let (_, before, _) = api.call(Who::Key(&k), "GET", "/api/v1/environments/DEV/connections/SF_Old/status", None).await;
        let pool = api.s.db.pool().clone();
        let undo = [
            "UPDATE one_time_links SET purpose = 'salesforce_admin' WHERE purpose = 'admin_request'",
            "ALTER TABLE tokens DROP COLUMN expires_at",
            "ALTER TABLE tokens RENAME TO salesforce_sessions",
            "ALTER TABLE admin_requests RENAME TO salesforce_requests",
            "ALTER TABLE certificates RENAME TO salesforce_certificates",
            "DELETE FROM _sqlx_migrations WHERE version = 20261202000001",
        ];
        for sql in undo {
            sqlx::query(sql).execute(&pool).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
        let indexes: &[&str] = match db.kind {
            common::Kind::Sqlite => &[
                "DROP INDEX certificates_connection",
                "DROP INDEX certificates_expiry",
                "DROP INDEX admin_requests_connection",
                "CREATE INDEX salesforce_certificates_connection ON salesforce_certificates(connection_id, state)",
                "CREATE INDEX salesforce_certificates_expiry ON salesforce_certificates(state, not_after)",
                "CREATE INDEX salesforce_requests_connection ON salesforce_requests(connection_id, state)",
            ],
            common::Kind::Postgres => &[
                "ALTER INDEX certificates_connection RENAME TO salesforce_certificates_connection",
                "ALTER INDEX certificates_expiry RENAME TO salesforce_certificates_expiry",
                "ALTER INDEX admin_requests_connection RENAME TO salesforce_requests_connection",
            ],
        };
        for sql in indexes {
            sqlx::query(*sql).execute(&pool).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
        drop(api);
        pool.close().await;

        // Today's code opens it: the migration runs, and everything works as before.
        let api = Api::new(open(&db).await);
        let (st, after, text) = api.call(Who::Key(&k), "GET", "/api/v1/environments/DEV/connections/SF_Old/status", None).await;
        assert_eq!(st, 200, "{text}");
        assert_eq!(after["state"], "connected", "{after}");
        assert_eq!(after["certificate"]["fingerprint_sha256"], before["certificate"]["fingerprint_sha256"]);
        assert_eq!(after["certificate"]["thumbprint_sha1"].as_str().map(str::len), Some(40));
        assert_eq!(after["request"]["state"], "open");
        let (st, view, text) = api.call(Who::Nobody, "GET", &format!("/api/v1/environments/DEV/connections/SF_Old/admin-response?token={token}"), None).await;
        assert_eq!(st, 200, "the open request's link still opens: {text}");
        assert_eq!(view["connection"], "SF_Old");
        let (_, _, pem_after) = api.call(Who::Key(&k), "GET", "/api/v1/environments/DEV/connections/SF_Old/certificate", None).await;
        assert_eq!(pem_after, pem);
        // The broker mints with the migrated key (the session row has no expiry yet).
        bound_integration(&api, &k, "SF_Old").await;
        let minted_before = sf.token_requests();
        let (st, tok, text) = api.call(Who::Key(&k), "POST", "/api/v1/environments/DEV/integrations/Accounts/token?force_refresh=true", None).await;
        assert_eq!(st, 200, "{text}");
        assert!(tok["expires_at"].is_string() && tok["instance_url"].is_string(), "{tok}");
        assert_eq!(sf.token_requests(), minted_before + 1);
        assert_eq!(test(&api, &k, "SF_Old").await["ok"], true);
    }
}
