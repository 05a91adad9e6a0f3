use leptos::prelude::*;

use crate::api::{list_environments, Promote, PromotionPlan};
use crate::pages::auth::{action_error, error_view};

/// A plan line's action; after an apply, what was done.
fn action_label(action: &str, applied: bool) -> &'static str {
    match (action, applied) {
        ("create", false) => "Create",
        ("create", true) => "Created",
        ("update", false) => "Update",
        ("update", true) => "Updated",
        ("conflict", _) => "Conflict",
        _ => "Unchanged",
    }
}

/// Promote one environment's integrations, connection descriptors and bindings into another:
/// choose source and target, see the plan as a table of differences, apply it, then work
/// through the checklist of what the target still needs (connections to set up there,
/// integrations to bind), each with a link to its page. Secrets and each environment's own
/// settings never travel.
#[component]
pub fn PromotePage() -> impl IntoView {
    let envs = Resource::new(|| (), |_| list_environments());
    let promote = ServerAction::<Promote>::new();
    view! {
        <section class="panel">
            <h1>"Promote"</h1>
            <p class="muted">"Carries integrations, connections (their names, providers and shared settings) and bindings from one environment to the next. Secrets and each environment's own settings (where a connection goes, whose it is) never travel: the target's administrators set them up there."</p>
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
    let from = RwSignal::new(names.first().cloned().unwrap_or_default());
    let to = RwSignal::new(names.get(1).cloned().unwrap_or_default());
    let from_names = names.clone();
    // "To" offers only the environments other than "From"; choosing the one "To" showed moves
    // "To" to the first other one.
    let others = move || names.iter().filter(|n| **n != from.get()).cloned().collect::<Vec<_>>();
    let choose_from = {
        let others = others.clone();
        move |ev| {
            from.set(event_target_value(&ev));
            if to.get_untracked() == from.get_untracked() {
                to.set(others().into_iter().next().unwrap_or_default());
            }
        }
    };
    view! {
        <ActionForm action=promote attr:class="stack form" attr:data-testid="promote-form">
            <div class="row">
                <label for="p-from">"From"</label>
                <select id="p-from" name="from" on:change=choose_from>
                    {from_names.into_iter().map(|n| { let selected = n == from.get_untracked(); view! { <option value=n.clone() selected=selected>{n.clone()}</option> } }).collect_view()}
                </select>
                <label for="p-to">"To"</label>
                <select id="p-to" name="to" on:change=move |ev| to.set(event_target_value(&ev)) prop:value=move || to.get()>
                    {move || others().into_iter().map(|n| { let selected = n == to.get_untracked(); view! { <option value=n.clone() selected=selected>{n.clone()}</option> } }).collect_view()}
                </select>
            </div>
            <label class="check"><input type="checkbox" name="create_placeholders"/>" Create the connections the target lacks, to set up there (a name, a provider and shared settings only)"</label>
            <label class="check"><input type="checkbox" name="overwrite_settings"/>" Overwrite shared settings where the target's differ (never its own: where a connection goes, whose it is)"</label>
            <p><button type="submit">"Show plan"</button></p>
        </ActionForm>
    }
}

#[component]
fn PlanView(plan: PromotionPlan, promote: ServerAction<Promote>) -> impl IntoView {
    let conflicts = plan.count("conflict");
    let changes = plan.count("create") + plan.count("update");
    let PromotionPlan { from, to, lines, summary, needs_connection, checklist, applied, overwrite_settings: overwrite, create_placeholders: placeholders } =
        plan;
    let heading = if applied { format!("Promoted {from} → {to}") } else { format!("Plan: {from} → {to}") };
    let outcome = if applied {
        view! { <p class="ok" role="status" data-testid="promote-result">{summary}</p> }.into_any()
    } else if conflicts > 0 {
        view! { <p class="error" role="alert" data-testid="promote-result">{summary} " Change the target, or tick “Overwrite shared settings” where only shared settings differ, and plan again."</p> }.into_any()
    } else {
        view! { <p class="muted" role="status" data-testid="promote-result">{summary}</p> }.into_any()
    };
    // What the target still needs, each with its page; the integrations page once for all.
    let bind_href = checklist.iter().find(|s| s.kind == "bind_integration").map(|s| s.path.clone());
    let todo = (!checklist.is_empty()).then(|| {
        let title = if applied { format!("Still to do in {to}") } else { format!("Still to do in {to} after this") };
        view! {
            <h3>{title}</h3>
            <ul class="needs" data-testid="checklist">
                {checklist.into_iter().map(|s| view! { <li data-kind=s.kind.clone()><a href=s.path.clone()>{s.text.clone()}</a></li> }).collect_view()}
            </ul>
        }
    });
    let needs_link = bind_href.filter(|_| applied).map(|href| {
        view! { <p><a class="button" href=href data-testid="needs-connection-link">"Bind the integrations that need a connection in " {to.clone()}</a></p> }
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
        <div class="table-wrap">
            <table data-testid="plan">
                <thead><tr><th scope="col">"Kind"</th><th scope="col">"Name"</th><th scope="col">"Change"</th><th scope="col">"Detail"</th></tr></thead>
                <tbody>
                    {lines.into_iter().map(|l| view! {
                        <tr class=format!("action-{}", l.action)>
                            <td>{l.kind.clone()}</td>
                            <th scope="row">{l.name.clone()}</th>
                            <td><span class=format!("tag action-{}", l.action)>{action_label(&l.action, applied)}</span></td>
                            <td>{l.detail.clone()}</td>
                        </tr>
                    }).collect_view()}
                </tbody>
            </table>
        </div>
        {apply_form}
        {todo}
        {needs_link}
    }
}
