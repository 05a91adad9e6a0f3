use std::collections::HashMap;

use leptos::prelude::*;
use leptos_router::hooks::{use_params_map, use_query_map};

use crate::api::{
    connection_form, AppError, ConnectionDetail, ConnectionDetails, ConnectionFormData, DeleteConnection, DetailsOutcome, ProviderForm, SaveConnection,
    TestConnection,
};
use crate::pages::auth::{action_error, error_view};
use crate::pages::{hydrated, short_time};

use crate::api::{connection_flow, FlowView, FormField, HistoryView, StepView};
use crate::pages::certificates::{CertificatePanel, PassOn, SigningState};
use crate::pages::credentials::{CredentialPanel, CredentialState};

/// Create (`/env/:env/connections/new`) or edit (`/env/:env/connections/:name`) a connection.
/// An existing one shows where it stands first, then the steps of its provider's flow, each
/// with its state, and the history of its tests and token mints.
#[component]
pub fn ConnectionPage() -> impl IntoView {
    let params = use_params_map();
    let env = move || params.read().get("env").unwrap_or_default();
    let name = move || params.read().get("name").filter(|n| n != "new").unwrap_or_default();
    // Owned here, so that after a save the connection is read again and the page shows what
    // is stored now ("set on DATE by WHO", last changed).
    let save = ServerAction::<SaveConnection>::new();
    // Owned here too: a save reads the connection again and rebuilds the editor, which must
    // not drop a test that was started (or answered) meanwhile. A test answered before the
    // save describes settings that may be gone (or another connection), so a save or another
    // connection clears it.
    let test = ServerAction::<TestConnection>::new();
    // The saves that worked: only they read the connection again (and rebuild the page from
    // what is stored). A refused save leaves the form as it is, everything typed still there.
    let saved = RwSignal::new(0usize);
    Effect::new(move |_| {
        if let Some(Ok(())) = save.value().get() {
            saved.update(|n| *n += 1);
        }
    });
    Effect::new(move |previous: Option<(String, String, usize)>| {
        let now = (env(), name(), saved.get());
        if previous.is_some_and(|p| p != now) {
            test.value().set(None);
        }
        now
    });
    let data = Resource::new(move || (env(), name(), saved.get()), |(env, name, _)| connection_form(env, name));
    let signing_state = SigningState::new();
    let sign_in_state = crate::pages::sign_in::SignInState::new(env, name);
    let credential_state = CredentialState::new();
    view! {
        <section class="panel">
            <Transition fallback=|| view! { <p>"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match data.await {
                        Ok(d) => view! { <ConnectionEditor data=d save=save test=test signing_state=signing_state sign_in_state=sign_in_state credential_state=credential_state/> }.into_any(),
                        Err(e) => error_view(&e),
                    }
                })}
            </Transition>
        </section>
    }
}

/// What the page knows of where the connection stands: read with the page, and again after
/// each action on it (a test, a request, an upload, a sign-out), so every part shows the same.
pub type Live = RwSignal<Option<FlowView>>;

/// Whether `id` is the step whose action is next (its button is the page's primary one).
pub fn is_current(live: Live, id: &'static str) -> impl Fn() -> bool + Copy + Send + Sync + 'static {
    move || live.with(|f| f.as_ref().and_then(|f| f.current()).is_some_and(|s| s.id == id))
}

#[component]
fn ConnectionEditor(
    data: ConnectionFormData,
    save: ServerAction<SaveConnection>,
    test: ServerAction<TestConnection>,
    signing_state: SigningState,
    sign_in_state: crate::pages::sign_in::SignInState,
    credential_state: CredentialState,
) -> impl IntoView {
    let query = use_query_map();
    let saved = move || match save.value().get() {
        Some(result) => result.is_ok(),
        None => query.read().get("saved").is_some(),
    };
    let ConnectionFormData { environment, can_write, providers, connection, flow } = data;
    let steps: Vec<StepView> = flow.as_ref().map(|f| f.steps.clone()).unwrap_or_default();
    let live: Live = RwSignal::new(flow);
    let actions = move || {
        test.version().get()
            + signing_state.request.version().get()
            + signing_state.again.version().get()
            + signing_state.upload.version().get()
            + credential_state.send.version().get()
            + sign_in_state.disconnect.version().get()
    };
    // "Saved." until another action says something newer.
    let at_open = actions();
    let saved = move || saved() && actions() == at_open;
    if let Some(c) = &connection {
        // After each action, where the connection stands now (the first run only notes the count).
        let (env, name) = (environment.clone(), c.name.clone());
        Effect::new(move |previous: Option<usize>| {
            let now = actions();
            if previous.is_some_and(|p| p != now) {
                let (env, name) = (env.clone(), name.clone());
                leptos::task::spawn_local(async move {
                    if let Ok(f) = connection_flow(env, name).await {
                        live.try_set(Some(f));
                    }
                });
            }
            now
        });
    }
    let title = match &connection {
        Some(c) => format!("{} in {}", c.name, environment),
        None => format!("New connection in {environment}"),
    };
    let list_href = format!("/env/{environment}/connections");
    let original = connection.as_ref().map(|c| c.name.clone()).unwrap_or_default();
    let form = view! { <SettingsForm environment=environment.clone() can_write=can_write providers=providers connection=connection.clone() save=save live=live/> };
    let Some(c) = connection else {
        return view! {
            <p><a href=list_href>"← Connections in " {environment.clone()}</a></p>
            <h1>{title}</h1>
            {(!can_write).then(|| view! { <p class="notice">"Your role in " {environment.clone()} " can look but not change connections."</p> })}
            {form}
        }
        .into_any();
    };
    let env = environment.clone();
    let mut form = Some(form);
    let bodies: Vec<AnyView> = steps
        .iter()
        .map(|s| match s.id.as_str() {
            "settings" => form.take().map(IntoAny::into_any).unwrap_or_else(|| ().into_any()),
            "certificate" => view! {
                <CertificatePanel environment=env.clone() name=c.name.clone() admin=c.signing_admin.clone().unwrap_or_default() can_write=can_write state=signing_state live=live/>
            }
            .into_any(),
            "answer" => view! { <AnswerStep environment=env.clone() name=c.name.clone() can_write=can_write live=live/> }.into_any(),
            "sign_in" => match c.sign_in.clone() {
                Some(button) => view! {
                    <crate::pages::sign_in::SignInPanel environment=env.clone() name=c.name.clone() button=button can_write=can_write state=sign_in_state/>
                }
                .into_any(),
                None => ().into_any(),
            },
            "credentials" => view! {
                <CredentialPanel environment=env.clone() name=c.name.clone() admin=c.credential_admin.clone().unwrap_or_default() can_write=can_write state=credential_state live=live/>
            }
            .into_any(),
            "test" => view! { <TestPanel environment=env.clone() name=c.name.clone() can_write=can_write test=test live=live/> }.into_any(),
            "bind" => view! { <BindStep environment=env.clone() live=live/> }.into_any(),
            _ => ().into_any(),
        })
        .collect();
    view! {
        <p><a href=list_href>"← Connections in " {environment.clone()}</a></p>
        <h1>{title}</h1>
        {move || saved().then(|| view! { <p class="ok" role="status">"Saved."</p> })}
        <p class="muted">"Created " {short_time(&c.created_at)} " by " {c.created_by.clone()} "; last changed " {short_time(&c.updated_at)} " by " {c.updated_by.clone()} "."</p>
        {(!can_write).then(|| view! { <p class="notice">"Your role in " {environment.clone()} " can look but not change connections."</p> })}
        <FlowStatus live=live environment=environment.clone()/>
        <ol class="steps" aria-label="Steps">
            {steps.into_iter().zip(bodies).enumerate().map(|(i, (s, body))| view! { <StepItem number=i + 1 step=s live=live body=body/> }).collect_view()}
        </ol>
        {c.details_from.clone().filter(|_| can_write).map(|from| view! { <DetailsPanel environment=environment.clone() name=original.clone() from=from/> })}
        <HistoryPanel live=live/>
        {can_write.then(|| view! { <DeleteConnectionForm environment=environment.clone() name=original.clone()/> })}
    }
    .into_any()
}

fn step_state_label(state: &str) -> &'static str {
    match state {
        "done" => "Done",
        "next" => "Next",
        "waiting" => "Waiting",
        "failed" => "Needs attention",
        _ => "Not yet",
    }
}

/// One step: its number, title, state and where it stands (kept current), and its part of the
/// page (folded once the step is done; open otherwise).
#[component]
fn StepItem(number: usize, step: StepView, live: Live, body: AnyView) -> impl IntoView {
    let id = step.id.clone();
    let current = {
        let id = id.clone();
        Signal::derive(move || live.with(|f| f.as_ref().and_then(|f| f.step(&id)).cloned()))
    };
    let fallback = (step.state.clone(), step.summary.clone());
    let state = {
        let fallback = fallback.0.clone();
        Signal::derive(move || current.get().map(|s| s.state).unwrap_or_else(|| fallback.clone()))
    };
    let summary = {
        let fallback = fallback.1.clone();
        Signal::derive(move || current.get().map(|s| s.summary).unwrap_or_else(|| fallback.clone()))
    };
    let is_next = {
        let id = id.clone();
        move || live.with(|f| f.as_ref().and_then(|f| f.current()).is_some_and(|s| s.id == id))
    };
    // A step done folds away (the certificate and request, the admin's answer, the
    // credentials), but for those that stay at hand: the settings (the connection itself),
    // the sign-in (to sign in again, or disconnect), the test and the binding.
    let open = step.state != "done" || matches!(step.id.as_str(), "settings" | "sign_in" | "test" | "bind");
    view! {
        <li class=move || format!("step step-{}", state.get()) data-testid=format!("step-{id}") data-state=state aria-current=move || is_next().then_some("step")>
            <details open=open>
                <summary>
                    <span class="step-number">{number}"."</span>
                    <span class="step-title">{step.title.clone()}</span>
                    <span class=move || format!("step-state state-{}", state.get())>{move || step_state_label(&state.get())}</span>
                    <span class="step-summary" data-testid="step-summary">{summary}</span>
                </summary>
                <div class="step-body">{body}</div>
            </details>
        </li>
    }
}

/// The status first: a test's outcome when there is one, else the step still to do.
#[component]
fn FlowStatus(live: Live, environment: String) -> impl IntoView {
    view! {
        {move || live.get().map(|f| {
            let st = f.status;
            let class = match st.state.as_str() {
                "works" => "result ok-box",
                "failing" | "request_failed" => "result bad-box",
                _ => "result wait-box",
            };
            let integrations = format!("/env/{environment}/integrations");
            let used = f.used_by.len();
            view! {
                <div class=class aria-live="polite" data-testid="connection-status" data-state=st.state.clone()>
                    <strong>{st.label.clone()}</strong>
                    <p>{st.summary.clone()}</p>
                    {st.advice.clone().map(|a| view! { <p class="advice"><strong>"What to do: "</strong>{a}</p> })}
                    {st.checked_at.clone().map(|t| view! { <p class="muted">"Last tested " {short_time(&t)}</p> })}
                </div>
                <p class="used-by" data-testid="used-by">
                    {match used {
                        0 => view! { "Used by no integration yet. " <a href=integrations.clone()>"Integrations in this environment"</a> }.into_any(),
                        n => view! {
                            {if n == 1 { "Used by 1 integration: ".to_string() } else { format!("Used by {n} integrations: ") }}
                            {f.used_by.iter().enumerate().map(|(i, name)| view! {
                                {(i > 0).then_some(", ")}
                                <a href=integrations.clone()>{name.clone()}</a>
                            }).collect_view()}
                        }.into_any(),
                    }}
                </p>
            }
        })}
    }
}

/// The admin's answer: what became of the request (not sent: pass it on; waiting; the latest
/// answer and its test), and that the answer may also be filled in with the settings.
#[component]
fn AnswerStep(environment: String, name: String, can_write: bool, live: Live) -> impl IntoView {
    let request = move || live.with(|f| f.as_ref().and_then(|f| f.signing.as_ref()).and_then(|s| s.request.clone()));
    view! {
        <RequestOutcome request=Signal::derive(request) environment=environment name=name can_write=can_write live=live step="answer"/>
        <p class="muted">"The admin's answer can also be filled in with the settings above."</p>
    }
}

/// A request to an admin as its requester sees it: to whom and when, whether the email went
/// out (if not: the email to pass on), and what became of the admin's latest answer.
#[component]
pub fn RequestOutcome(
    request: Signal<Option<crate::api::RequestView>>,
    environment: String,
    name: String,
    can_write: bool,
    live: Live,
    step: &'static str,
) -> impl IntoView {
    let is_next = is_current(live, step);
    view! {
        {move || request.get().map(|r| {
            // Not sent (or not delivered), and no answer has come through the link since.
            let not_sent = r.state == "open" && r.last_answer.is_none() && matches!(r.delivery.as_deref(), Some("outbox") | Some("failed"));
            let outbox = r.delivery.as_deref() == Some("outbox");
            view! {
                <p class="muted" data-testid="request-line">
                    "Request to " {r.admin_email.clone()} " on " {short_time(&r.requested_at)} " by " {r.requested_by.clone()} ": " {r.state.clone()}
                    {(!not_sent && r.last_answer.is_none()).then(|| r.delivery_words().map(|w| format!(" · {w}")))}
                </p>
                {not_sent.then(|| view! {
                    <div class="notice" data-testid="not-sent">
                        <strong>{if outbox { "Not sent: no mail server is configured" } else { "Not delivered: every attempt failed" }}</strong>
                        <p>{if outbox {
                            "connvault has no mail server (CONNVAULT_SMTP_URL), so the email waits here. Pass it on yourself: copy its text, or download it (.eml) and send it; it carries the one-time link.".to_string()
                        } else {
                            format!("{} Pass it on yourself, or send the request again once the mail server works.", r.delivery_error.clone().map(|e| format!("The mail server said: {e}.")).unwrap_or_default())
                        }}</p>
                        {can_write.then(|| view! { <PassOn environment=environment.clone() name=name.clone() primary=Signal::derive(is_next)/> })}
                    </div>
                })}
                {r.last_answer.clone().map(|a| view! {
                    <div class=if a.ok { "result ok-box" } else { "result bad-box" } data-testid="answer-outcome">
                        <strong>{if a.ok { "The admin's answer works" } else { "The admin's answer does not work yet" }}</strong>
                        <p>"Answered " {short_time(&a.at)} ": " {a.detail.clone()}</p>
                        {a.advice.clone().filter(|_| !a.ok).map(|x| view! { <p class="advice"><strong>"What to do: "</strong>{x}</p> })}
                        {(!a.ok).then(|| view! { <p class="muted">{if a.tries_left > 0 {
                            format!("The link takes {} more {}.", a.tries_left, if a.tries_left == 1 { "answer" } else { "answers" })
                        } else {
                            "The link is used up: send the request again.".to_string()
                        }}</p> })}
                    </div>
                })}
            }
        })}
    }
}

/// Binding: who uses the connection, and where to bind it.
#[component]
fn BindStep(environment: String, live: Live) -> impl IntoView {
    let is_next = is_current(live, "bind");
    let href = format!("/env/{environment}/integrations");
    view! {
        <p>
            <a href=href class=move || if is_next() { "button" } else { "" }>"Bind it on the Integrations page"</a>
        </p>
    }
}

/// The latest tests, token mints and admin's answers (for those who may read the audit trail).
#[component]
fn HistoryPanel(live: Live) -> impl IntoView {
    view! {
        {move || live.with(|f| f.as_ref().and_then(|f| f.history.clone())).map(|items| view! {
            <section class="history" aria-labelledby="history-title">
                <h2 id="history-title">"History of tests and tokens"</h2>
                {if items.is_empty() {
                    view! { <p class="muted" data-testid="history">"No test or token yet."</p> }.into_any()
                } else {
                    view! { <HistoryTable items=items/> }.into_any()
                }}
            </section>
        })}
    }
}

#[component]
fn HistoryTable(items: Vec<HistoryView>) -> impl IntoView {
    view! {
        <div class="table-wrap">
            <table data-testid="history">
                <thead><tr><th scope="col">"When"</th><th scope="col">"What"</th><th scope="col">"Outcome"</th><th scope="col">"By"</th></tr></thead>
                <tbody>
                    {items.into_iter().map(|h| view! {
                        <tr class:failed=!h.ok>
                            <td><time datetime=h.at.clone()>{short_time(&h.at)}</time></td>
                            <td>{match h.kind.as_str() { "mint" => "Token", "answer" => "Admin's answer", _ => "Test" }}</td>
                            <td>{if h.ok { "OK: " } else { "Failed: " }}{h.detail.clone()}</td>
                            <td>{h.actor.clone()}</td>
                        </tr>
                    }).collect_view()}
                </tbody>
            </table>
        </div>
    }
}

/// One line of the error summary: the message, the field it is about (linked) and a page it
/// points to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SummaryLine {
    pub text: String,
    /// The id of the control to fix.
    pub target: Option<String>,
    pub href: Option<String>,
}

/// Every mistake of a refused form at once, above it: focus moves here when it appears, and
/// each line links to its field (the link opens a folded part and focuses the field).
#[component]
pub fn ErrorSummary(
    lines: Signal<Vec<SummaryLine>>,
    message: Signal<Option<String>>,
    /// Tells one summary from another on the page (`data-testid` and the heading's id).
    #[prop(default = "error-summary")]
    id: &'static str,
) -> impl IntoView {
    let node = NodeRef::<leptos::html::Div>::new();
    let (title, labelledby) = (format!("{id}-title"), format!("{id}-title"));
    let shown = move || !lines.with(Vec::is_empty) || message.with(Option::is_some);
    Effect::new(move |_| {
        if shown() {
            request_animation_frame(move || {
                if let Some(el) = node.get_untracked() {
                    let _ = el.focus();
                }
            });
        }
    });
    view! {
        <div class="error-summary" class:hidden=move || !shown() tabindex="-1" node_ref=node role="alert" aria-labelledby=labelledby data-testid=id>
            <h2 id=title>{move || match lines.with(Vec::len) {
                0 | 1 => "There is a problem".to_string(),
                n => format!("There are {n} problems"),
            }}</h2>
            {move || lines.with(Vec::is_empty).then(|| message.get().map(|m| view! { <p>{m}</p> }))}
            <ul>
                {move || lines.get().into_iter().map(|l| {
                    let target = l.target.clone();
                    view! {
                        <li>
                            {match target {
                                Some(t) => view! { <a href=format!("#{t}") on:click=move |ev| { ev.prevent_default(); focus_field(&t); }>{l.text.clone()}</a> }.into_any(),
                                None => view! { <span>{l.text.clone()}</span> }.into_any(),
                            }}
                            {l.href.clone().map(|h| view! { " " <a href=h>"Open the existing connection"</a> })}
                        </li>
                    }
                }).collect_view()}
            </ul>
        </div>
    }
}

/// Moves focus to the control `id` (or `id-choice`, when it is a URL offered as a choice and
/// that shows), opening the folded parts around it.
pub fn focus_field(id: &str) {
    use leptos::wasm_bindgen::JsCast;
    let doc = document();
    let shown = |el: &leptos::web_sys::HtmlElement| !el.class_list().contains("hidden") && el.get_attribute("disabled").is_none();
    let find = |id: &str| doc.get_element_by_id(id).and_then(|e| e.dyn_into::<leptos::web_sys::HtmlElement>().ok());
    let el = match (find(id), find(&format!("{id}-choice"))) {
        (Some(a), Some(b)) if !shown(&a) => Some(b),
        (Some(a), _) => Some(a),
        (None, b) => b,
    };
    if let Some(el) = el {
        let mut parent = el.parent_element();
        while let Some(p) = parent {
            if p.tag_name().eq_ignore_ascii_case("details") {
                let _ = p.set_attribute("open", "");
            }
            parent = p.parent_element();
        }
        let _ = el.focus();
    }
}

/// The lines of the summary for `e`: each field's message with its label (`labels`: field key
/// → label), linked to its control (`PREFIX` and the field's name: `f-base_url`).
pub fn summary_lines(e: &AppError, labels: &HashMap<String, String>, prefix: &str) -> Vec<SummaryLine> {
    e.fields
        .iter()
        .map(|f| {
            let short = f.field.rsplit('.').next().unwrap_or(&f.field).to_string();
            let known = labels.get(&f.field);
            SummaryLine {
                text: format!("{}: {}", known.cloned().unwrap_or_else(|| f.field.clone()), f.message),
                target: known.map(|_| format!("{prefix}{short}")),
                href: f.href.clone(),
            }
        })
        .collect()
}

/// The settings: name, provider and the provider's fields. A refused save keeps everything
/// typed (secrets too, once hydrated; before, the server sends the rest back with the error),
/// lists every mistake in a summary that takes the focus, and marks each field.
#[component]
fn SettingsForm(
    environment: String,
    can_write: bool,
    providers: Vec<ProviderForm>,
    connection: Option<ConnectionDetail>,
    save: ServerAction<SaveConnection>,
    live: Live,
) -> impl IntoView {
    let error = Signal::derive(move || save.value().get().and_then(|r| r.err()));
    let field_error = move |name: &str| error.get().and_then(|e| e.field(name));
    let field_href = move |name: &str| error.get().and_then(|e| e.fields.iter().find(|f| f.field == name).and_then(|f| f.href.clone()));
    // What a save refused before the page hydrated sent back (the form comes back as it was sent).
    let sent = save.value().get_untracked().and_then(|r| r.err()).filter(|e| !e.values.is_empty());
    let existing = connection.is_some();
    let original = connection.as_ref().map(|c| c.name.clone()).unwrap_or_default();
    let name_value = sent.as_ref().and_then(|e| e.value("name")).unwrap_or_else(|| original.clone());
    let first = providers.first().map(|p| p.id.clone()).unwrap_or_default();
    let initial_provider = connection.as_ref().map(|c| c.provider.clone()).or_else(|| sent.as_ref().and_then(|e| e.value("provider"))).unwrap_or(first);
    let provider_id = RwSignal::new(initial_provider.clone());
    let opened_with = initial_provider.clone();
    let mut initial: HashMap<String, String> = connection.as_ref().map(|c| c.settings.iter().cloned().collect()).unwrap_or_default();
    let mut chosen: HashMap<String, String> = HashMap::new();
    if let Some(e) = &sent {
        for (k, v) in &e.values {
            if let Some(f) = k.strip_prefix("settings.") {
                initial.insert(f.to_string(), v.clone());
            } else if let Some(f) = k.strip_prefix("presets.") {
                chosen.insert(f.to_string(), v.clone());
            }
        }
    }
    // What was typed for each provider, kept while another is chosen.
    let typed: RwSignal<HashMap<String, String>> = RwSignal::new(HashMap::new());
    // Each provider's field labels, for the summary of the provider chosen.
    let labels: HashMap<String, HashMap<String, String>> = providers
        .iter()
        .map(|p| {
            let mut of: HashMap<String, String> = HashMap::from([("name".to_string(), "Name".to_string()), ("provider".to_string(), "Provider".to_string())]);
            for f in &p.fields {
                of.insert(format!("{}.{}", if f.secret { "secrets" } else { "settings" }, f.name), f.label.clone());
            }
            (p.id.clone(), of)
        })
        .collect();
    let lines = Signal::derive(move || {
        let chosen = provider_id.get();
        error.get().map(|e| summary_lines(&e, labels.get(&chosen).unwrap_or(&HashMap::new()), "f-")).unwrap_or_default()
    });
    let message = Signal::derive(move || error.get().filter(|e| e.fields.is_empty()).map(|e| e.message));
    let is_next = is_current(live, "settings");
    let primary = move || !existing || is_next();
    let secrets = connection.as_ref().map(|c| c.secrets.clone()).unwrap_or_default();
    let providers_for_select = providers.clone();
    let provider_label = connection.as_ref().map(|c| providers.iter().find(|p| p.id == c.provider).map(|p| p.label.clone()).unwrap_or_else(|| c.provider.clone()));
    view! {
        <ErrorSummary lines=lines message=message/>
        <ActionForm action=save attr:class="stack form" attr:novalidate=true>
            <input type="hidden" name="environment" value=environment.clone()/>
            <input type="hidden" name="original" value=original.clone()/>
            <label for="f-name">"Name"</label>
            <input id="f-name" name="name" required maxlength="100" value=name_value
                disabled=!can_write aria-invalid=move || field_error("name").is_some().to_string() aria-describedby="e-name"/>
            <FieldMessage id="e-name" message=Signal::derive(move || field_error("name")) href=Signal::derive(move || field_href("name"))/>
            <label for="f-provider">"Provider"</label>
            {match provider_label {
                Some(label) => view! {
                    <input type="hidden" name="provider" value=initial_provider.clone()/>
                    <p id="f-provider" class="mono">{label}</p>
                }.into_any(),
                None => view! {
                    <select id="f-provider" name="provider" disabled=!can_write on:change=move |ev| provider_id.set(event_target_value(&ev))
                        aria-invalid=move || field_error("provider").is_some().to_string() aria-describedby="e-provider">
                        {providers_for_select.iter().map(|p| view! { <option value=p.id.clone() selected=p.id == initial_provider>{p.label.clone()}</option> }).collect_view()}
                    </select>
                    <noscript><p class="muted">"Without JavaScript every provider's fields are listed; fill in those of the provider you chose."</p></noscript>
                }.into_any(),
            }}
            <FieldMessage id="e-provider" message=Signal::derive(move || field_error("provider")) href=Signal::derive(|| None)/>
            {move || {
                let id = provider_id.get();
                // The values the form opened with belong to the provider it opened with.
                let values = if id == opened_with { initial.clone() } else { HashMap::new() };
                providers.iter().find(|p| p.id == id).cloned().map(|p| view! {
                    <ProviderFields provider=p values=values chosen=chosen.clone() secrets=secrets.clone() can_write=can_write error=error typed=typed/>
                })
            }}
            {can_write.then(|| view! {
                <button type="submit" class:secondary=move || !primary() disabled=move || save.pending().get()>{if existing { "Save changes" } else { "Create connection" }}</button>
            })}
        </ActionForm>
    }
}

#[component]
fn FieldMessage(id: &'static str, message: Signal<Option<String>>, href: Signal<Option<String>>) -> impl IntoView {
    view! {
        <span id=id class="field-error" role=move || message.get().map(|_| "alert")>
            {move || message.get()}
            {move || href.get().map(|h| view! { " " <a href=h>"Open the existing connection"</a> })}
        </span>
    }
}

/// The settings and secret fields of one provider. Fields that apply only to some choices
/// (e.g. the user name for basic authentication) hide when they do not apply, once hydrated;
/// advanced ones fold away; a URL with named values is a choice first.
#[component]
fn ProviderFields(
    provider: ProviderForm,
    values: HashMap<String, String>,
    chosen: HashMap<String, String>,
    secrets: Vec<crate::api::SecretState>,
    can_write: bool,
    error: Signal<Option<AppError>>,
    typed: RwSignal<HashMap<String, String>>,
) -> impl IntoView {
    let pid = provider.id.clone();
    let value_of = {
        let pid = pid.clone();
        move |name: &str| typed.with_untracked(|t| t.get(&format!("{pid}.{name}")).cloned()).or_else(|| values.get(name).cloned()).unwrap_or_default()
    };
    let initial: HashMap<String, String> = provider
        .fields
        .iter()
        .filter(|f| f.kind == "choice")
        .map(|f| (f.name.clone(), Some(value_of(&f.name)).filter(|v| !v.is_empty()).unwrap_or_else(|| f.choices.first().cloned().unwrap_or_default())))
        .collect();
    let choices = RwSignal::new(initial);
    let hydrated = hydrated();
    let (advanced, plain): (Vec<FormField>, Vec<FormField>) = provider.fields.iter().cloned().partition(|f| f.advanced);
    let render = |f: FormField| {
        let value = value_of(&f.name);
        field_view(f, value, &chosen, &secrets, can_write, error, choices, hydrated, typed, &pid)
    };
    let open_advanced = advanced.iter().any(|f| !value_of(&f.name).is_empty())
        || error.get_untracked().is_some_and(|e| advanced.iter().any(|f| e.fields.iter().any(|m| m.field.ends_with(&format!(".{}", f.name)))));
    let plain_views = plain.into_iter().map(render).collect_view();
    let advanced_views = (!advanced.is_empty()).then(|| {
        let views = advanced.into_iter().map(render).collect_view();
        view! {
            <details class="advanced" open=open_advanced>
                <summary>"Advanced settings"</summary>
                {views}
            </details>
        }
    });
    view! { {plain_views} {advanced_views} }
}

#[allow(clippy::too_many_arguments)]
fn field_view(
    f: FormField,
    value: String,
    chosen: &HashMap<String, String>,
    secrets: &[crate::api::SecretState],
    can_write: bool,
    error: Signal<Option<AppError>>,
    choices: RwSignal<HashMap<String, String>>,
    hydrated: RwSignal<bool>,
    typed: RwSignal<HashMap<String, String>>,
    pid: &str,
) -> AnyView {
    let shown = {
        let f = f.clone();
        move || !hydrated.get() || f.applies(|k| choices.with(|c| c.get(k).cloned().unwrap_or_default()))
    };
    let key = format!("{}.{}", if f.secret { "secrets" } else { "settings" }, f.name);
    let input_name = format!("{}[{}]", if f.secret { "secrets" } else { "settings" }, f.name);
    let id = format!("f-{}", f.name);
    let err_id = format!("e-{}", f.name);
    let message = {
        let key = key.clone();
        Signal::derive(move || error.get().and_then(|e| e.field(&key)))
    };
    let hint = match &f.when {
        Some((setting, values)) => format!("{} (only when {} is {})", f.help, setting, values.join(" or ")),
        None => f.help.clone(),
    };
    let typed_key = format!("{pid}.{}", f.name);
    let remember = {
        let typed_key = typed_key.clone();
        move |v: String| typed.update(|t| {
            t.insert(typed_key.clone(), v);
        })
    };
    let label = format!("{}{}", f.label, if f.required { " *" } else { "" });
    let secret_state = secrets.iter().find(|s| s.field == f.name).cloned();
    let control = if f.secret {
        view! { <label for=id.clone()>{label.clone()}</label><SecretInput id=id.clone() name=input_name err_id=err_id.clone() state=secret_state can_write=can_write invalid=message/> }.into_any()
    } else if f.kind == "choice" {
        let current = choices.with_untracked(|c| c.get(&f.name).cloned().unwrap_or_default());
        let fname = f.name.clone();
        view! {
            <label for=id.clone()>{label.clone()}</label>
            <select id=id.clone() name=input_name disabled=!can_write aria-describedby=err_id.clone()
                on:change=move |ev| { let v = event_target_value(&ev); remember(v.clone()); choices.update(|c| { c.insert(fname.clone(), v); }); }>
                {f.choices.iter().map(|c| view! { <option value=c.clone() selected=*c == current>{c.clone()}</option> }).collect_view()}
            </select>
        }
        .into_any()
    } else if !f.presets.is_empty() {
        // A choice of named URLs, then "another URL…" with the URL itself. Before hydration only
        // the URL shows (the choice needs the page's code); a choice sends `presets[NAME]` and
        // the URL field is not sent.
        let presets = f.presets.clone();
        let initial_choice = match chosen.get(&f.name) {
            Some(c) => c.clone(),
            None if value.is_empty() => presets.first().map(|(_, v)| v.clone()).unwrap_or_default(),
            None => presets.iter().find(|(_, v)| v.trim_end_matches('/') == value.trim().trim_end_matches('/')).map(|(_, v)| v.clone()).unwrap_or_default(),
        };
        let choice = RwSignal::new(initial_choice.clone());
        let other = move || choice.with(String::is_empty);
        let choice_id = format!("{id}-choice");
        let text_value = if value.is_empty() { initial_choice.clone() } else { value.clone() };
        let other_label = f.other.clone();
        let label_text = label.clone();
        view! {
            <label for=choice_id.clone() class:hidden=move || !hydrated.get()>{label.clone()}</label>
            <select id=choice_id.clone() name=format!("presets[{}]", f.name) class:hidden=move || !hydrated.get() disabled=move || !can_write || !hydrated.get()
                aria-describedby=err_id.clone() on:change=move |ev| choice.set(event_target_value(&ev))>
                {presets.iter().map(|(l, v)| view! { <option value=v.clone() selected=*v == initial_choice>{format!("{l} ({v})")}</option> }).collect_view()}
                <option value="" selected=initial_choice.is_empty()>{other_label.clone()}</option>
            </select>
            <label for=id.clone() class:hidden=move || hydrated.get() && !other()>{move || if hydrated.get() { other_label.clone() } else { label_text.clone() }}</label>
            <input id=id.clone() name=input_name type="url" value=text_value disabled=move || !can_write || (hydrated.get() && !other())
                class:hidden=move || hydrated.get() && !other() autocomplete="off" spellcheck="false"
                aria-invalid=move || message.get().is_some().to_string() aria-describedby=err_id.clone()
                on:input=move |ev| remember(event_target_value(&ev))/>
        }
        .into_any()
    } else {
        let kind = match f.kind.as_str() {
            "url" => "url",
            "email" => "email",
            "integer" => "number",
            _ => "text",
        };
        view! {
            <label for=id.clone()>{label.clone()}</label>
            <input id=id.clone() name=input_name type=kind value=value disabled=!can_write autocomplete="off" spellcheck="false"
                aria-invalid=move || message.get().is_some().to_string() aria-describedby=err_id.clone()
                on:input=move |ev| remember(event_target_value(&ev))/>
        }
        .into_any()
    };
    view! {
        <div class="field" class:hidden=move || !shown()>
            {control}
            <span class="hint">{hint}</span>
            <span id=err_id class="field-error" role=move || message.get().map(|_| "alert")>{move || message.get()}</span>
        </div>
    }
    .into_any()
}

/// A write-only secret: shown as "set on DATE by WHO" with Replace; the stored value never
/// comes to the page. Empty means keep.
#[component]
fn SecretInput(
    id: String,
    name: String,
    err_id: String,
    state: Option<crate::api::SecretState>,
    can_write: bool,
    invalid: Signal<Option<String>>,
) -> impl IntoView {
    let hydrated = hydrated();
    let replacing = RwSignal::new(false);
    let is_set = state.is_some();
    let input_shown = move || can_write && (!is_set || !hydrated.get() || replacing.get());
    view! {
        {state.as_ref().map(|s| view! { <p class="secret-state" data-testid="secret-state">{format!("Set on {} by {}", s.set_at.get(..10).unwrap_or_default(), s.set_by)}</p> })}
        {(!is_set).then(|| view! { <p class="secret-state muted">"Not set"</p> })}
        {(is_set && can_write).then(|| view! {
            <button type="button" class="secondary" class:hidden=move || !hydrated.get() || replacing.get() on:click=move |_| replacing.set(true)>"Replace"</button>
        })}
        <input id=id name=name type="password" autocomplete="new-password" class:hidden=move || !input_shown()
            placeholder=if is_set { "Leave empty to keep the stored value" } else { "" }
            aria-invalid=move || invalid.get().is_some().to_string() aria-describedby=err_id/>
    }
}

/// Delete, with a confirmation; while integrations are bound, only with "unbind them".
#[component]
fn DeleteConnectionForm(environment: String, name: String) -> impl IntoView {
    let delete = ServerAction::<DeleteConnection>::new();
    view! {
        <details class="danger">
            <summary>"Delete this connection"</summary>
            <ActionForm action=delete attr:class="stack">
                <input type="hidden" name="environment" value=environment/>
                <input type="hidden" name="name" value=name.clone()/>
                <p>"Apps that use " {name} " through an integration stop getting credentials."</p>
                <label class="check"><input type="checkbox" name="force" value="yes"/>" Also unbind integrations that use it (they will need a connection)"</label>
                <button type="submit" class="danger" disabled=move || delete.pending().get()>"Delete"</button>
            </ActionForm>
            {action_error(delete.value())}
        </details>
    }
}

/// "Test connection": a live call with the stored credential; the answer says what to fix, and
/// the status above shows the same outcome.
#[component]
fn TestPanel(environment: String, name: String, can_write: bool, test: ServerAction<TestConnection>, live: Live) -> impl IntoView {
    let is_next = is_current(live, "test");
    view! {
        <section class="test" aria-label="Test">
            {can_write.then(|| view! {
                <ActionForm action=test attr:class="inline">
                    <input type="hidden" name="environment" value=environment/>
                    <input type="hidden" name="name" value=name/>
                    <button type="submit" class:secondary=move || !is_next() disabled=move || test.pending().get()>
                        {move || if test.pending().get() { "Testing…" } else { "Test connection" }}
                    </button>
                </ActionForm>
            })}
            {(!can_write).then(|| view! { <p class="muted">"A test uses the credential: people who may change connections run it."</p> })}
            {move || test.value().get().map(|r| match r {
                Ok(t) => view! { <ResultBox outcome=t ok_title="Works" bad_title="Does not work" testid="test-result"/> }.into_any(),
                Err(e) => view! { <p class="error" role="alert">{e.message}</p> }.into_any(),
            })}
        </section>
    }
}

/// What the provider shows about the other side (Workato's collaborators), read on demand with
/// the stored credential.
#[component]
fn DetailsPanel(environment: String, name: String, from: String) -> impl IntoView {
    let read = ServerAction::<ConnectionDetails>::new();
    view! {
        <section class="details" aria-labelledby="details-title">
            <h2 id="details-title">{format!("From {from}")}</h2>
            <ActionForm action=read attr:class="inline">
                <input type="hidden" name="environment" value=environment/>
                <input type="hidden" name="name" value=name/>
                <button type="submit" class="secondary" disabled=move || read.pending().get()>
                    {move || if read.pending().get() { "Reading…".to_string() } else { format!("Read from {from}") }}
                </button>
            </ActionForm>
            {move || read.value().get().map(|r| match r {
                Ok(DetailsOutcome { table: Some(t), .. }) => view! {
                    <div class="table-wrap" data-testid="details">
                        <table>
                            <caption>{t.title.clone()}</caption>
                            <thead><tr>{t.columns.iter().map(|c| view! { <th scope="col">{c.clone()}</th> }).collect_view()}</tr></thead>
                            <tbody>{t.rows.iter().map(|row| view! { <tr>{row.iter().map(|v| view! { <td>{v.clone()}</td> }).collect_view()}</tr> }).collect_view()}</tbody>
                        </table>
                        {t.note.clone().map(|n| view! { <p class="muted">{n}</p> })}
                    </div>
                }.into_any(),
                Ok(DetailsOutcome { failure, .. }) => match failure {
                    Some(f) => view! { <ResultBox outcome=f ok_title="Read" bad_title="Could not read it" testid="details-result"/> }.into_any(),
                    None => view! { <p class="muted">"Nothing to show."</p> }.into_any(),
                },
                Err(e) => view! { <p class="error" role="alert">{e.message}</p> }.into_any(),
            })}
        </section>
    }
}

/// A live check's outcome: whether it worked, what happened, and what to do.
#[component]
pub fn ResultBox(outcome: crate::api::TestOutcome, ok_title: &'static str, bad_title: &'static str, testid: &'static str) -> impl IntoView {
    view! {
        <div class=if outcome.ok { "result ok-box" } else { "result bad-box" } role="status" data-testid=testid>
            <strong>{if outcome.ok { ok_title } else { bad_title }}</strong>
            <p>{outcome.detail}</p>
            {outcome.advice.map(|a| view! { <p class="advice"><strong>"What to do: "</strong>{a}</p> })}
        </div>
    }
}
