//! Promotion over the REST API, on every backend: promise 12 (an export carries no secret) and
//! promise 13 (import is validated before any write, atomic, idempotent and conflict-aware),
//! plus the import options and who may export and import.

use crate::common;

use common::{backends, key, session, Api, Kind, TestDb, Who};
use serde_json::{json, Value};
use server::users::Role;

const MARKER: &str = "MARKER-promo-41c9-never-exported";

fn http_conn(name: &str, base_url: &str, token: &str) -> Value {
    json!({"name": name, "provider": "http", "settings": {"base_url": base_url, "auth": "bearer"}, "secrets": {"token": token}})
}

fn sf_conn(name: &str) -> Value {
    json!({"name": name, "provider": "salesforce", "settings": {"login_url": "https://login.salesforce.com", "username": "int@acme.com", "consumer_key": "3MVG9abc"}})
}

/// DEV as a release would leave it: a Salesforce connection and a generic one, each with a
/// bound integration, and one integration not bound at all. QA has only `Billing`.
async fn seed(api: &Api, k: &str) {
    for c in [sf_conn("SF_Main"), http_conn("Billing", "https://billing.example.com", MARKER)] {
        let (st, _, text) = api.call(Who::Key(k), "POST", "/api/v1/environments/DEV/connections", Some(c)).await;
        assert_eq!(st, 201, "{text}");
    }
    for (name, provider, connection) in
        [("Salesforce_Accounts", "salesforce", Some("SF_Main")), ("Billing_Sync", "http", Some("Billing")), ("Reports", "http", None)]
    {
        let body = json!({"provider": provider, "objects": ["Account", {"name": "Invoice", "access": "read_write"}], "version": "2.0"});
        let (st, _, text) = api.call(Who::Key(k), "PUT", &format!("/api/v1/environments/DEV/integrations/{name}"), Some(body)).await;
        assert_eq!(st, 201, "{text}");
        if let Some(c) = connection {
            let path = format!("/api/v1/environments/DEV/integrations/{name}/binding");
            assert_eq!(api.call(Who::Key(k), "PUT", &path, Some(json!({"connection": c}))).await.0, 200);
        }
    }
    let (st, _, text) =
        api.call(Who::Key(k), "POST", "/api/v1/environments/QA/connections", Some(http_conn("Billing", "https://billing.example.com", "qa-token"))).await;
    assert_eq!(st, 201, "{text}");
}

async fn export(api: &Api, k: &str) -> Value {
    let (st, bundle, text) = api.call(Who::Key(k), "GET", "/api/v1/environments/dev/export", None).await;
    assert_eq!(st, 200, "{text}");
    bundle
}

async fn import(api: &Api, k: &str, query: &str, bundle: &Value) -> (u16, Value) {
    let (st, body, _) = api.call(Who::Key(k), "POST", &format!("/api/v1/environments/QA/import?{query}"), Some(bundle.clone())).await;
    (st.as_u16(), body)
}

/// `(kind, name, action)` of every change of an import answer.
fn actions(report: &Value) -> Vec<(String, String, String)> {
    report["changes"]
        .as_array()
        .unwrap_or_else(|| panic!("no changes in {report}"))
        .iter()
        .map(|c| (c["kind"].as_str().unwrap().into(), c["name"].as_str().unwrap().into(), c["action"].as_str().unwrap().into()))
        .collect()
}

fn change(kind: &str, name: &str, action: &str) -> (String, String, String) {
    (kind.into(), name.into(), action.into())
}

fn fields(err: &Value) -> Vec<&str> {
    err["error"]["details"].as_array().unwrap_or_else(|| panic!("no details in {err}")).iter().map(|d| d["field"].as_str().unwrap()).collect()
}

/// The bundle with one change made and its digest recomputed, as a tool that means it would.
fn resealed(bundle: &Value, edit: impl FnOnce(&mut Value)) -> Value {
    let mut b = bundle.clone();
    edit(&mut b);
    b["digest"] = json!(server::promotion::digest_of(&b));
    b
}

async fn setup(db: &TestDb) -> (Api, String) {
    let api = Api::new(db.open().await);
    let k = key(&api.s, &["*:connections:rw", "*:integrations:rw", "*:bindings:rw", "*:promotion:rw", "*:audit:read"]).await;
    seed(&api, &k).await;
    (api, k)
}

/// Promise 12: the default export leaves every secret out, and is a well-formed, sealed,
/// name-ordered bundle.
#[tokio::test]
async fn promise_12_an_export_carries_no_secret() {
    for db in backends().await {
        let (api, k) = setup(&db).await;
        let (st, bundle, text) = api.call(Who::Key(&k), "GET", "/api/v1/environments/DEV/export", None).await;
        assert_eq!(st, 200, "{text}");
        assert!(!text.contains(MARKER), "the export carries the secret: {text}");
        assert!(!text.contains("\"secrets\"") && !text.contains("private_key") && !text.contains("qa-token"), "{text}");
        assert_eq!((bundle["format"].as_str(), bundle["format_version"].as_i64()), (Some("connvault-bundle"), Some(2)));
        assert_eq!(bundle["source_environment"], "DEV");
        assert!(bundle["exported_by"].as_str().unwrap().starts_with("API key test"), "{bundle}");
        assert!(bundle["exported_at"].as_str().unwrap().ends_with('Z'));
        assert_eq!(bundle["digest"].as_str().unwrap(), server::promotion::digest_of(&bundle));
        let names = |list: &str| bundle[list].as_array().unwrap().iter().map(|i| i["name"].as_str().unwrap().to_string()).collect::<Vec<_>>();
        assert_eq!(names("integrations"), ["Billing_Sync", "Reports", "Salesforce_Accounts"]);
        assert_eq!(names("connections"), ["Billing", "SF_Main"]);
        // Shared settings only: where a connection goes and whose it is stay in DEV (issue 18).
        assert_eq!(bundle["connections"][0], json!({"name": "Billing", "provider": "http", "settings": {"auth": "bearer"}}));
        assert_eq!(bundle["connections"][1], json!({"name": "SF_Main", "provider": "salesforce", "settings": {}}));
        assert!(!text.contains("billing.example.com") && !text.contains("int@acme.com") && !text.contains("3MVG9abc"), "{text}");
        assert_eq!(
            bundle["bindings"],
            json!([{"integration": "Billing_Sync", "connection": "Billing"}, {"integration": "Salesforce_Accounts", "connection": "SF_Main"}])
        );
        assert_eq!(bundle["integrations"][0]["objects"], json!([{"name": "Account", "access": "read"}, {"name": "Invoice", "access": "read_write"}]));
        // An export is a read: it writes nothing.
        let before = db.content_digest().await;
        export(&api, &k).await;
        assert_eq!(db.content_digest().await, before);
    }
}

/// Promise 13: DEV → QA. The plan says what would happen and writes nothing; apply does it in
/// one go; the same bundle again changes nothing and writes nothing.
#[tokio::test]
async fn promise_13_plan_apply_and_apply_again() {
    for db in backends().await {
        let (api, k) = setup(&db).await;
        let bundle = export(&api, &k).await;

        let before = db.content_digest().await;
        let (st, plan) = import(&api, &k, "mode=plan", &bundle).await;
        assert_eq!(st, 200, "{plan}");
        assert_eq!((plan["mode"].as_str(), plan["applied"].as_bool()), (Some("plan"), Some(false)));
        let expected = vec![
            change("connection", "Billing", "unchanged"),
            change("integration", "Billing_Sync", "create"),
            change("binding", "Billing_Sync", "create"),
            change("integration", "Reports", "create"),
            change("integration", "Salesforce_Accounts", "create"),
        ];
        assert_eq!(actions(&plan), expected, "{plan}");
        let needs: Vec<&str> = plan["needs_connection"].as_array().unwrap().iter().map(|n| n.as_str().unwrap()).collect();
        assert_eq!(needs.len(), 2, "{plan}");
        assert!(needs[0].starts_with("Reports will need a connection in QA: it is not bound in DEV either"), "{needs:?}");
        assert!(needs[1].starts_with("Salesforce_Accounts will need a connection in QA: no Salesforce connection named SF_Main there"), "{needs:?}");
        assert_eq!(db.content_digest().await, before, "a plan writes nothing");

        let (st, applied) = import(&api, &k, "mode=apply", &bundle).await;
        assert_eq!(st, 200, "{applied}");
        assert_eq!((applied["mode"].as_str(), applied["applied"].as_bool()), (Some("apply"), Some(true)));
        assert_eq!(actions(&applied), expected);
        // The same, in the past tense.
        let needs: Vec<&str> = applied["needs_connection"].as_array().unwrap().iter().map(|n| n.as_str().unwrap()).collect();
        assert!(needs[0].starts_with("Reports needs a connection in QA: it is not bound in DEV either"), "{needs:?}");
        assert!(needs[1].starts_with("Salesforce_Accounts needs a connection in QA: no Salesforce connection named SF_Main there"), "{needs:?}");
        let (_, list, _) = api.call(Who::Key(&k), "GET", "/api/v1/environments/QA/integrations", None).await;
        let got: Vec<(&str, &str, Option<&str>)> =
            list["items"].as_array().unwrap().iter().map(|i| (i["name"].as_str().unwrap(), i["status"].as_str().unwrap(), i["connection"].as_str())).collect();
        assert_eq!(got, [("Billing_Sync", "bound", Some("Billing")), ("Reports", "needs_connection", None), ("Salesforce_Accounts", "needs_connection", None)]);
        let (_, one, _) = api.call(Who::Key(&k), "GET", "/api/v1/environments/QA/integrations/Billing_Sync", None).await;
        assert_eq!((one["version"].as_str(), one["objects"].as_array().map(Vec::len)), (Some("2.0"), Some(2)));
        let (_, audit, _) = api.call(Who::Key(&k), "GET", "/api/v1/audit?environment=QA&action=promotion.import", None).await;
        assert_eq!(audit["items"].as_array().unwrap().len(), 1, "{audit}");
        assert_eq!(audit["items"][0]["detail"]["created"], 4);
        let (_, audit, _) = api.call(Who::Key(&k), "GET", "/api/v1/audit?environment=QA&action=binding.set", None).await;
        assert_eq!(audit["items"][0]["detail"]["imported_from"], "DEV");

        // The same bundle again: everything unchanged, nothing written (not even an event).
        let before = db.content_digest().await;
        let (st, again) = import(&api, &k, "mode=apply", &bundle).await;
        assert_eq!(st, 200, "{again}");
        assert!(actions(&again).iter().all(|(_, _, a)| a == "unchanged"), "{again}");
        assert_eq!(actions(&again).len(), 5, "the connection, three integrations and the binding: {again}");
        assert_eq!(db.content_digest().await, before, "the second apply wrote something");
        // A fresh export of DEV (new time, new digest) is still the same content.
        let (st, third) = import(&api, &k, "mode=apply", &export(&api, &k).await).await;
        assert_eq!(st, 200);
        assert!(actions(&third).iter().all(|(_, _, a)| a == "unchanged"), "{third}");
        assert_eq!(db.content_digest().await, before);
    }
}

/// Promise 13: a conflict without the option stops the apply (409 naming it) with nothing
/// written; the plan shows it; `overwrite_settings` takes the bundle's settings (except where
/// the credential goes: promise 17, in security.rs).
#[tokio::test]
async fn promise_13_conflicts_stop_the_import_unless_overwritten() {
    for db in backends().await {
        let (api, k) = setup(&db).await;
        let bundle = export(&api, &k).await;
        let (st, _, _) = api
            .call(
                Who::Key(&k),
                "PATCH",
                "/api/v1/environments/QA/connections/Billing",
                Some(json!({"settings": {"auth": "header", "header_name": "X-Billing-Key"}})),
            )
            .await;
        assert_eq!(st, 200);

        let (st, plan) = import(&api, &k, "mode=plan", &bundle).await;
        assert_eq!(st, 200);
        assert!(actions(&plan).contains(&change("connection", "Billing", "conflict")), "{plan}");
        let detail = plan["changes"][0]["detail"].as_str().unwrap();
        assert!(detail.contains("allowing shared settings to be overwritten") && !detail.contains("=true"), "plain words: {plan}");

        let before = db.content_digest().await;
        let (st, err) = import(&api, &k, "mode=apply", &bundle).await;
        assert_eq!((st, err["error"]["code"].as_str()), (409, Some("import_conflict")), "{err}");
        assert!(err["error"]["message"].as_str().unwrap().contains("connection Billing"), "{err}");
        assert_eq!(fields(&err), ["connections[0]"]);
        assert!(err["error"]["details"][0]["message"].as_str().unwrap().contains("auth, header_name"), "{err}");
        assert_eq!(db.content_digest().await, before, "a refused import wrote something");

        let (st, applied) = import(&api, &k, "mode=apply&overwrite_settings=true", &bundle).await;
        assert_eq!(st, 200, "{applied}");
        assert!(actions(&applied).contains(&change("connection", "Billing", "update")), "{applied}");
        let (_, qa, _) = api.call(Who::Key(&k), "GET", "/api/v1/environments/QA/connections/Billing", None).await;
        assert_eq!((qa["settings"]["auth"].as_str(), qa["settings"].get("header_name")), (Some("bearer"), None), "{qa}");
        assert!(qa["secrets_set"]["token"].is_string(), "QA's own secret stays: {qa}");
        let token = server::connections::open_secret(&api.s.db, &api.s.vault, "QA", "Billing", "token").await.unwrap();
        assert_eq!(token.expose_secret(), "qa-token");

        // A binding of QA's own is never replaced: a conflict, named by its path.
        let (st, _, _) =
            api.call(Who::Key(&k), "POST", "/api/v1/environments/QA/connections", Some(http_conn("Other", "https://other.example.com", "t"))).await;
        assert_eq!(st, 201);
        let (st, _, _) = api.call(Who::Key(&k), "DELETE", "/api/v1/environments/QA/integrations/Billing_Sync/binding", None).await;
        assert_eq!(st, 200);
        let (st, _, _) = api.call(Who::Key(&k), "PUT", "/api/v1/environments/QA/integrations/Billing_Sync/binding", Some(json!({"connection": "Other"}))).await;
        assert_eq!(st, 200);
        let before = db.content_digest().await;
        let (st, err) = import(&api, &k, "mode=apply&overwrite_settings=true", &bundle).await;
        assert_eq!((st, err["error"]["code"].as_str()), (409, Some("import_conflict")), "{err}");
        assert_eq!(fields(&err), ["bindings[0]"]);
        assert!(err["error"]["details"][0]["message"].as_str().unwrap().contains("bound to Other in QA"), "{err}");
        assert_eq!(db.content_digest().await, before);

        // A connection of another provider under the same name: a conflict even with overwrite.
        let (st, _, _) = api.call(Who::Key(&k), "POST", "/api/v1/environments/QA/connections", Some(http_conn("SF_Main", "https://x.example.com", "t"))).await;
        assert_eq!(st, 201);
        let (_, plan) = import(&api, &k, "mode=plan&overwrite_settings=true", &bundle).await;
        assert!(actions(&plan).contains(&change("connection", "SF_Main", "conflict")), "{plan}");
    }
}

/// `create_placeholders`: the connections QA lacks are created (a name, a provider, shared
/// settings) and their integrations are bound, so QA's administrator sets them up there.
#[tokio::test]
async fn placeholders_are_created_without_secrets_and_bound() {
    for db in backends().await {
        let (api, k) = setup(&db).await;
        let bundle = export(&api, &k).await;
        let (st, applied) = import(&api, &k, "mode=apply&create_placeholders=true", &bundle).await;
        assert_eq!(st, 200, "{applied}");
        assert!(actions(&applied).contains(&change("connection", "SF_Main", "create")), "{applied}");
        assert!(actions(&applied).contains(&change("binding", "Salesforce_Accounts", "create")), "{applied}");
        let needs = applied["needs_connection"].as_array().unwrap();
        assert_eq!(needs.len(), 1, "only the integration unbound in DEV: {applied}");
        let (st, sf, _) = api.call(Who::Key(&k), "GET", "/api/v1/environments/QA/connections/SF_Main", None).await;
        assert_eq!(st, 200);
        assert_eq!(sf["settings"], bundle["connections"][1]["settings"]);
        assert_eq!(sf["secrets_set"], json!({}), "a placeholder has no secrets");
        let (_, one, _) = api.call(Who::Key(&k), "GET", "/api/v1/environments/QA/integrations/Salesforce_Accounts", None).await;
        assert_eq!(one["connection"], "SF_Main");
        let before = db.content_digest().await;
        let (st, again) = import(&api, &k, "mode=apply&create_placeholders=true", &bundle).await;
        assert_eq!(st, 200);
        assert!(actions(&again).iter().all(|(_, _, a)| a == "unchanged"), "{again}");
        assert_eq!(db.content_digest().await, before);
    }
}

/// Promise 13: validated before any write. A bad item at position N is named by its path and
/// nothing changes; a tampered bundle, a foreign format, and an oversized body are refused.
#[tokio::test]
async fn promise_13_a_bad_bundle_is_refused_with_paths_and_nothing_written() {
    for db in backends().await {
        let (api, k) = setup(&db).await;
        let bundle = export(&api, &k).await;
        let before = db.content_digest().await;

        let bad = resealed(&bundle, |b| {
            b["integrations"][1]["provider"] = json!("sharepoint-someday");
            b["bindings"][0]["connection"] = json!("Nowhere");
            b["connections"][0]["settings"]["auth"] = json!("magic");
        });
        let (st, err) = import(&api, &k, "mode=apply", &bad).await;
        assert_eq!(st, 422, "{err}");
        assert_eq!(fields(&err), ["integrations[1].provider", "connections[0].settings.auth", "bindings[0].connection"]);
        assert!(err["error"]["details"][0]["message"].as_str().unwrap().contains("use one of http, salesforce"), "{err}");

        let tampered = {
            let mut b = bundle.clone();
            b["connections"][0]["settings"]["auth"] = json!("basic");
            b
        };
        let (st, err) = import(&api, &k, "mode=apply", &tampered).await;
        assert_eq!((st, fields(&err)), (422, vec!["digest"]), "{err}");

        let foreign = resealed(&bundle, |b| {
            b["format"] = json!("something-else");
            b["format_version"] = json!(3);
            b["connections"][1]["secrets"] = json!({"private_key": "x"});
        });
        let (st, err) = import(&api, &k, "mode=plan", &foreign).await;
        assert_eq!((st, fields(&err)), (422, vec!["format", "format_version", "connections[1].secrets"]), "{err}");

        let (st, err) = import(&api, &k, "mode=apply&overwrite=true", &bundle).await;
        assert_eq!((st, fields(&err)), (422, vec!["overwrite"]), "a misspelt option is not ignored: {err}");
        let (st, err) = import(&api, &k, "", &bundle).await;
        assert_eq!((st, fields(&err)), (422, vec!["mode"]), "{err}");

        let huge = json!({"format": "connvault-bundle", "padding": "x".repeat(server::promotion::MAX_BUNDLE_BYTES)});
        let (st, err) = import(&api, &k, "mode=plan", &huge).await;
        assert_eq!((st, err["error"]["code"].as_str()), (413, Some("payload_too_large")), "{err}");
        assert!(err["error"]["message"].as_str().unwrap().contains("10 MB"), "{err}");
        assert_eq!(db.content_digest().await, before, "a refused bundle wrote something");
    }
}

/// Export needs promotion read in the source; import promotion write in the target.
#[tokio::test]
async fn who_may_export_and_import() {
    for db in backends().await {
        let (api, k) = setup(&db).await;
        let bundle = export(&api, &k).await;
        let reader = key(&api.s, &["DEV:promotion:read"]).await;
        let writer = key(&api.s, &["QA:promotion:write"]).await;
        let other = key(&api.s, &["DEV:connections:rw", "DEV:integrations:rw", "QA:promotion:read"]).await;
        assert_eq!(api.call(Who::Key(&reader), "GET", "/api/v1/environments/DEV/export", None).await.0, 200);
        assert_eq!(api.call(Who::Key(&reader), "GET", "/api/v1/environments/QA/export", None).await.0, 403);
        assert_eq!(api.call(Who::Key(&other), "GET", "/api/v1/environments/DEV/export", None).await.0, 403);
        assert_eq!(api.call(Who::Key(&writer), "GET", "/api/v1/environments/QA/export", None).await.0, 403, "write does not imply read");
        assert_eq!(api.call(Who::Nobody, "GET", "/api/v1/environments/DEV/export", None).await.0, 401);
        let before = db.content_digest().await;
        assert_eq!(import(&api, &reader, "mode=plan", &bundle).await.0, 403);
        assert_eq!(import(&api, &other, "mode=apply", &bundle).await.0, 403);
        assert_eq!(api.call(Who::Nobody, "POST", "/api/v1/environments/QA/import?mode=apply", Some(bundle.clone())).await.0, 401);
        assert_eq!(db.content_digest().await, before);
        assert_eq!(import(&api, &writer, "mode=apply", &bundle).await.0, 200);

        // People: developers may export, only administrators import.
        let dev = session(&api.s, "dev@example.com", Some(("QA", Role::Developer)), false).await;
        let admin = session(&api.s, "admin@example.com", Some(("QA", Role::Administrator)), false).await;
        let path = "/api/v1/environments/QA/import?mode=plan";
        assert_eq!(api.call(Who::Session(&dev), "GET", "/api/v1/environments/QA/export", None).await.0, 200);
        assert_eq!(api.call(Who::Session(&dev), "POST", path, Some(bundle.clone())).await.0, 403);
        assert_eq!(api.call(Who::Session(&admin), "POST", path, Some(bundle.clone())).await.0, 200);
    }
}

/// Both routes are in the OpenAPI document and routed; an owner's session may export too, and
/// its export holds no secret either.
#[tokio::test]
async fn the_routes_are_documented_and_answer_sessions() {
    let db = backends().await.into_iter().next().unwrap();
    let (api, k) = setup(&db).await;
    let doc: Value = serde_json::from_str(server::api::openapi_json()).unwrap();
    assert!(doc["paths"]["/api/v1/environments/{env}/export"]["get"].is_object());
    assert!(doc["paths"]["/api/v1/environments/{env}/import"]["post"].is_object());
    let (st, err, _) = api.call(Who::Key(&k), "POST", "/api/v1/environments/DEV/import", Some(json!({}))).await;
    assert_eq!((st.as_u16(), fields(&err)), (422, vec!["mode"]));
    let owner = session(&api.s, "owner@example.com", None, true).await;
    let (st, _, text) = api.call(Who::Session(&owner), "GET", "/api/v1/environments/DEV/export", None).await;
    assert_eq!(st, 200, "{text}");
    assert!(!text.contains(MARKER));
}

/// A newer release of an integration updates it; a provider change under a binding is a
/// conflict (the binding would be left pointing at the wrong kind of connection).
#[tokio::test]
async fn integrations_are_updated_but_never_switched_under_a_binding() {
    for db in backends().await {
        let (api, k) = setup(&db).await;
        assert_eq!(import(&api, &k, "mode=apply", &export(&api, &k).await).await.0, 200);
        let body = json!({"provider": "http", "objects": ["Account"], "version": "2.1"});
        assert_eq!(api.call(Who::Key(&k), "PUT", "/api/v1/environments/DEV/integrations/Billing_Sync", Some(body)).await.0, 200);
        let (st, applied) = import(&api, &k, "mode=apply", &export(&api, &k).await).await;
        assert_eq!(st, 200, "{applied}");
        assert!(actions(&applied).contains(&change("integration", "Billing_Sync", "update")), "{applied}");
        assert!(actions(&applied).contains(&change("binding", "Billing_Sync", "unchanged")), "{applied}");
        let (_, one, _) = api.call(Who::Key(&k), "GET", "/api/v1/environments/QA/integrations/Billing_Sync", None).await;
        assert_eq!((one["version"].as_str(), one["connection"].as_str()), (Some("2.1"), Some("Billing")));

        let bundle = resealed(&export(&api, &k).await, |b| {
            b["integrations"][0]["provider"] = json!("salesforce");
            b["bindings"] = json!([]);
        });
        let before = db.content_digest().await;
        let (st, err) = import(&api, &k, "mode=apply", &bundle).await;
        assert_eq!((st, fields(&err)), (409, vec!["integrations[0]"]), "{err}");
        assert!(err["error"]["details"][0]["message"].as_str().unwrap().contains("unbind it there"), "{err}");
        assert_eq!(db.content_digest().await, before);
    }
}

/// An integration bound by someone else between the plan and the write (here: by a trigger,
/// the moment the import creates it) stops the import: nothing is written, and the same
/// bundle applies once the trigger is gone.
#[tokio::test]
async fn a_binding_made_while_the_import_runs_stops_it() {
    for db in backends().await {
        let (api, k) = setup(&db).await;
        let bundle = export(&api, &k).await;
        let rebind = "UPDATE integrations SET connection_id = \
                      (SELECT id FROM connections WHERE environment_id = NEW.environment_id AND name = 'Billing') WHERE id = NEW.id";
        match db.kind {
            Kind::Sqlite => {
                db.exec(&format!("CREATE TRIGGER bind_meanwhile AFTER INSERT ON integrations WHEN NEW.name = 'Billing_Sync' BEGIN {rebind}; END")).await
            }
            Kind::Postgres => {
                db.exec(&format!("CREATE FUNCTION bind_meanwhile() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN {rebind}; RETURN NULL; END $$")).await;
                db.exec(
                    "CREATE TRIGGER bind_meanwhile AFTER INSERT ON integrations FOR EACH ROW \
                     WHEN (NEW.name = 'Billing_Sync') EXECUTE FUNCTION bind_meanwhile()",
                )
                .await
            }
        }
        let (st, plan) = import(&api, &k, "mode=plan", &bundle).await;
        assert_eq!(st, 200);
        assert!(actions(&plan).contains(&change("binding", "Billing_Sync", "create")), "{plan}");

        let before = db.content_digest().await;
        let (st, err) = import(&api, &k, "mode=apply", &bundle).await;
        assert_eq!((st, err["error"]["code"].as_str()), (409, Some("import_conflict")), "{err}");
        assert!(err["error"]["message"].as_str().unwrap().contains("Billing_Sync was bound in QA while the import ran"), "{err}");
        assert_eq!(db.content_digest().await, before, "a refused import wrote something");

        db.exec(if db.kind == Kind::Sqlite { "DROP TRIGGER bind_meanwhile" } else { "DROP TRIGGER bind_meanwhile ON integrations" }).await;
        let (st, applied) = import(&api, &k, "mode=apply", &bundle).await;
        assert_eq!(st, 200, "{applied}");
        assert!(actions(&applied).contains(&change("binding", "Billing_Sync", "create")), "{applied}");
    }
}

/// The Microsoft providers travel as descriptors: a name, a provider and the shared choice of
/// certificate or secret; never the tenant, client ID, site, environment or authority (each
/// environment's own), the connvault-kept key or a client secret. In QA the placeholder is not
/// set up and says to issue its certificate (or set its secret) before use.
#[tokio::test]
async fn microsoft_connections_travel_as_descriptors_without_keys_or_secrets() {
    for db in backends().await {
        let (api, k) = setup(&db).await;
        let tenant = "72f988bf-86f1-41af-91ab-2d7cd011db47";
        let client = "00001111-aaaa-2222-bbbb-3333cccc4444";
        let sp = json!({"name": "SP_Sales", "provider": "sharepoint", "settings": {"site_url": "https://contoso.sharepoint.com/sites/Sales", "tenant": tenant, "client_id": client}});
        let dv = json!({"name": "DV_Secret", "provider": "dataverse", "settings": {"environment_url": "https://contoso.crm4.dynamics.com", "auth": "secret", "tenant": tenant, "client_id": client}, "secrets": {"client_secret": MARKER}});
        for c in [sp, dv] {
            let (st, _, text) = api.call(Who::Key(&k), "POST", "/api/v1/environments/DEV/connections", Some(c)).await;
            assert_eq!(st, 201, "{text}");
        }
        let (st, _, text) = api.call(Who::Key(&k), "POST", "/api/v1/environments/DEV/connections/SP_Sales/certificate", Some(json!({}))).await;
        assert_eq!(st, 201, "{text}");
        let (st, bundle, text) = api.call(Who::Key(&k), "GET", "/api/v1/environments/DEV/export", None).await;
        assert_eq!(st, 200, "{text}");
        assert!(!text.contains(MARKER) && !text.contains("private_key") && !text.contains("PRIVATE"), "{text}");
        let sp = bundle["connections"].as_array().unwrap().iter().find(|c| c["name"] == "SP_Sales").unwrap();
        // Every SharePoint setting belongs to its environment: the site, the tenant, the app.
        assert_eq!(sp["settings"], json!({}));
        assert!(!text.contains(tenant) && !text.contains(client) && !text.contains("contoso"), "{text}");
        let (st, plan) = import(&api, &k, "mode=plan&create_placeholders=true", &bundle).await;
        assert_eq!(st, 200, "{plan}");
        let details: Vec<String> =
            plan["changes"].as_array().unwrap().iter().filter(|c| c["kind"] == "connection").map(|c| format!("{}: {}", c["name"], c["detail"])).collect();
        let detail = |name: &str| details.iter().find(|d| d.contains(name)).cloned().unwrap_or_default();
        assert!(detail("SP_Sales").contains("issue or upload its certificate"), "{details:?}");
        assert!(detail("DV_Secret").contains("client_secret"), "{details:?}");
        let (st, applied) = import(&api, &k, "mode=apply&create_placeholders=true", &bundle).await;
        assert_eq!(st, 200, "{applied}");
        let (_, qa, _) = api.call(Who::Key(&k), "GET", "/api/v1/environments/QA/connections/SP_Sales", None).await;
        assert_eq!(qa["secrets_set"], json!({}), "no key travels: {qa}");
        let (_, status, _) = api.call(Who::Key(&k), "GET", "/api/v1/environments/QA/connections/SP_Sales/status", None).await;
        assert_eq!(status["state"], "not_set_up", "QA's own site, tenant and app are still to be filled in: {status}");
    }
}

// ---------------------------------------------------------------------------------------------
// Issue 18: promotion leaves each environment's settings alone.

/// QA's own Salesforce connection: another org, user, connected app and admin than DEV's.
fn sf_qa(name: &str) -> Value {
    json!({"name": name, "provider": "salesforce", "settings": {
        "login_url": "https://test.salesforce.com", "username": "int@acme.com.qa", "consumer_key": "3MVGqa-own-key", "admin_email": "sf-admin@qa.example.com"
    }})
}

/// A connection's row as stored, byte for byte: its settings, who changed it when, and each
/// sealed secret with when it was set.
async fn stored(api: &Api, env: &str, name: &str) -> (String, String, String, Vec<(String, Vec<u8>, String)>) {
    use sqlx::Row;
    let pool = api.s.db.pool();
    let row = sqlx::query(
        "SELECT c.id, c.settings, c.updated_by, c.updated_at FROM connections c JOIN environments e ON e.id = c.environment_id WHERE e.name = $1 AND c.name = $2",
    )
    .bind(env)
    .bind(name)
    .fetch_one(pool)
    .await
    .unwrap();
    let id: i64 = row.get("id");
    let secrets = sqlx::query("SELECT field, blob, updated_at FROM connection_secrets WHERE connection_id = $1 ORDER BY field")
        .bind(id)
        .fetch_all(pool)
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get::<String, _>("field"), r.get::<Vec<u8>, _>("blob"), r.get::<String, _>("updated_at")))
        .collect();
    (row.get("settings"), row.get("updated_by"), row.get("updated_at"), secrets)
}

fn texts(report: &Value) -> String {
    let mut all: Vec<String> = report["changes"].as_array().unwrap().iter().map(|c| c["detail"].as_str().unwrap().to_string()).collect();
    all.extend(report["needs_connection"].as_array().unwrap().iter().map(|n| n.as_str().unwrap().to_string()));
    all.extend(report["checklist"].as_array().unwrap().iter().map(|s| s["text"].as_str().unwrap().to_string()));
    all.push(report["summary"].as_str().unwrap().to_string());
    all.join("\n")
}

fn detail_of<'a>(report: &'a Value, kind: &str, name: &str) -> &'a str {
    report["changes"].as_array().unwrap().iter().find(|c| c["kind"] == kind && c["name"] == name).unwrap_or_else(|| panic!("no {kind} {name} in {report}"))
        ["detail"]
        .as_str()
        .unwrap()
}

/// QA has its own consumer key (and login URL, user, admin) and a certificate: DEV → QA plans
/// "unchanged" for it, carries none of DEV's, and applying leaves QA's row and its sealed key
/// exactly as they were, with or without overwrite_settings.
#[tokio::test]
async fn issue_18_qa_keeps_its_own_salesforce_settings_and_secrets_byte_for_byte() {
    for db in backends().await {
        let (api, k) = setup(&db).await;
        let (st, _, text) = api.call(Who::Key(&k), "POST", "/api/v1/environments/QA/connections", Some(sf_qa("SF_Main"))).await;
        assert_eq!(st, 201, "{text}");
        let (st, _, text) = api.call(Who::Key(&k), "POST", "/api/v1/environments/QA/connections/SF_Main/certificate", Some(json!({}))).await;
        assert_eq!(st, 201, "{text}");
        let before = stored(&api, "QA", "SF_Main").await;
        assert!(before.3.iter().any(|(f, _, _)| f == "private_key"), "QA has its key: {before:?}");
        let bundle = export(&api, &k).await;

        for query in ["mode=plan", "mode=plan&overwrite_settings=true"] {
            let (st, plan) = import(&api, &k, query, &bundle).await;
            assert_eq!(st, 200, "{plan}");
            assert!(actions(&plan).contains(&change("connection", "SF_Main", "unchanged")), "{query}: {plan}");
            assert!(!actions(&plan).iter().any(|(_, _, a)| a == "conflict"), "{query}: {plan}");
            let detail = detail_of(&plan, "connection", "SF_Main");
            assert!(detail.starts_with("same provider and shared settings"), "{detail}");
            assert!(detail.contains("QA keeps its own admin_email, consumer_key, login_url and username"), "{detail}");
            assert!(!texts(&plan).contains("3MVG9abc") && !texts(&plan).contains("login.salesforce.com"), "{plan}");
            assert_eq!(plan["ignored_settings"], json!([]), "a fresh export carries nothing to ignore: {plan}");
        }
        let (st, applied) = import(&api, &k, "mode=apply&overwrite_settings=true", &bundle).await;
        assert_eq!(st, 200, "{applied}");
        assert!(actions(&applied).contains(&change("binding", "Salesforce_Accounts", "create")), "{applied}");
        assert_eq!(stored(&api, "QA", "SF_Main").await, before, "QA's settings and secrets are byte for byte as they were");
        let (_, qa, _) = api.call(Who::Key(&k), "GET", "/api/v1/environments/QA/connections/SF_Main", None).await;
        assert_eq!(qa["settings"]["consumer_key"], "3MVGqa-own-key", "{qa}");
        assert_eq!(qa["settings"]["login_url"], "https://test.salesforce.com", "{qa}");
    }
}

/// A placeholder is a name, a provider and the shared options: none of DEV's login URL, user
/// or consumer key. It is not set up (not "consumer key received"), even once QA issues its
/// certificate, until QA fills in its own; the connections list says so too.
#[tokio::test]
async fn issue_18_a_placeholder_has_only_name_provider_and_shared_options_and_is_not_set_up() {
    for db in backends().await {
        let (api, k) = setup(&db).await;
        let patch = json!({"settings": {"session_lifetime_minutes": 60}});
        assert_eq!(api.call(Who::Key(&k), "PATCH", "/api/v1/environments/DEV/connections/SF_Main", Some(patch)).await.0, 200);
        let bundle = export(&api, &k).await;
        let (st, applied) = import(&api, &k, "mode=apply&create_placeholders=true", &bundle).await;
        assert_eq!(st, 200, "{applied}");
        let (_, sf, text) = api.call(Who::Key(&k), "GET", "/api/v1/environments/QA/connections/SF_Main", None).await;
        assert_eq!(sf["settings"], json!({"session_lifetime_minutes": 60}), "the shared option only: {sf}");
        assert_eq!(sf["secrets_set"], json!({}));
        assert!(!text.contains("3MVG9abc") && !text.contains("login.salesforce.com") && !text.contains("int@acme.com"), "{text}");
        let status_path = "/api/v1/environments/QA/connections/SF_Main/status";
        let (_, status, _) = api.call(Who::Key(&k), "GET", status_path, None).await;
        assert_eq!(status["state"], "not_set_up", "{status}");
        assert!(status["advice"].as_str().unwrap().contains("fill in its Login URL and Integration username"), "{status}");
        // QA issues its certificate: still not set up, and never "consumer key received".
        let (st, _, text) = api.call(Who::Key(&k), "POST", "/api/v1/environments/QA/connections/SF_Main/certificate", Some(json!({}))).await;
        assert_eq!(st, 201, "{text}");
        let (_, status, _) = api.call(Who::Key(&k), "GET", status_path, None).await;
        assert_eq!(status["state"], "not_set_up", "{status}");
        // Nobody is asked about a connection that does not say where it goes yet.
        let ask = json!({"admin_email": "sf-admin@qa.example.com"});
        let (st, err, _) = api.call(Who::Key(&k), "POST", "/api/v1/environments/QA/connections/SF_Main/admin-request", Some(ask)).await;
        assert_eq!((st.as_u16(), err["error"]["code"].as_str()), (409, Some("not_set_up")), "{err}");
        assert!(err["error"]["message"].as_str().unwrap().contains("fill in its Login URL and Integration username first"), "{err}");
        let brief = server::signing::briefs(&api.s.db, &[server::connections::get(&api.s.db, "QA", "SF_Main").await.unwrap()]).await.unwrap();
        assert_eq!(brief.values().next().unwrap().state, "not_set_up");
        // A live test says what it lacks, without calling anywhere.
        let (st, result, _) = api.call(Who::Key(&k), "POST", "/api/v1/environments/QA/connections/SF_Main/test", None).await;
        assert_eq!(st, 200, "{result}");
        assert_eq!(result["ok"], false);
        assert!(result["detail"].as_str().unwrap().contains("not set up in QA yet"), "{result}");
        // Once QA fills in its own settings it is set up; the key issued before it had a login
        // URL went with the change of destination (promise 17), so the next step is a certificate.
        let own = json!({"settings": {"login_url": "https://test.salesforce.com", "username": "int@acme.com.qa"}});
        assert_eq!(api.call(Who::Key(&k), "PATCH", "/api/v1/environments/QA/connections/SF_Main", Some(own)).await.0, 200);
        let (_, status, _) = api.call(Who::Key(&k), "GET", status_path, None).await;
        assert_eq!(status["state"], "no_certificate", "{status}");
        let (st, _, text) = api.call(Who::Key(&k), "POST", "/api/v1/environments/QA/connections/SF_Main/certificate", Some(json!({}))).await;
        assert_eq!(st, 201, "{text}");
        let (_, status, _) = api.call(Who::Key(&k), "GET", status_path, None).await;
        assert_eq!(status["state"], "waiting_for_admin", "no consumer key until QA's admin sends one: {status}");
    }
}

/// A shared option that differs (the session lifetime) is planned as before: a conflict, or an
/// update with overwrite_settings that changes it alone; QA's own settings and key stay.
#[tokio::test]
async fn issue_18_a_shared_option_that_differs_is_still_a_conflict_or_an_update() {
    for db in backends().await {
        let (api, k) = setup(&db).await;
        assert_eq!(api.call(Who::Key(&k), "POST", "/api/v1/environments/QA/connections", Some(sf_qa("SF_Main"))).await.0, 201);
        let (st, _, text) = api.call(Who::Key(&k), "POST", "/api/v1/environments/QA/connections/SF_Main/certificate", Some(json!({}))).await;
        assert_eq!(st, 201, "{text}");
        let patch = json!({"settings": {"session_lifetime_minutes": 45}});
        assert_eq!(api.call(Who::Key(&k), "PATCH", "/api/v1/environments/DEV/connections/SF_Main", Some(patch)).await.0, 200);
        let bundle = export(&api, &k).await;

        let (st, plan) = import(&api, &k, "mode=plan", &bundle).await;
        assert_eq!(st, 200, "{plan}");
        assert!(actions(&plan).contains(&change("connection", "SF_Main", "conflict")), "{plan}");
        let detail = detail_of(&plan, "connection", "SF_Main");
        assert!(detail.contains("differ from the bundle's (session_lifetime_minutes)"), "only the shared option: {detail}");
        let before = db.content_digest().await;
        let (st, err) = import(&api, &k, "mode=apply", &bundle).await;
        assert_eq!((st, fields(&err)), (409, vec!["connections[1]"]), "{err}");
        assert_eq!(db.content_digest().await, before);

        let key_before = stored(&api, "QA", "SF_Main").await.3.into_iter().find(|(f, _, _)| f == "private_key").unwrap();
        let (st, applied) = import(&api, &k, "mode=apply&overwrite_settings=true", &bundle).await;
        assert_eq!(st, 200, "{applied}");
        assert!(actions(&applied).contains(&change("connection", "SF_Main", "update")), "{applied}");
        let detail = detail_of(&applied, "connection", "SF_Main");
        assert!(detail.starts_with("shared settings changed: session_lifetime_minutes"), "past tense: {detail}");
        let (_, qa, _) = api.call(Who::Key(&k), "GET", "/api/v1/environments/QA/connections/SF_Main", None).await;
        let expected = json!({"login_url": "https://test.salesforce.com", "username": "int@acme.com.qa", "consumer_key": "3MVGqa-own-key",
                              "admin_email": "sf-admin@qa.example.com", "session_lifetime_minutes": 45});
        assert_eq!(qa["settings"], expected, "{qa}");
        let key_after = stored(&api, "QA", "SF_Main").await.3.into_iter().find(|(f, _, _)| f == "private_key").unwrap();
        assert_eq!(key_after, key_before, "QA's key is untouched");
        let (_, audit, _) = api.call(Who::Key(&k), "GET", "/api/v1/audit?environment=QA&action=connection.update", None).await;
        assert_eq!(audit["items"][0]["detail"]["changed_settings"], json!(["session_lifetime_minutes"]), "{audit}");

        // A shared change that would leave QA's own settings incomplete is a conflict even
        // with overwrite_settings (basic needs a user name that only QA can give).
        let http_qa =
            json!({"name": "Billing2", "provider": "http", "settings": {"base_url": "https://qa.example.com", "auth": "bearer"}, "secrets": {"token": "q"}});
        let http_dev = json!({"name": "Billing2", "provider": "http", "settings": {"base_url": "https://dev.example.com", "auth": "basic", "username": "dev"}, "secrets": {"password": "d"}});
        assert_eq!(api.call(Who::Key(&k), "POST", "/api/v1/environments/QA/connections", Some(http_qa)).await.0, 201);
        assert_eq!(api.call(Who::Key(&k), "POST", "/api/v1/environments/DEV/connections", Some(http_dev)).await.0, 201);
        let (_, plan) = import(&api, &k, "mode=plan&overwrite_settings=true", &export(&api, &k).await).await;
        assert!(actions(&plan).contains(&change("connection", "Billing2", "conflict")), "{plan}");
        let detail = detail_of(&plan, "connection", "Billing2");
        assert!(detail.contains("(auth)") && detail.contains("User name is required when auth is basic"), "{detail}");
    }
}

/// The plan and the result in plain words (no option=value), the result in the past tense,
/// both ending with a checklist of what QA still needs, each with its page.
#[tokio::test]
async fn issue_18_the_plan_and_result_speak_plain_words_and_end_with_a_checklist() {
    for db in backends().await {
        let (api, k) = setup(&db).await;
        let bundle = export(&api, &k).await;
        let (st, plan) = import(&api, &k, "mode=plan&create_placeholders=true", &bundle).await;
        assert_eq!(st, 200, "{plan}");
        assert_eq!(plan["summary"], "Plan for DEV → QA: 6 to create, 0 to update, 1 unchanged, 0 conflicts. Nothing was written.", "{plan}");
        let sf = detail_of(&plan, "connection", "SF_Main");
        assert!(sf.starts_with("will be created in QA, to set up there, with its name and provider only"), "{sf}");
        assert!(sf.contains("QA fills in its own login_url, username, consumer_key, admin_email and audience"), "{sf}");
        assert!(sf.contains("issue or upload its certificate"), "{sf}");
        assert!(detail_of(&plan, "integration", "Reports").starts_with("will be published"), "{plan}");
        assert!(detail_of(&plan, "binding", "Salesforce_Accounts").starts_with("will be bound to SF_Main"), "{plan}");
        let checklist = json!([
            {"kind": "set_up_connection", "name": "SF_Main",
             "text": "Set up SF_Main in QA: fill in its Login URL and Integration username, then issue or upload its certificate there before use",
             "path": "/env/QA/connections/SF_Main"},
            {"kind": "bind_integration", "name": "Reports", "text": "Bind a Generic HTTP connection to Reports in QA", "path": "/env/QA/integrations"},
        ]);
        assert_eq!(plan["checklist"], checklist, "{plan}");

        let (st, applied) = import(&api, &k, "mode=apply&create_placeholders=true", &bundle).await;
        assert_eq!(st, 200, "{applied}");
        assert_eq!(applied["summary"], "Promoted DEV → QA: 6 created, 0 updated, 1 unchanged.", "{applied}");
        assert!(detail_of(&applied, "connection", "SF_Main").starts_with("was created in QA, to set up there"), "{applied}");
        assert!(detail_of(&applied, "integration", "Reports").starts_with("was published"), "{applied}");
        assert!(detail_of(&applied, "binding", "Salesforce_Accounts").starts_with("was bound to SF_Main"), "{applied}");
        assert!(applied["needs_connection"][0].as_str().unwrap().starts_with("Reports needs a connection in QA"), "{applied}");
        assert_eq!(applied["checklist"], checklist, "what QA still needs: {applied}");
        for report in [&plan, &applied] {
            let all = texts(report);
            assert!(!all.contains("=true") && !all.contains("create_placeholders") && !all.contains("overwrite_settings"), "plain words: {all}");
        }

        // Again: nothing to do, and the checklist still says what QA has not done.
        let (st, again) = import(&api, &k, "mode=apply", &bundle).await;
        assert_eq!(st, 200, "{again}");
        assert_eq!(again["summary"], "Promoted DEV → QA: nothing needed to change (7 unchanged).", "{again}");
        assert_eq!(again["checklist"], checklist, "{again}");
        // Once set up, SF_Main leaves the checklist.
        let own = json!({"settings": {"login_url": "https://test.salesforce.com", "username": "int@acme.com.qa"}});
        assert_eq!(api.call(Who::Key(&k), "PATCH", "/api/v1/environments/QA/connections/SF_Main", Some(own)).await.0, 200);
        let (_, plan) = import(&api, &k, "mode=plan", &bundle).await;
        assert_eq!(plan["checklist"].as_array().unwrap().len(), 1, "{plan}");
        assert_eq!(plan["checklist"][0]["kind"], "bind_integration");

        // The schema of the report names the new fields.
        let doc: Value = serde_json::from_str(server::api::openapi_json()).unwrap();
        let props = &doc["components"]["schemas"]["ImportReport"]["properties"];
        assert!(props["summary"].is_object() && props["checklist"].is_object() && props["ignored_settings"].is_object(), "{props}");
    }
}

/// A bundle of format version 1 still carries DEV's environment settings: it imports with
/// them ignored, and the plan says so. They are never compared (QA's Billing stays
/// unchanged, its own URL and token kept) and never written (a placeholder gets none of them).
#[tokio::test]
async fn issue_18_an_older_bundle_is_read_with_its_environment_settings_ignored() {
    for db in backends().await {
        let (api, k) = setup(&db).await;
        let v1 = resealed(&export(&api, &k).await, |b| {
            b["format_version"] = json!(1);
            b["connections"][0]["settings"]["base_url"] = json!("https://elsewhere.example.com");
            b["connections"][1]["settings"] = json!({"login_url": "https://login.salesforce.com", "username": "int@acme.com", "consumer_key": "3MVG9abc"});
        });
        let before = stored(&api, "QA", "Billing").await;
        let (st, plan) = import(&api, &k, "mode=plan&create_placeholders=true&overwrite_settings=true", &v1).await;
        assert_eq!(st, 200, "{plan}");
        assert_eq!(
            plan["ignored_settings"],
            json!([{"connection": "Billing", "settings": ["base_url"]}, {"connection": "SF_Main", "settings": ["consumer_key", "login_url", "username"]}]),
            "{plan}"
        );
        assert!(actions(&plan).contains(&change("connection", "Billing", "unchanged")), "{plan}");
        assert!(
            detail_of(&plan, "connection", "Billing")
                .contains("same provider and shared settings; QA keeps its own base_url; the bundle's base_url is ignored (it belongs to DEV)"),
            "{plan}"
        );
        assert!(
            detail_of(&plan, "connection", "SF_Main").contains("the bundle's consumer_key, login_url and username are ignored (they belong to DEV)"),
            "{plan}"
        );

        let (st, applied) = import(&api, &k, "mode=apply&create_placeholders=true&overwrite_settings=true", &v1).await;
        assert_eq!(st, 200, "{applied}");
        assert!(detail_of(&applied, "connection", "SF_Main").contains("were ignored"), "{applied}");
        assert_eq!(stored(&api, "QA", "Billing").await, before, "QA's Billing is byte for byte as it was");
        let (_, sf, _) = api.call(Who::Key(&k), "GET", "/api/v1/environments/QA/connections/SF_Main", None).await;
        assert_eq!(sf["settings"], json!({}), "{sf}");
        let (_, audit, _) = api.call(Who::Key(&k), "GET", "/api/v1/audit?environment=QA&action=promotion.import", None).await;
        assert_eq!(audit["items"][0]["detail"]["ignored_settings"]["SF_Main"], json!(["consumer_key", "login_url", "username"]), "{audit}");

        // Versions other than 1 and 2 are still refused.
        let v3 = resealed(&v1, |b| b["format_version"] = json!(3));
        let (st, err) = import(&api, &k, "mode=plan", &v3).await;
        assert_eq!((st, fields(&err)), (422, vec!["format_version"]), "{err}");
    }
}
