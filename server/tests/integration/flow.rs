//! The connection page's flow (`server::flow`) and the requester's side of a request to an
//! admin: every mistake of a new connection at once; the steps and the one status of a
//! connection that signs and of one whose secrets are typed; the outcome of each answer kept
//! with the request and emailed to the requester (never the link); and, without a mail server,
//! the email the requester passes on. On every backend.

use crate::common;

use std::collections::BTreeSet;

use common::{backends, key, session, Api, TestDb, Who};
use serde_json::json;
use server::flow::{self, StepState};
use server::providers::salesforce::standin::{ConnectedApp, StandIn};
use server::startup::{self, Services};
use server::users::Role;

const USER: &str = "integration+flow@acme.com";
const DEV: &str = "dev@example.com";

async fn open(db: &TestDb) -> Services {
    startup::open(db.config_with(&[("CONNVAULT_ALLOW_LOOPBACK", "1"), ("CONNVAULT_PUBLIC_URL", "http://127.0.0.1:3000")])).await.expect("open")
}

/// The one-time link's token, from the request email in the outbox.
async fn link_token(s: &Services, outbox_id: i64) -> String {
    let (_, eml) = server::mail::eml(&s.db, &s.vault, outbox_id).await.unwrap();
    let eml = String::from_utf8_lossy(&eml).replace("=\r\n", "").replace("=3D", "=");
    let start = eml.find("token=").expect("a link in the email") + "token=".len();
    eml[start..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-').collect()
}

/// Every outbox message as (to, subject, text).
async fn outbox(s: &Services) -> Vec<(String, String, String)> {
    let feed = server::feed::Feed::Default { cursor: None };
    let mut out = Vec::new();
    for item in server::mail::list(&s.db, &feed, Some(100)).await.unwrap().items {
        let (_, text) = server::mail::text(&s.db, &s.vault, item.id).await.unwrap();
        out.push((item.to, item.subject, text));
    }
    out
}

fn state_of(f: &flow::Flow, id: &str) -> StepState {
    f.steps.iter().find(|s| s.id == id).unwrap_or_else(|| panic!("no step {id}: {f:?}")).state
}

async fn flow_of(s: &Services, name: &str) -> flow::Flow {
    let c = server::connections::get(&s.db, "DEV", name).await.unwrap();
    flow::of(&s.db, &c).await.unwrap()
}

/// A Salesforce connection, its certificate requested by the developer `DEV` (a person with an
/// account), the connected app registered: the API, the stand-in, the link's token, the consumer key.
async fn requested(db: &TestDb, name: &str) -> (Api, String, StandIn, String, String) {
    let sf = StandIn::new();
    let base = sf.spawn().await.unwrap();
    sf.add_user(USER, true);
    let api = Api::new(open(db).await);
    let k = key(&api.s, &["DEV:connections:rw", "DEV:integrations:rw", "DEV:bindings:rw", "DEV:audit:read"]).await;
    let dev = session(&api.s, DEV, Some(("DEV", Role::Developer)), false).await;
    let settings = json!({"login_url": base, "username": USER, "admin_email": "sf-admin@acme.com"});
    let (st, _, text) =
        api.call(Who::Session(&dev), "POST", "/api/v1/environments/DEV/connections", Some(json!({"name": name, "provider": "salesforce", "settings": settings}))).await;
    assert_eq!(st, 201, "{text}");
    let f = flow_of(&api.s, name).await;
    assert_eq!((state_of(&f, "settings"), state_of(&f, "certificate"), state_of(&f, "answer")), (StepState::Done, StepState::Next, StepState::Todo), "{f:?}");
    assert_eq!(f.status.state, "no_certificate");
    let (st, issued, text) =
        api.call(Who::Session(&dev), "POST", &format!("/api/v1/environments/DEV/connections/{name}/certificate"), Some(json!({"send_request": true}))).await;
    assert_eq!(st, 201, "{text}");
    let token = link_token(&api.s, issued["request"]["outbox_id"].as_i64().unwrap()).await;
    let (_, _, pem) = api.call(Who::Key(&k), "GET", &format!("/api/v1/environments/DEV/connections/{name}/certificate"), None).await;
    let consumer_key = format!("3MVG9flow{}", name.len());
    sf.add_app(ConnectedApp { consumer_key: consumer_key.clone(), certificate_pem: pem, admin_approved: true, assigned_users: BTreeSet::from([USER.to_string()]), ip_restricted: false })
        .unwrap();
    (api, k, sf, token, consumer_key)
}

/// A new connection with a bad name, a bad URL and a missing header name: refused with all
/// three at once, with the provider's own checks among them (they came one round later before).
#[tokio::test]
async fn a_new_connection_is_refused_with_every_mistake_at_once() {
    for db in backends().await {
        let api = Api::new(open(&db).await);
        let k = key(&api.s, &["DEV:connections:rw"]).await;
        let body = json!({"name": "not a name", "provider": "http", "settings": {"base_url": "not a url", "auth": "header"}});
        let (st, b, text) = api.call(Who::Key(&k), "POST", "/api/v1/environments/DEV/connections", Some(body)).await;
        assert_eq!(st, 422, "{text}");
        let fields: BTreeSet<&str> = b["error"]["details"].as_array().unwrap().iter().map(|d| d["field"].as_str().unwrap()).collect();
        assert_eq!(fields, BTreeSet::from(["name", "settings.base_url", "settings.header_name"]), "{text}");
        // The provider's check (a reserved header, a query in the base URL) comes with a type mistake.
        let body = json!({"name": "Ok", "provider": "http", "settings": {"base_url": "https://x.example.com/?a=1", "auth": "header", "header_name": "Host", "username": 5}});
        let (st, b, text) = api.call(Who::Key(&k), "POST", "/api/v1/environments/DEV/connections", Some(body)).await;
        assert_eq!(st, 422, "{text}");
        let fields: BTreeSet<&str> = b["error"]["details"].as_array().unwrap().iter().map(|d| d["field"].as_str().unwrap()).collect();
        assert!(fields.contains("settings.base_url") && fields.contains("settings.header_name") && fields.contains("settings.username"), "{text}");
    }
}

/// Promise 16 and the requester: each answer's outcome is kept with the request (the connection
/// page shows it) and emailed to the person who asked, in the same transaction, without the
/// link; the steps follow: the admin's turn while the link takes more answers, then done.
#[tokio::test]
async fn the_requester_is_told_each_answers_outcome_by_email_and_on_the_request() {
    for db in backends().await {
        let (api, k, _sf, token, consumer_key) = requested(&db, "SF_Flow").await;
        let path = "/api/v1/environments/DEV/connections/SF_Flow/admin-response";
        let (st, r, text) = api.call(Who::Nobody, "POST", path, Some(json!({"token": token, "consumer_key": "3MVG9wrongKey"}))).await;
        assert_eq!((st.as_u16(), r["ok"].as_bool()), (200, Some(false)), "{text}");

        let (_, status, _) = api.call(Who::Key(&k), "GET", "/api/v1/environments/DEV/connections/SF_Flow/status", None).await;
        let last = &status["request"]["last_answer"];
        assert_eq!((last["ok"].as_bool(), last["tries_left"].as_i64(), status["request"]["state"].as_str()), (Some(false), Some(4), Some("open")), "{status}");
        let mails = outbox(&api.s).await;
        let (to, subject, text) = mails.iter().find(|(_, s, _)| s.contains("does not work yet")).unwrap_or_else(|| panic!("{mails:?}"));
        assert_eq!((to.as_str(), subject.as_str()), (DEV, "SF_Flow in DEV: the Salesforce admin's answer does not work yet"));
        assert!(text.contains("The link you sent takes 4 more answers"), "{text}");
        assert!(text.contains("http://127.0.0.1:3000/env/DEV/connections/SF_Flow"), "{text}");
        assert!(!text.contains("token=") && !text.contains(&token), "the requester's email never carries the admin's link: {text}");
        let f = flow_of(&api.s, "SF_Flow").await;
        assert_eq!((state_of(&f, "answer"), state_of(&f, "test")), (StepState::Waiting, StepState::Failed), "{f:?}");
        assert_eq!(f.status.state, "failing", "the test of the answer is the status: {f:?}");
        assert!(f.steps.iter().any(|s| s.id == "answer" && s.summary.contains("did not work") && s.summary.contains("4 more tries")), "{f:?}");

        let (st, r, text) = api.call(Who::Nobody, "POST", path, Some(json!({"token": token, "consumer_key": consumer_key}))).await;
        assert_eq!((st.as_u16(), r["ok"].as_bool()), (200, Some(true)), "{text}");
        let mails = outbox(&api.s).await;
        let (to, _, text) = mails.iter().find(|(_, s, _)| s == "SF_Flow in DEV works: the Salesforce admin answered your request").unwrap_or_else(|| panic!("{mails:?}"));
        assert_eq!(to, DEV);
        assert!(text.contains("it works (connected to org"), "{text}");
        let (_, status, _) = api.call(Who::Key(&k), "GET", "/api/v1/environments/DEV/connections/SF_Flow/status", None).await;
        assert_eq!((status["request"]["state"].as_str(), status["request"]["last_answer"]["ok"].as_bool()), (Some("answered"), Some(true)), "{status}");
        let f = flow_of(&api.s, "SF_Flow").await;
        let states: Vec<StepState> = f.steps.iter().map(|s| s.state).collect();
        assert_eq!(states, [StepState::Done, StepState::Done, StepState::Done, StepState::Done, StepState::Next], "{f:?}");
        assert_eq!(f.status.state, "works");
        let (_, audit, _) = api.call(Who::Key(&k), "GET", "/api/v1/audit?environment=DEV&action=admin_request.settle", None).await;
        let told: Vec<bool> = audit["items"].as_array().unwrap().iter().map(|e| e["detail"]["requester_emailed"].as_bool().unwrap()).collect();
        assert_eq!(told, [true, true], "{audit}");
        let history = flow::history(&api.s.db, server::environments::find(&api.s.db, "DEV").await.unwrap().id, "SF_Flow", 20).await.unwrap();
        let kinds: BTreeSet<&str> = history.iter().map(|h| h.kind.as_str()).collect();
        assert_eq!(kinds, BTreeSet::from(["answer", "mint", "test"]), "{history:?}");
        // Each answer's test once: the change of state it caused is not a second entry.
        assert_eq!(history.iter().filter(|h| h.kind == "test").count(), 2, "{history:?}");

        // Bound, the last step is done too.
        let (st, _, text) = api
            .call(Who::Key(&k), "PUT", "/api/v1/environments/DEV/integrations/Orders", Some(json!({"provider": "salesforce", "objects": ["Account"]})))
            .await;
        assert_eq!(st, 201, "{text}");
        let (st, _, text) = api.call(Who::Key(&k), "PUT", "/api/v1/environments/DEV/integrations/Orders/binding", Some(json!({"connection": "SF_Flow"}))).await;
        assert_eq!(st, 200, "{text}");
        let f = flow_of(&api.s, "SF_Flow").await;
        assert_eq!((state_of(&f, "bind"), f.used_by.clone()), (StepState::Done, vec!["Orders".to_string()]));
    }
}

/// A request made with an API key has nobody to email: the outcome is kept, no email queued.
#[tokio::test]
async fn an_api_key_requester_is_not_emailed() {
    for db in backends().await {
        let sf = StandIn::new();
        let base = sf.spawn().await.unwrap();
        let api = Api::new(open(&db).await);
        let k = key(&api.s, &["DEV:connections:rw"]).await;
        let settings = json!({"login_url": base, "username": USER, "admin_email": "sf-admin@acme.com"});
        let (st, _, text) =
            api.call(Who::Key(&k), "POST", "/api/v1/environments/DEV/connections", Some(json!({"name": "SF_Key", "provider": "salesforce", "settings": settings}))).await;
        assert_eq!(st, 201, "{text}");
        let (_, issued, _) =
            api.call(Who::Key(&k), "POST", "/api/v1/environments/DEV/connections/SF_Key/certificate", Some(json!({"send_request": true}))).await;
        let token = link_token(&api.s, issued["request"]["outbox_id"].as_i64().unwrap()).await;
        let (st, r, _) = api
            .call(Who::Nobody, "POST", "/api/v1/environments/DEV/connections/SF_Key/admin-response", Some(json!({"token": token, "consumer_key": "3MVG9wrongKey"})))
            .await;
        assert_eq!((st.as_u16(), r["ok"].as_bool()), (200, Some(false)));
        let mails = outbox(&api.s).await;
        assert_eq!(mails.len(), 1, "only the request itself: {mails:?}");
        let (_, status, _) = api.call(Who::Key(&k), "GET", "/api/v1/environments/DEV/connections/SF_Key/status", None).await;
        assert_eq!(status["request"]["last_answer"]["ok"], false, "{status}");
    }
}

/// Without a mail server the request is not sent: the status says so (never "waiting"), the
/// answer step is the requester's, and the requester gets the email to pass on, with its link
/// (each reading audited, never the link); once an answer came, there is nothing to pass on.
#[tokio::test]
async fn without_a_mail_server_the_requester_passes_the_request_on() {
    for db in backends().await {
        let (api, k, _sf, token, consumer_key) = requested(&db, "SF_Out").await;
        let f = flow_of(&api.s, "SF_Out").await;
        assert_eq!((state_of(&f, "certificate"), state_of(&f, "answer")), (StepState::Done, StepState::Next), "{f:?}");
        assert_eq!((f.status.state.as_str(), f.status.label.as_str()), ("request_not_sent", "Not sent: no mail server is configured"), "{f:?}");
        assert_eq!(f.admin_email.as_deref(), Some("sf-admin@acme.com"));
        let (_, status, _) = api.call(Who::Key(&k), "GET", "/api/v1/environments/DEV/connections/SF_Out/status", None).await;
        let summary = status["summary"].as_str().unwrap();
        assert!(summary.contains("was not sent: no mail server is configured") && !summary.contains("waiting"), "{status}");

        let actor = server::users::list(&api.s.db).await.unwrap().into_iter().find(|u| u.email == DEV).unwrap().actor(None);
        let m = server::signing::undelivered(api.s.signing(), &actor, "DEV", "SF_Out").await.unwrap();
        assert_eq!((m.to.as_str(), m.delivery.as_str(), m.file_name.as_str()), ("sf-admin@acme.com", "outbox", "SF_Out-DEV-request.eml"));
        assert_eq!(m.link, format!("http://127.0.0.1:3000/respond/DEV/SF_Out?token={token}"));
        assert!(m.text.contains(&m.link), "{}", m.text);
        use base64::Engine;
        let eml = String::from_utf8(base64::engine::general_purpose::STANDARD.decode(&m.eml_base64).unwrap()).unwrap();
        assert!(eml.contains("Subject:") && eml.contains("SF_Out-DEV.crt"), "the whole message, the certificate attached");
        let (_, audit, text) = api.call(Who::Key(&k), "GET", "/api/v1/audit?environment=DEV&action=admin_request.message_read", None).await;
        assert_eq!(audit["items"].as_array().unwrap().len(), 1, "{text}");
        assert!(!text.contains(&token), "the audit trail never holds the link");

        let (st, r, _) =
            api.call(Who::Nobody, "POST", "/api/v1/environments/DEV/connections/SF_Out/admin-response", Some(json!({"token": token, "consumer_key": consumer_key}))).await;
        assert_eq!((st.as_u16(), r["ok"].as_bool()), (200, Some(true)));
        let e = server::signing::undelivered(api.s.signing(), &actor, "DEV", "SF_Out").await.unwrap_err();
        assert_eq!(e.status(), 409, "{e}");
    }
}

/// The admin's address is asked once: a request without one goes where the setting, or else
/// the latest request, sent it.
#[tokio::test]
async fn a_request_again_goes_where_the_last_one_went() {
    for db in backends().await {
        let sf = StandIn::new();
        let base = sf.spawn().await.unwrap();
        let api = Api::new(open(&db).await);
        let k = key(&api.s, &["DEV:connections:rw"]).await;
        let settings = json!({"login_url": base, "username": USER});
        let (st, _, text) =
            api.call(Who::Key(&k), "POST", "/api/v1/environments/DEV/connections", Some(json!({"name": "SF_Again", "provider": "salesforce", "settings": settings}))).await;
        assert_eq!(st, 201, "{text}");
        let (st, _, text) = api
            .call(Who::Key(&k), "POST", "/api/v1/environments/DEV/connections/SF_Again/certificate", Some(json!({"send_request": true, "admin_email": "first@acme.com"})))
            .await;
        assert_eq!(st, 201, "{text}");
        let (st, again, text) = api.call(Who::Key(&k), "POST", "/api/v1/environments/DEV/connections/SF_Again/admin-request", None).await;
        assert_eq!(st, 201, "{text}");
        assert_eq!(again["admin_email"], "first@acme.com");
        // Cancelled, the answer step is the requester's again.
        let (st, _, text) = api.call(Who::Key(&k), "DELETE", "/api/v1/environments/DEV/connections/SF_Again/admin-request", None).await;
        assert!(st.is_success(), "{st} {text}");
        let f = flow_of(&api.s, "SF_Again").await;
        assert_eq!((state_of(&f, "answer"), f.status.state.as_str()), (StepState::Failed, "request_failed"), "{f:?}");
    }
}

/// A connection whose secret is typed: settings → credentials → test → bind.
#[tokio::test]
async fn a_typed_secret_connection_has_a_credentials_step() {
    for db in backends().await {
        let api = Api::new(open(&db).await);
        let k = key(&api.s, &["DEV:connections:rw"]).await;
        let body = json!({"name": "Plain", "provider": "http", "settings": {"base_url": "https://api.example.com", "auth": "bearer"}});
        let (st, _, text) = api.call(Who::Key(&k), "POST", "/api/v1/environments/DEV/connections", Some(body)).await;
        assert_eq!(st, 201, "{text}");
        let f = flow_of(&api.s, "Plain").await;
        let ids: Vec<&str> = f.steps.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["settings", "credentials", "test", "bind"]);
        assert_eq!((state_of(&f, "credentials"), f.status.state.as_str()), (StepState::Next, "needs_credentials"), "{f:?}");
        let (st, _, text) =
            api.call(Who::Key(&k), "PATCH", "/api/v1/environments/DEV/connections/Plain", Some(json!({"secrets": {"token": "a-typed-token"}}))).await;
        assert_eq!(st, 200, "{text}");
        let f = flow_of(&api.s, "Plain").await;
        assert_eq!((state_of(&f, "credentials"), state_of(&f, "test"), f.status.state.as_str()), (StepState::Done, StepState::Next, "not_tested"), "{f:?}");
    }
}
