//! An environment's connections as a list: search, provider and status filters, sort, pages.

use leptos::prelude::*;
use leptos_router::hooks::{use_params_map, use_query_map};

use crate::api::{list_connections, urlencode, ConnectionItem, ConnectionList};
use crate::pages::auth::error_view;
use crate::pages::short_time;

/// An environment's connections: search, provider and status filters, sort, numbered pages
/// with the total. The filters are a GET form (they work before hydration); once hydrated, the
/// search filters as you type.
#[component]
pub fn ConnectionsPage() -> impl IntoView {
    let params = use_params_map();
    let query = use_query_map();
    let env = move || params.read().get("env").unwrap_or_default();
    let search = RwSignal::new(query.read_untracked().get("q").unwrap_or_default());
    let get = move |k: &'static str| move || query.read().get(k).unwrap_or_default();
    let (provider, status, sort, page) = (get("provider"), get("status"), get("sort"), get("page"));
    let list = Resource::new(
        move || (env(), search.get(), provider(), status(), sort(), page()),
        |(env, q, p, st, so, pg)| list_connections(env, q, p, st, so, pg),
    );
    // The address of page `n` with the filters and sort as they are.
    let page_href = move |n: i64| {
        format!(
            "?q={}&provider={}&status={}&sort={}&page={n}",
            urlencode(&search.get_untracked()),
            urlencode(&provider()),
            urlencode(&status()),
            urlencode(&sort())
        )
    };

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
                <label for="status">"Status"</label>
                <select id="status" name="status">
                    {[("", "All"), ("failing", "Failing"), ("not_tested", "Not tested"), ("works", "Works")].into_iter().map(|(v, label)| view! {
                        <option value=v selected=move || status() == v>{label}</option>
                    }).collect_view()}
                </select>
                <label for="sort">"Sort by"</label>
                <select id="sort" name="sort">
                    {[("name", "Name"), ("status", "Status (failing first)"), ("changed", "Last change")].into_iter().map(|(v, label)| view! {
                        <option value=v selected=move || sort() == v || (v == "name" && sort().is_empty())>{label}</option>
                    }).collect_view()}
                </select>
                <button type="submit">"Show"</button>
            </form>
            <Transition fallback=|| view! { <p>"Loading…"</p> }>
                {move || Suspend::new(async move {
                    let filtered = !search.get_untracked().trim().is_empty() || !provider().is_empty() || !status().is_empty();
                    match list.await {
                        Ok(list) if list.total == 0 && !filtered => view! {
                            <p class="empty">"No connections in " {list.environment} " yet."</p>
                        }.into_any(),
                        Ok(list) if list.total == 0 => view! { <p class="empty">"No connections match these filters."</p> }.into_any(),
                        Ok(list) => view! { <Counted list page_href/> }.into_any(),
                        Err(e) => error_view(&e),
                    }
                })}
            </Transition>
        </section>
    }
}

/// The count, the table and the pager of a page of connections.
#[component]
fn Counted(list: ConnectionList, page_href: impl Fn(i64) -> String + 'static) -> impl IntoView {
    let first = (list.page - 1) * list.per_page + 1;
    let last = first + list.items.len() as i64 - 1;
    let count = if list.pages == 1 {
        format!("{} connection{}", list.total, if list.total == 1 { "" } else { "s" })
    } else {
        format!("{first}–{last} of {} connections", list.total)
    };
    let previous = (list.page > 1).then(|| page_href(list.page - 1));
    let next = (list.page < list.pages).then(|| page_href(list.page + 1));
    let where_ = format!("Page {} of {}", list.page, list.pages);
    view! {
        <p class="count" data-testid="count">{count}</p>
        <ConnectionTable environment=list.environment items=list.items/>
        <nav class="pager" aria-label="Pages">
            {previous.map(|href| view! { <a href=href rel="prev">"Previous page"</a> })}
            <span class="muted" data-testid="page">{where_}</span>
            {next.map(|href| view! { <a href=href rel="next">"Next page"</a> })}
        </nav>
    }
}

/// "token: set on DATE by WHO" for each secret that is set: the value itself never reaches the page.
fn secret_line(s: &crate::api::SecretState) -> String {
    format!("{}: set on {} by {}", s.field, s.set_at.get(..10).unwrap_or_default(), s.set_by)
}

/// The rows stay one line each: the secrets as a count and when they were last set (the
/// details in the cell's title), the latest check as a badge with when.
#[component]
fn ConnectionTable(environment: String, items: Vec<ConnectionItem>) -> impl IntoView {
    view! {
        <div class="table-wrap">
            <table data-testid="connections" class="compact">
                <thead>
                    <tr><th scope="col">"Name"</th><th scope="col">"Provider"</th><th scope="col">"Target"</th><th scope="col">"Secrets"</th><th scope="col">"Status"</th><th scope="col">"Changed"</th></tr>
                </thead>
                <tbody>
                    {items.into_iter().map(|c| {
                        let href = format!("/env/{}/connections/{}", environment, urlencode(&c.name));
                        let secrets = c.secrets.iter().map(secret_line).collect::<Vec<_>>().join("\n");
                        view! {
                            <tr>
                                <th scope="row"><a href=href>{c.name}</a></th>
                                <td><span class="tag">{c.provider}</span></td>
                                <td class="mono target" title=c.target.clone()>{c.target.clone()}</td>
                                <td title=secrets data-testid="secrets" class:muted=c.secrets.is_empty()>{c.secrets_summary}</td>
                                <td data-testid="check">
                                    {match c.check.clone() {
                                        Some((true, _, at)) => view! { <span class="status status-bound">"Works"</span>" " <span class="muted" title=at.clone()>"tested " {short_time(&at)}</span> }.into_any(),
                                        Some((false, detail, at)) => view! {
                                            <span class="status status-failing" title=detail>"Failing"</span>" "
                                            <span class="muted" data-testid="failing-since" title=at>
                                                {c.failing_since.as_deref().map(|s| format!("since {} UTC", short_time(s))).unwrap_or_default()}
                                            </span>
                                        }.into_any(),
                                        None => match c.stage.as_deref() {
                                            Some("not_set_up") => view! { <span class="status status-needs_connection">"Not set up"</span> }.into_any(),
                                            Some("waiting_for_admin") => view! { <span class="status status-needs_connection">"Waiting for admin"</span> }.into_any(),
                                            Some("consumer_key_received") => view! { <span class="status status-needs_connection">"Consumer key received"</span> }.into_any(),
                                            Some("needs_sign_in") => view! { <span class="status status-needs_connection">"Needs someone to sign in"</span> }.into_any(),
                                            Some("no_certificate") => view! { <span class="status status-needs_connection">"No certificate yet"</span> }.into_any(),
                                            _ => view! { <span class="muted">"not tested"</span> }.into_any(),
                                        },
                                    }}
                                    {c.certificate_expires.clone().map(|(at, soon)| view! {
                                        <span class=if soon { "notice inline-notice" } else { "muted" } data-testid="cert-expiry">
                                            {if soon { " Certificate expires soon: " } else { " Certificate expires " }}{short_time(&at)}
                                        </span>
                                    })}
                                </td>
                                <td><time datetime=c.updated_at.clone() title=short_time(&c.updated_at)>{c.updated_ago}</time>" by " {c.updated_by}</td>
                            </tr>
                        }
                    }).collect_view()}
                </tbody>
            </table>
        </div>
    }
}
