//! connvault's Leptos application: pages, components and server functions. Server functions
//! are thin: they take the server's `Services` from context and call `server`.

// The router's tuple of routes is deep enough to need more than the default limit.
#![recursion_limit = "256"]

pub mod api;
pub mod app;
pub mod pages;

#[cfg(feature = "hydrate")]
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    leptos::mount::hydrate_body(app::App);
}
