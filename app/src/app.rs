use leptos::prelude::*;
use leptos_meta::{provide_meta_context, MetaTags, Stylesheet, Title};
use leptos_router::components::{Route, Router, Routes, A};
use leptos_router::hooks::use_location;
use leptos_router::{path, SsrMode};

use crate::api::{list_environments, whoami, SignOut};
use crate::pages::auth::{AccountPage, SetupPage, SignInPage, WelcomePage};
use crate::pages::connection_list::ConnectionsPage;
use crate::pages::connections::ConnectionPage;
use crate::pages::integrations::{IntegrationsPage, OverviewPage};
use crate::pages::{audit::AuditPage, environments::EnvironmentsPage, home::HomePage, keys::ApiKeysPage, people::PeoplePage};

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
                <UserMenu/>
            </header>
            // Every page is rendered whole on the server (SsrMode::Async): without JavaScript
            // there is nothing to stream in later, so forms and their messages must be there.
            <main id="main">
                <Routes fallback=|| view! { <section class="panel"><h1>"Page not found"</h1><p><a href="/">"Back to the start page"</a></p></section> }>
                    <Route path=path!("/") view=HomePage ssr=SsrMode::Async/>
                    <Route path=path!("/sign-in") view=SignInPage ssr=SsrMode::Async/>
                    <Route path=path!("/audit") view=AuditPage ssr=SsrMode::Async/>
                    <Route path=path!("/outbox") view=crate::pages::outbox::OutboxPage ssr=SsrMode::Async/>
                    <Route path=path!("/account") view=AccountPage ssr=SsrMode::Async/>
                    <Route path=path!("/setup") view=SetupPage ssr=SsrMode::Async/>
                    <Route path=path!("/welcome") view=WelcomePage ssr=SsrMode::Async/>
                    <Route path=path!("/users") view=PeoplePage ssr=SsrMode::Async/>
                    <Route path=path!("/environments") view=EnvironmentsPage ssr=SsrMode::Async/>
                    <Route path=path!("/api-keys") view=ApiKeysPage ssr=SsrMode::Async/>
                    <Route path=path!("/integrations") view=OverviewPage ssr=SsrMode::Async/>
                    <Route path=path!("/promote") view=crate::pages::promotion::PromotePage ssr=SsrMode::Async/>
                    <Route path=path!("/env/:env/integrations") view=IntegrationsPage ssr=SsrMode::Async/>
                    <Route path=path!("/env/:env/connections") view=ConnectionsPage ssr=SsrMode::Async/>
                    <Route path=path!("/env/:env/webhooks") view=crate::pages::webhooks::WebhooksPage ssr=SsrMode::Async/>
                    <Route path=path!("/env/:env/connections/:name") view=ConnectionPage ssr=SsrMode::Async/>
                    <Route path=path!("/respond/:env/:name") view=crate::pages::certificates::RespondPage ssr=SsrMode::Async/>
                    <Route path=path!("/credentials/:env/:name") view=crate::pages::credentials::CredentialsPage ssr=SsrMode::Async/>
                </Routes>
            </main>
        </Router>
    }
}

/// The environment switcher, always visible: one link per environment, in promotion order.
#[component]
fn EnvironmentSwitcher() -> impl IntoView {
    // Refetched on every navigation: signing in or out, or a changed role, shows at once.
    let location = use_location();
    let envs = Resource::new(move || location.pathname.get(), |_| list_environments());
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
                        // Signed out: the page itself says what to do.
                        Err(_) => ().into_any(),
                    }
                })}
            </Suspense>
        </nav>
    }
}

/// Who is signed in, and the sign-out button (a plain form before hydration).
#[component]
fn UserMenu() -> impl IntoView {
    let location = use_location();
    let me = Resource::new(move || location.pathname.get(), |_| whoami());
    let sign_out = ServerAction::<SignOut>::new();
    view! {
        <div class="user">
            <Suspense fallback=|| ()>
                {move || Suspend::new(async move {
                    match me.await {
                        Ok(Some(me)) => view! {
                            <nav aria-label="Administration" class="admin-links">
                                {me.owner.then(|| view! {
                                    <A href="/users" attr:class="quiet-link">"People"</A>
                                    <A href="/environments" attr:class="quiet-link">"Environments"</A>
                                    <A href="/outbox" attr:class="quiet-link">"Outbox"</A>
                                })}
                                <A href="/integrations" attr:class="quiet-link">"Integrations"</A>
                                <A href="/promote" attr:class="quiet-link">"Promote"</A>
                                <A href="/api-keys" attr:class="quiet-link">"API keys"</A>
                                <A href="/audit" attr:class="quiet-link">"Audit"</A>
                            </nav>
                            <A href="/account" attr:class="quiet-link"><span class="who" data-testid="signed-in-as">{me.email}</span></A>
                            <ActionForm action=sign_out><button type="submit" class="quiet">"Sign out"</button></ActionForm>
                        }.into_any(),
                        _ => view! { <A href="/sign-in" attr:class="quiet-link">"Sign in"</A> }.into_any(),
                    }
                })}
            </Suspense>
        </div>
    }
}
