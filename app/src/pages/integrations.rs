use leptos::prelude::*;
use leptos_router::hooks::use_params_map;

use crate::api::{integrations_overview, list_integrations, urlencode, BindIntegration, Cell, IntegrationRow};
use crate::pages::auth::{action_error, error_view};
use crate::pages::short_time;

/// What an integration's status looks like: its words and its colour class. Green only when the
/// bound connection is set up and its latest check passed.
fn shown(status: &str, state: Option<&str>) -> (&'static str, &'static str) {
    match (status, state) {
        ("needs_connection", _) => ("Needs a connection", "status-needs_connection"),
        ("failing", _) | (_, Some("failing")) => ("Failing", "status-failing"),
        (_, Some("not_set_up")) => ("Bound · not set up", "status-needs_connection"),
        (_, Some("works")) => ("Bound", "status-bound"),
        _ => ("Bound · not tested", "status-needs_connection"),
    }
}

/// The next step for an integration in `env`, as a link: (where, what it says).
fn next_step(env: &str, name: &str, status: &str, state: Option<&str>, connection: Option<&str>) -> Option<(String, String)> {
    let connection_page = |c: &str| format!("/env/{}/connections/{}", urlencode(env), urlencode(c));
    match (status, state, connection) {
        ("needs_connection", _, _) => Some((format!("/env/{}/integrations#bind-{}", urlencode(env), urlencode(name)), "Bind a connection".into())),
        (_, Some("works"), _) => None,
        (_, Some("not_set_up"), Some(c)) => Some((connection_page(c), format!("Set up {c}"))),
        (_, Some("not_tested"), Some(c)) => Some((connection_page(c), format!("Test {c}"))),
        (_, _, Some(c)) => Some((connection_page(c), format!("Fix {c}"))),
        _ => None,
    }
}

fn since(failing_since: &Option<String>) -> Option<String> {
    failing_since.as_deref().map(|t| format!("failing since {} UTC", short_time(t)))
}

/// "My integrations" in one environment: each integration, its status, and a "Select a
/// connection" control offering only this environment's connections of the same provider.
#[component]
pub fn IntegrationsPage() -> impl IntoView {
    let params = use_params_map();
    let env = move || params.read().get("env").unwrap_or_default();
    let bind = ServerAction::<BindIntegration>::new();
    let list = Resource::new(move || (env(), bind.version().get()), |(env, _)| list_integrations(env));
    view! {
        <section class="panel">
            <h1>"Integrations in " {env}</h1>
            <p class="muted">"Apps publish their integrations here (" <code>"PUT /api/v1/environments/" {env} "/integrations/NAME"</code> "). Bind each one to a connection of this environment; apps then ask connvault for its token."</p>
            <p><a href="/integrations">"Overview of every environment"</a></p>
            <Transition fallback=|| view! { <p>"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match list.await {
                        Ok(l) if l.items.is_empty() => view! { <p class="empty">"No integrations are published in " {l.environment} " yet."</p> }.into_any(),
                        Ok(l) => view! { <IntegrationTable environment=l.environment items=l.items can_bind=l.can_bind bind=bind/> }.into_any(),
                        Err(e) => error_view(&e),
                    }
                })}
            </Transition>
            {action_error(bind.value())}
        </section>
    }
}

#[component]
fn IntegrationTable(environment: String, items: Vec<IntegrationRow>, can_bind: bool, bind: ServerAction<BindIntegration>) -> impl IntoView {
    view! {
        <div class="table-wrap">
            <table data-testid="integrations">
                <thead><tr><th scope="col">"Integration"</th><th scope="col">"Objects"</th><th scope="col">"Status"</th><th scope="col">"Connection"</th></tr></thead>
                <tbody>
                    {items.into_iter().map(|i| {
                        let select_id = format!("bind-{}", urlencode(&i.name));
                        let label = format!("Select a connection for {}", i.name);
                        let current = i.connection.clone().unwrap_or_default();
                        let none_label = if i.candidates.is_empty() { format!("No {} connection in {} yet", i.provider, environment) } else { "— none —".to_string() };
                        let (env_field, name_field, row_name) = (environment.clone(), i.name.clone(), i.name.clone());
                        let candidates = i.candidates.clone();
                        view! {
                            <tr data-integration=row_name>
                                <th scope="row">{i.name.clone()}<div class="muted"><span class="tag">{i.provider.clone()}</span>{i.version.clone().map(|v| format!(" v{v}"))}</div></th>
                                <td>{i.objects.clone()}</td>
                                <td>
                                    {
                                        let (label, class) = shown(&i.status, i.connection_state.as_deref());
                                        view! { <span class=format!("status {class}") data-testid="status">{label}</span> }
                                    }
                                    {since(&i.failing_since).map(|s| view! { <div class="muted" data-testid="failing-since">{s}</div> })}
                                    {i.reason.clone().map(|r| view! { <div class="muted reason">{r}</div> })}
                                    {next_step(&environment, &i.name, &i.status, i.connection_state.as_deref(), i.connection.as_deref())
                                        .filter(|_| i.status != "needs_connection")
                                        .map(|(href, text)| view! { <a href=href data-testid="next-step">{text}</a> })}
                                </td>
                                <td>
                                    <ActionForm action=bind attr:class="inline">
                                        <input type="hidden" name="environment" value=env_field/>
                                        <input type="hidden" name="name" value=name_field/>
                                        <label for=select_id.clone() class="sr-only">{label}</label>
                                        <select id=select_id name="connection" disabled=!can_bind>
                                            <option value="" selected=current.is_empty()>{none_label}</option>
                                            {candidates.iter().map(|c| {
                                                let selected = *c == current;
                                                let value = c.clone();
                                                view! { <option value=value selected=selected>{c.clone()}</option> }
                                            }).collect_view()}
                                        </select>
                                        {can_bind.then(|| view! { <button type="submit" class="secondary">"Save"</button> })}
                                    </ActionForm>
                                </td>
                            </tr>
                        }
                    }).collect_view()}
                </tbody>
            </table>
        </div>
    }
}

/// Integrations × environments: what each environment still misses, at a glance.
#[component]
pub fn OverviewPage() -> impl IntoView {
    let grid = Resource::new(|| (), |_| integrations_overview());
    view! {
        <section class="panel">
            <h1>"Integrations overview"</h1>
            <p class="muted">"Each cell is an integration in an environment and links to what to do next. Green: bound to a connection whose latest check passed; amber: it needs a connection, or its connection is not set up or not tested yet; red: failing."</p>
            <Suspense fallback=|| view! { <p>"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match grid.await {
                        Ok(g) if g.rows.is_empty() => view! { <p class="empty">"No integrations are published yet."</p> }.into_any(),
                        Ok(g) => {
                            let envs: Vec<String> = g.environments.iter().map(|(e, _)| e.clone()).collect();
                            view! {
                                // The header row's counts, for the card layout of a phone (which hides that row).
                                <ul class="attention-summary" data-testid="attention-summary">
                                    {g.environments.iter().map(|(e, n)| view! { <li>{e.clone()} ": " {attention_words(*n)}</li> }).collect_view()}
                                </ul>
                                <div class="table-wrap">
                                    <table class="grid" data-testid="overview">
                                        <thead><tr><th scope="col">"Integration"</th>{g.environments.iter().map(|(e, n)| view! {
                                            <th scope="col" data-env=e.clone()>
                                                <a href=format!("/env/{}/integrations", urlencode(e))>{e.clone()}</a>
                                                <div class="attention-count" data-testid="attention-count">
                                                    {attention_words(*n)}
                                                </div>
                                            </th>
                                        }).collect_view()}</tr></thead>
                                        <tbody>
                                            {g.rows.into_iter().map(|(name, provider, cells)| view! {
                                                <tr data-integration=name.clone()>
                                                    <th scope="row">{name.clone()}<div class="muted">{provider}</div></th>
                                                    {cells.into_iter().zip(envs.clone()).map(|(cell, env)| view! { <GridCell env name=name.clone() cell/> }).collect_view()}
                                                </tr>
                                            }).collect_view()}
                                        </tbody>
                                    </table>
                                </div>
                            }.into_any()
                        }
                        Err(e) => error_view(&e),
                    }
                })}
            </Suspense>
        </section>
    }
}

/// "1 thing needs attention" (linking to the start page's list), or "Nothing needs attention".
fn attention_words(n: usize) -> AnyView {
    if n == 0 {
        view! { <span class="muted">"Nothing needs attention"</span> }.into_any()
    } else {
        view! { <a href="/">{format!("{n} {} need{} attention", if n == 1 { "thing" } else { "things" }, if n == 1 { "s" } else { "" })}</a> }.into_any()
    }
}

/// One cell of the overview: the status in words (labelled with its environment, which the
/// card layout of a phone shows), linking to the next step.
#[component]
fn GridCell(env: String, name: String, cell: Option<Cell>) -> impl IntoView {
    let Some(c) = cell else {
        return view! { <td class="cell absent" data-env=env.clone()><span class="cell-label">{env.clone()} ": "</span>"not published"</td> }.into_any();
    };
    let (label, class) = shown(&c.status, c.connection_state.as_deref());
    let href = next_step(&env, &name, &c.status, c.connection_state.as_deref(), c.connection.as_deref())
        .map(|(href, _)| href)
        .unwrap_or_else(|| format!("/env/{}/integrations", urlencode(&env)));
    view! {
        <td class=format!("cell {class}") data-env=env.clone() title=c.reason.clone().unwrap_or_default()>
            <a href=href data-testid="cell-link"><span class="cell-label">{env.clone()} ": "</span><span data-testid="cell-status">{label}</span></a>
            {since(&c.failing_since).map(|s| view! { <div class="since">{s}</div> })}
        </td>
    }
    .into_any()
}
