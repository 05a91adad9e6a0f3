use std::collections::HashMap;

use leptos::prelude::*;
use leptos_router::hooks::{use_params_map, use_query_map};

use crate::api::{
    connection_form, AppError, ConnectionDetail, ConnectionDetails, ConnectionFormData, DeleteConnection, DetailsOutcome, ProviderForm, SaveConnection,
    TestConnection,
};
use crate::pages::auth::{action_error, error_view};
use crate::pages::{hydrated, short_time};

/// Create (`/env/:env/connections/new`) or edit (`/env/:env/connections/:name`) a connection.
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
    Effect::new(move |previous: Option<(String, String, usize)>| {
        let now = (env(), name(), save.version().get());
        if previous.is_some_and(|p| p != now) {
            test.value().set(None);
        }
        now
    });
    let data = Resource::new(move || (env(), name(), save.version().get()), |(env, name, _)| connection_form(env, name));
    let signing_state = crate::pages::certificates::SigningState::new(env, name);
    let sign_in_state = crate::pages::sign_in::SignInState::new(env, name);
    let credential_state = crate::pages::credentials::CredentialState::new(env, name);
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

#[component]
fn ConnectionEditor(
    data: ConnectionFormData,
    save: ServerAction<SaveConnection>,
    test: ServerAction<TestConnection>,
    signing_state: crate::pages::certificates::SigningState,
    sign_in_state: crate::pages::sign_in::SignInState,
    credential_state: crate::pages::credentials::CredentialState,
) -> impl IntoView {
    let query = use_query_map();
    let saved = move || match save.value().get() {
        Some(result) => result.is_ok(),
        None => query.read().get("saved").is_some(),
    };
    let ConnectionFormData { environment, can_write, providers, connection } = data;
    let existing = connection.clone();
    let for_panels = connection.clone();
    let signing = connection.clone().filter(|c| c.signing_admin.is_some());
    let provider_id = RwSignal::new(connection.as_ref().map(|c| c.provider.clone()).or_else(|| providers.first().map(|p| p.id.clone())).unwrap_or_default());
    let error = move || save.value().get().and_then(|r| r.err());
    let field_error = move |name: &str| error().and_then(|e| e.field(name));
    let title = match &connection {
        Some(c) => format!("{} in {}", c.name, environment),
        None => format!("New connection in {environment}"),
    };
    let list_href = format!("/env/{environment}/connections");
    let providers_for_select = providers.clone();
    let fields_env = environment.clone();
    let original = connection.as_ref().map(|c| c.name.clone()).unwrap_or_default();
    let for_fields = connection.clone();
    let (original_in_form, name_in_form) = (original.clone(), original.clone());
    view! {
        <p><a href=list_href.clone()>"← Connections in " {environment.clone()}</a></p>
        <h1>{title}</h1>
        {move || saved().then(|| view! { <p class="ok" role="status">"Saved."</p> })}
        {existing.as_ref().map(|c| view! {
            <p class="muted">"Created " {short_time(&c.created_at)} " by " {c.created_by.clone()} "; last changed " {short_time(&c.updated_at)} " by " {c.updated_by.clone()} "."</p>
        })}
        {(!can_write).then(|| view! { <p class="notice">"Your role in " {environment.clone()} " can look but not change connections."</p> })}
        <ActionForm action=save attr:class="stack form" attr:novalidate=true>
            <input type="hidden" name="environment" value=environment.clone()/>
            <input type="hidden" name="original" value=original_in_form/>
            <label for="f-name">"Name"</label>
            <input id="f-name" name="name" required maxlength="100" value=name_in_form
                disabled=!can_write aria-invalid=move || field_error("name").is_some().to_string() aria-describedby="e-name"/>
            <FieldMessage id="e-name" message=Signal::derive(move || field_error("name"))/>
            <label for="f-provider">"Provider"</label>
            {match &connection {
                Some(c) => view! {
                    <input type="hidden" name="provider" value=c.provider.clone()/>
                    <p id="f-provider" class="mono">{providers.iter().find(|p| p.id == c.provider).map(|p| p.label.clone()).unwrap_or_else(|| c.provider.clone())}</p>
                }.into_any(),
                None => view! {
                    <select id="f-provider" name="provider" disabled=!can_write on:change=move |ev| provider_id.set(event_target_value(&ev))>
                        {providers_for_select.iter().map(|p| view! { <option value=p.id.clone()>{p.label.clone()}</option> }).collect_view()}
                    </select>
                    <noscript><p class="muted">"Without JavaScript every provider's fields are listed; fill in those of the provider you chose."</p></noscript>
                }.into_any(),
            }}
            <FieldMessage id="e-provider" message=Signal::derive(move || field_error("provider"))/>
            {move || {
                let id = provider_id.get();
                // Before hydration the provider cannot be switched, so show the chosen one's fields.
                providers.iter().find(|p| p.id == id).cloned().map(|p| view! {
                    <ProviderFields provider=p connection=for_fields.clone() can_write=can_write error=Signal::derive(error)/>
                })
            }}
            {can_write.then(|| view! { <button type="submit" disabled=move || save.pending().get()>{if existing.is_some() { "Save changes" } else { "Create connection" }}</button> })}
        </ActionForm>
        {move || error().filter(|e| e.fields.is_empty()).map(|e| view! { <p class="error" role="alert">{e.message}</p> })}
        {move || error().filter(|e| !e.fields.is_empty()).map(|_| view! { <p class="error" role="alert">"Fix the fields marked above."</p> })}
        {signing.map(|c| view! {
            <crate::pages::certificates::CertificatePanel environment=fields_env.clone() name=c.name.clone() admin_email=c.setting("admin_email")
                admin=c.signing_admin.clone().unwrap_or_default() can_write=can_write state=signing_state/>
        })}
        {for_panels.as_ref().and_then(|c| c.sign_in.clone().map(|b| (c.name.clone(), b))).map(|(n, button)| view! {
            <crate::pages::sign_in::SignInPanel environment=fields_env.clone() name=n button=button can_write=can_write state=sign_in_state/>
        })}
        {for_panels.as_ref().filter(|c| can_write && c.credential_admin.is_some()).map(|c| view! {
            <crate::pages::credentials::CredentialPanel environment=fields_env.clone() name=c.name.clone()
                admin=c.credential_admin.clone().unwrap_or_default() admin_email=c.setting("admin_email") state=credential_state/>
        })}
        {for_panels.as_ref().filter(|_| can_write).and_then(|c| c.details_from.clone()).map(|from| view! {
            <DetailsPanel environment=fields_env.clone() name=original.clone() from=from/>
        })}
        {(can_write && !original.is_empty()).then(|| view! { <TestPanel environment=fields_env.clone() name=original.clone() test=test/> })}
        {(can_write && !original.is_empty()).then(|| view! { <DeleteConnectionForm environment=fields_env.clone() name=original.clone()/> })}
    }
}

#[component]
fn FieldMessage(id: &'static str, message: Signal<Option<String>>) -> impl IntoView {
    view! { <span id=id class="field-error" role=move || message.get().map(|_| "alert")>{move || message.get()}</span> }
}

/// The settings and secret fields of one provider. Fields that apply only to some choices
/// (e.g. the user name for basic authentication) hide when they do not apply, once hydrated.
#[component]
fn ProviderFields(provider: ProviderForm, connection: Option<ConnectionDetail>, can_write: bool, error: Signal<Option<AppError>>) -> impl IntoView {
    let initial: HashMap<String, String> = provider
        .fields
        .iter()
        .filter(|f| f.kind == "choice")
        .map(|f| {
            (
                f.name.clone(),
                connection.as_ref().map(|c| c.setting(&f.name)).filter(|v| !v.is_empty()).unwrap_or_else(|| f.choices.first().cloned().unwrap_or_default()),
            )
        })
        .collect();
    let choices = RwSignal::new(initial);
    let hydrated = hydrated();
    provider
        .fields
        .into_iter()
        .map(|f| {
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
            let value = connection.as_ref().map(|c| c.setting(&f.name)).unwrap_or_default();
            let secret_state = connection.as_ref().and_then(|c| c.secrets.iter().find(|s| s.field == f.name).cloned());
            let control = if f.secret {
                view! { <SecretInput id=id.clone() name=input_name err_id=err_id.clone() state=secret_state can_write=can_write invalid=message/> }.into_any()
            } else if f.kind == "choice" {
                let current = choices.with_untracked(|c| c.get(&f.name).cloned().unwrap_or_default());
                let fname = f.name.clone();
                view! {
                    <select id=id.clone() name=input_name disabled=!can_write aria-describedby=err_id.clone()
                        on:change=move |ev| { let v = event_target_value(&ev); choices.update(|c| { c.insert(fname.clone(), v); }); }>
                        {f.choices.iter().map(|c| view! { <option value=c.clone() selected=*c == current>{c.clone()}</option> }).collect_view()}
                    </select>
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
                    <input id=id.clone() name=input_name type=kind value=value disabled=!can_write autocomplete="off" spellcheck="false"
                        aria-invalid=move || message.get().is_some().to_string() aria-describedby=err_id.clone()/>
                }
                .into_any()
            };
            view! {
                <div class="field" class:hidden=move || !shown()>
                    <label for=id>{f.label.clone()}{f.required.then_some(" *")}</label>
                    {control}
                    <span class="hint">{hint}</span>
                    <span id=err_id class="field-error" role=move || message.get().map(|_| "alert")>{move || message.get()}</span>
                </div>
            }
        })
        .collect_view()
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

/// "Test connection": a live call with the stored credential; the answer says what to fix.
#[component]
fn TestPanel(environment: String, name: String, test: ServerAction<TestConnection>) -> impl IntoView {
    view! {
        <section class="test" aria-labelledby="test-title">
            <h2 id="test-title">"Test"</h2>
            <ActionForm action=test attr:class="inline">
                <input type="hidden" name="environment" value=environment/>
                <input type="hidden" name="name" value=name/>
                <button type="submit" class="secondary" disabled=move || test.pending().get()>
                    {move || if test.pending().get() { "Testing…" } else { "Test connection" }}
                </button>
            </ActionForm>
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
