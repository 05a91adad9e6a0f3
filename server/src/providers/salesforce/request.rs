//! The email that asks a Salesforce admin to create the connected app: the admin's steps from
//! the reference with this connection's real values, the certificate attached, and the one-time
//! link through which the admin sends the consumer key back.

use crate::mail::{escape_html as escape, Attachment, Email};

pub use crate::providers::RequestFacts;

/// The Salesforce values a request names.
struct Values {
    username: String,
    login_url: String,
}

fn values(f: &RequestFacts<'_>) -> Values {
    let s = super::Settings::from_map(f.settings);
    Values { username: s.username, login_url: s.login_url }
}

pub fn subject(requester: &str) -> String {
    format!("{requester} requests your help to create a Salesforce Connected App")
}

/// The admin's steps, each one line, with the values filled in.
pub fn steps(f: &RequestFacts<'_>) -> Vec<String> {
    let v = values(f);
    vec![
        format!("In Salesforce ({}), go to Setup → App Manager → New Connected App (newer orgs: New External Client App, with the JWT bearer flow enabled). Name it e.g. \"connvault {} {}\" and fill in Basic Information.", v.login_url, f.connection, f.environment),
        format!("Tick Enable OAuth Settings. Callback URL: {} (required by Salesforce, not used by this flow).", f.callback_url),
        format!("Tick Use digital signatures and upload the attached certificate, {}.", f.certificate_file),
        "Selected OAuth Scopes: add \"Access and manage your data (api)\" and \"Perform requests on your behalf at any time (refresh_token, offline_access)\".".into(),
        "Save, then open Manage Consumer Details and copy the Consumer Key.".into(),
        "Manage → Edit Policies: set Permitted Users to \"Admin approved users are pre-authorized\" (optional: IP Relaxation = Relax IP restrictions). Save.".into(),
        format!("Create a permission set (License: None), add this connected app under Assigned Connected Apps, and assign the permission set to the integration user {}.", v.username),
        format!("Send the consumer key back through this one-time link (valid until {}): {} — if you used your own certificate instead of the attached one, upload it and its private key there too.", f.expires_at, f.link),
    ]
}

pub fn email(f: &RequestFacts<'_>) -> Email {
    let steps = steps(f);
    let intro = format!(
        "{} asks you, as a Salesforce administrator, to create a connected app so that connvault can connect to Salesforce as {} for the \
         connection {} ({}), using the OAuth 2.0 JWT bearer flow. No password is shared: connvault signs its requests with the private key \
         that belongs to the attached certificate.",
        f.requester,
        values(f).username,
        f.connection,
        f.environment
    );
    let mut text = format!("{intro}\n\nSteps:\n");
    for (i, step) in steps.iter().enumerate() {
        text.push_str(&format!("{}. {step}\n", i + 1));
    }
    text.push_str("\nChanges take 2–10 minutes to reach Salesforce. If you did not expect this request, ignore it: the link expires on its own.\n");

    let mut html = format!("<!doctype html><html><body><p>{}</p><ol>", escape(&intro));
    for step in &steps {
        html.push_str(&format!("<li>{}</li>", escape(step)));
    }
    html.push_str(&format!(
        "</ol><p><a href=\"{}\">Send the consumer key to connvault</a> (one use, until {}).</p><p>Changes take 2–10 minutes to reach Salesforce. \
         If you did not expect this request, ignore it: the link expires on its own.</p></body></html>",
        escape(f.link),
        escape(f.expires_at)
    ));
    Email {
        to: f.to.to_string(),
        subject: subject(f.requester),
        text,
        html,
        attachments: vec![Attachment {
            filename: f.certificate_file.to_string(),
            content_type: "application/x-x509-ca-cert".into(),
            body: f.certificate_pem.as_bytes().to_vec(),
        }],
    }
}
