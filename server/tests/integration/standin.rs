//! The Salesforce stand-in answers like `shared/reference/salesforce-jwt.md` says Salesforce
//! does: every error row (status, headers, exact body), the check order, the happy path with
//! userinfo, and the knobs client tests rely on. Assertions are minted with jsonwebtoken from
//! keys and certificates made by `cert::issue`; everything stays on 127.0.0.1.

use std::collections::BTreeSet;
use std::sync::OnceLock;
use std::time::Duration;

use base64::Engine;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use server::certs as cert;
use server::providers::salesforce::standin::{ConnectedApp, StandIn, TokenError, JWT_BEARER_GRANT};

const CONSUMER_KEY: &str = "3MVG9testconsumerkey.A_b";
/// Salesforce usernames are email-shaped and may hold a `+`, which must survive form encoding.
const USER: &str = "integration+sf@example.com";

struct Pair {
    certificate_pem: String,
    key: EncodingKey,
}

/// Two key pairs, made once (RSA key generation is the slow part).
fn pair(i: usize) -> &'static Pair {
    static PAIRS: [OnceLock<Pair>; 2] = [OnceLock::new(), OnceLock::new()];
    PAIRS[i].get_or_init(|| {
        use rsa::pkcs1::EncodeRsaPrivateKey;
        use rsa::pkcs8::DecodePrivateKey;
        let issued = cert::issue(2048, &format!("SF_{i}"), "DEV", time::OffsetDateTime::now_utc()).unwrap();
        let key = rsa::PrivateKey::from_pkcs8_der(issued.private_key.expose_secret()).unwrap();
        let pkcs1 = key.to_pkcs1_der().unwrap();
        Pair { certificate_pem: issued.certificate_pem, key: EncodingKey::from_rsa_der(pkcs1.as_bytes()) }
    })
}

struct Org {
    standin: StandIn,
    base: String,
    user_id: String,
    http: reqwest::Client,
}

fn app(consumer_key: &str, certificate_pem: &str) -> ConnectedApp {
    ConnectedApp {
        consumer_key: consumer_key.to_string(),
        certificate_pem: certificate_pem.to_string(),
        admin_approved: true,
        assigned_users: BTreeSet::from([USER.to_string()]),
        ip_restricted: false,
    }
}

/// An org with one admin-approved app (certificate of pair 0) assigned to one active user.
async fn org() -> Org {
    let standin = StandIn::new();
    let base = standin.spawn().await.unwrap();
    standin.add_app(app(CONSUMER_KEY, &pair(0).certificate_pem)).unwrap();
    let user_id = standin.add_user(USER, true);
    Org { standin, base, user_id, http: reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap() }
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Claims as a correct client sends them.
fn claims(org: &Org) -> Value {
    json!({"iss": CONSUMER_KEY, "sub": USER, "aud": org.base, "exp": now() + 120, "iat": now(), "jti": format!("{}", rand::random::<u64>())})
}

fn sign_with(claims: &Value, pair: &Pair) -> String {
    encode(&Header::new(Algorithm::RS256), claims, &pair.key).unwrap()
}

fn sign(claims: &Value) -> String {
    sign_with(claims, pair(0))
}

fn form(fields: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new()).extend_pairs(fields).finish()
}

struct Answer {
    status: u16,
    content_type: String,
    cache_control: String,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

async fn answer(response: reqwest::Response) -> Answer {
    let header = |name: &str| response.headers().get(name).map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    let (status, content_type, cache_control) = (response.status().as_u16(), header("content-type"), header("cache-control"));
    Answer { status, content_type, cache_control, body: response.text().await.unwrap() }
}

async fn post_form(org: &Org, body: String) -> Answer {
    let response = org
        .http
        .post(format!("{}/services/oauth2/token", org.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    answer(response).await
}

async fn exchange(org: &Org, assertion: &str) -> Answer {
    post_form(org, form(&[("grant_type", JWT_BEARER_GRANT), ("assertion", assertion)])).await
}

async fn userinfo(org: &Org, token: Option<&str>) -> Answer {
    let mut request = org.http.get(format!("{}/services/oauth2/userinfo", org.base));
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    answer(request.send().await.unwrap()).await
}

/// A refusal exactly as the reference's table has it: 400, the JSON content type and
/// `no-store`, and the body byte for byte.
#[track_caller]
fn assert_refused(a: &Answer, body: &str) {
    assert_eq!(a.status, 400, "{}", a.body);
    assert_eq!(a.content_type, "application/json;charset=UTF-8");
    assert_eq!(a.cache_control, "no-store");
    assert_eq!(a.body, body);
}

const UNSUPPORTED_GRANT: &str = r#"{"error":"unsupported_grant_type","error_description":"grant type not supported"}"#;
const INVALID_CLIENT: &str = r#"{"error":"invalid_client_id","error_description":"client identifier invalid"}"#;
const INVALID_ASSERTION: &str = r#"{"error":"invalid_grant","error_description":"invalid assertion"}"#;
const AUDIENCE_INVALID: &str = r#"{"error":"invalid_grant","error_description":"audience is invalid"}"#;
const EXPIRED: &str = r#"{"error":"invalid_grant","error_description":"expired authorization code"}"#;
const NOT_APPROVED: &str = r#"{"error":"invalid_grant","error_description":"user hasn't approved this consumer"}"#;
const NOT_ADMIN_APPROVED: &str = r#"{"error":"invalid_app_access","error_description":"user is not admin approved to access this app"}"#;
const INACTIVE: &str = r#"{"error":"inactive_user","error_description":"user is inactive"}"#;
const IP_RESTRICTED: &str = r#"{"error":"invalid_grant","error_description":"ip restricted or invalid login hours"}"#;
const INVALID_SESSION: &str = r#"[{"message":"Session expired or invalid","errorCode":"INVALID_SESSION_ID"}]"#;

#[test]
fn token_error_bodies_are_the_references() {
    for (e, body) in [
        (TokenError::UnsupportedGrantType, UNSUPPORTED_GRANT),
        (TokenError::InvalidClientId, INVALID_CLIENT),
        (TokenError::InvalidAssertion, INVALID_ASSERTION),
        (TokenError::AudienceInvalid, AUDIENCE_INVALID),
        (TokenError::Expired, EXPIRED),
        (TokenError::NotApproved, NOT_APPROVED),
        (TokenError::NotAdminApproved, NOT_ADMIN_APPROVED),
        (TokenError::InactiveUser, INACTIVE),
        (TokenError::IpRestricted, IP_RESTRICTED),
    ] {
        assert_eq!(e.body(), body);
    }
}

#[tokio::test]
async fn a_good_assertion_gets_a_token_that_userinfo_accepts() {
    let org = org().await;
    let a = exchange(&org, &sign(&claims(&org))).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.content_type, "application/json;charset=UTF-8");
    assert_eq!(a.cache_control, "no-store");
    let t = a.json();
    let fields: BTreeSet<&str> = t.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(fields, BTreeSet::from(["access_token", "signature", "scope", "instance_url", "id", "token_type", "issued_at"]));
    let org_id = org.standin.org_id();
    assert_eq!(org_id.len(), 18);
    assert!(org_id.starts_with("00D"));
    assert!(org.user_id.starts_with("005") && org.user_id.len() == 18);
    let token = t["access_token"].as_str().unwrap();
    assert!(token.starts_with(&format!("{}!", &org_id[..15])), "{token}");
    assert!(token.len() > 60);
    assert_eq!(t["instance_url"], org.base.as_str());
    assert_eq!(t["id"], format!("{}/id/{org_id}/{}", org.base, org.user_id));
    assert_eq!(t["token_type"], "Bearer");
    assert_eq!(t["scope"], "web openid api id");
    let issued_at: i64 = t["issued_at"].as_str().unwrap().parse().unwrap();
    assert!((issued_at - chrono::Utc::now().timestamp_millis()).abs() < 10_000);
    assert_eq!(base64::engine::general_purpose::STANDARD.decode(t["signature"].as_str().unwrap()).unwrap().len(), 32);

    // The org and user ids are the last two path segments of `id`; userinfo agrees.
    let id = t["id"].as_str().unwrap();
    let segments: Vec<&str> = id.rsplitn(3, '/').collect();
    let u = userinfo(&org, Some(token)).await;
    assert_eq!(u.status, 200, "{}", u.body);
    assert_eq!(u.content_type, "application/json;charset=UTF-8");
    let info = u.json();
    assert_eq!(info["user_id"], segments[0]);
    assert_eq!(info["organization_id"], segments[1]);
    assert_eq!(info["preferred_username"], USER);
    assert_eq!(info["email"], USER);
    assert_eq!(info["active"], true);
    assert_eq!(info["urls"]["rest"], format!("{}/services/data/v{{version}}/", org.base));

    // A second assertion gets a different token; both work.
    let again = exchange(&org, &sign(&claims(&org))).await.json();
    assert_ne!(again["access_token"], t["access_token"]);
    assert_eq!(userinfo(&org, again["access_token"].as_str()).await.status, 200);
    assert_eq!(org.standin.token_requests(), 2);
    assert_eq!(org.standin.userinfo_requests(), 2);

    // What the client sent is recorded for client tests.
    let seen = org.standin.assertions();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0]["header"]["alg"], "RS256");
    assert_eq!(seen[0]["claims"]["sub"], USER);
}

#[tokio::test]
async fn accepted_variants_exp_as_string_no_typ_extra_params_other_audiences() {
    let org = org().await;
    // `exp` as a numeric string, as in Salesforce's documentation.
    let mut c = claims(&org);
    c["exp"] = json!((now() + 120).to_string());
    assert_eq!(exchange(&org, &sign(&c)).await.status, 200);
    // No `typ` in the header, no `iat`/`jti`.
    let mut header = Header::new(Algorithm::RS256);
    header.typ = None;
    let bare = json!({"iss": CONSUMER_KEY, "sub": USER, "aud": org.base, "exp": now() + 60});
    let jwt = encode(&header, &bare, &pair(0).key).unwrap();
    assert_eq!(exchange(&org, &jwt).await.status, 200);
    // Extra parameters (client_id, scope) are ignored, in any order.
    let body = form(&[("client_id", CONSUMER_KEY), ("assertion", &sign(&claims(&org))), ("scope", "api"), ("grant_type", JWT_BEARER_GRANT)]);
    assert_eq!(post_form(&org, body).await.status, 200);
    // The login hosts are audiences by default; the username is case-insensitive.
    for aud in ["https://login.salesforce.com", "https://test.salesforce.com"] {
        let mut c = claims(&org);
        c["aud"] = json!(aud);
        c["sub"] = json!(USER.to_uppercase());
        assert_eq!(exchange(&org, &sign(&c)).await.status, 200, "{aud}");
    }
    // `exp` up to 3 minutes ahead.
    let mut c = claims(&org);
    c["exp"] = json!(now() + 180);
    assert_eq!(exchange(&org, &sign(&c)).await.status, 200);
}

#[tokio::test]
async fn grant_type_is_checked_first() {
    let org = org().await;
    let good = sign(&claims(&org));
    // (authorization_code and refresh_token belong to the web server flow, served beside it.)
    for grant in ["password", "client_credentials", "", "urn:ietf:params:oauth:grant-type:jwt-bearer "] {
        assert_refused(&post_form(&org, form(&[("grant_type", grant), ("assertion", &good)])).await, UNSUPPORTED_GRANT);
    }
    assert_refused(&post_form(&org, form(&[("assertion", &good)])).await, UNSUPPORTED_GRANT);
    assert_refused(&post_form(&org, String::new()).await, UNSUPPORTED_GRANT);
    // A JSON body is not a form: no grant_type found. Never a framework 415.
    let json_body = json!({"grant_type": JWT_BEARER_GRANT, "assertion": good}).to_string();
    let a =
        answer(org.http.post(format!("{}/services/oauth2/token", org.base)).header("content-type", "application/json").body(json_body).send().await.unwrap())
            .await;
    assert_refused(&a, UNSUPPORTED_GRANT);
    // Even with an unparsable assertion, the grant type answers first.
    assert_refused(&post_form(&org, form(&[("grant_type", "password"), ("assertion", "junk")])).await, UNSUPPORTED_GRANT);
}

#[tokio::test]
async fn malformed_and_badly_signed_assertions_are_invalid() {
    let org = org().await;
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let good = sign(&claims(&org));
    let (head, rest) = good.split_once('.').unwrap();
    let (payload, signature) = rest.split_once('.').unwrap();

    // Malformed: missing, empty, garbage, two parts, bad base64, bad JSON.
    assert_refused(&post_form(&org, form(&[("grant_type", JWT_BEARER_GRANT)])).await, INVALID_ASSERTION);
    for bad in ["", "junk", "a.b", "a.b.c", &format!("{head}.{payload}"), &format!("{head}.{payload}."), &format!("{head}.{}.{signature}", b64("{oops"))] {
        assert_refused(&exchange(&org, bad).await, INVALID_ASSERTION);
    }

    // Tampered: the payload changed after signing (another subject), signature kept.
    let mut other = claims(&org);
    other["sub"] = json!("admin@example.com");
    let tampered = format!("{head}.{}.{signature}", b64(&other.to_string()));
    assert_refused(&exchange(&org, &tampered).await, INVALID_ASSERTION);
    // A flipped signature byte.
    let mut sig = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(signature).unwrap();
    sig[10] ^= 1;
    let flipped = format!("{head}.{payload}.{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sig));
    assert_refused(&exchange(&org, &flipped).await, INVALID_ASSERTION);

    // Signed by another key than the uploaded certificate's.
    assert_refused(&exchange(&org, &sign_with(&claims(&org), pair(1))).await, INVALID_ASSERTION);

    // Only RS256: HS256 (even keyed with the public certificate, the classic confusion) and
    // "none" are refused.
    let hs = encode(&Header::new(Algorithm::HS256), &claims(&org), &EncodingKey::from_secret(pair(0).certificate_pem.as_bytes())).unwrap();
    assert_refused(&exchange(&org, &hs).await, INVALID_ASSERTION);
    let none = format!("{}.{payload}.", b64(r#"{"alg":"none"}"#));
    assert_refused(&exchange(&org, &none).await, INVALID_ASSERTION);
    let rs384 = encode(&Header::new(Algorithm::RS384), &claims(&org), &pair(0).key).unwrap();
    assert_refused(&exchange(&org, &rs384).await, INVALID_ASSERTION);

    // `exp` missing or unreadable makes the assertion invalid.
    for exp in [Value::Null, json!("tomorrow"), json!([1])] {
        let mut c = claims(&org);
        if exp.is_null() {
            c.as_object_mut().unwrap().remove("exp");
        } else {
            c["exp"] = exp;
        }
        assert_refused(&exchange(&org, &sign(&c)).await, INVALID_ASSERTION);
    }
    assert!(org.standin.token_requests() >= 15);
}

#[tokio::test]
async fn unknown_consumer_keys_are_invalid_clients_before_the_signature_is_checked() {
    let org = org().await;
    for iss in [json!("3MVG9unknown"), json!(CONSUMER_KEY.to_lowercase()), json!(null), json!(42)] {
        let mut c = claims(&org);
        c["iss"] = iss.clone();
        // Signed with a key nobody registered: the lookup fails first.
        assert_refused(&exchange(&org, &sign_with(&c, pair(1))).await, INVALID_CLIENT);
    }
    let mut c = claims(&org);
    c.as_object_mut().unwrap().remove("iss");
    assert_refused(&exchange(&org, &sign(&c)).await, INVALID_CLIENT);
    // A removed app is unknown.
    assert!(org.standin.remove_app(CONSUMER_KEY));
    assert_refused(&exchange(&org, &sign(&claims(&org))).await, INVALID_CLIENT);
}

#[tokio::test]
async fn a_second_app_with_its_own_certificate_verifies_against_its_own_only() {
    let org = org().await;
    org.standin.add_app(app("3MVG9second", &pair(1).certificate_pem)).unwrap();
    let mut c = claims(&org);
    c["iss"] = json!("3MVG9second");
    assert_eq!(exchange(&org, &sign_with(&c, pair(1))).await.status, 200);
    assert_refused(&exchange(&org, &sign_with(&c, pair(0))).await, INVALID_ASSERTION);
    // The admin replaces the certificate: the old key stops working, the new one works.
    org.standin.update_app(CONSUMER_KEY, |a| a.certificate_pem = pair(1).certificate_pem.clone()).unwrap();
    assert_refused(&exchange(&org, &sign(&claims(&org))).await, INVALID_ASSERTION);
    assert_eq!(exchange(&org, &sign_with(&claims(&org), pair(1))).await.status, 200);
}

#[tokio::test]
async fn audience_must_be_one_accepted_string() {
    let org = org().await;
    for aud in [
        json!("https://login.salesforce.com/"),
        json!("https://LOGIN.salesforce.com"),
        json!("https://example.my.salesforce.com"),
        json!([org.base]),
        json!(["https://login.salesforce.com"]),
        json!(null),
        json!(1),
    ] {
        let mut c = claims(&org);
        c["aud"] = aud.clone();
        assert_refused(&exchange(&org, &sign(&c)).await, AUDIENCE_INVALID);
    }
    let mut c = claims(&org);
    c.as_object_mut().unwrap().remove("aud");
    assert_refused(&exchange(&org, &sign(&c)).await, AUDIENCE_INVALID);

    // A My Domain audience, once configured, and only it.
    org.standin.set_audiences(vec!["https://acme.my.salesforce.com".into()]);
    let mut c = claims(&org);
    c["aud"] = json!("https://acme.my.salesforce.com");
    assert_eq!(exchange(&org, &sign(&c)).await.status, 200);
    assert_refused(&exchange(&org, &sign(&claims(&org))).await, AUDIENCE_INVALID);

    // A bad signature answers before a bad audience.
    let mut c = claims(&org);
    c["aud"] = json!("https://nowhere.example");
    assert_refused(&exchange(&org, &sign_with(&c, pair(1))).await, INVALID_ASSERTION);
}

#[tokio::test]
async fn exp_in_the_past_or_too_far_ahead_is_expired() {
    let org = org().await;
    for exp in [json!(now() - 1), json!(now() - 3600), json!(0), json!((now() - 5).to_string()), json!(now() + 600), json!(now() + 86_400), json!(u64::MAX)] {
        let mut c = claims(&org);
        c["exp"] = exp.clone();
        assert_refused(&exchange(&org, &sign(&c)).await, EXPIRED);
    }
    // A wrong audience answers before an expired assertion.
    let mut c = claims(&org);
    c["exp"] = json!(now() - 60);
    c["aud"] = json!("https://nowhere.example");
    assert_refused(&exchange(&org, &sign(&c)).await, AUDIENCE_INVALID);
}

#[tokio::test]
async fn users_and_policies_in_order() {
    let org = org().await;
    let s = &org.standin;

    // Unknown user: Salesforce answers as for an unapproved one.
    let mut c = claims(&org);
    c["sub"] = json!("nobody@example.com");
    assert_refused(&exchange(&org, &sign(&c)).await, NOT_APPROVED);
    // ... but an expired assertion answers first.
    c["exp"] = json!(now() - 10);
    assert_refused(&exchange(&org, &sign(&c)).await, EXPIRED);

    // Inactive user, even when also unassigned and the app self-authorize.
    assert!(s.set_user_active(USER, false));
    assert_refused(&exchange(&org, &sign(&claims(&org))).await, INACTIVE);
    s.update_app(CONSUMER_KEY, |a| {
        a.admin_approved = false;
        a.assigned_users.clear();
        a.ip_restricted = true;
    })
    .unwrap();
    assert_refused(&exchange(&org, &sign(&claims(&org))).await, INACTIVE);
    assert!(s.set_user_active(USER, true));

    // Self-authorize policy: never approved (before the assignment and IP checks).
    assert_refused(&exchange(&org, &sign(&claims(&org))).await, NOT_APPROVED);
    s.update_app(CONSUMER_KEY, |a| {
        a.assigned_users.insert(USER.into());
    })
    .unwrap();
    assert_refused(&exchange(&org, &sign(&claims(&org))).await, NOT_APPROVED);

    // Admin approved but not assigned (answers before IP).
    s.update_app(CONSUMER_KEY, |a| {
        a.admin_approved = true;
        a.assigned_users.clear();
    })
    .unwrap();
    assert_refused(&exchange(&org, &sign(&claims(&org))).await, NOT_ADMIN_APPROVED);
    // Another user is assigned, not this one.
    s.add_user("other@example.com", true);
    s.update_app(CONSUMER_KEY, |a| {
        a.assigned_users.insert("other@example.com".into());
    })
    .unwrap();
    assert_refused(&exchange(&org, &sign(&claims(&org))).await, NOT_ADMIN_APPROVED);

    // Assigned, but IP restricted.
    s.update_app(CONSUMER_KEY, |a| {
        a.assigned_users.insert(USER.into());
    })
    .unwrap();
    assert_refused(&exchange(&org, &sign(&claims(&org))).await, IP_RESTRICTED);
    s.update_app(CONSUMER_KEY, |a| a.ip_restricted = false).unwrap();
    assert_eq!(exchange(&org, &sign(&claims(&org))).await.status, 200);

    // Unknown app for update; a consumer key cannot be renamed; a bad certificate is refused
    // and leaves the app as it was.
    assert!(s.update_app("3MVG9nope", |_| {}).is_err());
    assert!(s.update_app(CONSUMER_KEY, |a| a.consumer_key = "3MVG9new".into()).is_err());
    assert!(s.update_app(CONSUMER_KEY, |a| a.certificate_pem = "junk".into()).is_err());
    assert_eq!(exchange(&org, &sign(&claims(&org))).await.status, 200);
    // add_user on an existing username keeps its id.
    assert_eq!(s.add_user(&USER.to_uppercase(), true), org.user_id);
    assert_eq!(s.user_id(USER).as_deref(), Some(org.user_id.as_str()));
}

#[tokio::test]
async fn userinfo_refuses_unknown_expired_and_revoked_tokens_with_the_array_body() {
    let org = org().await;
    let token = exchange(&org, &sign(&claims(&org))).await.json()["access_token"].as_str().unwrap().to_string();
    assert_eq!(userinfo(&org, Some(&token)).await.status, 200);

    #[track_caller]
    fn assert_invalid_session(a: &Answer) {
        assert_eq!(a.status, 401, "{}", a.body);
        assert_eq!(a.content_type, "application/json;charset=UTF-8");
        assert_eq!(a.body, INVALID_SESSION);
    }
    assert_invalid_session(&userinfo(&org, Some("00Dbogus!AQtoken")).await);
    assert_invalid_session(&userinfo(&org, None).await);
    let basic = org.http.get(format!("{}/services/oauth2/userinfo", org.base)).header("authorization", format!("Basic {token}")).send().await.unwrap();
    assert_invalid_session(&answer(basic).await);

    // Revoked.
    org.standin.revoke_all_tokens();
    assert_invalid_session(&userinfo(&org, Some(&token)).await);

    // Expired after the session timeout of inactivity.
    let token = exchange(&org, &sign(&claims(&org))).await.json()["access_token"].as_str().unwrap().to_string();
    org.standin.set_token_lifetime(Duration::from_millis(300));
    assert_eq!(userinfo(&org, Some(&token)).await.status, 200);
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert_invalid_session(&userinfo(&org, Some(&token)).await);

    // Deactivating the user ends the user's sessions.
    org.standin.set_token_lifetime(Duration::from_secs(3600));
    let token = exchange(&org, &sign(&claims(&org))).await.json()["access_token"].as_str().unwrap().to_string();
    assert_eq!(userinfo(&org, Some(&token)).await.status, 200);
    org.standin.set_user_active(USER, false);
    assert_invalid_session(&userinfo(&org, Some(&token)).await);
    assert_eq!(org.standin.userinfo_requests(), 9);
}

#[tokio::test]
async fn fail_next_answers_5xx_then_recovers_and_every_request_counts() {
    let org = org().await;
    org.standin.fail_next(2, 503);
    for _ in 0..2 {
        let a = exchange(&org, &sign(&claims(&org))).await;
        assert_eq!(a.status, 503);
        assert!(a.content_type.starts_with("text/html"));
        assert!(a.body.contains("Maintenance"));
    }
    assert_eq!(exchange(&org, &sign(&claims(&org))).await.status, 200);
    org.standin.fail_next(1, 500);
    let a = exchange(&org, &sign(&claims(&org))).await;
    assert_eq!(a.status, 500);
    assert_eq!(a.json(), json!({"error": "unknown_error", "error_description": "retry your request"}));
    org.standin.fail_next(1, 502);
    assert_eq!(exchange(&org, "whatever").await.status, 502);
    assert_refused(&exchange(&org, "whatever").await, INVALID_ASSERTION);
    assert_eq!(org.standin.token_requests(), 6);
    // Failures do not touch userinfo.
    assert_eq!(org.standin.userinfo_requests(), 0);
}

#[tokio::test]
async fn delay_next_provokes_client_timeouts() {
    let org = org().await;
    org.standin.delay_next(1, Duration::from_secs(3));
    let impatient = reqwest::Client::builder().timeout(Duration::from_millis(300)).build().unwrap();
    let body = form(&[("grant_type", JWT_BEARER_GRANT), ("assertion", &sign(&claims(&org)))]);
    let started = std::time::Instant::now();
    let err = impatient
        .post(format!("{}/services/oauth2/token", org.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.clone())
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert!(started.elapsed() < Duration::from_secs(2));
    // The next one is answered at once.
    let started = std::time::Instant::now();
    let ok = impatient
        .post(format!("{}/services/oauth2/token", org.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(org.standin.token_requests(), 2);
}

#[tokio::test]
async fn apps_with_unusable_certificates_are_refused() {
    let standin = StandIn::new();
    let ec_key = rcgen::KeyPair::generate().unwrap();
    let ec_cert = rcgen::CertificateParams::new(vec!["x".to_string()]).unwrap().self_signed(&ec_key).unwrap().pem();
    for (pem, reason) in [
        ("junk", "not PEM"),
        ("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "X.509"),
        (ec_key.serialize_pem().as_str(), "not a CERTIFICATE"),
        (ec_cert.as_str(), "not RSA"),
    ] {
        let err = standin.add_app(app("3MVG9x", pem)).unwrap_err();
        assert!(err.contains(reason), "{err}");
    }
    assert!(standin.add_app(app("", &pair(0).certificate_pem)).is_err());
    standin.add_app(app("3MVG9x", &pair(0).certificate_pem)).unwrap();
    assert!(standin.add_app(app("3MVG9x", &pair(1).certificate_pem)).unwrap_err().contains("exists"));
    assert_eq!(standin.apps().len(), 1);
}

#[tokio::test]
async fn the_demo_page_registers_an_app_that_then_works() {
    let standin = StandIn::new();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = standin.clone();
    tokio::spawn(async move { server.serve_demo(listener).await });
    let http = reqwest::Client::new();

    let page = http.get(format!("{base}/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    let page = page.text().await.unwrap();
    assert!(page.contains("connvault Salesforce stand-in — for local demos, not Salesforce"));
    assert!(page.contains("action=\"/apps\""));

    let submit = |fields: Vec<(&'static str, String)>| {
        let http = http.clone();
        let url = format!("{base}/apps");
        async move {
            let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(fields).finish();
            let r = http.post(url).header("content-type", "application/x-www-form-urlencoded").body(body).send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    // A bad certificate and a hostile username: refused, everything escaped.
    let (status, page) = submit(vec![("certificate", "<script>alert(1)</script>".into()), ("username", "<b>x</b>@example.com".into())]).await;
    assert_eq!(status, 400);
    assert!(page.contains("The certificate was refused"));
    assert!(!page.contains("<script>") && !page.contains("<b>x</b>"));
    let (status, _) = submit(vec![("certificate", pair(0).certificate_pem.clone()), ("username", " ".into())]).await;
    assert_eq!(status, 400);

    let (status, page) =
        submit(vec![("certificate", pair(0).certificate_pem.clone()), ("username", USER.into()), ("permitted_users", "admin_approved".into())]).await;
    assert_eq!(status, 200, "{page}");
    let start = page.find("<code id=\"consumer-key\">").unwrap() + "<code id=\"consumer-key\">".len();
    let consumer_key = &page[start..start + page[start..].find('<').unwrap()];
    assert!(consumer_key.starts_with("3MVG9") && consumer_key.len() == 85, "{consumer_key}");
    assert!(page.contains(USER));
    let listed = http.get(format!("{base}/")).send().await.unwrap().text().await.unwrap();
    assert!(listed.contains(consumer_key));

    // The app works: a token for the user, with the demo's base as audience.
    let c = json!({"iss": consumer_key, "sub": USER, "aud": base, "exp": now() + 60});
    let body = form(&[("grant_type", JWT_BEARER_GRANT), ("assertion", &sign(&c))]);
    let r = http.post(format!("{base}/services/oauth2/token")).header("content-type", "application/x-www-form-urlencoded").body(body).send().await.unwrap();
    assert_eq!(r.status(), 200);

    // A self-authorize app refuses as Salesforce would.
    let (status, page) =
        submit(vec![("certificate", pair(1).certificate_pem.clone()), ("username", "second@example.com".into()), ("permitted_users", "self_authorize".into())])
            .await;
    assert_eq!(status, 200);
    let start = page.find("<code id=\"consumer-key\">").unwrap() + "<code id=\"consumer-key\">".len();
    let second = page[start..start + page[start..].find('<').unwrap()].to_string();
    let c = json!({"iss": second, "sub": "second@example.com", "aud": base, "exp": now() + 60});
    let body = form(&[("grant_type", JWT_BEARER_GRANT), ("assertion", &sign_with(&c, pair(1)))]);
    let r = http.post(format!("{base}/services/oauth2/token")).header("content-type", "application/x-www-form-urlencoded").body(body).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), NOT_APPROVED);
}

#[tokio::test]
async fn the_router_works_without_a_listener() {
    use tower::ServiceExt;
    let standin = StandIn::new();
    let request = axum::http::Request::post("/services/oauth2/token")
        .header("host", "sf.test")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(axum::body::Body::from("grant_type=nope"))
        .unwrap();
    let response = standin.router().oneshot(request).await.unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(standin.token_requests(), 1);
}
