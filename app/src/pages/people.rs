use leptos::prelude::*;

use crate::api::{list_people, InvitePerson, People, Person, ReinvitePerson, SetActive, SetRoles, ROLES};
use crate::pages::auth::{action_error, error_view};
use crate::pages::{copy_to_clipboard, hydrated, short_time};

/// People (owners only): invite, roles per environment as a matrix, deactivate, last sign-in.
#[component]
pub fn PeoplePage() -> impl IntoView {
    let invite = ServerAction::<InvitePerson>::new();
    let reinvite = ServerAction::<ReinvitePerson>::new();
    let set_roles = ServerAction::<SetRoles>::new();
    let set_active = ServerAction::<SetActive>::new();
    let people =
        Resource::new(move || (invite.version().get(), reinvite.version().get(), set_roles.version().get(), set_active.version().get()), |_| list_people());
    view! {
        <section class="panel">
            <h1>"People"</h1>
            <p class="muted">"Each person has a role in each environment: Viewers look, Developers change connections and bindings, Administrators also manage API keys. Owners manage people and environments."</p>
            <Suspense fallback=|| view! { <p>"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match people.await {
                        Ok(p) => view! {
                            <InviteForm action=invite environments=p.environments.clone()/>
                            <PeopleTable people=p set_roles=set_roles set_active=set_active reinvite=reinvite/>
                        }.into_any(),
                        Err(e) => error_view(&e),
                    }
                })}
            </Suspense>
            {move || match reinvite.value().get() {
                Some(Ok(inv)) => Some(view! { <OnceDialog title=format!("New invitation link for {}", inv.email) value=inv.link note="Send it to them; it works once, for 72 hours. It is not shown again."/> }.into_any()),
                Some(Err(e)) => Some(view! { <p class="error" role="alert">{e.message}</p> }.into_any()),
                None => None,
            }}
            {action_error(set_roles.value())}
            {action_error(set_active.value())}
        </section>
    }
}

#[component]
fn InviteForm(action: ServerAction<InvitePerson>, environments: Vec<String>) -> impl IntoView {
    let hydrated = hydrated();
    let error = move || action.value().get().and_then(|r| r.err());
    view! {
        <h2>"Invite someone"</h2>
        <ActionForm action=action attr:class="stack invite">
            <label for="invite-email">"Email"</label>
            <input id="invite-email" name="email" type="email" required autocomplete="off"
                aria-invalid=move || error().and_then(|e| e.field("email")).is_some().to_string()/>
            <span class="field-error">{move || error().and_then(|e| e.field("email"))}</span>
            <fieldset class="roles">
                <legend>"Roles"</legend>
                {environments.into_iter().map(|env| {
                    let id = format!("invite-role-{env}");
                    view! {
                        <label for=id.clone()>{env.clone()}</label>
                        <RoleSelect id=id name=format!("roles[{env}]") current=String::new()/>
                    }
                }).collect_view()}
            </fieldset>
            // The link is shown once in the answer, so inviting needs the page to be live.
            <button type="submit" disabled=move || !hydrated.get() || action.pending().get()>"Invite"</button>
            <noscript><p class="muted">"Inviting shows a one-time link on this page: turn on JavaScript to invite."</p></noscript>
        </ActionForm>
        {move || error().filter(|e| e.fields.is_empty()).map(|e| view! { <p class="error" role="alert">{e.message}</p> })}
        {move || action.value().get().and_then(|r| r.ok()).map(|inv| view! {
            <OnceDialog title=format!("Invitation for {}", inv.email) value=inv.link note="Send this link to them: with it they choose their password. It works once, for 72 hours, and is not shown again."/>
        })}
    }
}

#[component]
fn RoleSelect(id: String, name: String, current: String) -> impl IntoView {
    view! {
        <select id=id name=name>
            <option value="none" selected=current.is_empty()>"No role"</option>
            {ROLES.iter().map(|r| {
                let label = format!("{}{}", r[..1].to_uppercase(), &r[1..]);
                view! { <option value=*r selected=current == *r>{label}</option> }
            }).collect_view()}
        </select>
    }
}

#[component]
fn PeopleTable(
    people: People,
    set_roles: ServerAction<SetRoles>,
    set_active: ServerAction<SetActive>,
    reinvite: ServerAction<ReinvitePerson>,
) -> impl IntoView {
    let envs = people.environments.clone();
    let me = people.me.clone();
    view! {
        <h2>"Everyone"</h2>
        <div class="table-wrap">
            <table data-testid="people" class="matrix">
                <thead>
                    <tr>
                        <th scope="col">"Person"</th>
                        {envs.iter().map(|e| view! { <th scope="col">{e.clone()}</th> }).collect_view()}
                        <th scope="col">"Last sign-in"</th>
                    </tr>
                </thead>
                <tbody>
                    {people.people.into_iter().map(|p| view! { <PersonRow person=p envs=envs.clone() me=me.clone() set_roles set_active reinvite/> }).collect_view()}
                </tbody>
            </table>
        </div>
    }
}

#[component]
fn PersonRow(
    person: Person,
    envs: Vec<String>,
    me: String,
    set_roles: ServerAction<SetRoles>,
    set_active: ServerAction<SetActive>,
    reinvite: ServerAction<ReinvitePerson>,
) -> impl IntoView {
    // One form per row spans the row's selects through the `form` attribute.
    let form_id = format!("roles-{}", person.id);
    let status = match person.status.as_str() {
        "invited" => "invited",
        "deactivated" => "deactivated",
        _ => "",
    };
    let active = person.status != "deactivated";
    let invited = person.status == "invited";
    let is_me = person.email.eq_ignore_ascii_case(&me);
    view! {
        <tr class:inactive=!active data-email=person.email.clone()>
            <th scope="row">
                {person.email.clone()}
                {person.owner.then(|| view! { " " <span class="tag">"owner"</span> })}
                {(!status.is_empty()).then(|| view! { " " <span class="tag muted-tag">{status}</span> })}
                // Actions sit with the person, so that no number of environments pushes them out of sight.
                <div class="action-stack">
                <ActionForm action=set_roles attr:id=form_id.clone()>
                    <input type="hidden" name="id" value=person.id/>
                    <button type="submit" disabled=!active>"Save roles"</button>
                </ActionForm>
                {invited.then(|| view! {
                    <ActionForm action=reinvite>
                        <input type="hidden" name="id" value=person.id/>
                        <button type="submit" class="secondary">"New link"</button>
                    </ActionForm>
                })}
                {(!is_me).then(|| view! {
                    <ActionForm action=set_active>
                        <input type="hidden" name="id" value=person.id/>
                        <input type="hidden" name="active" value=(!active).to_string()/>
                        <button type="submit" class=if active { "danger" } else { "secondary" }>{if active { "Deactivate" } else { "Reactivate" }}</button>
                    </ActionForm>
                })}
                </div>
            </th>
            {envs.iter().map(|env| {
                let id = format!("role-{}-{}", person.id, env);
                view! {
                    <td data-env=env.clone()>
                        // The column's name, shown where the header row is hidden (a phone's cards).
                        <span class="cell-label" aria-hidden="true">{format!("{env}: ")}</span>
                        <label for=id.clone() class="sr-only">{format!("Role of {} in {}", person.email, env)}</label>
                        <select id=id name=format!("roles[{env}]") form=form_id.clone() disabled=!active>
                            <option value="none" selected=person.role_in(env).is_empty()>"—"</option>
                            {ROLES.iter().map(|r| {
                                let label = format!("{}{}", r[..1].to_uppercase(), &r[1..]);
                                view! { <option value=*r selected=person.role_in(env) == *r>{label}</option> }
                            }).collect_view()}
                        </select>
                    </td>
                }
            }).collect_view()}
            <td><span class="cell-label" aria-hidden="true">"Last sign-in: "</span>{person.last_sign_in_at.as_deref().map(short_time).unwrap_or_else(|| "never".into())}</td>
        </tr>
    }
}

/// Shows a value exactly once (a new API key, an invitation link), with a copy button.
#[component]
pub fn OnceDialog(title: String, value: String, note: &'static str) -> impl IntoView {
    let copied = RwSignal::new(false);
    let open = RwSignal::new(true);
    let to_copy = value.clone();
    view! {
        <div class="once" role="dialog" aria-modal="false" aria-labelledby="once-title" class:hidden=move || !open.get() data-testid="once-dialog">
            <h2 id="once-title">{title}</h2>
            <p>{note}</p>
            <input class="mono once-value" readonly value=value aria-label="The value, shown once" data-testid="once-value"
                on:focus=move |ev| { event_target::<leptos::web_sys::HtmlInputElement>(&ev).select(); }/>
            <div class="row">
                <button type="button" on:click=move |_| copied.set(copy_to_clipboard(&to_copy))>{move || if copied.get() { "Copied" } else { "Copy" }}</button>
                <button type="button" class="secondary" on:click=move |_| open.set(false)>"Done"</button>
            </div>
        </div>
    }
}
