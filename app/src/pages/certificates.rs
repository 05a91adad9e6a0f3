//! A connection that signs, on the connection page (status, certificate, the request to the
//! admin), and the page the admin's one-time link opens. The same for every provider that
//! signs; the provider's words come from the server (who the admin is, what they send back).

use leptos::prelude::*;
use leptos_router::hooks::{use_params_map, use_query_map};

use crate::api::{
    signing_status, urlencode, AdminRequestAgain, AnswerAdminRequest, CertificateView, Fallible, RequestAdminHelp, SigningView, UploadCertificate,
};
use crate::pages::auth::error_view;
use crate::pages::connections::ResultBox;
use crate::pages::short_time;

fn state_label(state: &str) -> String {
    match state {
        "connected" => "Connected".into(),
        "failing" => "Failing".into(),
        "waiting_for_admin" => "Waiting for admin".into(),
        "no_certificate" => "No certificate yet".into(),
        "not_set_up" => "Not set up".into(),
        // The provider's "answer received" state, e.g. consumer_key_received.
        other => {
            let words = other.replace('_', " ");
            let mut chars = words.chars();
            chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default()
        }
    }
}

fn certificate_line(c: &CertificateView) -> String {
    format!(
        "{} RSA {} certificate ({}), thumbprint {} (SHA-256 {}…), expires {}{}",
        if c.state == "pending" { "New" } else { "Current" },
        c.bits,
        c.origin,
        c.thumbprint_sha1,
        &c.fingerprint_sha256[..16.min(c.fingerprint_sha256.len())],
        short_time(&c.not_after),
        if c.expires_soon { " — expires within 30 days: rotate it" } else { "" }
    )
}

/// What the certificate panel loads and changes. Created with the connection page, outside its
/// Suspense: a resource created inside a Suspense's children can stall server rendering
/// (leptos-rs/leptos#4866), which showed as a page that never finished loading.
#[derive(Clone, Copy)]
pub struct SigningState {
    pub request: ServerAction<RequestAdminHelp>,
    pub again: ServerAction<AdminRequestAgain>,
    pub upload: ServerAction<UploadCertificate>,
    pub status: Resource<Fallible<SigningView>>,
}

impl SigningState {
    pub fn new(environment: impl Fn() -> String + Send + Sync + 'static, name: impl Fn() -> String + Send + Sync + 'static) -> Self {
        let request = ServerAction::<RequestAdminHelp>::new();
        let again = ServerAction::<AdminRequestAgain>::new();
        let upload = ServerAction::<UploadCertificate>::new();
        let status = Resource::new(
            move || (environment(), name(), request.version().get(), again.version().get(), upload.version().get()),
            |(environment, name, ..)| signing_status(environment, name),
        );
        SigningState { request, again, upload, status }
    }
}

/// The certificate part of a connection's page; `admin` names who is asked ("Salesforce admin").
#[component]
pub fn CertificatePanel(environment: String, name: String, admin_email: String, admin: String, can_write: bool, state: SigningState) -> impl IntoView {
    let SigningState { request, again, upload, status } = state;
    let has_certificate = move || status.get().and_then(|r| r.ok()).is_some_and(|st| st.certificate.is_some() || st.pending_certificate.is_some());
    let download = format!("/api/v1/environments/{}/connections/{}/certificate", urlencode(&environment), urlencode(&name));
    // ActionForm children move what they use: one copy per form.
    let (env2, name2) = (environment.clone(), name.clone());
    let (env_again, name_again, env_cancel, name_cancel, env_up, name_up) =
        (environment.clone(), name.clone(), environment.clone(), name.clone(), environment.clone(), name.clone());
    let action_error = move || {
        [request.value().get().and_then(|r| r.err()), again.value().get().and_then(|r| r.err()), upload.value().get().and_then(|r| r.err())]
            .into_iter()
            .flatten()
            .next()
    };
    view! {
        <section class="certificate" aria-labelledby="cert-title">
            <h2 id="cert-title">"Certificate and admin request"</h2>
            <Transition fallback=|| view! { <p>"Loading…"</p> }>
                {move || {
                    let download = download.clone();
                    Suspend::new(async move {
                    match status.await {
                        Ok(st) => view! { <StatusBox st=st download=download/> }.into_any(),
                        Err(e) => error_view(&e),
                    }
                })}}
            </Transition>
            {move || action_error().map(|e| view! { <p class="error" role="alert">{e.field("admin_email").or(e.field("certificate")).or(e.field("private_key")).unwrap_or(e.message)}</p> })}
            {can_write.then(|| view! {
                <ActionForm action=request attr:class="stack form">
                    <input type="hidden" name="environment" value=env2.clone()/>
                    <input type="hidden" name="name" value=name2.clone()/>
                    <label for="cert-admin">{format!("{}'s email", upper_first(&admin))}</label>
                    <input id="cert-admin" name="admin_email" type="email" required value=admin_email.clone()/>
                    <label for="cert-bits">"Key size"</label>
                    <select id="cert-bits" name="key_bits">
                        <option value="2048" selected>"RSA 2048 (recommended)"</option>
                        <option value="4096">"RSA 4096"</option>
                    </select>
                    <button type="submit" disabled=move || request.pending().get()>
                        {move || if request.pending().get() {
                            "Generating…"
                        } else if has_certificate() {
                            "Rotate certificate and request admin help"
                        } else {
                            "Request admin help"
                        }}
                    </button>
                    <p class="muted">"Generates a key pair and certificate (a rotation, if one exists: the current one stays in use until the new one works) and emails the admin the setup steps with a one-time link."</p>
                </ActionForm>
                <div class="inline">
                    <ActionForm action=again attr:class="inline">
                        <input type="hidden" name="environment" value=env_again/>
                        <input type="hidden" name="name" value=name_again/>
                        <input type="hidden" name="cancel" value="false"/>
                        <button type="submit" class="secondary">"Send the request again"</button>
                    </ActionForm>
                    <ActionForm action=again attr:class="inline">
                        <input type="hidden" name="environment" value=env_cancel/>
                        <input type="hidden" name="name" value=name_cancel/>
                        <input type="hidden" name="cancel" value="true"/>
                        <button type="submit" class="secondary">"Cancel the request"</button>
                    </ActionForm>
                </div>
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

fn upper_first(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default()
}

fn lower_first(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map(|c| c.to_lowercase().chain(chars).collect()).unwrap_or_default()
}

#[component]
fn StatusBox(st: SigningView, download: String) -> impl IntoView {
    let good = st.state == "connected";
    let bad = st.state == "failing";
    view! {
        <div class=if good { "result ok-box" } else if bad { "result bad-box" } else { "result" } data-testid="cert-status">
            <strong>{state_label(&st.state)}</strong>
            <p>{st.summary.clone()}</p>
            {st.advice.clone().map(|a| view! { <p class="advice"><strong>"What to do: "</strong>{a}</p> })}
            {st.connected.clone().map(|c| view! {
                <p class="muted">{c.org_id.map(|o| format!("Org {o}, ")).unwrap_or_default()} {c.username.map(|u| format!("as {u}, ")).unwrap_or_default()} "token from " {short_time(&c.obtained_at)}</p>
            })}
        </div>
        {st.certificate.as_ref().map(|c| view! { <p class=if c.expires_soon { "notice" } else { "muted" }>{certificate_line(c)}</p> })}
        {st.pending_certificate.as_ref().map(|c| view! { <p class="notice">{certificate_line(c)} " — in use once it has worked"</p> })}
        {st.request.clone().map(|r| view! {
            <p class="muted">"Request to " {r.admin_email.clone()} " on " {short_time(&r.requested_at)} " by " {r.requested_by.clone()} ": " {r.state.clone()} {r.delivery_words().map(|w| format!(" · {w}"))}</p>
        })}
        {(st.certificate.is_some() || st.pending_certificate.is_some()).then(|| view! { <p><a href=download download>"Download certificate (.crt)"</a></p> })}
    }
}

/// `/respond/:env/:name?token=…`: the system's admin sends back what they created (a Salesforce
/// consumer key; an Entra tenant and client ID). No account.
#[component]
pub fn RespondPage() -> impl IntoView {
    let params = use_params_map();
    let query = use_query_map();
    let env = move || params.read().get("env").unwrap_or_default();
    let name = move || params.read().get("name").unwrap_or_default();
    let token = move || query.read().get("token").unwrap_or_default();
    let view_data = Resource::new(move || (env(), name(), token()), |(e, n, t)| crate::api::admin_link_view(e, n, t));
    let answer = ServerAction::<AnswerAdminRequest>::new();
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
                            view! {
                            <h1>{format!("Send the {what} to connvault")}</h1>
                            <p>{v.requested_by.clone()} " asked you, as " {v.admin.clone()} ", to set up " {v.provider_label.clone()} " for the connection " <strong>{v.connection.clone()}</strong>
                               " in " {v.environment.clone()} " (" <span class="mono">{facts}</span> ")."</p>
                            {v.thumbprint_sha1.clone().map(|t| view! { <p>"Certificate to register: thumbprint " <span class="mono" data-testid="thumbprint">{t}</span></p> })}
                            {pem.map(|p| view! {
                                <details>
                                    <summary>"Show the certificate (PEM)"</summary>
                                    <pre class="mono" data-testid="certificate-pem">{p}</pre>
                                </details>
                            })}
                            <p class="muted">"This link works until an answer that works is sent (at most 5 tries), or until " {short_time(&v.expires_at)} "."</p>
                            <ActionForm action=answer attr:class="stack form">
                                <input type="hidden" name="environment" value=v.environment.clone()/>
                                <input type="hidden" name="name" value=v.connection.clone()/>
                                <input type="hidden" name="token" value=token()/>
                                {v.answer_fields.iter().map(|f| {
                                    let id = format!("r-{}", f.name);
                                    view! {
                                        <label for=id.clone()>{f.label.clone()}</label>
                                        <input id=id name=format!("fields[{}]", f.name) required autocomplete="off" class="mono"/>
                                        <span class="muted">{f.help.clone()}</span>
                                    }
                                }).collect_view()}
                                <details>
                                    <summary>"I used my own certificate instead of the attached one"</summary>
                                    <label for="r-cert">"Certificate (PEM)"</label>
                                    <textarea id="r-cert" name="certificate" rows="6"></textarea>
                                    <label for="r-pkey">"Its private key (PEM, not encrypted)"</label>
                                    <textarea id="r-pkey" name="private_key" rows="6" autocomplete="off"></textarea>
                                </details>
                                <button type="submit" disabled=move || answer.pending().get()>{move || if answer.pending().get() { checking.clone() } else { "Send".to_string() }}</button>
                            </ActionForm>
                        }.into_any()},
                        Err(e) => error_view(&e),
                    }
                })}
            </Transition>
            {move || answer.value().get().map(|r| match r {
                Ok(t) => view! {
                    <ResultBox outcome=t ok_title="Thank you: the connection works" bad_title="Received, but the connection does not work yet" testid="answer-result"/>
                }.into_any(),
                Err(e) => view! { <p class="error" role="alert">{e.fields.first().map(|f| f.message.clone()).unwrap_or(e.message)}</p> }.into_any(),
            })}
        </section>
    }
}
