use leptos::prelude::*;

use crate::api::{attention, list_environments, AttentionItem};

/// The start page: what connvault is, and the environments in promotion order.
#[component]
pub fn HomePage() -> impl IntoView {
    let envs = Resource::new(|| (), |_| list_environments());
    let needs = Resource::new(|| (), |_| attention());
    view! {
        <section class="panel">
            <h1>"connvault"</h1>
            <p class="lead">"Connections and credentials for your integrations, per environment, sealed at rest."</p>
            <Suspense fallback=|| ()>
                {move || Suspend::new(async move {
                    needs.await.ok().map(|items| view! { <Attention items/> })
                })}
            </Suspense>
            <h2>"Environments"</h2>
            <p class="muted">"In promotion order. Choose one to see its connections."</p>
            <Suspense fallback=|| view! { <p>"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match envs.await {
                        Ok(list) => view! {
                            <ol class="env-cards" data-testid="env-list">
                                {list.into_iter().map(|e| {
                                    let href = format!("/env/{}/connections", e.name);
                                    view! { <li><a href=href>{e.name}</a></li> }
                                }).collect_view()}
                            </ol>
                        }.into_any(),
                        Err(e) => crate::pages::auth::error_view(&e),
                    }
                })}
            </Suspense>
        </section>
    }
}

/// "What needs attention", per environment: each item links to the page that fixes it.
#[component]
fn Attention(items: Vec<AttentionItem>) -> impl IntoView {
    if items.is_empty() {
        return view! { <p class="ok-box" data-testid="attention">"Nothing needs attention: every connection that was checked works, and nothing waits."</p> }
            .into_any();
    }
    let mut envs: Vec<String> = Vec::new();
    for i in &items {
        if !envs.contains(&i.environment) {
            envs.push(i.environment.clone());
        }
    }
    let label = |kind: &str| match kind {
        "failing" => "Failing",
        "expiring" => "Expiring",
        "waiting_for_admin" => "Waiting for an admin",
        "needs_connection" => "Needs a connection",
        _ => "Webhook failing",
    };
    view! {
        <div data-testid="attention">
            <h2>"What needs attention"</h2>
            {envs.into_iter().map(|env| {
                let mine: Vec<&AttentionItem> = items.iter().filter(|i| i.environment == env).collect();
                let count = mine.len();
                view! {
                    <section class="notice" data-env=env.clone()>
                        <h3>{format!("{env} · {count} {} need{} attention", if count == 1 { "thing" } else { "things" }, if count == 1 { "s" } else { "" })}</h3>
                        <ul>
                            {mine.into_iter().map(|i| view! {
                                <li><span class=format!("status status-{}", if i.kind == "needs_connection" || i.kind == "waiting_for_admin" || i.kind == "expiring" { "needs_connection" } else { "failing" })>{label(&i.kind)}</span>
                                " " <a href=i.path.clone()>{i.object.clone()}</a> ": " {i.detail.clone()}</li>
                            }).collect_view()}
                        </ul>
                    </section>
                }
            }).collect_view()}
        </div>
    }
    .into_any()
}
