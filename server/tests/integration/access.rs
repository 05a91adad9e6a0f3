//! People and access: the setup link (promise 16), sign-in with rate limiting (promise 10),
//! sessions, roles. On every backend.

use crate::common;

use std::net::IpAddr;

use common::backends;
use server::audit::Actor;
use server::error::Error;
use server::secret::SecretString;
use server::sessions;
use server::users::{self, Role};
use sqlx::{AnyConnection, Connection, Executor, Row};

fn pw(s: &str) -> SecretString {
    SecretString::from(s)
}

fn token_of(link: &str) -> String {
    link.split("token=").nth(1).unwrap().to_string()
}

async fn exec(url: &str, sql: &'static str) {
    let mut c = AnyConnection::connect(url).await.unwrap();
    c.execute(sql).await.unwrap();
    c.close().await.unwrap();
}

#[tokio::test]
async fn promise_16_the_setup_link_is_random_single_use_expiring_and_scoped() {
    for db in backends().await {
        let s = db.open().await;
        let first = sessions::setup_link_if_needed(s.sessions()).await.unwrap().expect("no users yet: a link");
        assert!(first.starts_with(&format!("{}/setup?token=", s.config.public_url)), "{first}");
        assert_eq!(token_of(&first).len(), 43, "256 random bits");
        // A restart issues a new link and the old one stops working.
        let link = sessions::setup_link_if_needed(s.sessions()).await.unwrap().unwrap();
        assert_ne!(first, link);
        let err = sessions::complete_setup(s.sessions(), &token_of(&first), "owner@example.com", &pw("correct horse battery"), None).await.unwrap_err();
        assert!(matches!(err, Error::Forbidden(_)), "{err:?}");

        // Bad input does not use the link up.
        let err = sessions::complete_setup(s.sessions(), &token_of(&link), "owner@example.com", &pw("short"), None).await.unwrap_err();
        assert!(matches!(&err, Error::Validation(f) if f[0].field == "password"), "{err:?}");

        let (owner, session) = sessions::complete_setup(s.sessions(), &token_of(&link), "Owner@Example.com", &pw("correct horse battery"), None).await.unwrap();
        assert!(owner.is_owner);
        assert_eq!(sessions::user_for(&s.db, session.expose_secret()).await.unwrap().unwrap().id, owner.id);
        // Single use.
        let again = sessions::complete_setup(s.sessions(), &token_of(&link), "second@example.com", &pw("correct horse battery"), None).await.unwrap_err();
        assert!(matches!(again, Error::Forbidden(_)), "{again:?}");
        assert_eq!(users::count(&s.db).await.unwrap(), 1);
        assert!(sessions::setup_link_if_needed(s.sessions()).await.unwrap().is_none(), "no link once an account exists");
    }
}

#[tokio::test]
async fn expired_and_foreign_links_are_refused() {
    for db in backends().await {
        let s = db.open().await;
        let link = sessions::setup_link_if_needed(s.sessions()).await.unwrap().unwrap();
        exec(&db.url, "UPDATE one_time_links SET expires_at = '2000-01-01T00:00:00.000000Z'").await;
        let err = sessions::complete_setup(s.sessions(), &token_of(&link), "o@example.com", &pw("correct horse battery"), None).await.unwrap_err();
        assert!(matches!(err, Error::Forbidden(_)), "{err:?}");

        // A link made for another action cannot set the vault up.
        let link = sessions::setup_link_if_needed(s.sessions()).await.unwrap().unwrap();
        exec(&db.url, "UPDATE one_time_links SET purpose = 'admin_response' WHERE used_at IS NULL").await;
        let err = sessions::complete_setup(s.sessions(), &token_of(&link), "o@example.com", &pw("correct horse battery"), None).await.unwrap_err();
        assert!(matches!(err, Error::Forbidden(_)), "{err:?}");
        assert_eq!(users::count(&s.db).await.unwrap(), 0);
    }
}

#[tokio::test]
async fn sign_in_sessions_and_passwords() {
    for db in backends().await {
        let s = db.open().await;
        let op = Actor::operator();
        let dev = users::create(&s.db, &op, "dev@example.com", &pw("developer password 1"), false).await.unwrap();
        let dup = users::create(&s.db, &op, "DEV@example.com", &pw("developer password 1"), false).await.unwrap_err();
        assert!(matches!(dup, Error::Conflict { code: "user_exists", .. }));
        assert!(matches!(users::create(&s.db, &op, "not-an-email", &pw("developer password 1"), false).await.unwrap_err(), Error::Validation(_)));

        // Stored as Argon2id, never as the password.
        let mut c = AnyConnection::connect(&db.url).await.unwrap();
        let hash: String = c.fetch_one("SELECT password_hash FROM users").await.unwrap().get("password_hash");
        c.close().await.unwrap();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(!db.all_text().await.contains("developer password 1"));

        let addr: Option<IpAddr> = Some("192.0.2.10".parse().unwrap());
        let wrong = sessions::sign_in(s.sessions(), "dev@example.com", &pw("wrong password!!"), addr).await.unwrap_err();
        assert!(matches!(wrong, Error::Unauthorized(_)));
        let unknown = sessions::sign_in(s.sessions(), "nobody@example.com", &pw("wrong password!!"), addr).await.unwrap_err();
        assert!(matches!(unknown, Error::Unauthorized(_)));
        let (u, token) = sessions::sign_in(s.sessions(), " Dev@Example.com ", &pw("developer password 1"), addr).await.unwrap();
        assert_eq!(u.id, dev.id);
        assert!(users::get(&s.db, dev.id).await.unwrap().last_sign_in_at.is_some());
        assert_eq!(sessions::user_for(&s.db, token.expose_secret()).await.unwrap().unwrap().email, "dev@example.com");
        assert!(sessions::user_for(&s.db, "forged-token").await.unwrap().is_none());

        // Audit: failures and successes, never a password.
        let events = server::audit::recent(&s.db, 20).await.unwrap();
        let sign_ins: Vec<(&str, &str)> = events.iter().filter(|e| e.action == "auth.sign_in").map(|e| (e.outcome.as_str(), e.actor.as_str())).collect();
        // An identifier without an account is recorded as a digest, never as typed.
        let unknown = sessions::unknown_account_label("nobody@example.com");
        assert_eq!(sign_ins, [("success", "dev@example.com"), ("failure", unknown.as_str()), ("failure", "dev@example.com")]);
        assert!(events.iter().filter(|e| e.action == "auth.sign_in").all(|e| e.client_addr.as_deref() == Some("192.0.2.10")));
        assert!(!serde_json::to_string(&events).unwrap().contains("password!!"));

        // Changing the password ends other sessions but keeps this one.
        let (_, other) = sessions::sign_in(s.sessions(), "dev@example.com", &pw("developer password 1"), addr).await.unwrap();
        let bad = users::change_password(&s.db, &u, &pw("not the current one"), &pw("a brand new password"), Some(token.expose_secret())).await.unwrap_err();
        assert!(matches!(&bad, Error::Validation(f) if f[0].field == "current_password"));
        users::change_password(&s.db, &u, &pw("developer password 1"), &pw("a brand new password"), Some(token.expose_secret())).await.unwrap();
        assert!(sessions::user_for(&s.db, other.expose_secret()).await.unwrap().is_none());
        assert!(sessions::user_for(&s.db, token.expose_secret()).await.unwrap().is_some());
        assert!(sessions::sign_in(s.sessions(), "dev@example.com", &pw("developer password 1"), addr).await.is_err());

        // Deactivation ends sessions at once and blocks sign-in.
        users::deactivate(&s.db, &op, dev.id).await.unwrap();
        assert!(sessions::user_for(&s.db, token.expose_secret()).await.unwrap().is_none());
        assert!(sessions::sign_in(s.sessions(), "dev@example.com", &pw("a brand new password"), addr).await.is_err());

        // An expired session is not a session.
        users::create(&s.db, &op, "v@example.com", &pw("viewer password 12"), false).await.unwrap();
        let (_, t) = sessions::sign_in(s.sessions(), "v@example.com", &pw("viewer password 12"), addr).await.unwrap();
        exec(&db.url, "UPDATE sessions SET expires_at = '2000-01-01T00:00:00.000000Z'").await;
        assert!(sessions::user_for(&s.db, t.expose_secret()).await.unwrap().is_none());
        sessions::sign_out(&s.db, t.expose_secret()).await.unwrap();
    }
}

/// Promise 10 (sign-in): the 11th bad attempt from one address within the window gets 429;
/// another address, and the right password from it, are unaffected.
#[tokio::test]
async fn promise_10_sign_in_is_rate_limited_per_client_address() {
    for db in backends().await {
        let s = db.open().await;
        users::create(&s.db, &Actor::operator(), "a@example.com", &pw("the right password"), false).await.unwrap();
        let attacker: Option<IpAddr> = Some("203.0.113.66".parse().unwrap());
        let good: Option<IpAddr> = Some("198.51.100.1".parse().unwrap());
        for i in 0..10 {
            let e = sessions::sign_in(s.sessions(), "a@example.com", &pw("guess guess guess"), attacker).await.unwrap_err();
            assert!(matches!(e, Error::Unauthorized(_)), "attempt {}: {e:?}", i + 1);
        }
        let e = sessions::sign_in(s.sessions(), "a@example.com", &pw("guess guess guess"), attacker).await.unwrap_err();
        assert!(matches!(e, Error::TooManyRequests { retry_after_secs } if retry_after_secs > 0), "{e:?}");
        assert_eq!(e.status().as_u16(), 429);
        // Even the right password waits out the window from that address…
        assert!(matches!(
            sessions::sign_in(s.sessions(), "a@example.com", &pw("the right password"), attacker).await.unwrap_err(),
            Error::TooManyRequests { .. }
        ));
        // …while other clients are unaffected.
        assert!(sessions::sign_in(s.sessions(), "a@example.com", &pw("the right password"), good).await.is_ok());
    }
}

#[tokio::test]
async fn roles_per_environment() {
    for db in backends().await {
        let s = db.open().await;
        let op = Actor::operator();
        let u = users::create(&s.db, &op, "r@example.com", &pw("role test password"), false).await.unwrap();
        assert_eq!(u.role_in("DEV"), None);
        let u = users::set_role(&s.db, &op, u.id, "dev", Some(Role::Developer)).await.unwrap();
        let u = users::set_role(&s.db, &op, u.id, "QA", Some(Role::Viewer)).await.unwrap();
        assert_eq!((u.role_in("DEV"), u.role_in("qa"), u.role_in("PROD")), (Some(Role::Developer), Some(Role::Viewer), None));
        let u = users::set_role(&s.db, &op, u.id, "QA", None).await.unwrap();
        assert_eq!(u.role_in("QA"), None);
        assert!(matches!(users::set_role(&s.db, &op, u.id, "NOPE", Some(Role::Viewer)).await.unwrap_err(), Error::NotFound(_)));
        let owner = users::create(&s.db, &op, "o@example.com", &pw("owner password 123"), true).await.unwrap();
        assert_eq!(owner.role_in("PROD"), Some(Role::Administrator));
        assert!(Role::Viewer < Role::Developer && Role::Developer < Role::Administrator);
    }
}

#[test]
fn promise_14_session_cookie_flags() {
    let token = SecretString::from("tok");
    let plain = sessions::cookie(&token, false);
    assert!(plain.contains("HttpOnly") && plain.contains("SameSite=Lax") && plain.contains("Path=/") && !plain.contains("Secure"), "{plain}");
    assert!(sessions::cookie(&token, true).ends_with("; Secure"));
    assert_eq!(sessions::token_from_cookie_header("a=b; cv_session=xyz; c=d"), Some("xyz"));
    assert_eq!(sessions::token_from_cookie_header("cv_session_other=1"), None);
    assert_eq!(sessions::token_from_cookie_header("cv_session="), None);
}
