use leptos::prelude::*;
use leptos_router::hooks::{use_params_map, use_query_map};

use crate::api::{list_connections, ConnectionItem};

/// An environment's connections. The search box works without JavaScript (a GET form) and,
/// once hydrated, filters as you type through a server function.
#[component]
pub fn ConnectionsPage() -> impl IntoView {
    let params = use_params_map();
    let query = use_query_map();
    let env = move || params.read().get("env").unwrap_or_default();
    let search = RwSignal::new(query.read_untracked().get("q").unwrap_or_default());
    let list = Resource::new(move || (env(), search.get()), |(env, q)| list_connections(env, q));

    view! {
        <section class="panel">
            <h1>"Connections in " {env}</h1>
            <p><a href=move || format!("/audit?environment={}", env())>"Audit trail of " {env}</a></p>
            <form method="get" class="toolbar" role="search" on:submit=|ev| ev.prevent_default()>
                <label for="q">"Search"</label>
                <input id="q" name="q" type="search" placeholder="Name contains…" autocomplete="off"
                    prop:value=move || search.get()
                    on:input=move |ev| search.set(event_target_value(&ev))/>
                <noscript><button type="submit">"Search"</button></noscript>
            </form>
            <Transition fallback=|| view! { <p>"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match list.await {
                        Ok(list) if list.items.is_empty() && search.get_untracked().trim().is_empty() => view! {
                            <p class="empty">"No connections in " {list.environment} " yet."</p>
                        }.into_any(),
                        Ok(list) if list.items.is_empty() => view! {
                            <p class="empty">"No connections match \u{201c}" {search.get_untracked()} "\u{201d}."</p>
                        }.into_any(),
                        Ok(list) => view! { <ConnectionTable items=list.items more=list.more/> }.into_any(),
                        Err(e) => crate::pages::auth::error_view(&e),
                    }
                })}
            </Transition>
        </section>
    }
}

#[component]
fn ConnectionTable(items: Vec<ConnectionItem>, more: bool) -> impl IntoView {
    view! {
        <div class="table-wrap">
            <table data-testid="connections">
                <thead>
                    <tr><th scope="col">"Name"</th><th scope="col">"Provider"</th><th scope="col">"Target"</th><th scope="col">"Secrets"</th><th scope="col">"Updated"</th></tr>
                </thead>
                <tbody>
                    {items.into_iter().map(|c| view! {
                        <tr>
                            <th scope="row">{c.name}</th>
                            <td><span class="tag">{c.provider}</span></td>
                            <td class="mono">{c.target}</td>
                            <td>
                                {if c.secrets.is_empty() {
                                    view! { <span class="muted">"none set"</span> }.into_any()
                                } else {
                                    c.secrets.into_iter().map(|s| view! {
                                        <div class="secret">
                                            <span class="mono">{s.field}</span> ": set on " {s.set_at.get(..10).unwrap_or_default().to_string()} " by " {s.set_by}
                                        </div>
                                    }).collect_view().into_any()
                                }}
                            </td>
                            <td><time datetime=c.updated_at.clone()>{c.updated_at.get(..16).unwrap_or_default().replace('T', " ")}</time></td>
                        </tr>
                    }).collect_view()}
                </tbody>
            </table>
        </div>
        {more.then(|| view! { <p class="muted">"Showing the first 200; refine the search to see others."</p> })}
    }
}
