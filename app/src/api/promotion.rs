//! Promotion in the browser: plan moving one environment's integrations, connection descriptors
//! and bindings into another, then apply it. The same export and import the REST API and
//! `connvault promote` use; no secret is ever part of it.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

#[cfg(feature = "ssr")]
use super::ssr::*;
use super::Fallible;

/// One line of a plan: `kind` integration / connection / binding; `action` create / update /
/// unchanged / conflict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanLine {
    pub kind: String,
    pub name: String,
    pub action: String,
    pub detail: String,
}

/// One item of what the target still needs, with the page to do it on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanStep {
    /// `set_up_connection` or `bind_integration`.
    pub kind: String,
    pub text: String,
    /// e.g. `/env/QA/connections/SF_Main`.
    pub path: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromotionPlan {
    pub from: String,
    pub to: String,
    pub lines: Vec<PlanLine>,
    /// "Plan for DEV → QA: …" or, applied, "Promoted DEV → QA: …" (the server's words).
    pub summary: String,
    /// "Salesforce_Accounts will need a connection in QA: …".
    pub needs_connection: Vec<String>,
    /// What the target still needs: connections to set up, integrations to bind.
    pub checklist: Vec<PlanStep>,
    /// Whether the changes were made (an apply).
    pub applied: bool,
    /// The options the plan was made with (an apply sends them again).
    pub overwrite_settings: bool,
    pub create_placeholders: bool,
}

impl PromotionPlan {
    pub fn count(&self, action: &str) -> usize {
        self.lines.iter().filter(|l| l.action == action).count()
    }
}

/// Plans (`apply` empty) or applies (`apply` = "yes") the promotion of `from` into `to`. The
/// user needs promotion read in `from` and promotion write in `to`, as an API key would.
#[server(prefix = "/rpc", endpoint = "promote")]
pub async fn promote(
    from: String,
    to: String,
    #[server(default)] overwrite_settings: String,
    #[server(default)] create_placeholders: String,
    #[server(default)] apply: String,
) -> Fallible<PromotionPlan> {
    use server::access::{Access, Resource};
    use server::promotion::{Mode, Options};
    let (s, user) = require_user().await?;
    let source = require_in(&s, &user, &from, Resource::Promotion, Access::Read).await?;
    let target = require_in(&s, &user, &to, Resource::Promotion, Access::Write).await?;
    if source.id == target.id {
        return Err(fail(server::Error::field("to", "choose an environment other than the one you promote from")));
    }
    let actor = actor_of(&user).await;
    let bundle = server::promotion::export(&s.db, &actor, &source.name).await.map_err(fail)?;
    let bundle = server::promotion::check(&bundle).map_err(fail)?;
    let mode = if apply == "yes" { Mode::Apply } else { Mode::Plan };
    let options = Options { overwrite_settings: overwrite_settings == "on", create_placeholders: create_placeholders == "on" };
    let report = server::promotion::import(&s.db, &actor, &target.name, &bundle, mode, options).await.map_err(fail)?;
    Ok(PromotionPlan {
        from: source.name,
        to: target.name,
        lines: report
            .changes
            .into_iter()
            .map(|c| PlanLine { kind: c.kind.as_str().to_string(), name: c.name, action: c.action.as_str().to_string(), detail: c.detail })
            .collect(),
        summary: report.summary,
        needs_connection: report.needs_connection,
        checklist: report.checklist.into_iter().map(|s| PlanStep { kind: s.kind.as_str().to_string(), text: s.text, path: s.path }).collect(),
        applied: report.applied,
        overwrite_settings: options.overwrite_settings,
        create_placeholders: options.create_placeholders,
    })
}
