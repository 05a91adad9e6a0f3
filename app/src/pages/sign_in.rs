//! A connection that connects by signing in, on the connection page: where it stands, the
//! button that sends the person to the provider (a plain link: the browser leaves the app),
//! the outcome of the sign-in they come back from, and Disconnect.

use leptos::prelude::*;
use leptos_router::hooks::use_query_map;

use crate::api::{sign_in_status, urlencode, DisconnectConnection, Fallible, SignInView};
use crate::pages::auth::error_view;
use crate::pages::connections::ResultBox;

fn state_label(state: &str) -> &'static str {
    match state {
        "connected" => "Connected",
        "failing" => "Failing",
        "needs_sign_in" => "Needs someone to sign in",
        _ => "Not set up",
    }
}

/// What the panel loads and changes, created with the page (outside its Suspense, as
/// `SigningState`).
#[derive(Clone, Copy)]
pub struct SignInState {
    pub disconnect: ServerAction<DisconnectConnection>,
    pub status: Resource<Fallible<SignInView>>,
}

impl SignInState {
    pub fn new(environment: impl Fn() -> String + Send + Sync + 'static, name: impl Fn() -> String + Send + Sync + 'static) -> Self {
        let disconnect = ServerAction::<DisconnectConnection>::new();
        let query = use_query_map();
        let status = Resource::new(
            move || (environment(), name(), query.read().get("sign_in").and_then(|v| v.parse::<i64>().ok()), disconnect.version().get()),
            |(environment, name, sign_in, _)| async move {
                if name.is_empty() {
                    return Err(crate::api::AppError::new("no connection"));
                }
                sign_in_status(environment, name, sign_in).await
            },
        );
        SignInState { disconnect, status }
    }
}

#[component]
pub fn SignInPanel(environment: String, name: String, button: String, can_write: bool, state: SignInState) -> impl IntoView {
    let SignInState { disconnect, status } = state;
    let href = format!("/connect/{}/{}", urlencode(&environment), urlencode(&name));
    view! {
        <section class="certificate" aria-labelledby="sign-in-title">
            <h2 id="sign-in-title">"Sign-in"</h2>
            <Transition fallback=|| view! { <p>"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match status.await {
                        Ok(st) => view! {
                            {st.result.clone().filter(|_| disconnect.value().get().is_none()).map(|r| view! { <ResultBox outcome=r ok_title="Connected" bad_title="Not connected" testid="sign-in-result"/> })}
                            <p data-testid="sign-in-status"><strong>{state_label(&st.state)}</strong>": " {st.summary.clone()}</p>
                            {st.advice.clone().map(|a| view! { <p class="advice"><strong>"What to do: "</strong>{a}</p> })}
                            <p class="muted">"The app at the provider must name this callback (redirect) URL: " <code data-testid="callback-url">{st.callback_url.clone()}</code></p>
                        }.into_any(),
                        Err(e) => error_view(&e),
                    }
                })}
            </Transition>
            {move || disconnect.value().get().map(|r| match r {
                Ok(o) => view! { <ResultBox outcome=o ok_title="Disconnected" bad_title="Not disconnected" testid="disconnect-result"/> }.into_any(),
                Err(e) => view! { <p class="error" role="alert">{e.message}</p> }.into_any(),
            })}
            {can_write.then(|| {
                let (env2, name2) = (environment.clone(), name.clone());
                view! {
                    <p><a class="button" href=href.clone() rel="external" data-testid="connect">{button.clone()}</a></p>
                    <ActionForm action=disconnect attr:class="inline">
                        <input type="hidden" name="environment" value=env2/>
                        <input type="hidden" name="name" value=name2/>
                        <button type="submit" class="secondary" disabled=move || disconnect.pending().get()>"Disconnect"</button>
                    </ActionForm>
                }
            })}
        </section>
    }
}
