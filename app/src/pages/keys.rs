use leptos::prelude::*;

use crate::api::{list_keys, CreateKey, KeyItem, KeysPage, RevokeKey, RotateKey};
use crate::pages::auth::{action_error, error_view};
use crate::pages::people::OnceDialog;
use crate::pages::{hydrated, short_time};

/// API keys: the ones you may see, a form to create one (never wider than you), revoke.
#[component]
pub fn ApiKeysPage() -> impl IntoView {
    let create = ServerAction::<CreateKey>::new();
    let revoke = ServerAction::<RevokeKey>::new();
    let rotate = ServerAction::<RotateKey>::new();
    let page = Resource::new(move || (create.version().get(), revoke.version().get(), rotate.version().get()), |_| list_keys());
    // A rotation's new key replaces whatever key was shown before (it may be the one revoked).
    Effect::new(move |_| {
        if rotate.version().get() > 0 {
            create.value().set(None);
        }
    });
    view! {
        <section class="panel">
            <h1>"API keys"</h1>
            <p class="muted">"Apps and release tooling authenticate with a key: " <code>"Authorization: Bearer cvk_…"</code> ". A key reaches only what its grants name, never more than its creator may do."</p>
            <Suspense fallback=|| view! { <p>"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match page.await {
                        Ok(p) => view! {
                            <CreateKeyForm action=create page=p.clone()/>
                            <KeyTable keys=p.keys revoke=revoke rotate=rotate/>
                        }.into_any(),
                        Err(e) => error_view(&e),
                    }
                })}
            </Suspense>
            {action_error(revoke.value())}
            {action_error(rotate.value())}
            {move || rotate.value().get().and_then(|r| r.ok()).map(|k| view! {
                <OnceDialog title=format!("The new key \u{201c}{}\u{201d}", k.name) value=k.key note="The old key stopped working. Copy the new one now and put it where the old one was: connvault keeps only a hash, so it cannot show this key again."/>
            })}
        </section>
    }
}

#[component]
fn CreateKeyForm(action: ServerAction<CreateKey>, page: KeysPage) -> impl IntoView {
    let hydrated = hydrated();
    let error = move || action.value().get().and_then(|r| r.err());
    let field = move |name: &'static str| move || error().and_then(|e| e.field(name));
    if page.environments.is_empty() {
        return view! {
            <p class="notice">"You cannot create keys: that takes the Administrator role in an environment (or Developer, where the environment allows developers to manage API keys)."</p>
        }
        .into_any();
    }
    view! {
        <h2>"Create a key"</h2>
        <ActionForm action=action attr:class="stack key-form">
            <label for="key-name">"Name"</label>
            <input id="key-name" name="name" required maxlength="100" placeholder="e.g. billing-app QA" autocomplete="off"/>
            <span class="field-error">{field("name")}</span>
            <fieldset>
                <legend>"Environments"</legend>
                {page.all_environments.then(|| view! {
                    <label class="check"><input type="checkbox" name="scope[*]" value="on"/>" All environments (now and later)"</label>
                })}
                {page.environments.iter().map(|e| view! {
                    <label class="check"><input type="checkbox" name=format!("scope[{e}]") value="on"/>" " {e.clone()}</label>
                }).collect_view()}
                <span class="field-error">{field("scope")}</span>
            </fieldset>
            <fieldset class="grants">
                <legend>"Access"</legend>
                {page.resources.iter().map(|r| {
                    let id = format!("access-{}", r.name);
                    view! {
                        <label for=id.clone()>{r.name.replace('_', " ")}</label>
                        <select id=id name=format!("access[{}]", r.name)>
                            <option value="">"None"</option>
                            <option value="read">"Read"</option>
                            {(!r.read_only).then(|| view! {
                                <option value="write">"Write"</option>
                                <option value="rw">"Read/Write"</option>
                            })}
                        </select>
                    }
                }).collect_view()}
                <span class="field-error">{field("access")}</span>
            </fieldset>
            <label for="key-addresses">"Allowed client addresses (optional)"</label>
            <input id="key-addresses" name="addresses" placeholder="e.g. 10.0.0.0/8, 203.0.113.7" autocomplete="off"/>
            <span class="hint">"Addresses or CIDR ranges, separated by commas or spaces. Empty: any address."</span>
            <span class="field-error">{field("allowed_addresses")}</span>
            <label for="key-expiry">"Expires after (days, optional)"</label>
            <input id="key-expiry" name="expires_in_days" type="number" min="1" max="3650" placeholder="never"/>
            <span class="field-error">{field("expires_in_days")}</span>
            // The key is shown once in the answer, so creating needs the page to be live.
            <button type="submit" disabled=move || !hydrated.get() || action.pending().get()>"Create key"</button>
            <noscript><p class="muted">"The new key is shown once on this page: turn on JavaScript to create keys."</p></noscript>
        </ActionForm>
        {move || error().map(|e| view! { <p class="error" role="alert">{e.message}</p> })}
        {move || action.value().get().and_then(|r| r.ok()).map(|k| view! {
            <OnceDialog title=format!("Your new key \u{201c}{}\u{201d}", k.name) value=k.key note="Copy it now: connvault keeps only a hash, so it cannot show this key again."/>
        })}
    }
    .into_any()
}

#[component]
fn KeyTable(keys: Vec<KeyItem>, revoke: ServerAction<RevokeKey>, rotate: ServerAction<RotateKey>) -> impl IntoView {
    let hydrated = hydrated();
    if keys.is_empty() {
        return view! { <p class="empty">"No keys yet."</p> }.into_any();
    }
    view! {
        <h2>"Keys"</h2>
        <div class="table-wrap">
            <table data-testid="keys">
                <thead><tr><th scope="col">"Name"</th><th scope="col">"Grants"</th><th scope="col">"Limits"</th><th scope="col">"Last used"</th><th scope="col">"Created"</th><th scope="col"><span class="sr-only">"Actions"</span></th></tr></thead>
                <tbody>
                    {keys.into_iter().map(|k| {
                        let revoked = k.revoked_at.is_some();
                        view! {
                            <tr class:inactive=revoked>
                                <th scope="row">{k.name.clone()}<div class="mono muted">{k.prefix.clone()} "…"</div></th>
                                <td>{k.grants.iter().map(|g| view! { <div class="mono">{g.clone()}</div> }).collect_view()}</td>
                                <td>
                                    {if k.allowed_addresses.is_empty() { "any address".to_string() } else { k.allowed_addresses.join(", ") }}
                                    <div class="muted">{k.expires_at.as_deref().map(|e| format!("expires {}", short_time(e))).unwrap_or_else(|| "no expiry".into())}</div>
                                </td>
                                <td>{k.last_used_at.as_deref().map(short_time).unwrap_or_else(|| "never".into())}</td>
                                <td>{short_time(&k.created_at)} <div class="muted">{k.created_by.clone()}</div></td>
                                <td class="actions">
                                    {match (&k.revoked_at, k.may_revoke) {
                                        (Some(at), _) => view! { <span class="tag muted-tag">"revoked " {short_time(at)}</span> }.into_any(),
                                        (None, true) => {
                                            let confirm_id = format!("confirm-{}", k.id);
                                            view! {
                                                // The new value is shown once in the answer: rotating needs the page to be live.
                                                <ActionForm action=rotate>
                                                    <input type="hidden" name="id" value=k.id/>
                                                    <button type="submit" class="secondary" disabled=move || !hydrated.get() || rotate.pending().get()
                                                        title="A new key with the same name, grants and limits; this one stops working at once">"Rotate"</button>
                                                </ActionForm>
                                                <details class="revoke">
                                                    <summary>"Revoke…"</summary>
                                                    <ActionForm action=revoke attr:class="stack">
                                                        <input type="hidden" name="id" value=k.id/>
                                                        <label for=confirm_id.clone()>"Type " <strong>{k.name.clone()}</strong> " to revoke it; it stops working at once, for good"</label>
                                                        <input id=confirm_id name="confirm" autocomplete="off" required/>
                                                        <button type="submit" class="danger">"Revoke"</button>
                                                    </ActionForm>
                                                </details>
                                            }.into_any()
                                        }
                                        (None, false) => ().into_any(),
                                    }}
                                </td>
                            </tr>
                        }
                    }).collect_view()}
                </tbody>
            </table>
        </div>
    }
    .into_any()
}
