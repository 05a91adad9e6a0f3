use leptos::prelude::*;
use leptos_router::components::Redirect;
use leptos_router::hooks::use_query_map;

use crate::api::{error_text, AcceptInvite, AppError, ChangePassword, CompleteSetup, SignIn, SIGN_IN_REQUIRED};

/// Renders a server function's error, or a redirect to /sign-in when nobody is signed in.
pub fn error_view(e: &AppError) -> AnyView {
    let text = error_text(e);
    if text == SIGN_IN_REQUIRED {
        view! { <Redirect path="/sign-in"/> }.into_any()
    } else {
        view! { <p class="error" role="alert">{text}</p> }.into_any()
    }
}

pub fn action_error<T: Send + Sync + 'static>(value: impl Get<Value = Option<Result<T, AppError>>> + Send + Sync + 'static) -> impl IntoView {
    move || value.get().and_then(|r| r.err()).map(|e| view! { <p class="error" role="alert">{error_text(&e)}</p> })
}

/// Email and password. Works as a plain form before hydration.
#[component]
pub fn SignInPage() -> impl IntoView {
    let action = ServerAction::<SignIn>::new();
    view! {
        <section class="panel narrow">
            <h1>"Sign in"</h1>
            <ActionForm action=action attr:class="stack">
                <label for="email">"Email"</label>
                <input id="email" name="email" type="email" autocomplete="username" required/>
                <label for="password">"Password"</label>
                <input id="password" name="password" type="password" autocomplete="current-password" required/>
                <button type="submit" disabled=move || action.pending().get()>"Sign in"</button>
            </ActionForm>
            {action_error(action.value())}
        </section>
    }
}

/// A new password, typed twice (setup and invitations).
#[component]
fn NewPassword() -> impl IntoView {
    view! {
        <label for="password">"Password (at least 12 characters)"</label>
        <input id="password" name="password" type="password" autocomplete="new-password" minlength="12" required/>
        <label for="confirm">"Password again"</label>
        <input id="confirm" name="confirm" type="password" autocomplete="new-password" minlength="12" required/>
    }
}

/// A page for a one-time link: the token from the URL travels in a hidden field.
fn link_token() -> impl Fn() -> String + Copy {
    let query = use_query_map();
    move || query.read().get("token").unwrap_or_default()
}

/// First run: the one-time setup link leads here to create the owner account.
#[component]
pub fn SetupPage() -> impl IntoView {
    let action = ServerAction::<CompleteSetup>::new();
    let token = link_token();
    view! {
        <section class="panel narrow">
            <h1>"Set up connvault"</h1>
            <p class="muted">"Create the owner account. The owner manages people and environments; this link works once."</p>
            <ActionForm action=action attr:class="stack">
                <input type="hidden" name="token" prop:value=token/>
                <label for="email">"Email"</label>
                <input id="email" name="email" type="email" autocomplete="username" required/>
                <NewPassword/>
                <button type="submit" disabled=move || action.pending().get()>"Create the owner account"</button>
            </ActionForm>
            {action_error(action.value())}
        </section>
    }
}

/// Change the signed-in user's password (other sessions end).
#[component]
pub fn AccountPage() -> impl IntoView {
    let action = ServerAction::<ChangePassword>::new();
    let done = move || matches!(action.value().get(), Some(Ok(())));
    view! {
        <section class="panel narrow">
            <h1>"Your account"</h1>
            <h2>"Change password"</h2>
            <ActionForm action=action attr:class="stack">
                <label for="current">"Current password"</label>
                <input id="current" name="current" type="password" autocomplete="current-password" required/>
                <label for="new">"New password (at least 12 characters)"</label>
                <input id="new" name="new" type="password" autocomplete="new-password" minlength="12" required/>
                <label for="confirm">"New password again"</label>
                <input id="confirm" name="confirm" type="password" autocomplete="new-password" minlength="12" required/>
                <button type="submit" disabled=move || action.pending().get()>"Change password"</button>
            </ActionForm>
            {action_error(action.value())}
            {move || done().then(|| view! { <p class="ok" role="status">"Password changed. Your other sessions have ended."</p> })}
        </section>
    }
}

/// An invitation link leads here: the invited person chooses a password and is signed in.
#[component]
pub fn WelcomePage() -> impl IntoView {
    let action = ServerAction::<AcceptInvite>::new();
    let token = link_token();
    view! {
        <section class="panel narrow">
            <h1>"Welcome to connvault"</h1>
            <p class="muted">"You were invited. Choose your password; this link works once."</p>
            <ActionForm action=action attr:class="stack">
                <input type="hidden" name="token" prop:value=token/>
                <NewPassword/>
                <button type="submit" disabled=move || action.pending().get()>"Set password and sign in"</button>
            </ActionForm>
            {action_error(action.value())}
        </section>
    }
}
