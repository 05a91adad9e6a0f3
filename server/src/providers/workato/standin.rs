//! A stand-in for Workato's developer API, for local demos (`connvault dev-workato`) and tests:
//! `GET /api/users/me`, `GET /api/folders`, `GET /api/members`, with bearer tokens of API
//! clients it knows. Each client has a client role (a set of privileges) and one environment
//! (dev, test or prod), as Workato's API clients do: `users/me` needs the Workspace details
//! privilege and a DEV client, `folders` the Folders privilege, `members` the Collaborators
//! privilege. Unknown or revoked tokens get Workato's 401 answer. Not Workato.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::extract::State as Shared;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};

use crate::standin::{ct_eq, random_chars};

const JSON: &str = "application/json; charset=utf-8";

/// What an API client's role may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Privilege {
    WorkspaceDetails,
    Folders,
    Collaborators,
}

/// One API client.
#[derive(Debug, Clone)]
pub struct ApiClient {
    pub name: String,
    pub token: String,
    /// `dev`, `test` or `prod`.
    pub environment: String,
    pub privileges: BTreeSet<Privilege>,
    pub revoked: bool,
}

/// One collaborator of the workspace.
#[derive(Debug, Clone)]
pub struct Member {
    pub name: String,
    pub email: String,
    /// `(environment_type, role_name)`.
    pub roles: Vec<(String, String)>,
}

struct State {
    workspace: String,
    clients: Vec<ApiClient>,
    members: Vec<Member>,
    calls: usize,
}

/// The stand-in. Cheap to clone (shared state), so a test keeps a handle while it serves.
#[derive(Clone)]
pub struct StandIn {
    state: Arc<Mutex<State>>,
}

impl StandIn {
    /// A workspace named `workspace` with two collaborators and no API clients.
    pub fn new(workspace: &str) -> StandIn {
        let members = vec![
            Member {
                name: "Ada Admin".into(),
                email: "ada@acme.example".into(),
                roles: vec![("dev".into(), "Admin".into()), ("test".into(), "Admin".into()), ("prod".into(), "Admin".into())],
            },
            Member {
                name: "Obi Operator".into(),
                email: "obi@acme.example".into(),
                roles: vec![("dev".into(), "Analyst".into()), ("prod".into(), "Operator".into())],
            },
        ];
        StandIn { state: Arc::new(Mutex::new(State { workspace: workspace.to_string(), clients: Vec::new(), members, calls: 0 })) }
    }

    /// A poisoned lock only means another handler panicked; the state is still usable.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Creates an API client and returns its token (shown once, as Workato does).
    pub fn add_client(&self, name: &str, environment: &str, privileges: &[Privilege]) -> String {
        let token = random_chars(64, b"0123456789abcdef");
        self.lock().clients.push(ApiClient {
            name: name.to_string(),
            token: token.clone(),
            environment: environment.to_string(),
            privileges: privileges.iter().copied().collect(),
            revoked: false,
        });
        token
    }

    /// Revokes the client whose token this is.
    pub fn revoke(&self, token: &str) {
        if let Some(c) = self.lock().clients.iter_mut().find(|c| c.token == token) {
            c.revoked = true;
        }
    }

    /// Every request it answered, authenticated or not.
    pub fn calls(&self) -> usize {
        self.lock().calls
    }

    pub fn router(&self) -> Router {
        Router::new().route("/api/users/me", get(users_me)).route("/api/folders", get(folders)).route("/api/members", get(members)).with_state(self.clone())
    }

    /// Serves on a free port of 127.0.0.1 in a task; returns the API root (`http://…/api/`).
    pub async fn spawn(&self) -> std::io::Result<String> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let base = format!("http://{}/api/", listener.local_addr()?);
        let router = self.router();
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, router).await {
                tracing::warn!("Workato stand-in stopped: {e}");
            }
        });
        Ok(base)
    }

    /// The client a request's bearer token belongs to, or Workato's 401.
    fn client(&self, headers: &HeaderMap) -> Result<ApiClient, Response> {
        let mut st = self.lock();
        st.calls += 1;
        let presented = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ")).unwrap_or_default();
        match st.clients.iter().find(|c| !presented.is_empty() && ct_eq(&c.token, presented)) {
            Some(c) if !c.revoked => Ok(c.clone()),
            _ => Err(json_response(StatusCode::UNAUTHORIZED, json!({"message": "Unauthorized"}))),
        }
    }
}

fn json_response(status: StatusCode, body: Value) -> Response {
    crate::standin::json_response(status, JSON, body.to_string())
}

fn forbidden(what: &str) -> Response {
    json_response(StatusCode::FORBIDDEN, json!({"message": format!("Forbidden: the API client's role does not allow {what}")}))
}

async fn users_me(Shared(standin): Shared<StandIn>, headers: HeaderMap) -> Response {
    let client = match standin.client(&headers) {
        Ok(c) => c,
        Err(r) => return r,
    };
    if !client.privileges.contains(&Privilege::WorkspaceDetails) || client.environment != "dev" {
        return forbidden("workspace details");
    }
    let workspace = standin.lock().workspace.clone();
    json_response(
        StatusCode::OK,
        json!({"id": 4021, "name": workspace, "company_name": workspace, "plan_id": "enterprise", "created_at": "2024-03-01T09:00:00.000Z", "root_folder_id": 11}),
    )
}

async fn folders(Shared(standin): Shared<StandIn>, headers: HeaderMap) -> Response {
    let client = match standin.client(&headers) {
        Ok(c) => c,
        Err(r) => return r,
    };
    if !client.privileges.contains(&Privilege::Folders) {
        return forbidden("folders");
    }
    json_response(StatusCode::OK, json!([{"id": 11, "name": "Home", "parent_id": null, "created_at": "2024-03-01T09:00:00.000Z"}]))
}

async fn members(Shared(standin): Shared<StandIn>, headers: HeaderMap) -> Response {
    let client = match standin.client(&headers) {
        Ok(c) => c,
        Err(r) => return r,
    };
    if !client.privileges.contains(&Privilege::Collaborators) {
        return forbidden("collaborators");
    }
    let members: Vec<Value> = standin
        .lock()
        .members
        .iter()
        .enumerate()
        .map(|(i, m)| {
            json!({
                "id": 100 + i, "name": m.name, "email": m.email,
                "roles": m.roles.iter().map(|(env, role)| json!({"environment_type": env, "role_name": role})).collect::<Vec<_>>(),
                "last_activity_log": {"event_type": "sign_in", "created_at": "2026-11-30T08:00:00.000Z"}
            })
        })
        .collect();
    json_response(StatusCode::OK, json!({"data": members}))
}

/// `connvault dev-workato`: serves on `addr` with one DEV API client of every privilege, and
/// prints the API root and the client's token.
pub async fn run_demo(addr: SocketAddr) -> std::io::Result<()> {
    let standin = StandIn::new("Acme Automation");
    let token = standin.add_client("connvault demo", "dev", &[Privilege::WorkspaceDetails, Privilege::Folders, Privilege::Collaborators]);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    println!("connvault Workato stand-in (for local demos, not Workato): http://{local}/api/");
    println!("  API client token (DEV, all privileges): {token}");
    axum::serve(listener, standin.router()).await
}
