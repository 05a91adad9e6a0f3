//! The job queue and what runs on it: signed webhooks (verified with the registry's
//! `standardwebhooks` crate, an implementation independent of connvault's), retries, "send
//! again", secret rotation, disabling after 3 days; email through a real SMTP server that is
//! down and then up; scheduled checks and their health transitions; two servers on one
//! PostgreSQL delivering each event once.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use serde_json::{json, Value};

use super::common::aiosmtpd::{Behaviour, RealSmtp};
use super::common::api::{key, session, Api, Who};
use super::common::{backends, Kind};
use server::{jobs, startup, workers};

/// A webhook receiver on loopback: records every request; answers 500 to the first
/// `fail_next`, 200 to the rest.
#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<(HeaderMap, Vec<u8>)>>>,
    fail_next: Arc<AtomicUsize>,
    always_fail: Arc<std::sync::atomic::AtomicBool>,
}

impl Receiver {
    async fn start() -> (Receiver, SocketAddr) {
        let r = Receiver::default();
        let state = r.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
                let state = state.clone();
                async move {
                    state.got.lock().unwrap().push((headers, body.to_vec()));
                    let fail = state.always_fail.load(Ordering::SeqCst)
                        || state.fail_next.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
                    if fail {
                        (StatusCode::INTERNAL_SERVER_ERROR, "receiver down for maintenance")
                    } else {
                        (StatusCode::OK, "thanks")
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (r, addr)
    }

    fn got(&self) -> Vec<(HeaderMap, Vec<u8>)> {
        self.got.lock().unwrap().clone()
    }
}

fn header(h: &HeaderMap, name: &str) -> String {
    h.get(name).unwrap().to_str().unwrap().to_string()
}

/// Verifies one received request with the independent implementation.
fn verify(secret: &str, h: &HeaderMap, body: &[u8]) -> Result<(), String> {
    let wh = standardwebhooks::Webhook::new(secret).map_err(|e| format!("{e:?}"))?;
    wh.verify(body, h).map_err(|e| format!("{e:?}"))
}

/// Makes every queued job due now (instead of waiting out its back-off).
async fn make_due(db: &super::common::TestDb) {
    db.exec("UPDATE jobs SET run_at = '2000-01-01T00:00:00.000000Z' WHERE state = 'queued'").await;
}

fn http_connection(name: &str, base: &str) -> Value {
    json!({"name": name, "provider": "http", "settings": {"base_url": base, "auth": "bearer"}, "secrets": {"token": "SECRET-marker-77"}})
}

#[tokio::test]
async fn webhooks_are_signed_retried_sent_again_and_rotated() {
    let (receiver, addr) = Receiver::start().await;
    for db in backends().await {
        let api = Api::new(startup::open(db.config_with(&[("CONNVAULT_ALLOW_LOOPBACK", "1")])).await.unwrap());
        let k = key(&api.s, &["DEV:webhooks:rw", "DEV:connections:rw", "DEV:integrations:rw", "DEV:bindings:rw"]).await;
        let before = receiver.got().len();
        // Bad input says what to fix.
        let (st, bad, _) =
            api.call(Who::Key(&k), "POST", "/api/v1/environments/DEV/webhooks", Some(json!({"url": "ftp://x", "events": ["connection.made"]}))).await;
        assert_eq!(st, 422, "{bad}");
        let fields: Vec<&str> = bad["error"]["details"].as_array().unwrap().iter().map(|d| d["field"].as_str().unwrap()).collect();
        assert!(fields.contains(&"url") && fields.contains(&"events[0]"), "{bad}");

        let url = format!("http://{addr}/hook");
        let (st, hook, text) = api
            .call(Who::Key(&k), "POST", "/api/v1/environments/DEV/webhooks", Some(json!({"url": url, "events": ["connection.created", "connection.deleted"]})))
            .await;
        assert_eq!(st, 201, "{text}");
        let secret = hook["secret"].as_str().unwrap().to_string();
        assert!(secret.starts_with("whsec_"));
        let id = hook["id"].as_i64().unwrap();
        // The secret is shown once.
        let (_, listed, text) = api.call(Who::Key(&k), "GET", "/api/v1/environments/DEV/webhooks", None).await;
        assert!(!text.contains(&secret) && listed[0]["id"] == id, "{text}");

        // An event the subscription wants; the receiver fails the first attempt.
        receiver.fail_next.store(1, Ordering::SeqCst);
        let (st, _, text) =
            api.call(Who::Key(&k), "POST", "/api/v1/environments/DEV/connections", Some(http_connection("Hooked", "https://api.example.com"))).await;
        assert_eq!(st, 201, "{text}");
        // One it does not want.
        assert_eq!(api.call(Who::Key(&k), "PUT", "/api/v1/environments/DEV/integrations/Orders", Some(json!({"provider": "http"}))).await.0, 201);
        assert_eq!(api.call(Who::Key(&k), "PUT", "/api/v1/environments/DEV/integrations/Orders/binding", Some(json!({"connection": "Hooked"}))).await.0, 200);
        assert_eq!(jobs::drain(&api.s.db, &api.s, &workers::KINDS).await.unwrap(), 1);
        let (_, log, _) = api.call(Who::Key(&k), "GET", &format!("/api/v1/environments/DEV/webhooks/{id}/deliveries"), None).await;
        assert_eq!(log.as_array().unwrap().len(), 1, "{log}");
        assert_eq!((log[0]["state"].as_str(), log[0]["attempts"].as_i64(), log[0]["last_status"].as_i64()), (Some("pending"), Some(1), Some(500)));
        assert_eq!(log[0]["log"][0]["response_body"], "receiver down for maintenance");
        let (_, hook_now, _) = api.call(Who::Key(&k), "GET", &format!("/api/v1/environments/DEV/webhooks/{id}"), None).await;
        assert!(hook_now["failing_since"].is_string(), "{hook_now}");

        // Retried after its pause, with the same webhook-id, and verified independently.
        assert_eq!(jobs::drain(&api.s.db, &api.s, &workers::KINDS).await.unwrap(), 0, "not due before its back-off");
        make_due(&db).await;
        assert_eq!(jobs::drain(&api.s.db, &api.s, &workers::KINDS).await.unwrap(), 1);
        let got = receiver.got()[before..].to_vec();
        assert_eq!(got.len(), 2);
        assert_eq!(header(&got[0].0, "webhook-id"), header(&got[1].0, "webhook-id"));
        verify(&secret, &got[1].0, &got[1].1).unwrap();
        assert!(verify("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", &got[1].0, &got[1].1).is_err(), "another secret does not verify");
        let mut tampered = got[1].1.clone();
        tampered[2] ^= 1;
        assert!(verify(&secret, &got[1].0, &tampered).is_err(), "a changed body does not verify");
        let body: Value = serde_json::from_slice(&got[1].1).unwrap();
        assert_eq!(
            (body["type"].as_str(), body["data"]["environment"].as_str(), body["data"]["object"]["name"].as_str()),
            (Some("connection.created"), Some("DEV"), Some("Hooked"))
        );
        assert_eq!(body["data"]["actor"]["kind"], "api_key");
        assert!(!String::from_utf8_lossy(&got[1].1).contains("SECRET-marker-77"), "payloads never carry a secret");
        let (_, log, _) = api.call(Who::Key(&k), "GET", &format!("/api/v1/environments/DEV/webhooks/{id}/deliveries"), None).await;
        assert_eq!((log[0]["state"].as_str(), log[0]["attempts"].as_i64(), log[0]["log"].as_array().unwrap().len()), (Some("delivered"), Some(2), 2));
        let (_, hook_now, _) = api.call(Who::Key(&k), "GET", &format!("/api/v1/environments/DEV/webhooks/{id}"), None).await;
        assert!(hook_now["failing_since"].is_null(), "{hook_now}");

        // "Send again": the same webhook-id once more.
        let delivery = log[0]["id"].as_i64().unwrap();
        let (st, _, text) = api.call(Who::Key(&k), "POST", &format!("/api/v1/environments/DEV/webhooks/{id}/deliveries/{delivery}/retry"), None).await;
        assert_eq!(st, 202, "{text}");
        assert_eq!(jobs::drain(&api.s.db, &api.s, &workers::KINDS).await.unwrap(), 1);
        let got = receiver.got()[before..].to_vec();
        assert_eq!((got.len(), header(&got[2].0, "webhook-id")), (3, header(&got[0].0, "webhook-id")));

        // A rotation signs with the new secret and, for 24 hours, the old one too.
        let (st, rotated, text) = api.call(Who::Key(&k), "POST", &format!("/api/v1/environments/DEV/webhooks/{id}/rotate-secret"), None).await;
        assert_eq!(st, 200, "{text}");
        let new_secret = rotated["secret"].as_str().unwrap().to_string();
        assert_ne!(new_secret, secret);
        assert!(rotated["previous_secret_until"].is_string());
        assert_eq!(api.call(Who::Key(&k), "DELETE", "/api/v1/environments/DEV/connections/Hooked?force=true", None).await.0, 204);
        assert_eq!(jobs::drain(&api.s.db, &api.s, &workers::KINDS).await.unwrap(), 1);
        let got = receiver.got()[before..].to_vec();
        let last = got.last().unwrap();
        assert_eq!(serde_json::from_slice::<Value>(&last.1).unwrap()["type"], "connection.deleted");
        verify(&new_secret, &last.0, &last.1).unwrap();
        verify(&secret, &last.0, &last.1).unwrap();
        assert_eq!(got.len(), 4, "binding.changed and integration events were not subscribed to");

        // Developers read subscriptions but do not change where events go.
        let dev = session(&api.s, &format!("dev-{}@acme.com", db.kind as u8), Some(("DEV", server::users::Role::Developer)), false).await;
        assert_eq!(api.call(Who::Session(&dev), "GET", "/api/v1/environments/DEV/webhooks", None).await.0, 200);
        assert_eq!(
            api.call(Who::Session(&dev), "PATCH", &format!("/api/v1/environments/DEV/webhooks/{id}"), Some(json!({"url": "https://evil.example.com/"})))
                .await
                .0,
            403
        );
        assert_eq!(api.call(Who::Session(&dev), "DELETE", &format!("/api/v1/environments/DEV/webhooks/{id}"), None).await.0, 403);
    }
}

/// Deliveries are claimed and sent in batches (`Run::Many`), the attempts and outcomes written
/// in one commit per batch: every delivery of a mixed batch still gets its own log line and the
/// outcome it had, and a subscription disabled meanwhile sends nothing more.
#[tokio::test]
async fn batched_deliveries_record_each_delivery_as_it_went() {
    let (good, good_addr) = Receiver::start().await;
    let (bad, bad_addr) = Receiver::start().await;
    bad.always_fail.store(true, Ordering::SeqCst);
    for db in backends().await {
        let api = Api::new(startup::open(db.config_with(&[("CONNVAULT_ALLOW_LOOPBACK", "1")])).await.unwrap());
        let k = key(&api.s, &["DEV:webhooks:rw", "DEV:connections:rw"]).await;
        let mut hooks = Vec::new();
        for addr in [good_addr, bad_addr] {
            let (st, hook, text) = api
                .call(
                    Who::Key(&k),
                    "POST",
                    "/api/v1/environments/DEV/webhooks",
                    Some(json!({"url": format!("http://{addr}/hook"), "events": ["connection.created"]})),
                )
                .await;
            assert_eq!(st, 201, "{text}");
            hooks.push((hook["id"].as_i64().unwrap(), hook["secret"].as_str().unwrap().to_string()));
        }
        let (before_good, before_bad) = (good.got().len(), bad.got().len());
        for i in 0..40 {
            let (st, _, text) = api
                .call(Who::Key(&k), "POST", "/api/v1/environments/DEV/connections", Some(http_connection(&format!("Batch{i}"), "https://api.example.com")))
                .await;
            assert_eq!(st, 201, "{text}");
        }
        // 80 jobs, more than one batch holds.
        assert_eq!(jobs::drain(&api.s.db, &api.s, &workers::KINDS).await.unwrap(), 80);
        let got = good.got()[before_good..].to_vec();
        assert_eq!(got.len(), 40);
        let ids: BTreeSet<String> = got.iter().map(|(h, _)| header(h, "webhook-id")).collect();
        assert_eq!(ids.len(), 40, "one webhook-id per event");
        for (h, body) in &got {
            verify(&hooks[0].1, h, body).unwrap();
        }
        assert_eq!(bad.got().len() - before_bad, 40);

        let log = |id: i64| {
            let api = &api;
            let k = &k;
            async move { api.call(Who::Key(k), "GET", &format!("/api/v1/environments/DEV/webhooks/{id}/deliveries?limit=500"), None).await.1 }
        };
        let delivered = log(hooks[0].0).await;
        assert_eq!(delivered.as_array().unwrap().len(), 40);
        for d in delivered.as_array().unwrap() {
            assert_eq!(
                (d["state"].as_str(), d["attempts"].as_i64(), d["last_status"].as_i64(), d["log"].as_array().unwrap().len()),
                (Some("delivered"), Some(1), Some(200), 1),
                "{d}"
            );
        }
        let failing = log(hooks[1].0).await;
        for d in failing.as_array().unwrap() {
            assert_eq!(
                (d["state"].as_str(), d["attempts"].as_i64(), d["last_status"].as_i64(), d["log"].as_array().unwrap().len()),
                (Some("pending"), Some(1), Some(500), 1),
                "{d}"
            );
        }
        let queued = jobs::list(&api.s.db, Some("queued"), 500).await.unwrap();
        assert_eq!(queued.len(), 40, "each failed delivery waits for its next attempt");
        assert!(queued.iter().all(|j| j.attempts == 1 && j.last_error.as_deref().unwrap_or("").contains("500")), "{queued:?}");
        let (_, a, _) = api.call(Who::Key(&k), "GET", &format!("/api/v1/environments/DEV/webhooks/{}", hooks[0].0), None).await;
        let (_, b, _) = api.call(Who::Key(&k), "GET", &format!("/api/v1/environments/DEV/webhooks/{}", hooks[1].0), None).await;
        assert!(a["failing_since"].is_null() && b["failing_since"].is_string(), "{a} {b}");

        // Disabled meanwhile: its waiting deliveries end, none is sent.
        let (st, _, text) =
            api.call(Who::Key(&k), "PATCH", &format!("/api/v1/environments/DEV/webhooks/{}", hooks[1].0), Some(json!({"enabled": false}))).await;
        assert_eq!(st, 200, "{text}");
        make_due(&db).await;
        assert_eq!(jobs::drain(&api.s.db, &api.s, &workers::KINDS).await.unwrap(), 40);
        assert_eq!(bad.got().len() - before_bad, 40, "nothing more was sent to a disabled subscription");
        for d in log(hooks[1].0).await.as_array().unwrap() {
            assert_eq!(d["state"], "failed", "{d}");
        }
        assert!(jobs::list(&api.s.db, Some("queued"), 500).await.unwrap().is_empty());
    }
}

#[tokio::test]
async fn a_subscription_failing_for_three_days_is_disabled_and_its_creator_emailed() {
    let (receiver, addr) = Receiver::start().await;
    receiver.always_fail.store(true, Ordering::SeqCst);
    for db in backends().await {
        let api = Api::new(startup::open(db.config_with(&[("CONNVAULT_ALLOW_LOOPBACK", "1")])).await.unwrap());
        let owner = session(&api.s, "owner@acme.com", None, true).await;
        let (st, hook, text) = api
            .call(Who::Session(&owner), "POST", "/api/v1/environments/DEV/webhooks", Some(json!({"url": format!("http://{addr}/hook"), "events": ["*"]})))
            .await;
        assert_eq!(st, 201, "{text}");
        let id = hook["id"].as_i64().unwrap();
        let (st, _, _) = api.call(Who::Session(&owner), "POST", &format!("/api/v1/environments/DEV/webhooks/{id}/test"), None).await;
        assert_eq!(st, 202);
        assert_eq!(jobs::drain(&api.s.db, &api.s, &workers::KINDS).await.unwrap(), 1);
        // Three days and more of failures.
        db.exec(&format!("UPDATE webhooks SET failing_since = '2000-01-01T00:00:00.000000Z' WHERE id = {id}")).await;
        make_due(&db).await;
        jobs::drain(&api.s.db, &api.s, &workers::KINDS).await.unwrap();
        let (_, now, _) = api.call(Who::Session(&owner), "GET", &format!("/api/v1/environments/DEV/webhooks/{id}"), None).await;
        assert_eq!(now["enabled"], false, "{now}");
        assert!(now["disabled_reason"].as_str().unwrap().contains("failed for 3 days"), "{now}");
        let kept = server::mail::list(&api.s.db, &Default::default(), None).await.unwrap().items;
        let notice = kept.iter().find(|m| m.to == "owner@acme.com" && m.subject.contains("disabled")).unwrap_or_else(|| panic!("{kept:?}"));
        let (_, text) = server::mail::text(&api.s.db, &api.s.vault, notice.id).await.unwrap();
        assert!(text.contains("/env/DEV/webhooks"), "the email links the Webhooks page: {text}");
        // No more attempts while disabled; enabling it again clears the failure.
        let jobs_left = jobs::list(&api.s.db, Some("queued"), 10).await.unwrap();
        assert!(jobs_left.iter().all(|j| j.kind != "webhook.deliver"), "{jobs_left:?}");
        let (st, again, _) = api.call(Who::Session(&owner), "PATCH", &format!("/api/v1/environments/DEV/webhooks/{id}"), Some(json!({"enabled": true}))).await;
        assert_eq!((st.as_u16(), again["failing_since"].is_null(), again["disabled_reason"].is_null()), (200, true, true), "{again}");
    }
}

#[tokio::test]
async fn smtp_down_then_up_the_request_email_arrives_and_the_request_is_kept() {
    let db = backends().await.remove(0);
    // A port where the mail server will be: first nothing listens there.
    let Some(probe) = RealSmtp::start(Behaviour::default()) else { return };
    let port = probe.addr.port();
    drop(probe);
    let url = format!("smtp://127.0.0.1:{port}");
    let api = Api::new(startup::open(db.config_with(&[("CONNVAULT_ALLOW_LOOPBACK", "1"), ("CONNVAULT_SMTP_URL", &url)])).await.unwrap());
    let k = key(&api.s, &["DEV:connections:rw"]).await;
    let new = json!({"name": "Erp", "provider": "http", "settings": {"base_url": "https://erp.example.com", "auth": "bearer"}});
    assert_eq!(api.call(Who::Key(&k), "POST", "/api/v1/environments/DEV/connections", Some(new)).await.0, 201);
    let (st, asked, text) =
        api.call(Who::Key(&k), "POST", "/api/v1/environments/DEV/connections/Erp/credential-request", Some(json!({"admin_email": "erp-admin@acme.com"}))).await;
    assert_eq!(st, 201, "the request is made while the mail server is down: {text}");
    assert_eq!(asked["delivery"], "queued");
    assert_eq!(jobs::drain(&api.s.db, &api.s, &workers::KINDS).await.unwrap(), 1);
    let (_, latest, _) = api.call(Who::Key(&k), "GET", "/api/v1/environments/DEV/connections/Erp/credential-request", None).await;
    assert_eq!((latest["state"].as_str(), latest["delivery"].as_str()), (Some("open"), Some("queued")), "{latest}");
    assert!(latest["delivery_error"].as_str().unwrap().contains(&format!("127.0.0.1:{port}")), "{latest}");

    // The mail server comes back; the next attempt delivers.
    let Some(smtp) = RealSmtp::start_on(Behaviour::default(), port) else { return };
    make_due(&db).await;
    assert_eq!(jobs::drain(&api.s.db, &api.s, &workers::KINDS).await.unwrap(), 1);
    let received = smtp.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].rcpt_to, ["erp-admin@acme.com"]);
    assert!(String::from_utf8_lossy(&received[0].data).contains("/credentials/DEV/Erp?token="));
    let (_, latest, _) = api.call(Who::Key(&k), "GET", "/api/v1/environments/DEV/connections/Erp/credential-request", None).await;
    assert_eq!((latest["state"].as_str(), latest["delivery"].as_str()), (Some("open"), Some("sent")), "{latest}");
}

#[tokio::test]
async fn scheduled_checks_record_transitions_not_every_check() {
    for db in backends().await {
        let api = Api::new(startup::open(db.config_with(&[("CONNVAULT_ALLOW_LOOPBACK", "1")])).await.unwrap());
        let k = key(&api.s, &["DEV:connections:rw", "DEV:audit:read"]).await;
        // The http provider's check GETs base_url: this target answers with the status set.
        let (good, good_addr) = health_target().await;
        assert_eq!(
            api.call(Who::Key(&k), "POST", "/api/v1/environments/DEV/connections", Some(http_connection("Api", &format!("http://{good_addr}/")))).await.0,
            201
        );
        let id: i64 = server::connections::get(&api.s.db, "DEV", "Api").await.unwrap().id;
        let check = || async { server::checks::scheduled(api.s.signing(), id).await.unwrap().unwrap() };
        assert!(check().await.ok);
        good.store(401, Ordering::SeqCst);
        assert!(!check().await.ok);
        assert!(!check().await.ok);
        good.store(200, Ordering::SeqCst);
        assert!(check().await.ok);
        let (_, audit, _) = api.call(Who::Key(&k), "GET", "/api/v1/audit?environment=DEV", None).await;
        let actions: Vec<&str> = audit["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["action"].as_str().unwrap())
            .filter(|a| a.starts_with("connection.f") || a.starts_with("connection.r"))
            .collect();
        assert_eq!(actions, ["connection.recovered", "connection.failing"], "one event per change, newest first");
        let failing = audit["items"].as_array().unwrap().iter().find(|e| e["action"] == "connection.failing").unwrap();
        assert!(failing["detail"]["advice"].is_string(), "{failing}");

        // The scheduler gives the connection a time in its period and enqueues it once when due.
        assert_eq!(workers::schedule_checks(&api.s.db).await.unwrap(), 0, "not due yet");
        db.exec("UPDATE health_schedule SET next_check_at = '2000-01-01T00:00:00.000000Z'").await;
        assert_eq!(workers::schedule_checks(&api.s.db).await.unwrap(), 1);
        assert_eq!(workers::schedule_checks(&api.s.db).await.unwrap(), 0, "moved on to the next period");
        good.store(500, Ordering::SeqCst);
        assert_eq!(jobs::drain(&api.s.db, &api.s, &workers::KINDS).await.unwrap(), 1);
        let health = server::connections::health_of(&api.s.db, &[id]).await.unwrap();
        assert!(!health[&id].ok && health[&id].failing_since.is_some(), "{:?}", health[&id]);
    }
}

/// A GET target for the http provider's check, answering with the status in the atomic.
async fn health_target() -> (Arc<AtomicUsize>, SocketAddr) {
    let status = Arc::new(AtomicUsize::new(200));
    let s = status.clone();
    let app = axum::Router::new().fallback(move || {
        let s = s.clone();
        async move { StatusCode::from_u16(s.load(Ordering::SeqCst) as u16).unwrap() }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (status, addr)
}

#[tokio::test]
async fn two_servers_on_one_postgres_deliver_each_event_once() {
    let Some(db) = backends().await.into_iter().find(|d| d.kind == Kind::Postgres) else { return };
    let (receiver, addr) = Receiver::start().await;
    let vars = [("CONNVAULT_ALLOW_LOOPBACK", "1")];
    let a = Api::new(startup::open(db.config_with(&vars)).await.unwrap());
    let b = Api::new(startup::open(db.config_with(&vars)).await.unwrap());
    let k = key(&a.s, &["DEV:webhooks:rw", "DEV:connections:rw"]).await;
    let (st, _, text) = a
        .call(Who::Key(&k), "POST", "/api/v1/environments/DEV/webhooks", Some(json!({"url": format!("http://{addr}/hook"), "events": ["connection.created"]})))
        .await;
    assert_eq!(st, 201, "{text}");
    let running_a = workers::start(&a.s).await.unwrap();
    let running_b = workers::start(&b.s).await.unwrap();
    const N: usize = 60;
    for i in 0..N {
        let api = if i % 2 == 0 { &a } else { &b };
        let (st, _, text) =
            api.call(Who::Key(&k), "POST", "/api/v1/environments/DEV/connections", Some(http_connection(&format!("C{i}"), "https://x.example.com"))).await;
        assert_eq!(st, 201, "{text}");
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while receiver.got().len() < N && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A moment more, for any second delivery to show.
    tokio::time::sleep(Duration::from_millis(700)).await;
    running_a.stop(&a.s).await;
    running_b.stop(&b.s).await;
    let ids: Vec<String> = receiver.got().iter().map(|(h, _)| header(h, "webhook-id")).collect();
    let unique: BTreeSet<&String> = ids.iter().collect();
    assert_eq!((ids.len(), unique.len()), (N, N), "every event delivered exactly once");
}

#[tokio::test]
async fn the_home_page_lists_what_needs_attention_per_environment() {
    for db in backends().await {
        let api = Api::new(startup::open(db.config_with(&[("CONNVAULT_ALLOW_LOOPBACK", "1")])).await.unwrap());
        let k = key(&api.s, &["*:connections:rw", "*:integrations:rw", "*:webhooks:rw"]).await;
        let envs: Vec<i64> = server::environments::list(&api.s.db).await.unwrap().iter().map(|e| e.id).collect();
        assert!(server::attention::items(&api.s.db, &envs).await.unwrap().is_empty());
        let (target, addr) = health_target().await;
        assert_eq!(
            api.call(Who::Key(&k), "POST", "/api/v1/environments/QA/connections", Some(http_connection("Api", &format!("http://{addr}/")))).await.0,
            201
        );
        target.store(401, Ordering::SeqCst);
        let id = server::connections::get(&api.s.db, "QA", "Api").await.unwrap().id;
        server::checks::scheduled(api.s.signing(), id).await.unwrap();
        assert_eq!(api.call(Who::Key(&k), "PUT", "/api/v1/environments/DEV/integrations/Orders", Some(json!({"provider": "http"}))).await.0, 201);
        let items = server::attention::items(&api.s.db, &envs).await.unwrap();
        let got: Vec<(&str, &str, &str)> = items.iter().map(|i| (i.environment.as_str(), i.kind, i.object.as_str())).collect();
        assert_eq!(got, [("QA", "failing", "Api"), ("DEV", "needs_connection", "Orders")]);
        assert!(items[0].detail.contains("failing since") && items[0].path == "/env/QA/connections/Api", "{:?}", items[0]);
        // Only the environments asked about.
        let dev = server::environments::find(&api.s.db, "DEV").await.unwrap().id;
        assert_eq!(server::attention::items(&api.s.db, &[dev]).await.unwrap().len(), 1);
    }
}

/// Usage counted in memory reaches the database every second (`persist_usage`), so a server
/// that dies afterwards loses none of it; the `usage.audit` job then writes one event per
/// caller, integration and minute with the counts of every server summed, and only for
/// finished minutes.
#[tokio::test]
async fn usage_counts_are_kept_in_the_database_and_summed_over_servers() {
    for db in backends().await {
        let a = startup::open(db.config()).await.unwrap();
        let b = startup::open(db.config()).await.unwrap();
        let env = server::environments::find(&a.db, "DEV").await.unwrap();
        let caller = server::audit::Actor { kind: server::audit::ActorKind::ApiKey, id: None, label: "api key release-bot".into(), client_addr: None };
        for _ in 0..3 {
            a.broker.count_call(&caller, &env, "Orders");
        }
        for _ in 0..2 {
            b.broker.count_call(&caller, &env, "Orders");
        }
        assert_eq!(a.broker.persist_usage(&a.db).await.unwrap(), 1);
        assert_eq!(b.broker.persist_usage(&b.db).await.unwrap(), 1);
        assert_eq!(a.broker.persist_usage(&a.db).await.unwrap(), 0, "nothing counted twice");
        // Both servers gone: what they counted is in the database.
        a.db.close().await;
        b.db.close().await;
        let c = startup::open(db.config()).await.unwrap();
        assert_eq!(server::broker::audit_usage(&c.db, false).await.unwrap(), 0, "this minute is not finished");
        db.exec("UPDATE usage_counts SET minute = minute - 2").await;
        assert!(server::broker::audit_usage(&c.db, false).await.unwrap() >= 1);
        let events: Vec<_> = server::audit::recent(&c.db, 50).await.unwrap().into_iter().filter(|e| e.action == "proxy.use").collect();
        let calls: i64 = events.iter().map(|e| e.detail["calls"].as_i64().unwrap()).sum();
        assert_eq!(calls, 5, "{events:?}");
        assert!(events.len() <= 2 && events.iter().all(|e| e.actor == "api key release-bot" && e.object_name.as_deref() == Some("Orders")), "{events:?}");
        assert_eq!(server::broker::audit_usage(&c.db, true).await.unwrap(), 0, "written once");
    }
}
