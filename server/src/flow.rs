//! Where a connection stands, as its page guides people through it: one status first, then the
//! steps of its provider's flow, each with its state, who uses it, and the history of its tests
//! and token mints. A provider that signs: settings → certificate and request → the admin's
//! answer → test → bind; one that connects by signing in: settings → sign-in → test → bind; one
//! whose secrets people type: settings → credentials → test → bind. Nothing here changes
//! anything: it reads what the connection, its certificates, requests, checks, bindings and
//! audit trail hold, and says it in one set of words, so that no message on the page outlives
//! the state it describes.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::connections::{self, Connection, Health};
use crate::db::{now, Db};
use crate::error::Result;
use crate::providers::{self, FieldSpec};
use crate::signing::{self, AdminRequest, CREDENTIAL_REQUEST};

/// Where one step stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepState {
    Done,
    /// The next thing to do is this step's (the page's one primary button).
    Next,
    /// Someone else's turn (the admin's).
    Waiting,
    /// It went wrong: the step says what to do again.
    Failed,
    /// Not yet: an earlier step comes first.
    Todo,
}

/// One step of the flow: `settings`, `certificate`, `answer`, `sign_in`, `credentials`, `test`
/// or `bind`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    pub id: String,
    pub title: String,
    pub state: StepState,
    /// Where it stands, in a sentence.
    pub summary: String,
}

/// The one status the page shows first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// `not_set_up`, `no_certificate`, `not_requested`, `request_not_sent`, `request_failed`,
    /// `waiting_for_admin`, `needs_sign_in`, `needs_credentials`, `not_tested`, `works` or
    /// `failing`.
    pub state: String,
    /// The state in words ("Waiting for the Salesforce admin").
    pub label: String,
    pub summary: String,
    pub advice: Option<String>,
    /// When the connection was last tested (by a person or the schedule).
    pub checked_at: Option<String>,
}

/// A connection's flow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flow {
    pub status: Status,
    pub steps: Vec<Step>,
    /// The integrations bound to it, by name.
    pub used_by: Vec<String>,
    /// For a connection that signs: its certificates and its latest request.
    pub signing: Option<signing::Status>,
    /// For a connection whose secrets an admin may enter: the latest request for them.
    pub credential_request: Option<AdminRequest>,
    /// Who is asked ("Salesforce admin"), when the flow asks someone.
    pub admin: Option<String>,
    /// Where a request goes: the `admin_email` setting, else where the latest request went
    /// (asked once: the page asks for it only when there is neither).
    pub admin_email: Option<String>,
}

fn step(id: &str, title: impl Into<String>, state: StepState, summary: impl Into<String>) -> Step {
    Step { id: id.into(), title: title.into(), state, summary: summary.into() }
}

fn day(t: &str) -> &str {
    &t[..10.min(t.len())]
}

fn upper_first(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default()
}

/// The integrations bound to connection `id`.
pub async fn used_by(db: &Db, id: i64) -> Result<Vec<String>> {
    let rows = sqlx::query("SELECT name FROM integrations WHERE connection_id = $1 ORDER BY name_key").bind(id).fetch_all(db.pool()).await?;
    Ok(rows.iter().map(|r| r.try_get("name")).collect::<std::result::Result<_, _>>()?)
}

/// The state of a request step while a request is out: waiting for the admin, or the
/// requester's turn (not sent, not delivered, expired, the link used up by failed answers).
fn request_step(r: &AdminRequest, admin: &str) -> (StepState, String) {
    let t = now();
    if r.state == "open" && r.expires_at <= t {
        return (StepState::Failed, format!("the request of {} to {} expired on {}: send it again", day(&r.requested_at), r.admin_email, day(&r.expires_at)));
    }
    if r.state == "answered" {
        // Answered, and still not ready: the link was used up by answers that did not work.
        let latest = r.last_answer.as_ref().map(|a| format!(" (the last: {})", a.detail)).unwrap_or_default();
        return (StepState::Failed, format!("the link was used up by answers that did not work{latest}: send the request again"));
    }
    let (summary, _) = signing::waiting_words(r, admin);
    // An answer came through the link: the request reached the admin, however it went.
    let delivery = r.delivery.as_deref().filter(|_| r.last_answer.is_none());
    let state = match delivery {
        Some("outbox") => StepState::Next,
        Some("failed") => StepState::Failed,
        _ => StepState::Waiting,
    };
    let summary = match delivery {
        Some("outbox") => format!("Not sent: no mail server is configured. Pass the request to {} on yourself", r.admin_email),
        _ => upper_first(&summary),
    };
    (state, summary)
}

/// A request that is out (open, or used up by answers that failed).
fn outstanding(r: Option<&AdminRequest>) -> Option<&AdminRequest> {
    r.filter(|r| r.state == "open" || (r.state == "answered" && r.last_answer.as_ref().is_some_and(|a| !a.ok)))
}

/// What the status says while a step is the first one still to do: `(state, label, summary,
/// advice)`.
type Pending = (&'static str, String, String, Option<String>);

/// The steps, with what the status says while each is the first one still to do.
struct Steps(Vec<(Step, Pending)>);

impl Steps {
    fn push(&mut self, id: &str, title: impl Into<String>, state: StepState, summary: impl Into<String>, pending: Pending) {
        self.0.push((step(id, title, state, summary), pending));
    }
}

/// The status of a request step while a request is out, for the status first.
fn request_pending(state: StepState, r: &AdminRequest, admin: &str, summary: &str) -> Pending {
    match state {
        StepState::Next => (
            "request_not_sent",
            "Not sent: no mail server is configured".into(),
            format!("the request to {} of {} was not sent", r.admin_email, day(&r.requested_at)),
            Some("pass it on yourself: show the email below, copy its text or download it (.eml), and send it to the admin; or configure a mail server (CONNVAULT_SMTP_URL) and send the request again".into()),
        ),
        StepState::Failed => ("request_failed", "Needs a new request".into(), summary.to_string(), Some("send the request again".into())),
        _ => ("waiting_for_admin", format!("Waiting for the {admin}"), summary.to_string(), None),
    }
}

/// Where `c` stands (see the module's words).
pub async fn of(db: &Db, c: &Connection) -> Result<Flow> {
    let def = connections::provider(&c.provider)?;
    let set: BTreeSet<String> = c.secrets_set.keys().cloned().collect();
    let missing = def.setup_missing(&c.settings, &set);
    let settings_done = missing.is_empty();
    let health = connections::health_of(db, &[c.id]).await?.remove(&c.id);
    let used_by = used_by(db, c.id).await?;
    let target = def.destination_settings.first().and_then(|k| c.settings.get(*k)).and_then(|v| v.as_str()).map(str::to_string);
    let mut steps = Steps(Vec::new());
    let setup = providers::setup_advice(&missing);
    steps.push(
        "settings",
        "Settings",
        if settings_done { StepState::Done } else { StepState::Next },
        if settings_done { target.map(|t| format!("filled in; it goes to {t}")).unwrap_or_else(|| "filled in".into()) } else { format!("{} to go on", upper_first(&setup)) },
        ("not_set_up", "Not set up".into(), format!("{} is not set up in {} yet", c.name, c.environment), Some(format!("{setup} in the settings"))),
    );
    let stored_email = c.settings.get("admin_email").and_then(|v| v.as_str()).map(str::to_string);
    let mut flow = Flow {
        status: Status { state: String::new(), label: String::new(), summary: String::new(), advice: None, checked_at: None },
        steps: Vec::new(),
        used_by,
        signing: None,
        credential_request: None,
        admin: None,
        admin_email: None,
    };
    // Whether everything the test needs is there, and what the status says until it is tested.
    let ready;
    let mut untested: Pending = ("not_tested", "Not tested yet".into(), format!("{} has not been tested yet", c.name), Some("choose Test connection".into()));
    if let (Some(minting), Some(help)) = (def.signing(&c.settings), def.admin_help) {
        let st = signing::status(db, c).await?;
        let admin = help.admin;
        let labels: Vec<&str> = help.answer_fields.iter().map(|f| def.field(f).map(|s| s.label).unwrap_or(f)).collect();
        let what = providers::and_list(&labels);
        let answered = (minting.not_ready)(&c.settings).is_none();
        let has_certificate = st.certificate.is_some() || st.pending_certificate.is_some();
        let request = st.request.as_ref();
        let todo = || ("not_set_up", String::new(), String::new(), None);
        if !settings_done {
            steps.push("certificate", "Certificate and request", StepState::Todo, "after the settings", todo());
        } else if !has_certificate {
            let summary = format!("Request admin help makes a key pair and a certificate, and emails the {admin} the steps with a one-time link");
            steps.push(
                "certificate",
                "Certificate and request",
                StepState::Next,
                summary.clone(),
                ("no_certificate", "No certificate yet".into(), summary, Some("choose Request admin help, or upload your own certificate".into())),
            );
        } else if request.is_none() && !answered {
            let summary = format!("the certificate is ready; send the request to the {admin}");
            steps.push(
                "certificate",
                "Certificate and request",
                StepState::Next,
                summary.clone(),
                ("not_requested", "Request not sent yet".into(), summary, Some(format!("send the request to the {admin}, or fill in the {} with the settings", what.to_lowercase()))),
            );
        } else {
            let cert = st.pending_certificate.as_ref().or(st.certificate.as_ref()).expect("has a certificate");
            let sent = request.map(|r| format!("; the request to {} by {} on {}", r.admin_email, r.requested_by, day(&r.requested_at))).unwrap_or_default();
            steps.push("certificate", "Certificate and request", StepState::Done, format!("a certificate that expires on {}{sent}", day(&cert.not_after)), todo());
        }
        let title = format!("The {admin}'s answer");
        // An answer came that did not work, and the link still takes more: the admin's turn.
        let retrying = request.filter(|r| r.state == "open" && r.last_answer.as_ref().is_some_and(|a| !a.ok));
        if let Some(r) = retrying {
            let (state, summary) = request_step(r, admin);
            let pending = request_pending(state, r, admin, &summary);
            steps.push("answer", title, state, summary, pending);
        } else if answered {
            let by = request
                .and_then(|r| r.last_answer.as_ref().filter(|a| a.ok).map(|a| format!(" from the {admin} on {}", day(&a.at))))
                .unwrap_or_else(|| " (filled in with the settings)".to_string());
            steps.push("answer", title, StepState::Done, format!("{what} received{by}"), todo());
        } else if let Some(r) = outstanding(request) {
            let (state, summary) = request_step(r, admin);
            let pending = request_pending(state, r, admin, &summary);
            steps.push("answer", title, state, summary, pending);
        } else if let Some(r) = request.filter(|_| has_certificate && settings_done) {
            // Cancelled (or replaced by a request of the other kind): nothing is out any more.
            let summary = format!("the request of {} was {}: send it again, or fill in the {} with the settings", day(&r.requested_at), r.state, what.to_lowercase());
            let pending = ("request_failed", "Needs a new request".into(), summary.clone(), Some("send the request again".into()));
            steps.push("answer", title, StepState::Failed, summary, pending);
        } else {
            let summary = format!("the {admin} sends the {} back through the request's link (or fill it in with the settings)", what.to_lowercase());
            steps.push("answer", title, StepState::Todo, summary, todo());
        }
        ready = settings_done && answered && has_certificate;
        untested = (help.answered_state, format!("{what} received; not tested yet"), format!("{} has not been tested yet", c.name), Some("choose Test connection".into()));
        flow.admin = Some(admin.to_string());
        flow.admin_email = stored_email.or_else(|| request.map(|r| r.admin_email.clone()));
        flow.signing = Some(st);
    } else if let Some(auth) = def.authorization.filter(|_| (def.auth_mode)(&c.settings).signs_in()) {
        let signed = set.contains(auth.refresh_field);
        let pending = ("needs_sign_in", "Needs someone to sign in".into(), format!("nobody has signed in for {} yet", c.name), Some(format!("choose {} and sign in", auth.button)));
        if signed {
            let on = day(c.secrets_set.get(auth.refresh_field).map(String::as_str).unwrap_or_default()).to_string();
            steps.push("sign_in", "Sign-in", StepState::Done, format!("signed in on {on}"), pending);
        } else if settings_done {
            steps.push("sign_in", "Sign-in", StepState::Next, format!("nobody has signed in yet: choose {} and sign in", auth.button), pending);
        } else {
            steps.push("sign_in", "Sign-in", StepState::Todo, "after the settings", pending);
        }
        ready = settings_done && signed;
    } else {
        let typed: Vec<&FieldSpec> = def.typed_secrets(&c.settings);
        if typed.is_empty() {
            ready = settings_done;
        } else {
            let request = match def.credential_help {
                Some(_) => signing::latest_of_kind(db, c.id, &CREDENTIAL_REQUEST).await?,
                None => None,
            };
            let unset: Vec<&str> = typed.iter().filter(|f| !set.contains(f.name)).map(|f| f.label).collect();
            let admin = def.credential_help.map(|h| h.admin);
            let missing_words = providers::and_list(&unset);
            let ask = admin.map(|a| format!(", or ask the {a} for {} (Request credentials)", if unset.len() == 1 { "it" } else { "them" })).unwrap_or_default();
            let needed = ("needs_credentials", "Credentials missing".into(), format!("the {missing_words} {} not set", if unset.len() == 1 { "is" } else { "are" }), Some(format!("set the {missing_words} with the settings{ask}")));
            if unset.is_empty() {
                let who: Vec<String> = typed
                    .iter()
                    .map(|f| format!("{} set on {} by {}", f.label, day(c.secrets_set.get(f.name).map(String::as_str).unwrap_or_default()), c.secrets_set_by.get(f.name).cloned().unwrap_or_default()))
                    .collect();
                steps.push("credentials", "Credentials", StepState::Done, who.join("; "), needed);
            } else if !settings_done {
                steps.push("credentials", "Credentials", StepState::Todo, "after the settings", needed);
            } else if let (Some(r), Some(admin)) = (outstanding(request.as_ref()), admin) {
                let (state, summary) = request_step(r, admin);
                let pending = request_pending(state, r, admin, &summary);
                steps.push("credentials", "Credentials", state, summary, pending);
            } else {
                steps.push("credentials", "Credentials", StepState::Next, format!("set the {missing_words} with the settings{ask}"), needed);
            }
            ready = settings_done && unset.is_empty();
            flow.admin = admin.map(str::to_string);
            flow.admin_email = stored_email.or_else(|| request.as_ref().map(|r| r.admin_email.clone()));
            flow.credential_request = request;
        }
    }
    let tested = |h: &Health| h.checked_at.get(..16).unwrap_or_default().replace('T', " ");
    match &health {
        Some(h) if h.ok => steps.push("test", "Test", StepState::Done, format!("works: {} (tested {})", h.detail, tested(h)), untested),
        Some(h) => steps.push("test", "Test", StepState::Failed, format!("does not work: {}", h.detail), untested),
        None if ready => steps.push("test", "Test", StepState::Next, "not tested yet", untested),
        None => steps.push("test", "Test", StepState::Todo, "once the steps above are done", untested),
    }
    let works = health.as_ref().is_some_and(|h| h.ok);
    let unused = ("works", "Works".into(), "it works; no integration uses it yet".into(), Some("bind it to an integration on the Integrations page".into()));
    match flow.used_by.len() {
        0 if works => steps.push("bind", "Bind to an integration", StepState::Next, "not used yet: bind it to an integration on the Integrations page", unused),
        0 => steps.push("bind", "Bind to an integration", StepState::Todo, "once it works, bind it to an integration", unused),
        1 => steps.push("bind", "Bind to an integration", StepState::Done, format!("used by {}", flow.used_by[0]), unused),
        n => steps.push("bind", "Bind to an integration", StepState::Done, format!("used by {n} integrations"), unused),
    }
    // The status first: not set up; else the latest test's outcome; else the first step to do.
    let checked_at = health.as_ref().map(|h| h.checked_at.clone());
    let (state, label, summary, advice) = match &health {
        _ if !settings_done => steps.0[0].1.clone(),
        Some(h) if h.ok => ("works", "Works".to_string(), h.detail.clone(), None),
        Some(h) => ("failing", "Does not work".to_string(), h.detail.clone(), h.advice.clone()),
        None => match steps.0.iter().find(|(s, _)| s.state != StepState::Done) {
            Some((_, pending)) => pending.clone(),
            None => ("works", "Works".to_string(), "every step is done".to_string(), None),
        },
    };
    flow.status = Status { state: state.into(), label, summary, advice, checked_at };
    flow.steps = steps.0.into_iter().map(|(s, _)| s).collect();
    Ok(flow)
}

/// One test, token mint or admin's answer of a connection, for its page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryItem {
    pub at: String,
    /// `test` (by a person, or a scheduled check that changed the state), `mint` or `answer`.
    pub kind: String,
    pub ok: bool,
    pub actor: String,
    pub detail: String,
}

/// The latest `limit` tests, token mints and admin's answers of connection `name` in
/// environment `environment_id`, newest first, from the audit trail (by the name they had).
pub async fn history(db: &Db, environment_id: i64, name: &str, limit: i64) -> Result<Vec<HistoryItem>> {
    let rows = sqlx::query(
        "SELECT action, outcome, actor_label, detail, created_at FROM audit_events \
         WHERE environment_id = $1 AND object_kind = 'connection' AND LOWER(object_name) = $2 \
         AND action IN ('connection.test', 'token.mint', 'admin_request.settle', 'credential_request.settle', 'connection.failing', 'connection.recovered') \
         ORDER BY id DESC LIMIT $3",
    )
    .bind(environment_id)
    .bind(name.to_lowercase())
    .bind(limit)
    .fetch_all(db.pool())
    .await?;
    let mut out = Vec::new();
    for r in &rows {
        let action: String = r.try_get("action")?;
        let outcome: String = r.try_get("outcome")?;
        let detail: serde_json::Value = serde_json::from_str(&r.try_get::<String, _>("detail")?).unwrap_or_default();
        let text = |k: &str| detail.get(k).and_then(|v| v.as_str()).unwrap_or_default().to_string();
        // A test's own change of state is the test itself: only the schedule's are told apart.
        if matches!(action.as_str(), "connection.failing" | "connection.recovered") && text("source") != "schedule" {
            continue;
        }
        let (kind, ok, words) = match action.as_str() {
            "connection.test" => ("test", outcome == "ok", text("detail")),
            "connection.failing" => ("test", false, format!("a scheduled check found it stopped working: {}", text("reason"))),
            "connection.recovered" => ("test", true, format!("a scheduled check found it works again: {}", text("detail"))),
            "token.mint" => {
                let expires = text("expires_at");
                let place = text("instance_url");
                ("mint", true, format!("a token{} until {}", if place.is_empty() { String::new() } else { format!(" for {place}") }, expires.get(..16).unwrap_or_default().replace('T', " ")))
            }
            _ => {
                let left = detail.get("tries_left").and_then(|v| v.as_i64()).unwrap_or(0);
                if outcome == "ok" {
                    ("answer", true, "the admin's answer worked".to_string())
                } else {
                    ("answer", false, format!("the admin's answer did not work ({left} more {} with the link)", if left == 1 { "try" } else { "tries" }))
                }
            }
        };
        out.push(HistoryItem { at: r.try_get("created_at")?, kind: kind.into(), ok, actor: r.try_get("actor_label")?, detail: words });
    }
    Ok(out)
}
