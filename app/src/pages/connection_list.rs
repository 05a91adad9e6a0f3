//! An environment's connections as a list: search, provider and status filters, sort, pages.

use leptos::prelude::*;
use leptos_router::hooks::{use_params_map, use_query_map};

use crate::api::{list_connections, urlencode, ConnectionItem};
use crate::pages::auth::error_view;
use crate::pages::short_time;

/// An environment's connections: search, provider filter, paging. The filters are a GET form
/// (they work before hydration); once hydrated, the search filters as you type.
#[component]
pub fn ConnectionsPage() -> impl IntoView {
    let params = use_params_map();
    let query = use_query_map();
    let env = move || params.read().get("env").unwrap_or_default();
    let search = RwSignal::new(query.read_untracked().get("q").unwrap_or_default());
    let provider = move || query.read().get("provider").unwrap_or_default();
    let cursor = move || query.read().get("cursor").unwrap_or_default();
    let list = Resource::new(move || (env(), search.get(), provider(), cursor()), |(env, q, p, c)| list_connections(env, q, p, c));

    view! {
        <section class="panel">
            <div class="title-row">
                <h1>"Connections in " {env}</h1>
                <Transition fallback=|| ()>
                    {move || Suspend::new(async move {
                        list.await.ok().filter(|l| l.can_write).map(|l| view! {
                            <a class="button" href=format!("/env/{}/connections/new", l.environment)>"New connection"</a>
                        })
                    })}
                </Transition>
            </div>
            <p class="links">
                <a href=move || format!("/env/{}/integrations", env())>"Integrations in " {env}</a>
                <a href=move || format!("/audit?environment={}", env())>"Audit trail of " {env}</a>
                <a href=move || format!("/env/{}/webhooks", env())>"Webhooks of " {env}</a>
            </p>
            <form method="get" class="toolbar" role="search">
                <label for="q">"Search"</label>
                <input id="q" name="q" type="search" placeholder="Name contains…" autocomplete="off"
                    prop:value=move || search.get()
                    on:input=move |ev| search.set(event_target_value(&ev))/>
                <label for="provider">"Provider"</label>
                <select id="provider" name="provider">
                    <option value="" selected=move || provider().is_empty()>"All"</option>
                    <Transition fallback=|| ()>
                        {move || Suspend::new(async move {
                            list.await.map(|l| l.providers).unwrap_or_default().into_iter().map(|(id, label)| {
                                let selected = provider() == id;
                                view! { <option value=id.clone() selected=selected>{label}</option> }
                            }).collect_view()
                        })}
                    </Transition>
                </select>
                <button type="submit">"Filter"</button>
            </form>
            <Transition fallback=|| view! { <p>"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match list.await {
                        Ok(list) if list.items.is_empty() && search.get_untracked().trim().is_empty() && provider().is_empty() => view! {
                            <p class="empty">"No connections in " {list.environment} " yet."</p>
                        }.into_any(),
                        Ok(list) if list.items.is_empty() => view! { <p class="empty">"No connections match these filters."</p> }.into_any(),
                        Ok(list) => {
                            let next = list.next_cursor.clone().map(|c| format!("?q={}&provider={}&cursor={}", urlencode(&search.get_untracked()), urlencode(&provider()), c));
                            let first = (!cursor().is_empty()).then(|| format!("?q={}&provider={}", urlencode(&search.get_untracked()), urlencode(&provider())));
                            view! {
                                <ConnectionTable environment=list.environment items=list.items/>
                                <nav class="pager" aria-label="Pages">
                                    {first.map(|href| view! { <a href=href>"First page"</a> })}
                                    {next.map(|href| view! { <a href=href rel="next">"Next page"</a> })}
                                </nav>
                            }.into_any()
                        }
                        Err(e) => error_view(&e),
                    }
                })}
            </Transition>
        </section>
    }
}

/// "set on DATE by WHO" for each secret that is set: the value itself never reaches the page.
fn secret_line(s: &crate::api::SecretState) -> String {
    format!("{}: set on {} by {}", s.field, s.set_at.get(..10).unwrap_or_default(), s.set_by)
}

#[component]
fn ConnectionTable(environment: String, items: Vec<ConnectionItem>) -> impl IntoView {
    view! {
        <div class="table-wrap">
            <table data-testid="connections">
                <thead>
                    <tr><th scope="col">"Name"</th><th scope="col">"Provider"</th><th scope="col">"Target"</th><th scope="col">"Secrets"</th><th scope="col">"Status"</th><th scope="col">"Updated"</th></tr>
                </thead>
                <tbody>
                    {items.into_iter().map(|c| {
                        let href = format!("/env/{}/connections/{}", environment, urlencode(&c.name));
                        view! {
                            <tr>
                                <th scope="row"><a href=href>{c.name}</a></th>
                                <td><span class="tag">{c.provider}</span></td>
                                <td class="mono">{c.target}</td>
                                <td>
                                    {if c.secrets.is_empty() {
                                        view! { <span class="muted">"none set"</span> }.into_any()
                                    } else {
                                        c.secrets.iter().map(|s| view! { <div class="secret">{secret_line(s)}</div> }).collect_view().into_any()
                                    }}
                                </td>
                                <td data-testid="check">
                                    {match c.check.clone() {
                                        Some((true, _, at)) => view! { <span class="status status-bound">"Works"</span><div class="muted">"tested " {short_time(&at)}</div> }.into_any(),
                                        Some((false, detail, at)) => view! {
                                            <span class="status status-failing">"Failing"</span><div class="muted reason">{detail}" (" {short_time(&at)} ")"</div>
                                        }.into_any(),
                                        None => match c.stage.as_deref() {
                                            Some("not_set_up") => view! { <span class="status status-needs_connection">"Not set up"</span> }.into_any(),
                                            Some("waiting_for_admin") => view! { <span class="status status-needs_connection">"Waiting for admin"</span> }.into_any(),
                                            Some("consumer_key_received") => view! { <span class="status status-needs_connection">"Consumer key received"</span> }.into_any(),
                                            Some("needs_sign_in") => view! { <span class="status status-needs_connection">"Needs someone to sign in"</span> }.into_any(),
                                            Some(_) => view! { <span class="muted">"no certificate yet"</span> }.into_any(),
                                            None => view! { <span class="muted">"not tested"</span> }.into_any(),
                                        },
                                    }}
                                    {c.certificate_expires.clone().map(|(at, soon)| view! {
                                        <div class=if soon { "notice" } else { "muted" } data-testid="cert-expiry">
                                            {if soon { "Certificate expires soon: " } else { "Certificate expires " }}{short_time(&at)}
                                        </div>
                                    })}
                                </td>
                                <td><time datetime=c.updated_at.clone()>{short_time(&c.updated_at)}</time>" by " {c.updated_by}</td>
                            </tr>
                        }
                    }).collect_view()}
                </tbody>
            </table>
        </div>
    }
}
