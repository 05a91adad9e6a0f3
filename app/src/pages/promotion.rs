use leptos::prelude::*;

use crate::api::{list_environments, Promote, PromotionPlan};
use crate::pages::auth::{action_error, error_view};

fn action_label(action: &str) -> &'static str {
    match action {
        "create" => "Create",
        "update" => "Update",
        "conflict" => "Conflict",
        _ => "Unchanged",
    }
}

/// Promote one environment's integrations, connection descriptors and bindings into another:
/// choose source and target, see the plan as a table of differences, apply it, then go to the
/// integrations that still need a connection. Secrets never travel.
#[component]
pub fn PromotePage() -> impl IntoView {
    let envs = Resource::new(|| (), |_| list_environments());
    let promote = ServerAction::<Promote>::new();
    view! {
        <section class="panel">
            <h1>"Promote"</h1>
            <p class="muted">"Carries integrations, connection names and settings, and bindings from one environment to the next. Secrets never travel: the target's administrators fill them in."</p>
            <Suspense fallback=|| view! { <p>"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match envs.await {
                        Ok(list) if list.len() < 2 => view! { <p class="empty">"You need a role in two environments to promote between them."</p> }.into_any(),
                        Ok(list) => {
                            let names: Vec<String> = list.into_iter().map(|e| e.name).collect();
                            view! { <PromoteForm names=names promote=promote/> }.into_any()
                        }
                        Err(e) => error_view(&e),
                    }
                })}
            </Suspense>
            {action_error(promote.value())}
            {move || promote.value().get().and_then(|r| r.ok()).map(|plan| view! { <PlanView plan=plan promote=promote/> })}
        </section>
    }
}

#[component]
fn PromoteForm(names: Vec<String>, promote: ServerAction<Promote>) -> impl IntoView {
    let (from_names, to_names) = (names.clone(), names.clone());
    let first = names.first().cloned().unwrap_or_default();
    let second = names.get(1).cloned().unwrap_or_default();
    view! {
        <ActionForm action=promote attr:class="stack form" attr:data-testid="promote-form">
            <div class="row">
                <label for="p-from">"From"</label>
                <select id="p-from" name="from">
                    {from_names.into_iter().map(|n| { let selected = n == first; view! { <option value=n.clone() selected=selected>{n.clone()}</option> } }).collect_view()}
                </select>
                <label for="p-to">"To"</label>
                <select id="p-to" name="to">
                    {to_names.into_iter().map(|n| { let selected = n == second; view! { <option value=n.clone() selected=selected>{n.clone()}</option> } }).collect_view()}
                </select>
            </div>
            <label class="check"><input type="checkbox" name="create_placeholders"/>" Create the connections the target lacks (settings only; its administrators add the secrets)"</label>
            <label class="check"><input type="checkbox" name="overwrite_settings"/>" Overwrite the target's connection settings where they differ"</label>
            <p><button type="submit">"Show plan"</button></p>
        </ActionForm>
    }
}

#[component]
fn PlanView(plan: PromotionPlan, promote: ServerAction<Promote>) -> impl IntoView {
    let conflicts = plan.count("conflict");
    let changes = plan.count("create") + plan.count("update");
    let summary =
        format!("{} to create, {} to update, {} unchanged, {} in conflict", plan.count("create"), plan.count("update"), plan.count("unchanged"), conflicts);
    let integrations_href = format!("/env/{}/integrations", plan.to);
    let PromotionPlan { from, to, lines, needs_connection, applied, overwrite_settings: overwrite, create_placeholders: placeholders } = plan;
    let heading = if applied { format!("Promoted {from} → {to}") } else { format!("Plan: {from} → {to}") };
    let outcome = if applied {
        let done = if changes == 0 { "Nothing needed to change.".to_string() } else { format!("Applied: {summary}.") };
        view! { <p class="ok" role="status" data-testid="promote-result">{done}</p> }.into_any()
    } else if conflicts > 0 {
        view! { <p class="error" role="alert" data-testid="promote-result">{summary.clone()} ". Nothing can be applied while there are conflicts: change the target, or tick “Overwrite the target's connection settings” and plan again."</p> }.into_any()
    } else {
        view! { <p class="muted" role="status" data-testid="promote-result">{summary.clone()} "."</p> }.into_any()
    };
    let needs_link = (applied && !needs_connection.is_empty()).then(|| {
        view! { <p><a class="button" href=integrations_href.clone() data-testid="needs-connection-link">"Bind the integrations that need a connection in " {to.clone()}</a></p> }
    });
    // Applying sends the plan's choices again; the server plans afresh and refuses on conflict.
    let apply_form = (!applied && conflicts == 0 && changes > 0).then(|| {
        let (from, to) = (from.clone(), to.clone());
        view! {
            <ActionForm action=promote attr:class="inline">
                <input type="hidden" name="from" value=from/>
                <input type="hidden" name="to" value=to/>
                <input type="hidden" name="apply" value="yes"/>
                {overwrite.then(|| view! { <input type="hidden" name="overwrite_settings" value="on"/> })}
                {placeholders.then(|| view! { <input type="hidden" name="create_placeholders" value="on"/> })}
                <button type="submit">"Apply"</button>
            </ActionForm>
        }
    });
    view! {
        <h2>{heading}</h2>
        {outcome}
        {(!needs_connection.is_empty()).then(|| view! {
            <ul class="needs" data-testid="needs-connection">
                {needs_connection.into_iter().map(|n| view! { <li>{n}</li> }).collect_view()}
            </ul>
        })}
        {needs_link}
        <div class="table-wrap">
            <table data-testid="plan">
                <thead><tr><th scope="col">"Kind"</th><th scope="col">"Name"</th><th scope="col">"Change"</th><th scope="col">"Detail"</th></tr></thead>
                <tbody>
                    {lines.into_iter().map(|l| view! {
                        <tr class=format!("action-{}", l.action)>
                            <td>{l.kind.clone()}</td>
                            <th scope="row">{l.name.clone()}</th>
                            <td><span class=format!("tag action-{}", l.action)>{action_label(&l.action)}</span></td>
                            <td>{l.detail.clone()}</td>
                        </tr>
                    }).collect_view()}
                </tbody>
            </table>
        </div>
        {apply_form}
    }
}
