use leptos::prelude::*;

pub mod audit;
pub mod auth;
pub mod certificates;
pub mod connection_list;
pub mod connections;
pub mod credentials;
pub mod environments;
pub mod home;
pub mod integrations;
pub mod keys;
pub mod outbox;
pub mod people;
pub mod promotion;
pub mod webhooks;
pub mod sign_in;

/// False while the page is server-rendered HTML, true once the WebAssembly has taken over:
/// controls that need JavaScript appear (or unlock) only then.
pub fn hydrated() -> RwSignal<bool> {
    let on = RwSignal::new(false);
    Effect::new(move |_| on.set(true));
    on
}

/// "2026-11-24 09:30" from a stored RFC 3339 time (UTC).
pub fn short_time(t: &str) -> String {
    t.get(..16).unwrap_or(t).replace('T', " ")
}

/// Copies text to the clipboard (after hydration); returns whether the browser accepted it.
pub fn copy_to_clipboard(text: &str) -> bool {
    #[cfg(feature = "hydrate")]
    {
        if let Some(w) = web_sys::window() {
            let _ = w.navigator().clipboard().write_text(text);
            return true;
        }
    }
    let _ = text;
    false
}
