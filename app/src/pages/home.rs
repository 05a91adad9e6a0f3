use leptos::prelude::*;

use crate::api::{expiring_certificates, list_environments, urlencode};

/// The start page: what connvault is, and the environments in promotion order.
#[component]
pub fn HomePage() -> impl IntoView {
    let envs = Resource::new(|| (), |_| list_environments());
    let expiring = Resource::new(|| (), |_| expiring_certificates());
    view! {
        <section class="panel">
            <h1>"connvault"</h1>
            <p class="lead">"Connections and credentials for your integrations, per environment, sealed at rest."</p>
            <Suspense fallback=|| ()>
                {move || Suspend::new(async move {
                    expiring.await.ok().filter(|l| !l.is_empty()).map(|list| view! {
                        <div class="notice" role="status" data-testid="expiring">
                            <strong>"Salesforce certificates expiring within 30 days"</strong>
                            <ul>
                                {list.into_iter().map(|(env, name, at)| {
                                    let href = format!("/env/{}/connections/{}", urlencode(&env), urlencode(&name));
                                    view! { <li><a href=href>{name.clone()} " in " {env.clone()}</a> " — " {crate::pages::short_time(&at)} ": choose Request admin help to rotate it"</li> }
                                }).collect_view()}
                            </ul>
                        </div>
                    })
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
