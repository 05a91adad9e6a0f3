use leptos::prelude::*;

use crate::api::list_environments;

/// The start page: what connvault is, and the environments in promotion order.
#[component]
pub fn HomePage() -> impl IntoView {
    let envs = Resource::new(|| (), |_| list_environments());
    view! {
        <section class="panel">
            <h1>"connvault"</h1>
            <p class="lead">"Connections and credentials for your integrations, per environment, sealed at rest."</p>
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
