use leptos::prelude::*;
use leptos_meta::{provide_meta_context, MetaTags, Stylesheet, Title};
use leptos_router::components::{Route, Router, Routes, A};
use leptos_router::path;

use crate::api::list_environments;
use crate::pages::{connections::ConnectionsPage, home::HomePage};

pub fn shell(options: LeptosOptions) -> impl IntoView {
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <AutoReload options=options.clone()/>
                <HydrationScripts options/>
                <MetaTags/>
                <link rel="icon" type="image/svg+xml" href="/favicon.svg"/>
            </head>
            <body>
                <App/>
            </body>
        </html>
    }
}

#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    // Marks the page once the WebAssembly has taken over (used by the end-to-end tests).
    Effect::new(move |_| {
        if let Some(body) = document().body() {
            let _ = body.set_attribute("data-hydrated", "true");
        }
    });
    view! {
        <Stylesheet id="leptos" href="/pkg/connvault.css"/>
        <Title text="connvault"/>
        <Router>
            <a class="skip" href="#main">"Skip to content"</a>
            <header class="topbar">
                <A href="/" attr:class="brand">"connvault"</A>
                <EnvironmentSwitcher/>
            </header>
            <main id="main">
                <Routes fallback=|| view! { <section class="panel"><h1>"Page not found"</h1><p><a href="/">"Back to the start page"</a></p></section> }>
                    <Route path=path!("/") view=HomePage/>
                    <Route path=path!("/env/:env/connections") view=ConnectionsPage/>
                </Routes>
            </main>
        </Router>
    }
}

/// The environment switcher, always visible: one link per environment, in promotion order.
#[component]
fn EnvironmentSwitcher() -> impl IntoView {
    let envs = Resource::new(|| (), |_| list_environments());
    view! {
        <nav aria-label="Environments" class="envs">
            <Suspense fallback=|| view! { <span class="muted">"…"</span> }>
                {move || Suspend::new(async move {
                    match envs.await {
                        Ok(list) => list
                            .into_iter()
                            .map(|e| {
                                let href = format!("/env/{}/connections", e.name);
                                view! { <A href=href>{e.name}</A> }
                            })
                            .collect_view()
                            .into_any(),
                        Err(e) => view! { <span class="error">{crate::api::error_text(&e)}</span> }.into_any(),
                    }
                })}
            </Suspense>
        </nav>
    }
}
