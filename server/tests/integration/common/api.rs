//! The REST API through the real router, as a browser session or an API key would call it.

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use server::api_keys::{self, Creator, NewApiKey};
use server::audit::Actor;
use server::secret::SecretString;
use server::startup::Services;
use server::users::{self, Role};
use tower::ServiceExt;

const ORIGIN: &str = "http://127.0.0.1:3000";

#[derive(Clone, Copy, Debug)]
pub enum Who<'a> {
    Nobody,
    Session(&'a str),
    Key(&'a str),
}

pub struct Api {
    pub s: Services,
    pub router: axum::Router,
}

impl Api {
    pub fn new(s: Services) -> Api {
        let router = server::api::with_csrf_guard(server::api::router(s.clone()), &s.config.public_url);
        Api { s, router }
    }

    pub async fn call(&self, who: Who<'_>, method: &str, path: &str, body: Option<Value>) -> (StatusCode, Value, String) {
        self.call_from(who, method, path, body, "192.0.2.1:5000").await
    }

    pub async fn call_from(&self, who: Who<'_>, method: &str, path: &str, body: Option<Value>, addr: &str) -> (StatusCode, Value, String) {
        let mut req = Request::builder().method(method).uri(path);
        match who {
            Who::Nobody => {}
            Who::Session(token) => req = req.header("Cookie", format!("cv_session={token}")).header("Origin", ORIGIN),
            Who::Key(key) => req = req.header("Authorization", format!("Bearer {key}")),
        }
        let req = match body {
            Some(b) => req.header("Content-Type", "application/json").body(Body::from(b.to_string())),
            None => req.body(Body::empty()),
        };
        let mut req = req.unwrap();
        req.extensions_mut().insert(ConnectInfo(addr.parse::<SocketAddr>().unwrap()));
        let res = self.router.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null), text)
    }
}

pub async fn session(s: &Services, email: &str, role: Option<(&str, Role)>, owner: bool) -> String {
    let op = Actor::operator();
    let u = users::create(&s.db, &op, email, &SecretString::from("a long enough password"), owner).await.unwrap();
    if let Some((env, r)) = role {
        users::set_role(&s.db, &op, u.id, env, Some(r)).await.unwrap();
    }
    let (_, token) = server::sessions::sign_in(s.sessions(), email, &SecretString::from("a long enough password"), None).await.unwrap();
    token.expose_secret().to_string()
}

pub async fn key(s: &Services, grants: &[&str]) -> String {
    let grants = grants.iter().flat_map(|g| api_keys::parse_grant(g).unwrap()).collect();
    let (_, value) =
        api_keys::create(&s.db, &Actor::operator(), Creator::Operator, NewApiKey { name: "test".into(), grants, allowed_addresses: vec![], expires_at: None })
            .await
            .unwrap();
    value.expose_secret().to_string()
}
