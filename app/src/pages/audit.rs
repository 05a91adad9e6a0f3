use leptos::prelude::*;
use leptos_router::hooks::use_query_map;

use crate::api::{list_audit, AuditItem};
use crate::pages::auth::error_view;

/// Who did what, when, from where. Filter by environment; page back with "Older events".
/// A plain GET form and links: it works before hydration.
#[component]
pub fn AuditPage() -> impl IntoView {
    let query = use_query_map();
    let env = move || query.read().get("environment").unwrap_or_default();
    let before = move || query.read().get("before").and_then(|b| b.parse::<i64>().ok());
    let events = Resource::new(move || (env(), before()), |(env, before)| list_audit(env, before));
    view! {
        <section class="panel">
            <h1>"Audit trail"</h1>
            <form method="get" class="toolbar">
                <label for="environment">"Environment"</label>
                <input id="environment" name="environment" placeholder="e.g. DEV (empty: all, owners only)" prop:value=env/>
                <button type="submit">"Show"</button>
            </form>
            <Transition fallback=|| view! { <p>"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match events.await {
                        Ok(page) if page.items.is_empty() => view! { <p class="empty">"No events."</p> }.into_any(),
                        Ok(page) => {
                            let older = page.older.map(|id| format!("/audit?environment={}&before={id}", env()));
                            view! {
                                <AuditTable items=page.items/>
                                {older.map(|href| view! { <p><a href=href>"Older events"</a></p> })}
                            }.into_any()
                        }
                        Err(e) => error_view(&e),
                    }
                })}
            </Transition>
        </section>
    }
}

#[component]
fn AuditTable(items: Vec<AuditItem>) -> impl IntoView {
    view! {
        <div class="table-wrap">
            <table data-testid="audit">
                <thead><tr><th scope="col">"When (UTC)"</th><th scope="col">"Who"</th><th scope="col">"What"</th><th scope="col">"Environment"</th><th scope="col">"Object"</th><th scope="col">"From"</th></tr></thead>
                <tbody>
                    {items.into_iter().map(|e| view! {
                        <tr class=if e.outcome == "success" { "" } else { "failed" }>
                            <td><time datetime=e.at.clone()>{e.at.get(..19).unwrap_or_default().replace('T', " ")}</time></td>
                            <td>{e.actor}</td>
                            <td class="mono">{e.action}{(e.outcome != "success").then(|| format!(" ({})", e.outcome))}</td>
                            <td>{e.environment.unwrap_or_default()}</td>
                            <td>{e.object.unwrap_or_default()}</td>
                            <td class="mono">{e.client_addr.unwrap_or_default()}</td>
                        </tr>
                    }).collect_view()}
                </tbody>
            </table>
        </div>
    }
}
