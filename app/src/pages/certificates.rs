//! A connection that signs, on the connection page (status, certificate, the request to the
//! admin), and the page the admin's one-time link opens. The same for every provider that
//! signs; the provider's words come from the server (who the admin is, what they send back).

use leptos::prelude::*;
use leptos_router::hooks::{use_params_map, use_query_map};

use crate::api::{
    urlencode, AdminRequestAgain, AnswerAdminRequest, AppError, CertificateView, RequestAdminHelp, SigningView, UndeliveredRequest, UploadCertificate,
};
use crate::pages::auth::error_view;
use crate::pages::connections::{is_current, summary_lines, ErrorSummary, Live, ResultBox, SummaryLine};
use crate::pages::{copy_to_clipboard, short_time};

fn certificate_line(c: &CertificateView) -> String {
    format!(
        "{} RSA {} certificate ({}), thumbprint {} (SHA-256 {}…), expires {}{}",
        if c.state == "pending" { "New" } else { "Current" },
        c.bits,
        c.origin,
        c.thumbprint_sha1,
        &c.fingerprint_sha256[..16.min(c.fingerprint_sha256.len())],
        short_time(&c.not_after),
        if c.expires_soon { " — expires within 30 days: renew it (below)" } else { "" }
    )
}

/// What the certificate panel changes. Created with the connection page, outside its
/// Suspense: a resource or action created inside a Suspense's children can stall server
/// rendering (leptos-rs/leptos#4866). Where the connection stands comes from the page's flow.
#[derive(Clone, Copy)]
pub struct SigningState {
    pub request: ServerAction<RequestAdminHelp>,
    pub again: ServerAction<AdminRequestAgain>,
    pub upload: ServerAction<UploadCertificate>,
}

impl SigningState {
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        SigningState { request: ServerAction::new(), again: ServerAction::new(), upload: ServerAction::new() }
    }
}

/// The error of the latest of these actions to finish (one that worked clears it): no message
/// outlives the action it is about.
pub fn latest_error(sources: Vec<Signal<Option<Option<AppError>>>>) -> RwSignal<Option<AppError>> {
    let shown = RwSignal::new(None);
    for source in sources {
        Effect::new(move |first: Option<()>| {
            let value = source.get();
            if first.is_some() {
                if let Some(outcome) = value {
                    shown.set(outcome);
                }
            }
        });
    }
    shown
}

/// The certificate and the request to the admin, on a connection's page; `admin` names who is
/// asked ("Salesforce admin"). Only what applies shows: Request admin help before there is a
/// certificate, Send the request once there is one, Send again and Cancel while a request is
/// out; the step's next action is the primary button.
#[component]
pub fn CertificatePanel(environment: String, name: String, admin: String, can_write: bool, state: SigningState, live: Live) -> impl IntoView {
    let SigningState { request, again, upload } = state;
    let signing = move || live.with(|f| f.as_ref().and_then(|f| f.signing.clone()));
    let has_certificate = move || signing().is_some_and(|st| st.certificate.is_some() || st.pending_certificate.is_some());
    let expiring = move || signing().is_some_and(|st| st.pending_certificate.is_none() && st.certificate.as_ref().is_some_and(|c| c.expires_soon));
    let latest = move || signing().and_then(|st| st.request);
    let open = move || latest().is_some_and(|r| r.state == "open");
    let answered = move || live.with(|f| f.as_ref().and_then(|f| f.step("answer")).is_some_and(|s| s.state == "done"));
    let known_email = move || live.with(|f| f.as_ref().and_then(|f| f.admin_email.clone()));
    let is_certificate_next = is_current(live, "certificate");
    let is_answer_next = is_current(live, "answer");
    let answer_failed = move || live.with(|f| f.as_ref().and_then(|f| f.step("answer")).is_some_and(|s| s.state == "failed"));
    let download = format!("/api/v1/environments/{}/connections/{}/certificate", urlencode(&environment), urlencode(&name));
    let error = latest_error(vec![
        Signal::derive(move || request.value().get().map(|r| r.err())),
        Signal::derive(move || again.value().get().map(|r| r.err())),
        Signal::derive(move || upload.value().get().map(|r| r.err())),
    ]);
    let (env2, name2, env_send, name_send, env_again, name_again, env_cancel, name_cancel, env_rot, name_rot, env_up, name_up) = (
        environment.clone(),
        name.clone(),
        environment.clone(),
        name.clone(),
        environment.clone(),
        name.clone(),
        environment.clone(),
        name.clone(),
        environment.clone(),
        name.clone(),
        environment.clone(),
        name.clone(),
    );
    let admin_label = upper_first(&admin);
    let (admin_a, admin_b, admin_c) = (admin_label.clone(), admin_label.clone(), admin_label.clone());
    view! {
        <section class="certificate" aria-label="Certificate and request">
            {move || signing().map(|st| view! { <CertificateLines st=st download=download.clone()/> })}
            <ErrorSummary id="certificate-errors" lines=Signal::derive(move || error.get().map(|e| panel_lines(&e)).unwrap_or_default())
                message=Signal::derive(move || error.get().filter(|e| e.fields.is_empty()).map(|e| e.message))/>
            {can_write.then(|| view! {
                // No certificate yet: make one and send the request.
                <div class:hidden=move || has_certificate()>
                <ActionForm action=request attr:class="stack form">
                    <input type="hidden" name="environment" value=env2.clone()/>
                    <input type="hidden" name="name" value=name2.clone()/>
                    <AdminEmail id="cert-admin" admin=admin_a.clone() known=Signal::derive(known_email)/>
                    <details class="advanced">
                        <summary>"Key size"</summary>
                        <label for="cert-bits">"Key size"</label>
                        <select id="cert-bits" name="key_bits">
                            <option value="2048" selected>"RSA 2048 (recommended)"</option>
                            <option value="4096">"RSA 4096"</option>
                        </select>
                    </details>
                    <button type="submit" class:secondary=move || !is_certificate_next() disabled=move || request.pending().get()>
                        {move || if request.pending().get() { "Generating…" } else { "Request admin help" }}
                    </button>
                    <p class="muted">"Generates a key pair and a certificate, and emails the admin the setup steps with a one-time link."</p>
                </ActionForm>
                </div>
                // A certificate and no request yet (an uploaded one): send the request.
                <div class:hidden=move || !has_certificate() || latest().is_some() || answered()>
                <ActionForm action=again attr:class="stack form">
                    <input type="hidden" name="environment" value=env_send.clone()/>
                    <input type="hidden" name="name" value=name_send.clone()/>
                    <input type="hidden" name="cancel" value="false"/>
                    <AdminEmail id="send-admin" admin=admin_b.clone() known=Signal::derive(known_email)/>
                    <button type="submit" class:secondary=move || !is_certificate_next() disabled=move || again.pending().get()>"Send the request to the admin"</button>
                </ActionForm>
                </div>
                // A request is out (or was): send it again, or cancel it while it is open.
                <div class="inline" class:hidden=move || !has_certificate() || latest().is_none()>
                    <ActionForm action=again attr:class="inline">
                        <input type="hidden" name="environment" value=env_again.clone()/>
                        <input type="hidden" name="name" value=name_again.clone()/>
                        <input type="hidden" name="cancel" value="false"/>
                        <button type="submit" class:secondary=move || !(is_answer_next() && answer_failed()) disabled=move || again.pending().get()>"Send the request again"</button>
                    </ActionForm>
                    <span class:hidden=move || !open()>
                    <ActionForm action=again attr:class="inline">
                        <input type="hidden" name="environment" value=env_cancel.clone()/>
                        <input type="hidden" name="name" value=name_cancel.clone()/>
                        <input type="hidden" name="cancel" value="true"/>
                        <button type="submit" class="secondary">"Cancel the request"</button>
                    </ActionForm>
                    </span>
                </div>
                // A certificate that expires soon: the renewal is open and says so.
                <details class:hidden=move || !has_certificate() prop:open=expiring>
                    <summary>{move || if expiring() { "Renew the certificate (it expires within 30 days)" } else { "Replace the certificate" }}</summary>
                    <ActionForm action=request attr:class="stack form">
                        <input type="hidden" name="environment" value=env_rot.clone()/>
                        <input type="hidden" name="name" value=name_rot.clone()/>
                        <AdminEmail id="rotate-admin" admin=admin_c.clone() known=Signal::derive(known_email)/>
                        <label for="rotate-bits">"Key size"</label>
                        <select id="rotate-bits" name="key_bits">
                            <option value="2048" selected>"RSA 2048 (recommended)"</option>
                            <option value="4096">"RSA 4096"</option>
                        </select>
                        <button type="submit" class="secondary" disabled=move || request.pending().get()>
                            {move || if expiring() { "Renew: new certificate and admin request" } else { "Rotate certificate and request admin help" }}
                        </button>
                        <p class="muted">"A new key pair and certificate; the current one stays in use until the new one works."</p>
                    </ActionForm>
                </details>
                <details>
                    <summary>"Upload your own certificate and key instead"</summary>
                    <ActionForm action=upload attr:class="stack form">
                        <input type="hidden" name="environment" value=env_up/>
                        <input type="hidden" name="name" value=name_up/>
                        <label for="cert-pem">"Certificate (PEM)"</label>
                        <textarea id="cert-pem" name="certificate" rows="6" required></textarea>
                        <label for="cert-key">"Private key (PEM, PKCS#8 or PKCS#1, not encrypted)"</label>
                        <textarea id="cert-key" name="private_key" rows="6" required autocomplete="off"></textarea>
                        <button type="submit" class="secondary">"Upload"</button>
                    </ActionForm>
                </details>
            })}
        </section>
    }
}

/// The admin's address for a request, asked once: when the connection's setting or an earlier
/// request names it, the request goes there (another address only if wanted); else it is asked
/// here.
#[component]
pub fn AdminEmail(id: &'static str, admin: String, known: Signal<Option<String>>) -> impl IntoView {
    let label = format!("{admin}'s email");
    let label2 = label.clone();
    view! {
        {move || match known.get() {
            Some(to) => view! {
                <p class="muted" data-testid="request-to">"The request goes to " <strong>{to}</strong> "."</p>
                <details class="advanced">
                    <summary>"Send it to someone else"</summary>
                    <label for=id>{label.clone()}</label>
                    <input id=id name="admin_email" type="email" autocomplete="email"/>
                </details>
            }.into_any(),
            None => view! {
                <label for=id>{label2.clone()}</label>
                <input id=id name="admin_email" type="email" required autocomplete="email"/>
            }.into_any(),
        }}
    }
}

/// The certificate panel's mistakes, for its error summary: each with its field's name, linked
/// to the field where it has one of its own (the upload's certificate and key).
fn panel_lines(e: &AppError) -> Vec<SummaryLine> {
    e.fields
        .iter()
        .map(|f| {
            let (label, target) = match f.field.as_str() {
                "certificate" => ("Certificate (PEM)", Some("cert-pem")),
                "private_key" => ("Private key", Some("cert-key")),
                "admin_email" => ("The admin's email", None),
                other => (other, None),
            };
            SummaryLine { text: format!("{label}: {}", f.message), target: target.map(str::to_string), href: None }
        })
        .collect()
}

fn upper_first(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default()
}

fn lower_first(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map(|c| c.to_lowercase().chain(chars).collect()).unwrap_or_default()
}

#[component]
fn CertificateLines(st: SigningView, download: String) -> impl IntoView {
    view! {
        {st.certificate.as_ref().map(|c| view! { <p class=if c.expires_soon { "notice" } else { "muted" } data-testid="certificate">{certificate_line(c)}</p> })}
        {st.pending_certificate.as_ref().map(|c| view! { <p class="notice">{certificate_line(c)} " — in use once it has worked"</p> })}
        {st.connected.clone().map(|c| view! {
            <p class="muted">{c.org_id.map(|o| format!("Org {o}, ")).unwrap_or_default()} {c.username.map(|u| format!("as {u}, ")).unwrap_or_default()} "token from " {short_time(&c.obtained_at)}</p>
        })}
        {(st.certificate.is_some() || st.pending_certificate.is_some()).then(|| view! { <p><a href=download download>"Download certificate (.crt)"</a></p> })}
    }
}

/// The email of a request no mail server took, to pass on by hand: read on demand (so the
/// one-time link is never in the page's HTML), with its text and link to copy and the whole
/// message to download (`.eml`).
#[component]
pub fn PassOn(environment: String, name: String, primary: Signal<bool>) -> impl IntoView {
    let read = ServerAction::<UndeliveredRequest>::new();
    let copied = RwSignal::new(None::<&'static str>);
    view! {
        <ActionForm action=read attr:class="inline">
            <input type="hidden" name="environment" value=environment/>
            <input type="hidden" name="name" value=name/>
            <button type="submit" class:secondary=move || !primary.get() disabled=move || read.pending().get()>"Show the email to pass it on"</button>
        </ActionForm>
        {move || read.value().get().map(|r| match r {
            Ok(m) => {
                let (link, text) = (m.link.clone(), m.text.clone());
                let eml = format!("data:message/rfc822;base64,{}", m.eml_base64);
                view! {
                    <div class="pass-on" data-testid="pass-on">
                        <p>"To " <strong>{m.to.clone()}</strong> " · " {m.subject.clone()}</p>
                        <label for="pass-on-link">"The one-time link (for the admin only)"</label>
                        <input id="pass-on-link" class="once-value mono" readonly value=m.link.clone() data-testid="pass-on-link"/>
                        <div class="row">
                            <button type="button" class="secondary" on:click=move |_| { if copy_to_clipboard(&link) { copied.set(Some("The link is copied.")); } }>"Copy link"</button>
                            <button type="button" class="secondary" on:click=move |_| { if copy_to_clipboard(&text) { copied.set(Some("The text is copied.")); } }>"Copy text"</button>
                            <a href=eml download=m.file_name.clone()>"Download the email (.eml)"</a>
                        </div>
                        {move || copied.get().map(|c| view! { <p class="ok" role="status">{c}</p> })}
                        <details>
                            <summary>"The email's text"</summary>
                            <pre class="mono" data-testid="pass-on-text">{m.text.clone()}</pre>
                        </details>
                    </div>
                }.into_any()
            }
            Err(e) => view! { <p class="error" role="alert">{e.message}</p> }.into_any(),
        })}
    }
}

/// `/respond/:env/:name?token=…`: the system's admin sends back what they created (a Salesforce
/// consumer key; an Entra tenant and client ID). No account. The page says who asked and when,
/// offers the certificate to register (to download, or to copy), and says at once whether the
/// answer works; a refused answer lists what to fix and keeps what was typed.
#[component]
pub fn RespondPage() -> impl IntoView {
    let params = use_params_map();
    let query = use_query_map();
    let env = move || params.read().get("env").unwrap_or_default();
    let name = move || params.read().get("name").unwrap_or_default();
    let token = move || query.read().get("token").unwrap_or_default();
    let view_data = Resource::new(move || (env(), name(), token()), |(e, n, t)| crate::api::admin_link_view(e, n, t));
    let answer = ServerAction::<AnswerAdminRequest>::new();
    let error = Signal::derive(move || answer.value().get().and_then(|r| r.err()));
    view! {
        <section class="panel">
            <Transition fallback=|| view! { <p>"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match view_data.await {
                        Ok(v) => {
                            let what = v.answer_fields.iter().map(|f| lower_first(&f.label)).collect::<Vec<_>>().join(" and ");
                            let checking = format!("Checking with {}…", v.provider_label);
                            let facts = v.facts.iter().map(|f| format!("{}: {}", f.label, f.value)).collect::<Vec<_>>().join("; ");
                            let pem = v.certificate_pem.clone();
                            let mut labels: std::collections::HashMap<String, String> =
                                v.answer_fields.iter().map(|f| (f.name.clone(), f.label.clone())).collect();
                            labels.insert("certificate".into(), "Certificate (PEM)".into());
                            labels.insert("private_key".into(), "Its private key".into());
                            let lines = Signal::derive(move || error.get().map(|e| summary_lines(&e, &labels, "r-")).unwrap_or_default());
                            let message = Signal::derive(move || error.get().filter(|e| e.fields.is_empty()).map(|e| e.message));
                            let file = if v.certificate_file.is_empty() { "certificate.crt".to_string() } else { v.certificate_file.clone() };
                            view! {
                            <h1>{format!("Send the {what} to connvault")}</h1>
                            <p data-testid="requested-by">"Asked by " <strong>{v.requested_by.clone()}</strong>
                                {(!v.requested_at.is_empty()).then(|| format!(" on {}", short_time(&v.requested_at)))} "."</p>
                            <p>{v.requested_by.clone()} " asked you, as " {v.admin.clone()} ", to set up " {v.provider_label.clone()} " for the connection " <strong>{v.connection.clone()}</strong>
                               " in " {v.environment.clone()} " (" <span class="mono">{facts}</span> ")."</p>
                            {v.thumbprint_sha1.clone().map(|t| view! { <p>"Certificate to register: thumbprint " <span class="mono" data-testid="thumbprint">{t}</span></p> })}
                            {pem.map(|p| view! {
                                <p><a href=format!("data:application/x-x509-ca-cert;charset=utf-8,{}", urlencode(&p)) download=file.clone() data-testid="certificate-download">
                                    {format!("Download the certificate ({file})")}</a></p>
                                <details>
                                    <summary>"Show the certificate (PEM)"</summary>
                                    <pre class="mono" data-testid="certificate-pem">{p}</pre>
                                </details>
                            })}
                            <p class="muted">"This link works until an answer that works is sent (at most 5 tries), or until " {short_time(&v.expires_at)} "."</p>
                            <ErrorSummary lines=lines message=message/>
                            <ActionForm action=answer attr:class="stack form" attr:novalidate=true>
                                <input type="hidden" name="environment" value=v.environment.clone()/>
                                <input type="hidden" name="name" value=v.connection.clone()/>
                                <input type="hidden" name="token" value=token()/>
                                {v.answer_fields.iter().map(|f| {
                                    let id = format!("r-{}", f.name);
                                    let key = f.name.clone();
                                    let message = move || error.get().and_then(|e| e.field(&key));
                                    let message2 = message.clone();
                                    view! {
                                        <label for=id.clone()>{f.label.clone()}</label>
                                        <input id=id.clone() name=format!("fields[{}]", f.name) required autocomplete="off" class="mono"
                                            aria-invalid=move || message().is_some().to_string()/>
                                        <span class="muted">{f.help.clone()}</span>
                                        <span class="field-error">{message2}</span>
                                    }
                                }).collect_view()}
                                <details>
                                    <summary>"I used my own certificate instead of the attached one"</summary>
                                    <label for="r-certificate">"Certificate (PEM)"</label>
                                    <textarea id="r-certificate" name="certificate" rows="6"></textarea>
                                    <label for="r-private_key">"Its private key (PEM, not encrypted)"</label>
                                    <textarea id="r-private_key" name="private_key" rows="6" autocomplete="off"></textarea>
                                </details>
                                <button type="submit" disabled=move || answer.pending().get()>{move || if answer.pending().get() { checking.clone() } else { "Send".to_string() }}</button>
                            </ActionForm>
                        }.into_any()},
                        Err(e) => error_view(&e),
                    }
                })}
            </Transition>
            {move || answer.value().get().and_then(|r| r.ok()).map(|t| view! {
                <ResultBox outcome=t ok_title="Thank you: the connection works" bad_title="Received, but the connection does not work yet" testid="answer-result"/>
            })}
        </section>
    }
}
