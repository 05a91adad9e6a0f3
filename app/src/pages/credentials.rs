//! Asking a system's admin for a connection's typed secrets: the panel on the connection page
//! ("Request credentials", its state, send again, cancel) and the page the admin's one-time
//! link opens, where the admin enters them and sees at once whether they work.

use leptos::prelude::*;
use leptos_router::hooks::{use_params_map, use_query_map};

use crate::api::{credential_link_view, credential_request_state, AnswerCredentialRequest, Fallible, RequestCredentials, RequestView};
use crate::pages::auth::error_view;
use crate::pages::connections::ResultBox;
use crate::pages::short_time;

/// What the credential panel loads and changes. Created with the connection page, outside its
/// Suspense, as `SigningState` is (a resource created inside a Suspense's children can stall
/// server rendering, leptos-rs/leptos#4866).
#[derive(Clone, Copy)]
pub struct CredentialState {
    pub send: ServerAction<RequestCredentials>,
    pub state: Resource<Fallible<Option<RequestView>>>,
}

impl CredentialState {
    pub fn new(environment: impl Fn() -> String + Send + Sync + 'static, name: impl Fn() -> String + Send + Sync + 'static) -> Self {
        let send = ServerAction::<RequestCredentials>::new();
        let state = Resource::new(move || (environment(), name(), send.version().get()), |(environment, name, _)| credential_request_state(environment, name));
        CredentialState { send, state }
    }
}

/// The "Request credentials" part of a connection's page; `admin` names who is asked.
#[component]
pub fn CredentialPanel(environment: String, name: String, admin: String, admin_email: String, state: CredentialState) -> impl IntoView {
    let CredentialState { send, state } = state;
    let open = move || state.get().and_then(|r| r.ok()).flatten().is_some_and(|r| r.state == "open");
    let (env_cancel, name_cancel) = (environment.clone(), name.clone());
    view! {
        <section class="credentials" aria-labelledby="cred-title">
            <h2 id="cred-title">"Ask the " {admin.clone()} " for the credentials"</h2>
            <p class="muted">"connvault emails the steps and a one-time link (7 days); the admin enters the secrets there, connvault tests them at once, and you never see them."</p>
            <Transition fallback=|| view! { <p>"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match state.await {
                        Ok(Some(r)) => view! {
                            <p class="muted" data-testid="credential-request">"Request to " {r.admin_email.clone()} " on " {short_time(&r.requested_at)} " by " {r.requested_by.clone()} ": " {r.state.clone()} {r.delivery_words().map(|w| format!(" · {w}"))}</p>
                        }.into_any(),
                        Ok(None) => view! { <p class="muted" data-testid="credential-request">"No request yet."</p> }.into_any(),
                        Err(e) => error_view(&e),
                    }
                })}
            </Transition>
            <ActionForm action=send attr:class="stack form">
                <input type="hidden" name="environment" value=environment/>
                <input type="hidden" name="name" value=name/>
                <label for="cred-admin">{format!("The {admin}'s email")}</label>
                <input id="cred-admin" name="admin_email" type="email" required value=admin_email/>
                <button type="submit" disabled=move || send.pending().get()>
                    {move || if send.pending().get() { "Sending…" } else if open() { "Send the request again" } else { "Request credentials" }}
                </button>
            </ActionForm>
            {move || open().then(|| {
                let (environment, name) = (env_cancel.clone(), name_cancel.clone());
                view! {
                    <ActionForm action=send attr:class="inline">
                        <input type="hidden" name="environment" value=environment/>
                        <input type="hidden" name="name" value=name/>
                        <input type="hidden" name="cancel" value="true"/>
                        <button type="submit" class="secondary">"Cancel the request"</button>
                    </ActionForm>
                }
            })}
            {move || send.value().get().and_then(|r| r.err()).map(|e| view! { <p class="error" role="alert">{e.field("admin_email").unwrap_or(e.message)}</p> })}
        </section>
    }
}

/// `/credentials/:env/:name?token=…`: the system's admin enters the secrets. No account.
#[component]
pub fn CredentialsPage() -> impl IntoView {
    let params = use_params_map();
    let query = use_query_map();
    let env = move || params.read().get("env").unwrap_or_default();
    let name = move || params.read().get("name").unwrap_or_default();
    let token = move || query.read().get("token").unwrap_or_default();
    let data = Resource::new(move || (env(), name(), token()), |(e, n, t)| credential_link_view(e, n, t));
    let answer = ServerAction::<AnswerCredentialRequest>::new();
    view! {
        <section class="panel">
            <Transition fallback=|| view! { <p>"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match data.await {
                        Ok(v) => {
                            let checking = format!("Checking with {}…", v.provider_label);
                            view! {
                                <h1>{format!("Enter the {} credentials for {}", v.provider_label, v.connection)}</h1>
                                <p>{v.requested_by.clone()} " asked you, as the " {v.admin.clone()} ", for the credentials of the connection "
                                   <strong>{v.connection.clone()}</strong> " in " {v.environment.clone()} ". They are sealed as soon as you send them and tested at once; "
                                   {v.requested_by.clone()} " never sees them."</p>
                                <ol data-testid="credential-steps">{v.steps.iter().map(|s| view! { <li>{s.clone()}</li> }).collect_view()}</ol>
                                <p class="muted">"This link works until credentials that work are sent (at most 5 tries), or until " {short_time(&v.expires_at)} "."</p>
                                <ActionForm action=answer attr:class="stack form">
                                    <input type="hidden" name="environment" value=v.environment.clone()/>
                                    <input type="hidden" name="name" value=v.connection.clone()/>
                                    <input type="hidden" name="token" value=token()/>
                                    {v.fields.iter().map(|f| {
                                        let id = format!("c-{}", f.name);
                                        let field_name = if f.secret { format!("secrets[{}]", f.name) } else { format!("settings[{}]", f.name) };
                                        view! {
                                            <label for=id.clone()>{f.label.clone()}</label>
                                            <input id=id name=field_name type=if f.secret { "password" } else { "text" } required=f.required
                                                autocomplete=if f.secret { "new-password" } else { "off" } value=f.value.clone().unwrap_or_default()/>
                                            <span class="muted">{f.help.clone()}</span>
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
            {move || answer.value().get().map(|r| match r {
                Ok(t) => view! {
                    <ResultBox outcome=t ok_title="Thank you: the connection works" bad_title="Received, but the connection does not work yet" testid="credential-result"/>
                }.into_any(),
                Err(e) => view! { <p class="error" role="alert">{e.fields.iter().map(|f| f.message.clone()).collect::<Vec<_>>().join("; ")}{e.fields.is_empty().then(|| e.message.clone())}</p> }.into_any(),
            })}
        </section>
    }
}
