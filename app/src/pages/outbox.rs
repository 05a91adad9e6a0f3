use leptos::prelude::*;
use leptos_router::hooks::use_query_map;

use crate::api::{list_outbox, read_outbox, urlencode, OutboxEntry};
use crate::pages::auth::error_view;
use crate::pages::short_time;

/// The emails connvault kept because no mail server is configured (owners). Each row says when,
/// to whom and what, with the attached files; "Show" reads the text here, "Download .eml"
/// fetches the whole message to open in a mail program and forward. Plain links: it works
/// before hydration.
#[component]
pub fn OutboxPage() -> impl IntoView {
    let query = use_query_map();
    let cursor = move || query.read().get("cursor").unwrap_or_default();
    let show = move || query.read().get("show").and_then(|v| v.trim().parse::<i64>().ok());
    let messages = Resource::new(cursor, list_outbox);
    let shown = Resource::new(show, |id| async move {
        match id {
            Some(id) => Some(read_outbox(id).await),
            None => None,
        }
    });
    view! {
        <section class="panel">
            <h1>"Outbox"</h1>
            <Transition fallback=|| ()>
                {move || Suspend::new(async move {
                    match shown.await {
                        None => ().into_any(),
                        Some(Ok(m)) => {
                            let close = match cursor() {
                                c if c.is_empty() => "/outbox".to_string(),
                                c => format!("/outbox?cursor={}", urlencode(&c)),
                            };
                            let id = m.entry.id;
                            view! {
                                <article aria-labelledby="shown-subject" data-testid="outbox-message">
                                    <h2 id="shown-subject">{m.entry.subject}</h2>
                                    <p class="muted">"To " {m.entry.to} ", kept " <time datetime=m.entry.at.clone()>{short_time(&m.entry.at)}</time> " (UTC)"</p>
                                    <pre class="mono" style="white-space: pre-wrap; overflow-wrap: anywhere">{m.text}</pre>
                                    <p>
                                        <a href=format!("/api/v1/outbox/{id}") download=format!("outbox-{id}.eml")>"Download .eml"</a>
                                        " · "
                                        <a href=close>"Close"</a>
                                    </p>
                                </article>
                            }
                            .into_any()
                        }
                        Some(Err(e)) => error_view(&e),
                    }
                })}
            </Transition>
            <Transition fallback=|| view! { <p>"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match messages.await {
                        Ok(page) => {
                            let about = if page.delivery == "outbox" {
                                "No mail server is configured (CONNVAULT_SMTP_URL), so connvault keeps its emails here, not sent. Pass each one on: download the .eml and open it in your mail program, or copy the text. They carry one-time links meant for their recipient only.".to_string()
                            } else {
                                format!("Emails go out by {}. Every email is kept here with its delivery: one the mail server refused is tried again for about 16 hours; those marked \"not sent\" were kept while no mail server was configured.", page.delivery)
                            };
                            let older = page.older.map(|c| format!("/outbox?cursor={}", urlencode(&c)));
                            let list = if page.items.is_empty() {
                                view! { <p class="empty">"The outbox is empty."</p> }.into_any()
                            } else {
                                view! { <OutboxTable items=page.items cursor=cursor()/> }.into_any()
                            };
                            view! {
                                <p class="muted">{about}</p>
                                {list}
                                <nav class="pager" aria-label="Pages">{older.map(|href| view! { <a href=href rel="next">"Older messages"</a> })}</nav>
                            }
                            .into_any()
                        }
                        Err(e) => error_view(&e),
                    }
                })}
            </Transition>
        </section>
    }
}

#[component]
fn OutboxTable(items: Vec<OutboxEntry>, cursor: String) -> impl IntoView {
    let keep = if cursor.is_empty() { String::new() } else { format!("&cursor={}", urlencode(&cursor)) };
    view! {
        <div class="table-wrap">
            <table data-testid="outbox">
                <thead><tr><th scope="col">"When (UTC)"</th><th scope="col">"To"</th><th scope="col">"Subject"</th><th scope="col">"Attachments"</th><th scope="col">"Delivery"</th><th scope="col">"Message"</th></tr></thead>
                <tbody>
                    {items.into_iter().map(|m| {
                        let id = m.id;
                        let attachments = if m.attachments.is_empty() { "none".to_string() } else { m.attachments.join(", ") };
                        let (delivery, class) = match m.delivery.as_str() {
                            "sent" => ("Sent".to_string(), "status status-bound"),
                            "queued" if m.attempts == 0 => ("Sending".to_string(), "status"),
                            "queued" => (format!("Retrying (attempt {} failed)", m.attempts), "status status-needs_connection"),
                            "failed" => (format!("Failed after {} attempts", m.attempts), "status status-failing"),
                            _ => ("Not sent: pass it on".to_string(), "status status-needs_connection"),
                        };
                        let error = m.last_error.clone();
                        view! {
                            <tr>
                                <td><time datetime=m.at.clone()>{short_time(&m.at)}</time></td>
                                <td>{m.to}</td>
                                <td>{m.subject}</td>
                                <td class="mono">{attachments}</td>
                                <td data-testid="delivery"><span class=class>{delivery}</span>{error.map(|e| view! { <br/><small class="muted">{e}</small> })}</td>
                                <td>
                                    <a href=format!("/outbox?show={id}{keep}")>"Show"</a>
                                    " · "
                                    <a href=format!("/api/v1/outbox/{id}") download=format!("outbox-{id}.eml")>"Download .eml"</a>
                                </td>
                            </tr>
                        }
                    }).collect_view()}
                </tbody>
            </table>
        </div>
    }
}
