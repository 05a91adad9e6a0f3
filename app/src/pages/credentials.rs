//! Asking a system's admin for a connection's typed secrets: the panel on the connection page
//! ("Request credentials", its state, send again, cancel) and the page the admin's one-time
//! link opens, where the admin enters them and sees at once whether they work.

use leptos::prelude::*;
use leptos_router::hooks::{use_params_map, use_query_map};

use crate::api::{credential_link_view, AnswerCredentialRequest, RequestCredentials};
use crate::pages::auth::error_view;
use crate::pages::certificates::{latest_error, AdminEmail};
use crate::pages::connections::{is_current, summary_lines, ErrorSummary, Live, RequestOutcome, ResultBox, SummaryLine};
use crate::pages::short_time;

/// What the credential panel changes. Created with the connection page, outside its Suspense,
/// as `SigningState` is (leptos-rs/leptos#4866); where the request stands comes from the page's
/// flow.
#[derive(Clone, Copy)]
pub struct CredentialState {
    pub send: ServerAction<RequestCredentials>,
}

impl CredentialState {
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        CredentialState { send: ServerAction::new() }
    }
}

/// The credentials step of a connection's page: the secrets are typed with the settings, or the
/// `admin` is asked for them ("Request credentials"; then what became of the request, and send
/// again or cancel while it is out).
#[component]
pub fn CredentialPanel(environment: String, name: String, admin: String, can_write: bool, state: CredentialState, live: Live) -> impl IntoView {
    let CredentialState { send } = state;
    let request = move || live.with(|f| f.as_ref().and_then(|f| f.credential_request.clone()));
    let open = move || request().is_some_and(|r| r.state == "open");
    let known_email = move || live.with(|f| f.as_ref().and_then(|f| f.admin_email.clone()));
    let is_next = is_current(live, "credentials");
    let error = latest_error(vec![Signal::derive(move || send.value().get().map(|r| r.err()))]);
    let (env_cancel, name_cancel, env_out, name_out) = (environment.clone(), name.clone(), environment.clone(), name.clone());
    if admin.is_empty() {
        return view! { <p class="muted">"Type them with the settings above."</p> }.into_any();
    }
    let admin_label = format!("The {admin}");
    view! {
        <section class="credentials" aria-label="Credentials">
            <p class="muted">{format!("Type them with the settings above, or ask the {admin}: connvault emails the steps and a one-time link (7 days); the admin enters the secrets there, connvault tests them at once, and you never see them.")}</p>
            <RequestOutcome request=Signal::derive(request) environment=env_out name=name_out can_write=can_write live=live step="credentials"/>
            {move || request().is_none().then(|| view! { <p class="muted" data-testid="credential-request">"No request yet."</p> })}
            {can_write.then(|| view! {
                <ActionForm action=send attr:class="stack form">
                    <input type="hidden" name="environment" value=environment.clone()/>
                    <input type="hidden" name="name" value=name.clone()/>
                    <AdminEmail id="cred-admin" admin=admin_label.clone() known=Signal::derive(known_email)/>
                    <button type="submit" class:secondary=move || !is_next() disabled=move || send.pending().get()>
                        {move || if send.pending().get() { "Sending…" } else if request().is_some() { "Send the request again" } else { "Request credentials" }}
                    </button>
                </ActionForm>
                <div class:hidden=move || !open()>
                    <ActionForm action=send attr:class="inline">
                        <input type="hidden" name="environment" value=env_cancel.clone()/>
                        <input type="hidden" name="name" value=name_cancel.clone()/>
                        <input type="hidden" name="cancel" value="true"/>
                        <button type="submit" class="secondary">"Cancel the request"</button>
                    </ActionForm>
                </div>
            })}
            <ErrorSummary id="credential-errors" lines=Signal::derive(move || error.get().map(|e| e.fields.iter().map(|f| SummaryLine {
                    text: format!("{}: {}", if f.field == "admin_email" { "The admin's email" } else { f.field.as_str() }, f.message),
                    target: (f.field == "admin_email").then(|| "cred-admin".to_string()),
                    href: None,
                }).collect()).unwrap_or_default())
                message=Signal::derive(move || error.get().filter(|e| e.fields.is_empty()).map(|e| e.message))/>
        </section>
    }
    .into_any()
}

/// `/credentials/:env/:name?token=…`: the system's admin enters the secrets. No account. The
/// page says who asked and when; a refused answer lists what to fix (focus on the list) and
/// keeps what was typed.
#[component]
pub fn CredentialsPage() -> impl IntoView {
    let params = use_params_map();
    let query = use_query_map();
    let env = move || params.read().get("env").unwrap_or_default();
    let name = move || params.read().get("name").unwrap_or_default();
    let token = move || query.read().get("token").unwrap_or_default();
    let data = Resource::new(move || (env(), name(), token()), |(e, n, t)| credential_link_view(e, n, t));
    let answer = ServerAction::<AnswerCredentialRequest>::new();
    let error = Signal::derive(move || answer.value().get().and_then(|r| r.err()));
    view! {
        <section class="panel">
            <Transition fallback=|| view! { <p>"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match data.await {
                        Ok(v) => {
                            let checking = format!("Checking with {}…", v.provider_label);
                            let labels: std::collections::HashMap<String, String> = v
                                .fields
                                .iter()
                                .map(|f| (format!("{}.{}", if f.secret { "secrets" } else { "settings" }, f.name), f.label.clone()))
                                .collect();
                            let lines = Signal::derive(move || error.get().map(|e| summary_lines(&e, &labels, "c-")).unwrap_or_default());
                            let message = Signal::derive(move || error.get().filter(|e| e.fields.is_empty()).map(|e| e.message));
                            view! {
                                <h1>{format!("Enter the {} credentials for {}", v.provider_label, v.connection)}</h1>
                                <p data-testid="requested-by">"Asked by " <strong>{v.requested_by.clone()}</strong>
                                    {(!v.requested_at.is_empty()).then(|| format!(" on {}", short_time(&v.requested_at)))} "."</p>
                                <p>{v.requested_by.clone()} " asked you, as the " {v.admin.clone()} ", for the credentials of the connection "
                                   <strong>{v.connection.clone()}</strong> " in " {v.environment.clone()} ". They are sealed as soon as you send them and tested at once; "
                                   {v.requested_by.clone()} " never sees them."</p>
                                <ol data-testid="credential-steps">{v.steps.iter().map(|s| view! { <li>{s.clone()}</li> }).collect_view()}</ol>
                                <p class="muted">"This link works until credentials that work are sent (at most 5 tries), or until " {short_time(&v.expires_at)} "."</p>
                                <ErrorSummary lines=lines message=message/>
                                <ActionForm action=answer attr:class="stack form" attr:novalidate=true>
                                    <input type="hidden" name="environment" value=v.environment.clone()/>
                                    <input type="hidden" name="name" value=v.connection.clone()/>
                                    <input type="hidden" name="token" value=token()/>
                                    {v.fields.iter().map(|f| {
                                        let id = format!("c-{}", f.name);
                                        let field_name = if f.secret { format!("secrets[{}]", f.name) } else { format!("settings[{}]", f.name) };
                                        let key = format!("{}.{}", if f.secret { "secrets" } else { "settings" }, f.name);
                                        let message = move || error.get().and_then(|e| e.field(&key));
                                        let message2 = message.clone();
                                        view! {
                                            <label for=id.clone()>{f.label.clone()}</label>
                                            <input id=id name=field_name type=if f.secret { "password" } else { "text" } required=f.required
                                                autocomplete=if f.secret { "new-password" } else { "off" } value=f.value.clone().unwrap_or_default()
                                                aria-invalid=move || message().is_some().to_string()/>
                                            <span class="muted">{f.help.clone()}</span>
                                            <span class="field-error">{message2}</span>
                                        }
                                    }).collect_view()}
                                    <button type="submit" disabled=move || answer.pending().get()>{move || if answer.pending().get() { checking.clone() } else { "Send".to_string() }}</button>
                                </ActionForm>
                            }.into_any()
                        }
                        Err(e) => error_view(&e),
                    }
                })}
            </Transition>
            {move || answer.value().get().and_then(|r| r.ok()).map(|t| view! {
                <ResultBox outcome=t ok_title="Thank you: the connection works" bad_title="Received, but the connection does not work yet" testid="credential-result"/>
            })}
        </section>
    }
}
