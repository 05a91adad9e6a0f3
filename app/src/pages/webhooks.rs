use leptos::prelude::*;
use leptos_router::hooks::{use_params_map, use_query_map};

use crate::api::{list_webhooks, webhook_log, CreateWebhook, DeleteWebhook, RetryWebhookDelivery, SetWebhookEnabled, TestWebhook, WebhookView};
use crate::pages::auth::{action_error, error_view};
use crate::pages::people::OnceDialog;
use crate::pages::{hydrated, short_time};

/// Webhooks of one environment: who hears of its events, each subscription's state and log.
#[component]
pub fn WebhooksPage() -> impl IntoView {
    let params = use_params_map();
    let query = use_query_map();
    let env = move || params.read().get("env").unwrap_or_default();
    let shown = move || query.read().get("log").and_then(|v| v.parse::<i64>().ok());
    let create = ServerAction::<CreateWebhook>::new();
    let enable = ServerAction::<SetWebhookEnabled>::new();
    let delete = ServerAction::<DeleteWebhook>::new();
    let test = ServerAction::<TestWebhook>::new();
    let retry = ServerAction::<RetryWebhookDelivery>::new();
    let list = Resource::new(move || (env(), create.version().get(), enable.version().get(), delete.version().get()), |(env, ..)| list_webhooks(env));
    let log = Resource::new(
        move || (env(), shown(), test.version().get(), retry.version().get()),
        |(env, id, ..)| async move {
            match id {
                Some(id) => webhook_log(env, id).await.map(|l| Some((id, l))),
                None => Ok(None),
            }
        },
    );
    let hydrated = hydrated();
    view! {
        <section class="panel">
            <h1>"Webhooks · " {env}</h1>
            <p class="muted">"Each subscription is told of this environment's events as they happen: a signed POST (Standard Webhooks: webhook-id, webhook-timestamp, webhook-signature), tried again for about 26 hours when the receiver fails."</p>
            <Suspense fallback=|| view! { <p>"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match list.await {
                        Ok(page) => {
                            let can = page.can_change;
                            let env_name = page.environment.clone();
                            let types = page.event_types.join(", ");
                            let rows = if page.items.is_empty() {
                                view! { <p class="empty">"No webhooks yet."</p> }.into_any()
                            } else {
                                view! {
                                    <div class="table-wrap">
                                        <table data-testid="webhooks">
                                            <thead><tr><th scope="col">"URL"</th><th scope="col">"Events"</th><th scope="col">"State"</th><th scope="col">"Actions"</th></tr></thead>
                                            <tbody>
                                                {page.items.into_iter().map(|w| view! { <HookRow w env=env_name.clone() can enable delete test/> }).collect_view()}
                                            </tbody>
                                        </table>
                                    </div>
                                }.into_any()
                            };
                            view! {
                                {rows}
                                {can.then(|| view! {
                                    <h2>"Add a webhook"</h2>
                                    <ActionForm action=create attr:class="stack">
                                        <input type="hidden" name="environment" value=env_name.clone()/>
                                        <label for="hook-url">"Receiver URL"</label>
                                        <input id="hook-url" name="url" type="url" required placeholder="https://ops.example.com/connvault-events" autocomplete="off"/>
                                        <label for="hook-events">"Events"</label>
                                        <input id="hook-events" name="events" value="*" autocomplete="off"/>
                                        <span class="hint">{format!("* for every event, or some of: {types}")}</span>
                                        <label for="hook-description">"Description (optional)"</label>
                                        <input id="hook-description" name="description" maxlength="500" autocomplete="off"/>
                                        <button type="submit" disabled=move || !hydrated.get() || create.pending().get()>"Add webhook"</button>
                                        <noscript><p class="muted">"The signing secret is shown once on this page: turn on JavaScript to add webhooks."</p></noscript>
                                    </ActionForm>
                                })}
                            }.into_any()
                        }
                        Err(e) => error_view(&e),
                    }
                })}
            </Suspense>
            {move || create.value().get().and_then(|r| r.ok()).map(|c| view! {
                <OnceDialog title=format!("Signing secret for {}", c.url) value=c.secret note="Give it to the receiver now, to verify webhook-signature: connvault shows it only once."/>
            })}
            {action_error(create.value())}
            {action_error(enable.value())}
            {action_error(delete.value())}
            {action_error(test.value())}
            {action_error(retry.value())}
            <Suspense fallback=|| ()>
                {move || Suspend::new(async move {
                    match log.await {
                        Ok(Some((id, log))) => view! { <DeliveryLog id log env=env() retry/> }.into_any(),
                        Ok(None) => ().into_any(),
                        Err(e) => error_view(&e),
                    }
                })}
            </Suspense>
        </section>
    }
}

#[component]
fn HookRow(
    w: WebhookView,
    env: String,
    can: bool,
    enable: ServerAction<SetWebhookEnabled>,
    delete: ServerAction<DeleteWebhook>,
    test: ServerAction<TestWebhook>,
) -> impl IntoView {
    let (state, class) = match (&w.disabled_reason, w.enabled, &w.failing_since) {
        (Some(reason), false, _) => (reason.clone(), "status status-failing"),
        (None, false, _) => ("Disabled".to_string(), "status"),
        (_, true, Some(since)) => (format!("Failing since {}", short_time(since)), "status status-failing"),
        _ => ("Enabled".to_string(), "status status-bound"),
    };
    let id = w.id;
    let (e1, e2, e3) = (env.clone(), env.clone(), env.clone());
    view! {
        <tr data-testid="webhook">
            <td><code>{w.url.clone()}</code>{(!w.description.is_empty()).then(|| view! { <br/><small class="muted">{w.description.clone()}</small> })}</td>
            <td class="reason">{w.events.join(", ")}</td>
            <td><span class=class>{state}</span></td>
            <td>
                <a href=format!("/env/{env}/webhooks?log={id}")>"Log"</a>
                {can.then(|| view! {
                    <ActionForm action=test attr:class="inline">
                        <input type="hidden" name="environment" value=e1/>
                        <input type="hidden" name="id" value=id/>
                        <button type="submit" class="secondary">"Send test event"</button>
                    </ActionForm>
                    <ActionForm action=enable attr:class="inline">
                        <input type="hidden" name="environment" value=e2/>
                        <input type="hidden" name="id" value=id/>
                        <input type="hidden" name="enabled" value=if w.enabled { "off" } else { "on" }/>
                        <button type="submit" class="secondary">{if w.enabled { "Disable" } else { "Enable" }}</button>
                    </ActionForm>
                    <ActionForm action=delete attr:class="inline">
                        <input type="hidden" name="environment" value=e3/>
                        <input type="hidden" name="id" value=id/>
                        <button type="submit" class="danger">"Delete"</button>
                    </ActionForm>
                })}
            </td>
        </tr>
    }
}

#[component]
fn DeliveryLog(id: i64, log: Vec<crate::api::DeliveryView>, env: String, retry: ServerAction<RetryWebhookDelivery>) -> impl IntoView {
    view! {
        <h2 id="log">{format!("Deliveries of webhook {id}")}</h2>
        {if log.is_empty() {
            view! { <p class="empty">"Nothing sent yet."</p> }.into_any()
        } else {
            view! {
                <div class="table-wrap">
                    <table data-testid="deliveries">
                        <thead><tr><th scope="col">"When (UTC)"</th><th scope="col">"Event"</th><th scope="col">"State"</th><th scope="col">"Attempts"</th><th scope="col">"Last answer"</th><th scope="col">""</th></tr></thead>
                        <tbody>
                            {log.into_iter().map(|d| {
                                let env = env.clone();
                                let answer = match (d.last_status, d.last_error.clone()) {
                                    (_, Some(e)) => e,
                                    (Some(s), None) => s.to_string(),
                                    (None, None) => "—".into(),
                                };
                                view! {
                                    <tr>
                                        <td><time datetime=d.enqueued_at.clone()>{short_time(&d.enqueued_at)}</time></td>
                                        <td>{d.event_type}</td>
                                        <td>{d.state}</td>
                                        <td>{d.attempts}</td>
                                        <td class="reason">{answer}</td>
                                        <td>
                                            <ActionForm action=retry attr:class="inline">
                                                <input type="hidden" name="environment" value=env/>
                                                <input type="hidden" name="id" value=id/>
                                                <input type="hidden" name="delivery_id" value=d.id/>
                                                <button type="submit" class="secondary">"Send again"</button>
                                            </ActionForm>
                                        </td>
                                    </tr>
                                }
                            }).collect_view()}
                        </tbody>
                    </table>
                </div>
            }.into_any()
        }}
    }
}
