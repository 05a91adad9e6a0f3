//! SharePoint Online, Dataverse and Dynamics 365 connections through connvault, against the
//! Microsoft stand-in (Entra ID's token endpoint, a SharePoint host, a Dataverse environment):
//! the certificate and the request email to the Entra admin, the admin's answer through the
//! one-time link, the live check, the broker, a rotation without a failed call, and the
//! failures from the reference, each with its advice. On every backend.

use crate::common;

use common::{backends, key, Api, TestDb, Who};
use serde_json::{json, Value};
use server::entra::standin::{AppRegistration, ClientSecret, StandIn, Urls};
use server::startup::{self, Services};

async fn open(db: &TestDb) -> Services {
    startup::open(db.config_with(&[("CONNVAULT_ALLOW_LOOPBACK", "1"), ("CONNVAULT_PUBLIC_URL", "https://vault.example.com")])).await.expect("open")
}

struct World {
    api: Api,
    key: String,
    ms: StandIn,
    urls: Urls,
    site_url: String,
}

async fn world(db: &TestDb) -> World {
    let ms = StandIn::new();
    let urls = ms.spawn().await.unwrap();
    ms.add_site("/sites/Sales", "Sales");
    let api = Api::new(open(db).await);
    let key = key(&api.s, &["DEV:connections:rw", "DEV:integrations:rw", "DEV:bindings:rw", "DEV:tokens:read", "DEV:audit:read"]).await;
    let site_url = format!("{}/sites/Sales", urls.sharepoint_url);
    World { api, key, ms, urls, site_url }
}

impl World {
    async fn create(&self, name: &str, provider: &str, settings: Value, secrets: Value) -> Value {
        let mut body = json!({"name": name, "provider": provider, "settings": settings});
        if !secrets.is_null() {
            body["secrets"] = secrets;
        }
        let (st, c, text) = self.api.call(Who::Key(&self.key), "POST", "/api/v1/environments/DEV/connections", Some(body)).await;
        assert_eq!(st, 201, "{text}");
        c
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value, String) {
        let (st, v, text) = self.api.call(Who::Key(&self.key), method, &format!("/api/v1/environments/DEV/{path}"), body).await;
        (st.as_u16(), v, text)
    }

    async fn test(&self, name: &str) -> Value {
        let (st, r, text) = self.call("POST", &format!("connections/{name}/test"), None).await;
        assert_eq!(st, 200, "{text}");
        r
    }

    /// Issues a certificate (no email) and returns its DER.
    async fn certificate(&self, name: &str) -> Vec<u8> {
        let (st, _, text) = self.call("POST", &format!("connections/{name}/certificate"), Some(json!({}))).await;
        assert_eq!(st, 201, "{text}");
        let (st, _, pem) = self.call("GET", &format!("connections/{name}/certificate"), None).await;
        assert_eq!(st, 200);
        server::certs::der_of(&pem)
    }

    /// An app registration in the home tenant with `certificate`, consented; returns its client id.
    fn register(&self, certificate: Option<Vec<u8>>, change: impl FnOnce(&mut AppRegistration)) -> String {
        let mut app = AppRegistration::new("connvault test");
        app.certificates.extend(certificate);
        app.consent_granted = true;
        change(&mut app);
        let id = app.client_id.clone();
        self.ms.add_app(&self.ms.home_tenant().id, app).unwrap();
        id
    }

    async fn set(&self, name: &str, settings: Value) {
        let (st, _, text) = self.call("PATCH", &format!("connections/{name}"), Some(json!({"settings": settings}))).await;
        assert_eq!(st, 200, "{text}");
    }

    async fn bind(&self, integration: &str, provider: &str, connection: &str) {
        let (st, _, text) = self.call("PUT", &format!("integrations/{integration}"), Some(json!({"provider": provider, "objects": ["Documents"]}))).await;
        assert!((200..300).contains(&st), "{text}");
        let (st, _, text) = self.call("PUT", &format!("integrations/{integration}/binding"), Some(json!({"connection": connection}))).await;
        assert_eq!(st, 200, "{text}");
    }
}

/// The one-time link's token, from the request email in the outbox, with the email's text.
async fn link_token(s: &Services, outbox_id: i64) -> (String, String, String) {
    let (item, eml) = server::mail::eml(&s.db, &s.vault, outbox_id).await.unwrap();
    let eml = String::from_utf8_lossy(&eml).replace("=\r\n", "").replace("=3D", "=");
    let start = eml.find("token=").expect("a link in the email") + "token=".len();
    let token: String = eml[start..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-').collect();
    (token, item.subject, eml)
}

#[tokio::test]
async fn sharepoint_from_the_admin_request_to_a_token() {
    for db in backends().await {
        let w = world(&db).await;
        let settings = json!({"site_url": w.site_url, "admin_email": "entra-admin@contoso.com", "authority_url": w.urls.authority_url});
        w.create("SP_Sales", "sharepoint", settings, Value::Null).await;
        let (_, status, _) = w.call("GET", "connections/SP_Sales/status", None).await;
        assert_eq!(status["state"], "no_certificate", "{status}");
        let r = w.test("SP_Sales").await;
        assert_eq!(r["ok"], false);
        assert!(r["advice"].as_str().unwrap().contains("Microsoft Entra admin"), "{r}");

        // Request admin help: the certificate and the Entra steps for this site.
        let (st, issued, text) = w.call("POST", "connections/SP_Sales/certificate", Some(json!({"send_request": true}))).await;
        assert_eq!(st, 201, "{text}");
        let thumbprint = issued["certificate"]["thumbprint_sha1"].as_str().unwrap().to_string();
        let (token, subject, eml) = link_token(&w.api.s, issued["request"]["outbox_id"].as_i64().unwrap()).await;
        assert!(subject.ends_with("requests your help to register an app in Microsoft Entra ID"), "{subject}");
        for expected in ["App registrations", "Sites.Selected", "Grant admin consent", "graph.microsoft.com/v1.0/sites/", &thumbprint, "SP_Sales-DEV.crt"] {
            assert!(eml.contains(expected), "the email names {expected}");
        }
        assert!(eml.contains("https://vault.example.com/respond/DEV/SP_Sales?token="));
        assert!(!eml.contains("PRIVATE KEY"));
        let (_, status, _) = w.call("GET", "connections/SP_Sales/status", None).await;
        assert_eq!(status["state"], "waiting_for_admin", "{status}");
        let (_, pem_resp, pem) = w.call("GET", "connections/SP_Sales/certificate", None).await;
        assert!(pem_resp.is_null() && pem.starts_with("-----BEGIN CERTIFICATE-----"));

        // The admin registers the app with that certificate and answers through the link.
        let client_id = w.register(Some(server::certs::der_of(&pem)), |_| {});
        assert!(w.ms.grant_site("/sites/Sales", &client_id));
        let path = "/api/v1/environments/DEV/connections/SP_Sales/admin-response";
        let (st, view, text) = w.api.call(Who::Nobody, "GET", &format!("{path}?token={token}"), None).await;
        assert_eq!(st, 200, "{text}");
        assert_eq!((view["provider"].as_str(), view["admin"].as_str()), (Some("sharepoint"), Some("Microsoft Entra admin")));
        let fields: Vec<&str> = view["answer_fields"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap()).collect();
        assert_eq!(fields, ["tenant", "client_id"]);
        assert_eq!(view["thumbprint_sha1"].as_str(), Some(thumbprint.as_str()));
        // A typo is refused without using up the link.
        let (st, _, text) = w.api.call(Who::Nobody, "POST", path, Some(json!({"token": token, "tenant": "contoso", "client_id": client_id}))).await;
        assert_eq!(st, 422, "{text}");
        assert!(text.contains("tenant"), "{text}");
        let (st, _, text) = w
            .api
            .call(Who::Nobody, "POST", path, Some(json!({"token": token, "consumer_key": "x", "tenant": w.ms.home_tenant().id, "client_id": client_id})))
            .await;
        assert_eq!(st, 422, "another provider's answer field is refused: {text}");
        let answer = json!({"token": token, "tenant": w.ms.home_tenant().id, "client_id": client_id});
        let (st, result, text) = w.api.call(Who::Nobody, "POST", path, Some(answer.clone())).await;
        assert_eq!(st, 200, "{text}");
        assert_eq!(result["ok"], true, "{result}");
        assert!(result["detail"].as_str().unwrap().contains("connected to site Sales as app"), "{result}");
        let (st, _, _) = w.api.call(Who::Nobody, "POST", path, Some(answer)).await;
        assert_eq!(st, 403, "single use");

        // The assertion Entra saw: PS256, x5t#S256 of this certificate, aud the token URL, short.
        let seen = w.ms.assertions().last().cloned().unwrap();
        assert_eq!(seen["header"]["alg"], "PS256", "{seen}");
        let der = server::certs::der_of(&pem);
        use base64::Engine;
        use sha2::Digest;
        let s256 = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(&der));
        assert_eq!(seen["header"]["x5t#S256"].as_str(), Some(s256.as_str()));
        assert!(seen["claims"]["aud"].as_str().unwrap().ends_with("/oauth2/v2.0/token"));
        assert!(seen["claims"]["exp"].as_i64().unwrap() - seen["claims"]["iat"].as_i64().unwrap() <= 600);

        let (_, status, _) = w.call("GET", "connections/SP_Sales/status", None).await;
        assert_eq!(status["state"], "connected", "{status}");

        // The broker: the site URL as instance_url, the expiry Entra gave, one mint for many calls.
        w.bind("Docs", "sharepoint", "SP_Sales").await;
        let before = w.ms.token_requests();
        let (st, tok, text) = w.call("POST", "integrations/Docs/token", None).await;
        assert_eq!(st, 200, "{text}");
        assert_eq!(tok["instance_url"].as_str(), Some(w.site_url.as_str()));
        assert_eq!(tok["token_type"], "Bearer");
        let expires = chrono::DateTime::parse_from_rfc3339(tok["expires_at"].as_str().unwrap()).unwrap();
        let left = expires.signed_duration_since(chrono::Utc::now()).num_seconds();
        assert!((3000..=3700).contains(&left), "an hour's token from expires_in: {left}s");
        for _ in 0..3 {
            let (st, again, _) = w.call("POST", "integrations/Docs/token", None).await;
            assert_eq!(st, 200);
            assert_eq!(again["access_token"], tok["access_token"]);
        }
        assert!(w.ms.token_requests() <= before + 1, "one mint for four calls");
        let (_, audit, _) = w.api.call(Who::Key(&w.key), "GET", "/api/v1/audit?environment=DEV", None).await;
        let mint = audit["items"].as_array().unwrap().iter().find(|e| e["action"] == "token.mint").cloned().unwrap();
        assert_eq!(mint["detail"]["provider"], "sharepoint", "{mint}");
    }
}

#[tokio::test]
async fn a_short_lived_entra_token_is_renewed_before_it_expires() {
    for db in backends().await {
        let w = world(&db).await;
        w.ms.set_token_lifetime(std::time::Duration::from_secs(90));
        w.create("SP_Short", "sharepoint", json!({"site_url": w.site_url, "authority_url": w.urls.authority_url}), Value::Null).await;
        let der = w.certificate("SP_Short").await;
        let client_id = w.register(Some(der), |_| {});
        w.ms.grant_site("/sites/Sales", &client_id);
        w.set("SP_Short", json!({"tenant": w.ms.home_tenant().domain, "client_id": client_id})).await;
        w.bind("Short", "sharepoint", "SP_Short").await;
        let (st, first, text) = w.call("POST", "integrations/Short/token", None).await;
        assert_eq!(st, 200, "{text}");
        // 90 s less the one-minute margin: after 30 s the token is stale and minted again.
        let left = chrono::DateTime::parse_from_rfc3339(first["expires_at"].as_str().unwrap()).unwrap().signed_duration_since(chrono::Utc::now());
        assert!(left.num_seconds() <= 90, "{first}");
        let (_, again, _) = w.call("POST", "integrations/Short/token", None).await;
        assert_eq!(again["access_token"], first["access_token"], "fresh: served from the cache");
        let before = w.ms.token_requests();
        let (_, forced, _) = w.call("POST", "integrations/Short/token?force_refresh=true", None).await;
        assert_ne!(forced["access_token"], first["access_token"]);
        assert_eq!(w.ms.token_requests(), before + 1);
    }
}

#[tokio::test]
async fn dataverse_and_dynamics_with_a_certificate_or_a_client_secret() {
    for db in backends().await {
        let w = world(&db).await;
        let env_url = w.urls.dataverse_url.clone();
        let (_, org) = w.ms.dataverse_ids();

        // Certificate: the application user exists → WhoAmI names it.
        w.create("DV_Cert", "dataverse", json!({"environment_url": env_url, "authority_url": w.urls.authority_url}), Value::Null).await;
        let der = w.certificate("DV_Cert").await;
        let client_id = w.register(Some(der), |_| {});
        w.set("DV_Cert", json!({"tenant": w.ms.home_tenant().id, "client_id": client_id})).await;
        let r = w.test("DV_Cert").await;
        assert_eq!(r["ok"], false, "no application user yet: {r}");
        assert!(r["detail"].as_str().unwrap().contains("0x80072560"), "{r}");
        assert!(r["advice"].as_str().unwrap().contains("Application users"), "{r}");
        let user_id = w.ms.add_application_user(&client_id);
        let r = w.test("DV_Cert").await;
        assert_eq!(r["ok"], true, "{r}");
        let detail = r["detail"].as_str().unwrap();
        assert!(detail.contains(&format!("connected to Dataverse org {org} as application user {user_id}")), "{detail}");

        // A client secret (Dynamics 365), with the date it expires.
        let secret_app = w.register(None, |a| a.secrets.push(ClientSecret { value: "s3cr3t~value.for-dynamics".into(), expires_at: None }));
        w.ms.add_application_user(&secret_app);
        let settings = json!({
            "environment_url": env_url, "authority_url": w.urls.authority_url, "auth": "secret",
            "tenant": w.ms.home_tenant().id, "client_id": secret_app, "client_secret_expires_on": "2027-06-30"
        });
        w.create("D365_Secret", "dynamics365", settings, json!({"client_secret": "s3cr3t~value.for-dynamics"})).await;
        let r = w.test("D365_Secret").await;
        assert_eq!(r["ok"], true, "{r}");
        assert!(r["detail"].as_str().unwrap().contains("connected to Dynamics 365 org"), "{r}");
        let (st, _, text) = w.call("GET", "connections/D365_Secret/status", None).await;
        assert_eq!(st, 409, "a secret-based connection has no certificate status: {text}");
        w.bind("Crm", "dynamics365", "D365_Secret").await;
        let (st, tok, text) = w.call("POST", "integrations/Crm/token", None).await;
        assert_eq!(st, 200, "{text}");
        assert_eq!(tok["instance_url"].as_str(), Some(env_url.trim_end_matches('/')));
        assert!(!text.contains("s3cr3t"), "the client secret never leaves");

        // The secret's value pasted wrong: AADSTS7000215 and what to do.
        let (st, _, text) = w.call("PATCH", "connections/D365_Secret", Some(json!({"secrets": {"client_secret": "the-secret-id-not-its-value"}}))).await;
        assert_eq!(st, 200, "{text}");
        let r = w.test("D365_Secret").await;
        assert_eq!(r["ok"], false);
        assert!(r["detail"].as_str().unwrap().contains("7000215"), "{r}");
        assert!(r["advice"].as_str().unwrap().to_lowercase().contains("value"), "{r}");
        assert!(!r.to_string().contains("the-secret-id-not-its-value"), "the secret is scrubbed from the result");
    }
}

#[tokio::test]
async fn every_microsoft_refusal_gets_its_own_advice() {
    for db in backends().await {
        let w = world(&db).await;
        let tenant = w.ms.home_tenant().id;
        // (name, how it is set up, code in the detail, words in the advice)
        struct Case {
            name: &'static str,
            code: &'static str,
            advice: &'static str,
        }
        let settings = json!({"site_url": w.site_url, "authority_url": w.urls.authority_url});

        // 700016: no such app in the tenant.
        w.create("Unknown_App", "sharepoint", settings.clone(), Value::Null).await;
        w.certificate("Unknown_App").await;
        w.set("Unknown_App", json!({"tenant": tenant, "client_id": "00001111-aaaa-2222-bbbb-3333cccc4444"})).await;
        // 90002: no such tenant.
        w.create("Unknown_Tenant", "sharepoint", settings.clone(), Value::Null).await;
        let der = w.certificate("Unknown_Tenant").await;
        let id = w.register(Some(der), |_| {});
        w.set("Unknown_Tenant", json!({"tenant": "nobody.onmicrosoft.com", "client_id": id})).await;
        // 700027: the app exists, but this connection's certificate is not on it.
        w.create("Not_Uploaded", "sharepoint", settings.clone(), Value::Null).await;
        w.certificate("Not_Uploaded").await;
        let id = w.register(None, |_| {});
        w.set("Not_Uploaded", json!({"tenant": tenant, "client_id": id})).await;
        // 65001: no admin consent for SharePoint.
        w.create("No_Consent", "sharepoint", settings.clone(), Value::Null).await;
        let der = w.certificate("No_Consent").await;
        let id = w.register(Some(der), |a| a.consent_granted = false);
        w.set("No_Consent", json!({"tenant": tenant, "client_id": id})).await;
        // 403: consented, but no role on the site (Sites.Selected).
        w.create("No_Grant", "sharepoint", settings.clone(), Value::Null).await;
        let der = w.certificate("No_Grant").await;
        let id = w.register(Some(der), |_| {});
        w.set("No_Grant", json!({"tenant": tenant, "client_id": id})).await;

        let cases = [
            Case { name: "Unknown_App", code: "700016", advice: "client ID" },
            Case { name: "Unknown_Tenant", code: "90002", advice: "tenant" },
            Case { name: "Not_Uploaded", code: "700027", advice: "certificate" },
            Case { name: "No_Consent", code: "65001", advice: "consent" },
            Case { name: "No_Grant", code: "403", advice: "permissions" },
        ];
        let mut advices = std::collections::BTreeSet::new();
        for c in cases {
            let r = w.test(c.name).await;
            assert_eq!(r["ok"], false, "{}: {r}", c.name);
            assert!(r["detail"].as_str().unwrap().contains(c.code), "{}: {r}", c.name);
            let advice = r["advice"].as_str().unwrap().to_string();
            assert!(advice.to_lowercase().contains(&c.advice.to_lowercase()), "{}: {advice}", c.name);
            assert!(advices.insert(advice), "{}: each refusal has its own advice", c.name);
            let (_, status, _) = w.call("GET", &format!("connections/{}/status", c.name), None).await;
            assert_eq!(status["state"], "failing", "{status}");
        }
        // The certificate thumbprint to upload is named when the certificate is not registered.
        let (_, status, _) = w.call("GET", "connections/Not_Uploaded/status", None).await;
        let thumbprint = status["certificate"]["thumbprint_sha1"].as_str().unwrap();
        assert!(status["advice"].as_str().unwrap().contains(thumbprint), "{status}");
    }
}

async fn rotating_token(w: &World) {
    let (st, _, text) = w.call("POST", "integrations/Rotating/token?force_refresh=true", None).await;
    assert_eq!(st, 200, "no call fails during the rotation: {text}");
}

/// A rotation: the new certificate is pending until Entra accepts it, the current one keeps
/// signing meanwhile, and no token call fails on the way.
#[tokio::test]
async fn an_entra_certificate_is_rotated_with_no_failed_call() {
    for db in backends().await {
        let w = world(&db).await;
        w.create("SP_Rotate", "sharepoint", json!({"site_url": w.site_url, "authority_url": w.urls.authority_url}), Value::Null).await;
        let old = w.certificate("SP_Rotate").await;
        let client_id = w.register(Some(old.clone()), |_| {});
        w.ms.grant_site("/sites/Sales", &client_id);
        w.set("SP_Rotate", json!({"tenant": w.ms.home_tenant().id, "client_id": client_id})).await;
        assert_eq!(w.test("SP_Rotate").await["ok"], true);
        w.bind("Rotating", "sharepoint", "SP_Rotate").await;
        rotating_token(&w).await;

        // Rotate: a pending certificate; Entra does not know it yet.
        let (st, issued, text) = w.call("POST", "connections/SP_Rotate/certificate", Some(json!({}))).await;
        assert_eq!(st, 201, "{text}");
        assert_eq!(issued["certificate"]["state"], "pending");
        rotating_token(&w).await;
        let r = w.test("SP_Rotate").await;
        assert_eq!(r["ok"], true, "{r}");
        assert!(r["detail"].as_str().unwrap().contains("does not work yet"), "{r}");
        rotating_token(&w).await;

        // The admin adds the new certificate: the next test switches to it.
        let (_, _, pem) = w.call("GET", "connections/SP_Rotate/certificate", None).await;
        let new = server::certs::der_of(&pem);
        assert_ne!(new, old);
        w.ms.update_app(&client_id, |a| a.certificates.push(new.clone())).unwrap();
        let r = w.test("SP_Rotate").await;
        assert!(r["detail"].as_str().unwrap().contains("the new certificate works and is now in use"), "{r}");
        rotating_token(&w).await;
        // The old certificate can go: the connection signs with the new one only.
        w.ms.update_app(&client_id, |a| a.certificates.retain(|c| *c != old)).unwrap();
        rotating_token(&w).await;
        assert_eq!(w.test("SP_Rotate").await["ok"], true);
        let (_, status, _) = w.call("GET", "connections/SP_Rotate/status", None).await;
        assert!(status["pending_certificate"].is_null(), "{status}");
        assert_eq!(status["certificate"]["fingerprint_sha256"], issued["certificate"]["fingerprint_sha256"]);
    }
}
