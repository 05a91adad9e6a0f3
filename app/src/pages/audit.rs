use leptos::prelude::*;
use leptos_router::hooks::use_query_map;

use crate::api::{list_audit, list_environments, urlencode, whoami, AuditItem};
use crate::pages::auth::error_view;
use crate::pages::short_time;

/// Who did what, when, from where. Filters: environment, actor, action, days (UTC); pages back
/// with "Older events". A plain GET form and links: it works before hydration.
#[component]
pub fn AuditPage() -> impl IntoView {
    let query = use_query_map();
    let get = move |k: &'static str| move || query.read().get(k).unwrap_or_default();
    let (env, actor, action, from, to, cursor) = (get("environment"), get("actor"), get("action"), get("from"), get("to"), get("cursor"));
    let events = Resource::new(
        move || (env(), actor(), action(), from(), to(), cursor()),
        |(env, actor, action, from, to, cursor)| list_audit(env, actor, action, from, to, cursor),
    );
    let envs = Resource::new(|| (), |_| list_environments());
    let me = Resource::new(|| (), |_| whoami());
    view! {
        <section class="panel">
            <h1>"Audit trail"</h1>
            <form method="get" class="toolbar filters" aria-label="Filter events">
                <label for="environment">"Environment"</label>
                <select id="environment" name="environment">
                    <Transition fallback=|| ()>
                        {move || Suspend::new(async move {
                            let owner = me.await.ok().flatten().is_some_and(|m| m.owner);
                            // The environment shown: the one asked for, or the first one a
                            // person who is not an owner may read.
                            let current = events.await.map(|p| p.environment).unwrap_or_else(|_| env());
                            view! {
                                {owner.then(|| view! { <option value="" selected=current.is_empty()>"All (and sign-ins)"</option> })}
                                {envs.await.unwrap_or_default().into_iter().map(|e| {
                                    let selected = e.name.eq_ignore_ascii_case(&current);
                                    let value = e.name.clone();
                                    view! { <option value=value selected=selected>{e.name}</option> }
                                }).collect_view()}
                            }
                        })}
                    </Transition>
                </select>
                <label for="actor">"Who"</label>
                <input id="actor" name="actor" placeholder="email or key name contains…" prop:value=actor/>
                <label for="action">"Action"</label>
                <select id="action" name="action">
                    <option value="">"Any"</option>
                    <Transition fallback=|| ()>
                        {move || Suspend::new(async move {
                            let current = action();
                            events.await.map(|p| p.actions).unwrap_or_default().into_iter().map(|(a, label)| {
                                let selected = a == current;
                                view! { <option value=a selected=selected>{label}</option> }
                            }).collect_view()
                        })}
                    </Transition>
                </select>
                <label for="from">"From"</label>
                <input id="from" name="from" type="date" prop:value=from/>
                <label for="to">"To"</label>
                <input id="to" name="to" type="date" prop:value=to/>
                <button type="submit">"Show"</button>
            </form>
            <Transition fallback=|| view! { <p>"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match events.await {
                        Ok(page) if page.items.is_empty() => view! { <p class="empty">"No events match."</p> }.into_any(),
                        Ok(page) => {
                            let older = page.older.map(|c| {
                                format!(
                                    "/audit?environment={}&actor={}&action={}&from={}&to={}&cursor={c}",
                                    urlencode(&env()), urlencode(&actor()), urlencode(&action()), urlencode(&from()), urlencode(&to())
                                )
                            });
                            view! {
                                <p><a href=page.csv.clone() download data-testid="csv">"Download these events as CSV"</a></p>
                                <AuditTable items=page.items/>
                                <nav class="pager" aria-label="Pages">{older.map(|href| view! { <a href=href rel="next">"Older events"</a> })}</nav>
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
                <thead><tr><th scope="col">"When (UTC)"</th><th scope="col">"Who"</th><th scope="col">"What"</th><th scope="col">"Environment"</th><th scope="col">"Object"</th><th scope="col">"Change"</th><th scope="col">"From"</th></tr></thead>
                <tbody>
                    {items.into_iter().map(|e| {
                        let failed = !matches!(e.outcome.as_str(), "success" | "ok");
                        view! {
                            <tr class:failed=failed>
                                <td><time datetime=e.at.clone()>{e.at.get(..19).map(|t| t.replace('T', " ")).unwrap_or_else(|| short_time(&e.at))}</time></td>
                                <td>{e.actor}</td>
                                <td data-action=e.action.clone() title=e.action.clone()>{e.label}{failed.then(|| format!(" ({})", e.outcome))}</td>
                                <td>{e.environment.unwrap_or_default()}</td>
                                <td>{match (e.object, e.path) {
                                    (Some(object), Some(path)) => view! { <a href=path>{object}</a> }.into_any(),
                                    (object, _) => object.unwrap_or_default().into_any(),
                                }}</td>
                                <td data-testid="change">{e.changes.into_iter().map(|(what, before, after)| view! {
                                    <div class="change">{what} ": " <span class="before">{before}</span> " → " <span class="after">{after}</span></div>
                                }).collect_view()}</td>
                                <td class="mono">{e.client_addr.unwrap_or_default()}</td>
                            </tr>
                        }
                    }).collect_view()}
                </tbody>
            </table>
        </div>
    }
}
