use leptos::prelude::*;

use crate::api::{environment_settings, AddEnvironment, EnvSettings, MoveEnvironment, RenameEnvironment, SetDeveloperApiKeys, SetEnvironmentSchedule};
use crate::pages::auth::{action_error, error_view};

/// Environments (owners): the promotion order, names, "Allow developers to manage API keys",
/// and the schedule (checks, renewals).
#[component]
pub fn EnvironmentsPage() -> impl IntoView {
    let add = ServerAction::<AddEnvironment>::new();
    let rename = ServerAction::<RenameEnvironment>::new();
    let move_env = ServerAction::<MoveEnvironment>::new();
    let setting = ServerAction::<SetDeveloperApiKeys>::new();
    let schedule = ServerAction::<SetEnvironmentSchedule>::new();
    // The list is read again after a schedule was saved, not after a refusal: what was typed
    // stays in the fields beside the error.
    let saved = RwSignal::new(0u32);
    Effect::new(move || {
        if let Some(Ok(())) = schedule.value().get() {
            saved.update(|n| *n += 1);
        }
    });
    let envs = Resource::new(
        move || (add.version().get(), rename.version().get(), move_env.version().get(), setting.version().get(), saved.get()),
        |_| environment_settings(),
    );
    view! {
        <section class="panel">
            <h1>"Environments"</h1>
            <p class="muted">"In promotion order: releases move from the first towards the last."</p>
            <Suspense fallback=|| view! { <p>"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match envs.await {
                        Ok(list) => {
                            let count = list.len();
                            view! {
                                <ol class="env-admin" data-testid="environments">
                                    {list.into_iter().map(|e| view! { <EnvRow env=e count rename move_env setting schedule/> }).collect_view()}
                                </ol>
                            }.into_any()
                        }
                        Err(e) => error_view(&e),
                    }
                })}
            </Suspense>
            {action_error(rename.value())}
            {action_error(move_env.value())}
            {action_error(setting.value())}
            {action_error(schedule.value())}
            <h2>"Add an environment"</h2>
            <ActionForm action=add attr:class="toolbar">
                <label for="new-env">"Name"</label>
                <input id="new-env" name="name" required maxlength="32" placeholder="e.g. UAT"/>
                <button type="submit">"Add at the end"</button>
            </ActionForm>
            {action_error(add.value())}
        </section>
    }
}

#[component]
fn EnvRow(
    env: EnvSettings,
    count: usize,
    rename: ServerAction<RenameEnvironment>,
    move_env: ServerAction<MoveEnvironment>,
    setting: ServerAction<SetDeveloperApiKeys>,
    schedule: ServerAction<SetEnvironmentSchedule>,
) -> impl IntoView {
    let EnvSettings { name, position, allow_dev_api_keys, check_every_hours, renew_days_before } = env;
    let (n1, n2, n3, n4) = (name.clone(), name.clone(), name.clone(), name.clone());
    let (check_id, renew_id) = (format!("check-{name}"), format!("renew-{name}"));
    let (up_label, down_label) = (format!("Move {name} earlier"), format!("Move {name} later"));
    let rename_id = format!("rename-{name}");
    let rename_label = format!("New name for {name}");
    let last = position as usize >= count;
    view! {
        <li data-env=name.clone()>
            <strong class="env-name">{name.clone()}</strong>
            <ActionForm action=move_env attr:class="inline">
                <input type="hidden" name="name" value=n1/>
                <button type="submit" name="direction" value="up" class="secondary" disabled=position <= 1 aria-label=up_label>"↑"</button>
                <button type="submit" name="direction" value="down" class="secondary" disabled=last aria-label=down_label>"↓"</button>
            </ActionForm>
            <ActionForm action=rename attr:class="inline">
                <input type="hidden" name="name" value=n2/>
                <label for=rename_id.clone() class="sr-only">{rename_label}</label>
                <input id=rename_id name="new_name" required maxlength="32" placeholder="New name"/>
                <button type="submit" class="secondary">"Rename"</button>
            </ActionForm>
            <ActionForm action=setting attr:class="inline">
                <input type="hidden" name="name" value=n3/>
                <input type="hidden" name="allow" value=if allow_dev_api_keys { "off" } else { "on" }/>
                <span>{if allow_dev_api_keys { "Developers may manage API keys" } else { "Only Administrators manage API keys" }}</span>
                <button type="submit" class="secondary">{if allow_dev_api_keys { "Restrict to Administrators" } else { "Allow developers" }}</button>
            </ActionForm>
            <ActionForm action=schedule attr:class="inline schedule">
                <input type="hidden" name="name" value=n4/>
                <label for=check_id.clone()>"Check connections every"</label>
                <input id=check_id type="number" name="check_every_hours" min="0" max="168" step="1" value=check_every_hours.to_string() class="num"/>
                <span>"hours"</span>
                <label for=renew_id.clone()>"Renew certificates"</label>
                <input id=renew_id type="number" name="renew_days_before" min="0" max="90" step="1" value=renew_days_before.to_string() class="num"/>
                <span>"days before expiry (0: only by hand)"</span>
                <button type="submit" class="secondary">"Save schedule"</button>
            </ActionForm>
        </li>
    }
}
