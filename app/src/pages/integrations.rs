use leptos::prelude::*;
use leptos_router::hooks::use_params_map;

use crate::api::{integrations_overview, list_integrations, BindIntegration, IntegrationRow};
use crate::pages::auth::{action_error, error_view};

fn status_label(status: &str) -> &'static str {
    match status {
        "bound" => "Bound",
        "failing" => "Failing",
        _ => "Needs a connection",
    }
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
                        let select_id = format!("bind-{}", i.name);
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
                                    <span class=format!("status status-{}", i.status) data-testid="status">{status_label(&i.status)}</span>
                                    {i.reason.clone().map(|r| view! { <div class="muted reason">{r}</div> })}
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
            <p class="muted">"Each cell is an integration in an environment: bound, failing, needs a connection, or not published there."</p>
            <Suspense fallback=|| view! { <p>"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match grid.await {
                        Ok(g) if g.rows.is_empty() => view! { <p class="empty">"No integrations are published yet."</p> }.into_any(),
                        Ok(g) => {
                            let envs = g.environments.clone();
                            view! {
                                <div class="table-wrap">
                                    <table class="grid" data-testid="overview">
                                        <thead><tr><th scope="col">"Integration"</th>{envs.iter().map(|e| view! { <th scope="col"><a href=format!("/env/{e}/integrations")>{e.clone()}</a></th> }).collect_view()}</tr></thead>
                                        <tbody>
                                            {g.rows.into_iter().map(|(name, provider, cells)| view! {
                                                <tr data-integration=name.clone()>
                                                    <th scope="row">{name.clone()}<div class="muted">{provider}</div></th>
                                                    {cells.into_iter().zip(envs.clone()).map(|(cell, env)| match cell {
                                                        Some((status, reason)) => view! {
                                                            <td class=format!("cell status-{status}") data-env=env title=reason.clone().unwrap_or_default()>{status_label(&status)}</td>
                                                        }.into_any(),
                                                        None => view! { <td class="cell absent" data-env=env>"not published"</td> }.into_any(),
                                                    }).collect_view()}
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
