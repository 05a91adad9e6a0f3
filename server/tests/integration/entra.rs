//! The Entra ID client (`server::entra`, over `server::oauth`) against the Microsoft stand-in,
//! through a real `Outbound` with loopback allowed: certificate and secret paths, SharePoint and
//! Dataverse test calls, and every failure of the reference with its own advice. No database.

use std::collections::BTreeSet;
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::{json, Value};
use server::assertion::{thumbprint_sha1_hex, x5t, x5t_s256, AssertionSigner};
use server::entra::standin::{AppRegistration, ClientSecret, StandIn, Tenant, Urls};
use server::entra::{self, ClientAuth, Context, CredentialKind, Failure, ResourceKind};
use server::outbound::{Outbound, OutboundError, OutboundOptions, MAX_BODY};
use server::secret::SecretString;

struct Keys {
    signer: AssertionSigner,
    der: Vec<u8>,
}

/// Two key pairs, made once: 0 is registered on the app, 1 is not.
fn keys(i: usize) -> &'static Keys {
    static KEYS: [OnceLock<Keys>; 2] = [OnceLock::new(), OnceLock::new()];
    KEYS[i].get_or_init(|| {
        let issued = server::certs::issue(2048, &format!("MS_{i}"), "DEV", time::OffsetDateTime::now_utc()).unwrap();
        Keys {
            signer: AssertionSigner::from_pkcs8_der(issued.private_key.expose_secret()).unwrap(),
            der: server::assertion::certificate_der_from_pem(&issued.certificate_pem).unwrap(),
        }
    })
}

const SECRET: &str = "Qx8~s3cr3t.Value_with+chars/=";

struct World {
    standin: StandIn,
    urls: Urls,
    tenant: Tenant,
    client_id: String,
    secret: SecretString,
    out: Outbound,
    site_url: String,
    app_user: String,
}

fn outbound(allow_loopback: bool) -> Outbound {
    Outbound::with_options(OutboundOptions {
        allow_loopback,
        connect_timeout: Duration::from_secs(1),
        total_timeout: Duration::from_secs(5),
        max_body: MAX_BODY,
        idle_timeout: Duration::from_secs(5),
    })
    .unwrap()
}

/// A tenant with one app (certificate 0, a secret, consent), granted on /sites/Sales and an
/// application user in Dataverse.
async fn world() -> World {
    let standin = StandIn::new();
    let urls = standin.spawn().await.unwrap();
    let tenant = standin.home_tenant();
    standin.add_site("/sites/Sales", "Sales & Marketing");
    let mut app = AppRegistration::new("connvault integration");
    app.certificates.push(keys(0).der.clone());
    app.secrets.push(ClientSecret { value: SECRET.into(), expires_at: None });
    app.consent_granted = true;
    let client_id = app.client_id.clone();
    standin.add_app(&tenant.id, app).unwrap();
    assert!(standin.grant_site("/sites/Sales", &client_id));
    let app_user = standin.add_application_user(&client_id);
    let site_url = format!("{}/sites/Sales", urls.sharepoint_url);
    World { standin, urls, tenant, client_id, secret: SecretString::new(SECRET.into()), out: outbound(true), site_url, app_user }
}

fn cert(i: usize) -> ClientAuth<'static> {
    ClientAuth::Certificate { signer: &keys(i).signer, certificate_der: &keys(i).der }
}

impl World {
    async fn token(&self, tenant: &str, client_id: &str, resource_url: &str, auth: ClientAuth<'_>) -> Result<entra::Token, Failure> {
        entra::client_credentials(&self.out, &self.urls.authority_url, tenant, client_id, &entra::scope_for(resource_url).unwrap(), auth).await
    }

    fn context<'a>(&'a self, resource: ResourceKind, resource_url: &'a str, credential: CredentialKind) -> Context<'a> {
        Context { resource, resource_url, tenant: &self.tenant.id, client_id: &self.client_id, authority_url: &self.urls.authority_url, credential }
    }
}

fn with_cert(i: usize) -> CredentialKind {
    CredentialKind::Certificate { thumbprint_sha1: thumbprint_sha1_hex(&keys(i).der) }
}

#[tokio::test]
async fn certificate_tokens_open_the_sharepoint_site_and_dataverse() {
    let w = world().await;
    let token = w.token(&w.tenant.id, &w.client_id, &w.site_url, cert(0)).await.unwrap();
    assert_eq!(token.token_type, "Bearer");
    assert_eq!(token.expires_in, Some(Duration::from_secs(3599)));
    let site = entra::sharepoint_site(&w.out, &w.site_url, &token).await.unwrap();
    assert_eq!(site.title, "Sales & Marketing");

    // What the stand-in saw: PS256 with both thumbprints of the registered certificate.
    let seen = w.standin.assertions();
    assert_eq!(seen.len(), 1);
    let (header, claims) = (&seen[0]["header"], &seen[0]["claims"]);
    assert_eq!(header["alg"], "PS256");
    assert_eq!(header["typ"], "JWT");
    assert_eq!(header["x5t#S256"], Value::String(x5t_s256(&keys(0).der)));
    assert_eq!(header["x5t"], Value::String(x5t(&keys(0).der)));
    assert_eq!(claims["aud"], Value::String(entra::token_url(&w.urls.authority_url, &w.tenant.id)));
    assert_eq!(claims["iss"], Value::String(w.client_id.clone()));
    assert_eq!(claims["sub"], Value::String(w.client_id.clone()));
    let (iat, nbf, exp) = (claims["iat"].as_i64().unwrap(), claims["nbf"].as_i64().unwrap(), claims["exp"].as_i64().unwrap());
    assert!(exp > iat && exp - iat <= 600 && nbf <= iat, "{claims}");
    assert!((iat - chrono::Utc::now().timestamp()).abs() < 60);
    assert_eq!(claims["jti"].as_str().unwrap().len(), 36);

    // Dataverse, with the tenant given by its domain this time.
    let token = w.token(&w.tenant.domain, &w.client_id, &w.urls.dataverse_url, cert(0)).await.unwrap();
    let me = entra::dataverse_whoami(&w.out, &w.urls.dataverse_url, &token).await.unwrap();
    let (bu, org) = w.standin.dataverse_ids();
    assert_eq!((me.user_id.as_str(), me.business_unit_id.as_str(), me.organization_id.as_str()), (w.app_user.as_str(), bu.as_str(), org.as_str()));
    let jtis: BTreeSet<String> = w.standin.assertions().iter().map(|a| a["claims"]["jti"].as_str().unwrap().to_string()).collect();
    assert_eq!(jtis.len(), 2, "every assertion has its own jti");
    assert_eq!((w.standin.token_requests(), w.standin.sharepoint_calls(), w.standin.dataverse_calls()), (2, 1, 1));
}

#[tokio::test]
async fn a_secret_opens_dataverse_but_sharepoint_refuses_a_secret_token() {
    let w = world().await;
    let token = w.token(&w.tenant.id, &w.client_id, &w.urls.dataverse_url, ClientAuth::Secret(&w.secret)).await.unwrap();
    assert_eq!(entra::dataverse_whoami(&w.out, &w.urls.dataverse_url, &token).await.unwrap().user_id, w.app_user);
    assert!(w.standin.assertions().is_empty(), "a secret sends no assertion");

    // Entra issues the SharePoint token; SharePoint refuses it.
    let token = w.token(&w.tenant.id, &w.client_id, &w.site_url, ClientAuth::Secret(&w.secret)).await.unwrap();
    let failure = entra::sharepoint_site(&w.out, &w.site_url, &token).await.unwrap_err();
    assert!(matches!(&failure, Failure::Resource { status: 401, message, .. } if message.contains("Unsupported app only token")), "{failure:?}");
    let r = failure.explain(&w.context(ResourceKind::SharePoint, &w.site_url, CredentialKind::Secret));
    assert!(!r.ok && r.detail.contains("401") && r.detail.contains("Unsupported app only token"), "{}", r.detail);
    assert!(r.advice.unwrap().contains("SharePoint app-only access needs a certificate"));
    assert!(!failure.is_transient());
}

#[tokio::test]
async fn every_aadsts_code_of_the_reference_gets_its_own_advice() {
    let w = world().await;
    let sp = w.site_url.clone();
    let dv = w.urls.dataverse_url.clone();
    let other = w.standin.add_tenant("fabrikam.onmicrosoft.com");
    let mut other_app = AppRegistration::new("in another tenant");
    other_app.certificates.push(keys(0).der.clone());
    other_app.consent_granted = true;
    let other_client = other_app.client_id.clone();
    w.standin.add_app(&other.id, other_app).unwrap();
    let unknown_client = server::entra::standin::guid();
    let wrong_secret = SecretString::new("the-secret-id-not-its-value".into());
    let thumb1 = thumbprint_sha1_hex(&keys(1).der);

    let mut advices = BTreeSet::new();
    // Each call: the outcome, the AADSTS code expected, the words its advice must have.
    let mut check = |failure: Result<entra::Token, Failure>, code: u32, words: &[&str], resource: ResourceKind, url: &str, credential: CredentialKind| {
        let failure = failure.expect_err("the token request must fail");
        assert!(matches!(&failure, Failure::Refused { status: 400, code: Some(c), .. } if *c == code), "AADSTS{}: {failure:?}", code);
        assert!(!failure.is_transient());
        let r = failure.explain(&w.context(resource, url, credential));
        assert!(!r.ok);
        assert!(r.detail.contains(&format!("AADSTS{}", code)), "the code is shown: {}", r.detail);
        assert!(!r.detail.contains("Trace ID"), "no trace block: {}", r.detail);
        let advice = r.advice.unwrap();
        for word in words {
            assert!(advice.contains(word), "AADSTS{}: {word:?} missing from: {advice}", code);
        }
        assert!(!advice.contains(SECRET) && !r.detail.contains(SECRET));
        assert!(advices.insert(advice), "AADSTS{} shares its advice with another code", code);
    };

    let f = w.token("nosuch.onmicrosoft.com", &w.client_id, &sp, cert(0)).await;
    check(f, 90002, &["Directory (tenant) ID", "authority URL"], ResourceKind::SharePoint, &sp, with_cert(0));
    let f = w.token(&w.tenant.id, &unknown_client, &sp, cert(0)).await;
    check(f, 700016, &["Application (client) ID", &w.tenant.id], ResourceKind::SharePoint, &sp, with_cert(0));
    let f = w.token(&w.tenant.id, &w.client_id, &sp, cert(1)).await;
    check(f, 700027, &["Upload certificate", &thumb1], ResourceKind::SharePoint, &sp, with_cert(1));
    let f = w.token(&w.tenant.id, &w.client_id, &dv, ClientAuth::Secret(&wrong_secret)).await;
    check(f, 7000215, &["Value", "not its Secret ID"], ResourceKind::Dataverse, &dv, CredentialKind::Secret);
    let f = w.token(&other.id, &other_client, &sp, cert(0)).await;
    check(f, 500011, &["SharePoint site URL", &sp], ResourceKind::SharePoint, &sp, with_cert(0));

    w.standin.set_clock_offset(3600);
    let f = w.token(&w.tenant.id, &w.client_id, &dv, cert(0)).await;
    check(f, 700024, &["clock", "NTP"], ResourceKind::Dataverse, &dv, with_cert(0));
    w.standin.set_clock_offset(0);

    w.standin
        .update_app(&w.client_id, |a| {
            a.consent_granted = false;
            a.secrets[0].expires_at = Some(chrono::Utc::now().timestamp() - 60);
        })
        .unwrap();
    let f = w.token(&w.tenant.id, &w.client_id, &sp, cert(0)).await;
    check(f, 65001, &["Grant admin consent", "Sites.Selected"], ResourceKind::SharePoint, &sp, with_cert(0));
    let f = w.token(&w.tenant.id, &w.client_id, &dv, ClientAuth::Secret(&w.secret)).await;
    check(f, 7000222, &["expired", "New client secret"], ResourceKind::Dataverse, &dv, CredentialKind::Secret);
    // Dataverse needs no consent: the certificate still works there.
    assert!(w.token(&w.tenant.id, &w.client_id, &dv, cert(0)).await.is_ok());

    // A signature by another key under the registered certificate's thumbprint: also 700027.
    let forged = ClientAuth::Certificate { signer: &keys(1).signer, certificate_der: &keys(0).der };
    let failure = w.token(&w.tenant.id, &w.client_id, &dv, forged).await.unwrap_err();
    assert!(matches!(&failure, Failure::Refused { code: Some(700027), description, .. } if description.contains("invalid signature")), "{failure:?}");
    assert_eq!(advices.len(), 8);
}

#[tokio::test]
async fn sharepoint_refusals_name_the_site_grant_and_the_audience() {
    let w = world().await;
    w.standin.add_site("/sites/Finance", "Finance");
    let finance = format!("{}/sites/Finance", w.urls.sharepoint_url);
    let token = w.token(&w.tenant.id, &w.client_id, &finance, cert(0)).await.unwrap();
    let failure = entra::sharepoint_site(&w.out, &finance, &token).await.unwrap_err();
    assert!(matches!(&failure, Failure::Resource { status: 403, .. }), "{failure:?}");
    let r = failure.explain(&w.context(ResourceKind::SharePoint, &finance, with_cert(0)));
    assert!(r.detail.contains("403") && r.detail.contains("Access denied"), "{}", r.detail);
    let advice = r.advice.unwrap();
    assert!(advice.contains("POST https://graph.microsoft.com/v1.0/sites/{site-id}/permissions") && advice.contains(&w.client_id), "{advice}");
    assert!(advice.contains("Sites.Selected"), "{advice}");
    // Granted, the same token works.
    w.standin.grant_site("/sites/Finance", &w.client_id);
    assert_eq!(entra::sharepoint_site(&w.out, &finance, &token).await.unwrap().title, "Finance");

    // A token for Dataverse used at SharePoint: wrong audience.
    let dv_token = w.token(&w.tenant.id, &w.client_id, &w.urls.dataverse_url, cert(0)).await.unwrap();
    let failure = entra::sharepoint_site(&w.out, &w.site_url, &dv_token).await.unwrap_err();
    assert!(matches!(&failure, Failure::Resource { status: 401, message, .. } if message.contains("Invalid issuer or signature")), "{failure:?}");
    let advice = failure.explain(&w.context(ResourceKind::SharePoint, &w.site_url, with_cert(0))).advice.unwrap();
    assert!(advice.contains("audience") && advice.contains(&entra::scope_for(&w.site_url).unwrap()), "{advice}");

    // A token past its lifetime: 401 "expired", and `expires_in` said so.
    w.standin.set_token_lifetime(Duration::ZERO);
    let short = w.token(&w.tenant.id, &w.client_id, &finance, cert(0)).await.unwrap();
    assert_eq!(short.expires_in, Some(Duration::ZERO));
    let failure = entra::sharepoint_site(&w.out, &finance, &short).await.unwrap_err();
    assert!(matches!(&failure, Failure::Resource { status: 401, message, .. } if message.contains("expired")), "{failure:?}");
    w.standin.set_token_lifetime(Duration::from_secs(3599));

    // Revoked tokens: 401 on both services.
    w.standin.revoke_all_tokens();
    assert!(matches!(entra::sharepoint_site(&w.out, &finance, &token).await, Err(Failure::Resource { status: 401, .. })));
    assert!(matches!(entra::dataverse_whoami(&w.out, &w.urls.dataverse_url, &dv_token).await, Err(Failure::Resource { status: 401, .. })));
}

#[tokio::test]
async fn dataverse_without_an_application_user_names_the_admin_center_path() {
    let w = world().await;
    let mut app = AppRegistration::new("no app user");
    app.certificates.push(keys(1).der.clone());
    let client_id = app.client_id.clone();
    w.standin.add_app(&w.tenant.id, app).unwrap();
    let token = w.token(&w.tenant.id, &client_id, &w.urls.dataverse_url, cert(1)).await.unwrap();
    let failure = entra::dataverse_whoami(&w.out, &w.urls.dataverse_url, &token).await.unwrap_err();
    assert!(matches!(&failure, Failure::Resource { status: 403, code: Some(c), .. } if c == "0x80072560"), "{failure:?}");
    let ctx = Context { client_id: &client_id, ..w.context(ResourceKind::Dataverse, &w.urls.dataverse_url, with_cert(1)) };
    let r = failure.explain(&ctx);
    assert!(r.detail.contains("0x80072560") && r.detail.contains("not a member of the organization"), "{}", r.detail);
    let advice = r.advice.unwrap();
    assert!(advice.contains("Power Platform admin center") && advice.contains("Application users → New app user") && advice.contains(&client_id), "{advice}");
    assert!(advice.contains("security"), "{advice}");
    w.standin.add_application_user(&client_id);
    assert!(entra::dataverse_whoami(&w.out, &w.urls.dataverse_url, &token).await.is_ok());
}

#[tokio::test]
async fn a_503_is_retried_with_a_fresh_assertion_and_repeated_ones_end_as_unavailable() {
    let w = world().await;
    w.standin.fail_next(1, 503);
    let token = w.token(&w.tenant.id, &w.client_id, &w.site_url, cert(0)).await.unwrap();
    assert_eq!(w.standin.token_requests(), 2);
    w.standin.fail_next(1, 503);
    assert_eq!(entra::sharepoint_site(&w.out, &w.site_url, &token).await.unwrap().title, "Sales & Marketing");
    assert_eq!(w.standin.sharepoint_calls(), 2, "the resource call is retried too");

    w.standin.fail_next(5, 503);
    let failure = w.token(&w.tenant.id, &w.client_id, &w.site_url, cert(0)).await.unwrap_err();
    assert_eq!(failure, Failure::Unavailable { status: 503, attempts: 3 });
    assert!(failure.is_transient());
    assert!(failure.explain(&w.context(ResourceKind::SharePoint, &w.site_url, with_cert(0))).detail.contains("503 to 3 attempts"));
    assert_eq!(w.standin.token_requests(), 5);
    // Each attempt signed a fresh assertion (the stand-in records them, forced failures too).
    w.standin.fail_next(0, 503);
    w.standin.fail_next(1, 500);
    w.token(&w.tenant.id, &w.client_id, &w.site_url, cert(0)).await.unwrap();
    assert_eq!(w.standin.assertions().len(), 2 + 3 + 2);
    let jtis: BTreeSet<String> = w.standin.assertions().iter().map(|a| a["claims"]["jti"].as_str().unwrap().to_string()).collect();
    assert_eq!(jtis.len(), w.standin.assertions().len(), "no assertion is sent twice");
    // A 4xx is never retried.
    let before = w.standin.token_requests();
    let _ = w.token("nosuch", &w.client_id, &w.site_url, cert(0)).await.unwrap_err();
    assert_eq!(w.standin.token_requests(), before + 1);
}

#[tokio::test]
async fn unreachable_and_refused_addresses_explain_themselves() {
    let w = world().await;
    let (_reserved, closed) = crate::common::refusing_port();
    let authority = format!("http://127.0.0.1:{closed}");
    let scope = entra::scope_for(&w.site_url).unwrap();
    let failure = entra::client_credentials(&w.out, &authority, &w.tenant.id, &w.client_id, &scope, cert(0)).await.unwrap_err();
    assert!(matches!(&failure, Failure::Unreachable { error: OutboundError::ConnectionRefused { .. }, attempts: 3 }), "{failure:?}");
    assert!(failure.is_transient());
    let ctx = Context { authority_url: &authority, ..w.context(ResourceKind::SharePoint, &w.site_url, with_cert(0)) };
    let r = failure.explain(&ctx);
    assert!(r.detail.contains("refused the connection") && r.advice.unwrap().contains("check the port"), "{}", r.detail);

    // A listener that accepts and never answers: a timeout on every attempt.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_url = format!("http://{}", silent.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    let impatient = Outbound::with_options(OutboundOptions {
        allow_loopback: true,
        connect_timeout: Duration::from_millis(300),
        total_timeout: Duration::from_millis(300),
        max_body: MAX_BODY,
        idle_timeout: Duration::from_secs(5),
    })
    .unwrap();
    let failure = entra::client_credentials(&impatient, &silent_url, &w.tenant.id, &w.client_id, &scope, cert(0)).await.unwrap_err();
    assert!(matches!(&failure, Failure::Unreachable { error: OutboundError::Timeout { .. }, attempts: 3 }), "{failure:?}");
    assert!(failure.is_transient());
    let r = failure.explain(&Context { authority_url: &silent_url, ..w.context(ResourceKind::SharePoint, &w.site_url, with_cert(0)) });
    assert!(r.detail.contains("did not answer in time") && r.advice.unwrap().contains("firewall"), "{}", r.detail);

    // https:// to a plain-HTTP listener: the TLS handshake fails, and the advice says so.
    let tls_url = w.urls.authority_url.replace("http://", "https://");
    let failure = entra::client_credentials(&w.out, &tls_url, &w.tenant.id, &w.client_id, &scope, cert(0)).await.unwrap_err();
    assert!(matches!(&failure, Failure::Unreachable { error: OutboundError::Tls { .. }, .. }), "{failure:?}");
    let advice = failure.explain(&Context { authority_url: &tls_url, ..w.context(ResourceKind::SharePoint, &w.site_url, with_cert(0)) }).advice.unwrap();
    assert!(advice.contains("https://") && advice.contains("certificate"), "{advice}");
    let sent = w.standin.token_requests();
    assert_eq!(sent, 0, "nothing readable reached the stand-in over TLS");

    // Without loopback allowed, nothing is sent: the guard is the only way out.
    let strict = outbound(false);
    let failure = entra::client_credentials(&strict, &w.urls.authority_url, &w.tenant.id, &w.client_id, &scope, cert(0)).await.unwrap_err();
    assert!(matches!(&failure, Failure::Unreachable { error: OutboundError::Internal { .. }, attempts: 0 }), "{failure:?}");
    assert!(!failure.is_transient());
    assert!(failure.explain(&ctx).advice.unwrap().contains("CONNVAULT_ALLOW_LOOPBACK=1"));
    let token = w.token(&w.tenant.id, &w.client_id, &w.site_url, cert(0)).await.unwrap();
    let before = w.standin.sharepoint_calls();
    assert!(matches!(entra::sharepoint_site(&strict, &w.site_url, &token).await, Err(Failure::Unreachable { error: OutboundError::Internal { .. }, .. })));
    assert_eq!(w.standin.token_requests(), 1);
    assert_eq!(w.standin.sharepoint_calls(), before);

    // Not ready: no tenant, no client id.
    let f = entra::client_credentials(&w.out, &w.urls.authority_url, " ", &w.client_id, &scope, cert(0)).await.unwrap_err();
    assert!(matches!(&f, Failure::NotReady { advice, .. } if advice.contains("Directory (tenant) ID")), "{f:?}");
    let f = entra::client_credentials(&w.out, &w.urls.authority_url, "a/b", &w.client_id, &scope, cert(0)).await.unwrap_err();
    assert!(matches!(f, Failure::NotReady { .. }));
    let f = entra::client_credentials(&w.out, &w.urls.authority_url, &w.tenant.id, "", &scope, cert(0)).await.unwrap_err();
    assert!(matches!(&f, Failure::NotReady { advice, .. } if advice.contains("Application (client) ID")), "{f:?}");
}

/// A token endpoint that echoes the request back in its error: neither the secret nor the
/// assertion reaches the explanation.
#[tokio::test]
async fn echoed_secrets_and_assertions_are_scrubbed() {
    use axum::routing::post;
    let app = axum::Router::new().route(
        "/sites/Echo/_api/web",
        axum::routing::get(|headers: axum::http::HeaderMap| async move {
            let auth = headers.get("authorization").and_then(|h| h.to_str().ok()).unwrap_or_default().to_string();
            let answer = json!({"error_description": format!("Invalid issuer or signature. You sent {auth}")});
            (axum::http::StatusCode::UNAUTHORIZED, [("content-type", "application/json")], answer.to_string())
        }),
    );
    let app = app.route(
        "/{tenant}/oauth2/v2.0/token",
        post(|body: String| async move {
            let decoded: Vec<String> = url::form_urlencoded::parse(body.as_bytes()).map(|(k, v)| format!("{k}={v}")).collect();
            let answer =
                json!({"error": "invalid_client", "error_description": format!("AADSTS7000215: got {body} / {}", decoded.join(" ")), "error_codes": [7000215]});
            (axum::http::StatusCode::BAD_REQUEST, [("content-type", "application/json")], answer.to_string())
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let authority = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let out = outbound(true);
    let secret = SecretString::new(SECRET.into());
    let scope = "https://contoso.crm4.dynamics.com/.default";
    let failure = entra::client_credentials(&out, &authority, "contoso.onmicrosoft.com", "client", scope, ClientAuth::Secret(&secret)).await.unwrap_err();
    let Failure::Refused { description, code, .. } = &failure else { panic!("{failure:?}") };
    assert_eq!(*code, Some(7000215));
    assert!(description.contains("client_secret=[redacted]") && !description.contains(SECRET), "{description}");
    let ctx = Context {
        resource: ResourceKind::Dataverse,
        resource_url: "https://contoso.crm4.dynamics.com",
        tenant: "contoso.onmicrosoft.com",
        client_id: "client",
        authority_url: &authority,
        credential: CredentialKind::Secret,
    };
    let r = failure.explain(&ctx);
    assert!(!r.detail.contains(SECRET) && !r.advice.unwrap().contains(SECRET));

    let failure = entra::client_credentials(&out, &authority, "contoso.onmicrosoft.com", "client", scope, cert(0)).await.unwrap_err();
    let Failure::Refused { description, .. } = &failure else { panic!("{failure:?}") };
    assert!(description.contains("client_assertion=[redacted]"), "{description}");
    assert!(!description.contains("eyJ"), "no part of the assertion: {description}");

    // A service that echoes the bearer token: scrubbed from its message too.
    let token = entra::Token {
        access_token: SecretString::new("tok.Secret-123".into()),
        token_type: "Bearer".into(),
        expires_in: None,
        scope: None,
        refresh_token: None,
        extra: Default::default(),
    };
    let site = format!("{authority}/sites/Echo");
    let failure = entra::sharepoint_site(&out, &site, &token).await.unwrap_err();
    let Failure::Resource { status: 401, message, .. } = &failure else { panic!("{failure:?}") };
    assert!(message.contains("Bearer [redacted]") && !message.contains("tok.Secret-123"), "{message}");
    let r = failure.explain(&Context { resource: ResourceKind::SharePoint, resource_url: &site, ..ctx });
    assert!(!r.detail.contains("tok.Secret-123") && !r.advice.unwrap().contains("tok.Secret-123"));
}

/// `server::oauth` directly: HTTP Basic client authentication reaches the stand-in as
/// `client_secret_basic`, and the token answer's fields come back.
#[tokio::test]
async fn oauth_client_credentials_with_http_basic() {
    let w = world().await;
    let url = entra::token_url(&w.urls.authority_url, &w.tenant.id);
    let scope = entra::scope_for(&w.urls.dataverse_url).unwrap();
    let token =
        server::oauth::client_credentials(&w.out, &url, &w.client_id, &[&scope], || Ok(server::oauth::ClientAuth::SecretBasic(&w.secret))).await.unwrap();
    assert_eq!(token.token_type, "Bearer");
    assert!(!token.access_token.expose_secret().is_empty());
    let wrong = SecretString::new("nope".into());
    let failure =
        server::oauth::client_credentials(&w.out, &url, &w.client_id, &[&scope], || Ok(server::oauth::ClientAuth::SecretBasic(&wrong))).await.unwrap_err();
    let server::oauth::Failure::Refused { status, error, body, .. } = &failure else { panic!("{failure:?}") };
    assert_eq!((*status, error.as_str()), (400, "invalid_client"));
    assert_eq!(failure.body_json()["error_codes"], json!([7000215]), "{body}");
}

/// The stand-in takes Entra's older form too (RS256, `x5t` only) and refuses assertions for
/// another audience, another client, or without a thumbprint.
#[tokio::test]
async fn the_stand_in_checks_thumbprints_audience_and_issuer_like_entra() {
    use server::assertion::{Alg, HeaderExtras};
    use server::entra::AssertionClaims;
    let w = world().await;
    let url = entra::token_url(&w.urls.authority_url, &w.tenant.id);
    let scope = entra::scope_for(&w.urls.dataverse_url).unwrap();
    let now = chrono::Utc::now().timestamp();
    let send = |extras: HeaderExtras, alg: Alg, claims: AssertionClaims| {
        let jwt = keys(0).signer.jwt(alg, &extras, &claims).unwrap();
        let (out, url, client, scope) = (&w.out, url.clone(), w.client_id.clone(), scope.clone());
        async move { server::oauth::client_credentials(out, &url, &client, &[&scope], || Ok(server::oauth::ClientAuth::Assertion(jwt.clone()))).await }
    };
    let sha1_only = HeaderExtras { x5t: Some(x5t(&keys(0).der)), x5t_s256: None };
    assert!(send(sha1_only.clone(), Alg::Rs256, AssertionClaims::new(&w.client_id, &url, now)).await.is_ok(), "RS256 + x5t is accepted");
    assert!(send(sha1_only, Alg::Ps256, AssertionClaims::new(&w.client_id, &url, now)).await.is_ok(), "PS256 + x5t is accepted");
    let code = |f: server::oauth::Failure| entra::aadsts_code(&f.body_json(), "");
    let other_cert = HeaderExtras { x5t: Some(x5t(&keys(1).der)), x5t_s256: None };
    assert_eq!(code(send(other_cert, Alg::Rs256, AssertionClaims::new(&w.client_id, &url, now)).await.unwrap_err()), Some(700027));
    assert_eq!(code(send(HeaderExtras::default(), Alg::Ps256, AssertionClaims::new(&w.client_id, &url, now)).await.unwrap_err()), Some(700027));
    let extras = HeaderExtras::for_certificate(&keys(0).der);
    let elsewhere = AssertionClaims::new(&w.client_id, "https://login.microsoftonline.com/x/oauth2/v2.0/token", now);
    let refused = send(extras.clone(), Alg::Ps256, elsewhere).await.unwrap_err();
    assert!(matches!(&refused, server::oauth::Failure::Refused { description, .. } if description.contains("audience")), "{refused:?}");
    let mut claims = AssertionClaims::new(&w.client_id, &url, now);
    claims.iss = "someone-else".into();
    assert_eq!(code(send(extras.clone(), Alg::Ps256, claims).await.unwrap_err()), Some(700021));
    let mut early = AssertionClaims::new(&w.client_id, &url, now);
    early.nbf = now + 3600;
    assert_eq!(code(send(extras, Alg::Ps256, early).await.unwrap_err()), Some(700024), "not yet valid");
}
