//! Lists and change feeds through the real router, on every backend: paging with limit and
//! cursor, `since_id`, `updated_since`, refused parameters, and the audit filters.

use crate::common;

use std::collections::BTreeSet;

use common::{backends, key, session, Api, Who};
use serde_json::{json, Value};
use server::audit::{self, Actor, AuditQuery};
use server::db::format_time;
use server::feed::Feed;
use server::users::Role;

const LISTS: [&str; 5] = ["/api/v1/environments", "/api/v1/environments/DEV/connections", "/api/v1/api-keys", "/api/v1/audit", "/api/v1/users"];

/// Follows `next_cursor` from the first page to the last; every page holds at most `limit`
/// records and only the last one has no cursor.
async fn walk(api: &Api, who: Who<'_>, path: &str, limit: usize) -> Vec<Value> {
    let sep = if path.contains('?') { '&' } else { '?' };
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let url = match &cursor {
            Some(c) => format!("{path}{sep}limit={limit}&cursor={c}"),
            None => format!("{path}{sep}limit={limit}"),
        };
        let (st, body, text) = api.call(who, "GET", &url, None).await;
        assert_eq!(st, 200, "{url}: {text}");
        let items = body["items"].as_array().unwrap_or_else(|| panic!("{url}: {text}"));
        assert!(items.len() <= limit, "{url}: {} items", items.len());
        for item in items {
            assert!(item["id"].is_i64() && item["created_at"].is_string() && item["updated_at"].is_string(), "{url}: {item}");
        }
        out.extend(items.iter().cloned());
        match body["next_cursor"].as_str() {
            Some(c) => {
                assert_eq!(items.len(), limit, "{url}: a page before the last one is full");
                cursor = Some(c.to_string());
            }
            None => return out,
        }
    }
}

fn ids(items: &[Value]) -> Vec<i64> {
    items.iter().map(|i| i["id"].as_i64().unwrap()).collect()
}

fn strs<'a>(items: &'a [Value], field: &str) -> Vec<&'a str> {
    items.iter().map(|i| i[field].as_str().unwrap_or_else(|| panic!("{field} of {i}"))).collect()
}

/// Every record exactly once.
fn assert_unique(items: &[Value], what: &str) {
    let all = ids(items);
    assert_eq!(all.iter().collect::<BTreeSet<_>>().len(), all.len(), "{what}: a record came twice: {all:?}");
}

fn sorted<T: Ord + Clone>(v: &[T]) -> Vec<T> {
    let mut v = v.to_vec();
    v.sort();
    v
}

/// A moment strictly between what happened before and what happens after.
async fn instant() -> String {
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let t = format_time(chrono::Utc::now());
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    t
}

/// A 422 naming `field` (in the details and the message).
async fn assert_refused(api: &Api, who: Who<'_>, url: &str, field: &str) -> String {
    let (st, body, text) = api.call(who, "GET", url, None).await;
    assert_eq!(st, 422, "{url}: {text}");
    assert_eq!(body["error"]["details"][0]["field"], field, "{url}: {text}");
    let message = body["error"]["details"][0]["message"].as_str().unwrap().to_string();
    assert!(message.contains(field), "{url}: the message does not name {field}: {message}");
    message
}

fn conn(name: &str, provider_auth: &str) -> Value {
    let settings = match provider_auth {
        "basic" => json!({"base_url": "https://x.example.com", "auth": "basic", "username": "u"}),
        _ => json!({"base_url": "https://x.example.com", "auth": "bearer"}),
    };
    let secret = if provider_auth == "basic" { json!({"password": "p"}) } else { json!({"token": "t"}) };
    json!({"name": name, "provider": "http", "settings": settings, "secrets": secret})
}

#[tokio::test]
async fn connections_page_by_name_and_feed_by_id_and_by_update() {
    for db in backends().await {
        let api = Api::new(db.open().await);
        let k = key(&api.s, &["*:*:rw"]).await;
        let who = Who::Key(&k);
        // Created out of name order, so name order and id order differ.
        let names: Vec<String> = (0..25).map(|i| format!("c{:02}", (i * 7) % 25)).collect();
        for (i, name) in names.iter().enumerate() {
            let (st, _, text) =
                api.call(who, "POST", "/api/v1/environments/DEV/connections", Some(conn(name, if i % 3 == 0 { "basic" } else { "bearer" }))).await;
            assert_eq!(st, 201, "{text}");
        }
        assert_eq!(api.call(who, "POST", "/api/v1/environments/QA/connections", Some(conn("c99", "bearer"))).await.0, 201);

        // By name, a page at a time: every connection of DEV exactly once, in name order.
        let all = walk(&api, who, "/api/v1/environments/DEV/connections", 4).await;
        assert_unique(&all, "by name");
        assert_eq!(strs(&all, "name"), sorted(&names.iter().map(String::as_str).collect::<Vec<_>>()));
        assert_eq!(all.iter().filter(|c| c["secrets_set"].as_object().is_some_and(|s| !s.is_empty())).count(), 25, "secrets_set survives paging");
        // Search and the provider filter page the same way.
        let found = walk(&api, who, "/api/v1/environments/DEV/connections?q=C1", 3).await;
        assert_eq!(strs(&found, "name"), (10..20).map(|i| format!("c{i}")).collect::<Vec<_>>());
        assert_eq!(walk(&api, who, "/api/v1/environments/DEV/connections?provider=http", 6).await.len(), 25);
        assert!(walk(&api, who, "/api/v1/environments/DEV/connections?provider=salesforce", 6).await.is_empty());

        // since_id: exactly the newer ones, in id order, paged.
        let by_id = sorted(&ids(&all));
        let newer = walk(&api, who, &format!("/api/v1/environments/DEV/connections?since_id={}", by_id[9]), 4).await;
        assert_eq!(ids(&newer), by_id[10..].to_vec());
        assert!(walk(&api, who, &format!("/api/v1/environments/DEV/connections?since_id={}", by_id[24]), 4).await.is_empty());
        assert_eq!(ids(&walk(&api, who, "/api/v1/environments/DEV/connections?since_id=0", 7).await), by_id);

        // updated_since: what changed (or was created) since, in the order of the changes.
        let t = instant().await;
        let patch = json!({"settings": {"base_url": "https://changed.example.com"}});
        for name in ["c03", "c20", "c11"] {
            let (st, _, text) = api.call(who, "PATCH", &format!("/api/v1/environments/DEV/connections/{name}"), Some(patch.clone())).await;
            assert_eq!(st, 200, "{text}");
        }
        assert_eq!(api.call(who, "POST", "/api/v1/environments/DEV/connections", Some(conn("zz-new", "bearer"))).await.0, 201);
        // Changing c03 again moves it to the end of the feed.
        let again = json!({"settings": {"base_url": "https://again.example.com"}});
        assert_eq!(api.call(who, "PATCH", "/api/v1/environments/DEV/connections/c03", Some(again)).await.0, 200);
        let changed = walk(&api, who, &format!("/api/v1/environments/DEV/connections?updated_since={t}"), 1).await;
        assert_eq!(strs(&changed, "name"), ["c20", "c11", "zz-new", "c03"]);
        let stamps = strs(&changed, "updated_at");
        assert!(stamps.windows(2).all(|w| w[0] <= w[1]) && stamps[0] >= t.as_str(), "{stamps:?}");
        let created = all.iter().find(|c| c["name"] == "c20").unwrap();
        assert!(changed[0]["created_at"] == created["created_at"] && changed[0]["updated_at"].as_str() > created["updated_at"].as_str());
        // Other offsets are converted to UTC; a time after every change returns nothing.
        let later = chrono::DateTime::parse_from_rfc3339(&t).unwrap().with_timezone(&chrono::FixedOffset::east_opt(2 * 3600).unwrap());
        let offset = later.to_rfc3339().replace('+', "%2B");
        assert_eq!(walk(&api, who, &format!("/api/v1/environments/DEV/connections?updated_since={offset}"), 10).await.len(), 4);
        assert!(walk(&api, who, "/api/v1/environments/DEV/connections?updated_since=2999-01-01T00:00:00Z", 10).await.is_empty());
        // The default order keeps working next to the feeds.
        assert_eq!(walk(&api, who, "/api/v1/environments/DEV/connections", 100).await.len(), 26);
    }
}

#[tokio::test]
async fn every_list_pages_and_feeds() {
    for db in backends().await {
        let api = Api::new(db.open().await);
        let s = &api.s;
        let owner = session(s, "owner@example.com", None, true).await;
        let who = Who::Session(&owner);
        let op = Actor::operator();
        for name in ["UAT", "STAGE", "PERF", "DEMO", "TRAIN"] {
            server::environments::add(&s.db, &op, name, Some(2)).await.unwrap();
        }
        let mut emails = vec!["owner@example.com".to_string()];
        for i in [5, 2, 4, 1, 3] {
            let email = format!("user{i}@example.com");
            server::users::create(&s.db, &op, &email, &server::secret::SecretString::from("a long enough password"), false).await.unwrap();
            emails.push(email);
        }
        for _ in 0..7 {
            key(s, &["DEV:connections:read"]).await;
        }

        // Environments: promotion order.
        let envs = walk(&api, who, "/api/v1/environments", 2).await;
        assert_unique(&envs, "environments");
        let expected: Vec<String> = server::environments::list(&s.db).await.unwrap().into_iter().map(|e| e.name).collect();
        assert_eq!(strs(&envs, "name"), expected);
        assert_eq!(envs.iter().map(|e| e["position"].as_i64().unwrap()).collect::<Vec<_>>(), (1..=8).collect::<Vec<_>>());
        // Only what the caller may read, also when paging.
        let dev = session(s, "dev@example.com", Some(("PERF", Role::Developer)), false).await;
        assert_eq!(strs(&walk(&api, Who::Session(&dev), "/api/v1/environments", 1).await, "name"), ["PERF"]);

        // Users: by email. API keys: by id.
        emails.push("dev@example.com".into());
        let users = walk(&api, who, "/api/v1/users", 3).await;
        assert_unique(&users, "users");
        assert_eq!(strs(&users, "email"), sorted(&emails.iter().map(String::as_str).collect::<Vec<_>>()));
        let keys = walk(&api, who, "/api/v1/api-keys", 3).await;
        assert_eq!(keys.len(), 7);
        assert_eq!(ids(&keys), sorted(&ids(&keys)));
        assert_unique(&keys, "api keys");

        // Audit: newest first, paging back.
        let events = walk(&api, who, "/api/v1/audit", 7).await;
        assert_unique(&events, "audit");
        let event_ids = ids(&events);
        assert!(event_ids.windows(2).all(|w| w[0] > w[1]), "newest first: {event_ids:?}");
        assert!(events.iter().all(|e| e["created_at"] == e["updated_at"]));
        assert_eq!(walk(&api, who, "/api/v1/audit?since_id=0", 5).await.len(), events.len(), "the id feed visits every event too");

        // since_id on every list: exactly the newer records, in id order.
        for (path, all) in [("/api/v1/environments", &envs), ("/api/v1/users", &users), ("/api/v1/api-keys", &keys), ("/api/v1/audit", &events)] {
            let by_id = sorted(&ids(all));
            let mid = by_id[by_id.len() / 2];
            let newer = walk(&api, who, &format!("{path}?since_id={mid}"), 2).await;
            assert_eq!(ids(&newer), by_id.iter().copied().filter(|&i| i > mid).collect::<Vec<_>>(), "{path}");
        }

        // updated_since on every list: what changed since, in the order of the changes.
        let t = instant().await;
        server::environments::rename(&s.db, &op, "PERF", "LOAD").await.unwrap();
        let user5 = users.iter().find(|u| u["email"] == "user5@example.com").unwrap()["id"].as_i64().unwrap();
        server::users::set_role(&s.db, &op, user5, "QA", Some(Role::Viewer)).await.unwrap();
        assert_eq!(api.call(who, "DELETE", &format!("/api/v1/api-keys/{}", keys[4]["id"]), None).await.0, 204);
        let changed_envs = walk(&api, who, &format!("/api/v1/environments?updated_since={t}"), 1).await;
        assert_eq!(strs(&changed_envs, "name"), ["LOAD"]);
        let changed_users = walk(&api, who, &format!("/api/v1/users?updated_since={t}"), 1).await;
        assert_eq!(strs(&changed_users, "email"), ["user5@example.com"]);
        assert_eq!(changed_users[0]["roles"]["QA"], "viewer");
        let changed_keys = walk(&api, who, &format!("/api/v1/api-keys?updated_since={t}"), 1).await;
        assert_eq!(ids(&changed_keys), [keys[4]["id"].as_i64().unwrap()]);
        assert!(changed_keys[0]["revoked_at"].is_string());
        let new_events = walk(&api, who, &format!("/api/v1/audit?updated_since={t}"), 1).await;
        assert_eq!(strs(&new_events, "action"), ["environment.rename", "user.role_set", "api_key.revoke"]);
        assert!(ids(&new_events).windows(2).all(|w| w[0] < w[1]));
    }
}

#[tokio::test]
async fn bad_parameters_are_refused_with_the_parameter_named() {
    for db in backends().await {
        let api = Api::new(db.open().await);
        let k = key(&api.s, &["*:*:rw"]).await;
        key(&api.s, &["*:*:read"]).await;
        let who = Who::Key(&k);
        for name in ["a", "b"] {
            assert_eq!(api.call(who, "POST", "/api/v1/environments/DEV/connections", Some(conn(name, "bearer"))).await.0, 201);
        }
        session(&api.s, "one@example.com", None, false).await;
        session(&api.s, "two@example.com", None, false).await;
        let cases = [
            ("limit=0", "limit"),
            ("limit=1001", "limit"),
            ("limit=ten", "limit"),
            ("since_id=-1", "since_id"),
            ("since_id=abc", "since_id"),
            ("since_id=1.5", "since_id"),
            ("updated_since=yesterday", "updated_since"),
            ("updated_since=2026-11-24", "updated_since"),
            ("cursor=not-a-cursor", "cursor"),
            ("cursor=eyJsIjoiYXVkaXQifQ", "cursor"),
        ];
        let mut first_cursors = Vec::new();
        for list in LISTS {
            for (query, field) in cases {
                assert_refused(&api, who, &format!("{list}?{query}"), field).await;
            }
            let message = assert_refused(&api, who, &format!("{list}?since_id=1&updated_since=2026-11-24T00:00:00Z"), "since_id").await;
            assert!(message.contains("updated_since") && message.contains("pick one"), "{message}");
            // A cursor continues only the mode that issued it.
            let (st, body, text) = api.call(who, "GET", &format!("{list}?limit=1"), None).await;
            assert_eq!(st, 200, "{text}");
            let default = body["next_cursor"].as_str().unwrap_or_else(|| panic!("{list}: {text}")).to_string();
            let (_, body, _) = api.call(who, "GET", &format!("{list}?limit=1&since_id=0"), None).await;
            let by_id = body["next_cursor"].as_str().unwrap().to_string();
            let (_, body, _) = api.call(who, "GET", &format!("{list}?limit=1&updated_since=2000-01-01T00:00:00Z"), None).await;
            let by_update = body["next_cursor"].as_str().unwrap().to_string();
            for (query, field) in [
                (format!("since_id=0&cursor={default}"), "cursor"),
                (format!("updated_since=2000-01-01T00:00:00Z&cursor={default}"), "cursor"),
                (format!("cursor={by_id}"), "cursor"),
                (format!("updated_since=2000-01-01T00:00:00Z&cursor={by_id}"), "cursor"),
                (format!("since_id=0&cursor={by_update}"), "cursor"),
            ] {
                let message = assert_refused(&api, who, &format!("{list}?{query}"), field).await;
                assert!(message.contains("since_id") || message.contains("updated_since"), "{message}");
            }
            for (cursor, query) in [(&default, ""), (&by_id, "since_id=0&"), (&by_update, "updated_since=2000-01-01T00:00:00Z&")] {
                assert_eq!(api.call(who, "GET", &format!("{list}?{query}cursor={cursor}"), None).await.0, 200, "{list} {query}");
            }
            first_cursors.push(default);
        }
        // A cursor of one list is refused by another.
        for (i, list) in LISTS.iter().enumerate() {
            let other = &first_cursors[(i + 1) % LISTS.len()];
            assert_refused(&api, who, &format!("{list}?cursor={other}"), "cursor").await;
        }
        // Audit: its own filters.
        assert_refused(&api, who, "/api/v1/audit?from=last-week", "from").await;
        assert_refused(&api, who, "/api/v1/audit?to=2026-13-01T00:00:00Z", "to").await;
        assert_refused(&api, who, "/api/v1/audit?from=2026-11-24T00:00:00Z&to=2026-11-23T00:00:00Z", "to").await;
        let (st, body, _) = api.call(who, "GET", "/api/v1/audit?from=x&since_id=y&limit=0", None).await;
        assert_eq!(st, 422);
        let fields: Vec<&str> = body["error"]["details"].as_array().unwrap().iter().map(|d| d["field"].as_str().unwrap()).collect();
        assert_eq!(sorted(&fields), ["from", "limit", "since_id"], "every bad parameter at once");
    }
}

#[tokio::test]
async fn audit_filters_narrow_and_stay_authorized() {
    for db in backends().await {
        let api = Api::new(db.open().await);
        let s = &api.s;
        let owner = session(s, "owner@example.com", None, true).await;
        let alice = session(s, "Alice@Example.com", Some(("DEV", Role::Developer)), false).await;
        let bob = session(s, "bob@example.org", Some(("QA", Role::Developer)), false).await;
        let k = key(s, &["*:*:rw"]).await;
        let post = |env: &str| format!("/api/v1/environments/{env}/connections");
        assert_eq!(api.call(Who::Session(&alice), "POST", &post("DEV"), Some(conn("alpha", "bearer"))).await.0, 201);
        let middle = instant().await;
        assert_eq!(api.call(Who::Session(&bob), "POST", &post("QA"), Some(conn("bravo", "bearer"))).await.0, 201);
        assert_eq!(api.call(Who::Key(&k), "POST", &post("DEV"), Some(conn("charlie", "bearer"))).await.0, 201);
        let patch = json!({"settings": {"base_url": "https://y.example.com"}});
        assert_eq!(api.call(Who::Session(&alice), "PATCH", &format!("{}/alpha", post("DEV")), Some(patch)).await.0, 200);
        let all = walk(&api, Who::Session(&owner), "/api/v1/audit", 1000).await;
        let o = Who::Session(&owner);

        // actor: a case-insensitive substring of the actor label.
        let by_alice = walk(&api, o, "/api/v1/audit?actor=ALICE", 2).await;
        assert!(!by_alice.is_empty() && by_alice.iter().all(|e| e["actor"] == "Alice@Example.com"), "{by_alice:?}");
        assert_eq!(by_alice.len(), all.iter().filter(|e| e["actor"] == "Alice@Example.com").count());
        assert!(strs(&by_alice, "action").contains(&"connection.update"));
        let by_domain = walk(&api, o, "/api/v1/audit?actor=example.org", 2).await;
        assert!(!by_domain.is_empty() && by_domain.iter().all(|e| e["actor"] == "bob@example.org"));
        let by_key = walk(&api, o, "/api/v1/audit?actor=api%20key%20test", 2).await;
        assert_eq!(strs(&by_key, "action"), ["connection.create"]);
        assert!(walk(&api, o, "/api/v1/audit?actor=nobody-at-all", 2).await.is_empty());

        // action: exact.
        let creates = walk(&api, o, "/api/v1/audit?action=connection.create", 2).await;
        assert_eq!(strs(&creates, "object_name"), ["charlie", "bravo", "alpha"]);
        assert!(walk(&api, o, "/api/v1/audit?action=connection", 2).await.is_empty(), "action is matched exactly");
        let both = walk(&api, o, "/api/v1/audit?action=connection.create&actor=alice", 2).await;
        assert_eq!(strs(&both, "object_name"), ["alpha"]);

        // from (inclusive) and to (exclusive).
        let after = walk(&api, o, &format!("/api/v1/audit?from={middle}"), 2).await;
        let before = walk(&api, o, &format!("/api/v1/audit?to={middle}"), 2).await;
        assert_eq!(after.len() + before.len(), all.len());
        assert!(after.iter().all(|e| e["created_at"].as_str().unwrap() >= middle.as_str()));
        assert!(before.iter().all(|e| e["created_at"].as_str().unwrap() < middle.as_str()));
        assert_eq!(strs(&after, "object_name"), ["alpha", "charlie", "bravo"]);
        let edge = after.last().unwrap();
        let at = edge["created_at"].as_str().unwrap();
        assert!(ids(&walk(&api, o, &format!("/api/v1/audit?from={at}"), 50).await).contains(&edge["id"].as_i64().unwrap()), "from includes its instant");
        assert!(!ids(&walk(&api, o, &format!("/api/v1/audit?to={at}"), 50).await).contains(&edge["id"].as_i64().unwrap()), "to excludes its instant");

        // environment: only that environment's events, for those with a role there.
        let qa = walk(&api, o, "/api/v1/audit?environment=qa", 2).await;
        assert!(!qa.is_empty() && qa.iter().all(|e| e["environment"] == "QA"));
        let dev = walk(&api, Who::Session(&alice), "/api/v1/audit?environment=DEV&action=connection.create", 1).await;
        assert_eq!(strs(&dev, "object_name"), ["charlie", "alpha"]);
        for (who, url) in [
            (Who::Session(&alice), "/api/v1/audit?environment=QA"),
            (Who::Session(&alice), "/api/v1/audit?environment=PROD&action=connection.create"),
            (Who::Session(&bob), "/api/v1/audit?environment=DEV"),
            (Who::Session(&alice), "/api/v1/audit"),
            (Who::Session(&alice), "/api/v1/audit?actor=alice"),
        ] {
            let (st, _, text) = api.call(who, "GET", url, None).await;
            assert_eq!(st, 403, "{url}: {text}");
        }
        // Filters combine with the feeds.
        let first = all.iter().map(|e| e["id"].as_i64().unwrap()).min().unwrap();
        let feed = walk(&api, o, &format!("/api/v1/audit?environment=DEV&since_id={first}"), 1).await;
        assert!(feed.iter().all(|e| e["environment"] == "DEV") && ids(&feed).windows(2).all(|w| w[0] < w[1]) && feed.len() >= 3);

        // The library functions the UI calls.
        let actions = audit::actions(&s.db).await.unwrap();
        assert!(actions.windows(2).all(|w| w[0] < w[1]), "{actions:?}");
        for a in ["auth.sign_in", "connection.create", "connection.update", "user.create", "user.role_set"] {
            assert!(actions.iter().any(|x| x == a), "{a} in {actions:?}");
        }
        let q = AuditQuery { actor: Some("alice".into()), action: Some("connection.create".into()), limit: Some(10), ..Default::default() };
        let page = audit::search(&s.db, &q).await.unwrap();
        assert_eq!(page.items.iter().map(|e| e.object_name.clone().unwrap()).collect::<Vec<_>>(), ["alpha"]);
        let mut q = AuditQuery { limit: Some(2), feed: Feed::SinceId { since_id: 0, cursor: None }, ..Default::default() };
        let mut seen = Vec::new();
        loop {
            let page = audit::search(&s.db, &q).await.unwrap();
            seen.extend(page.items.iter().map(|e| e.id));
            match page.next_cursor {
                Some(c) => q.feed = q.feed.with_cursor(Some(c)),
                None => break,
            }
        }
        assert_eq!(seen, sorted(&ids(&all)));
        let older = audit::recent_in(&s.db, None, Some(seen[5]), 3).await.unwrap();
        assert_eq!(older.iter().map(|e| e.id).collect::<Vec<_>>(), [seen[4], seen[3], seen[2]]);
        assert_eq!(audit::recent(&s.db, 2).await.unwrap().iter().map(|e| e.id).collect::<Vec<_>>(), [seen[seen.len() - 1], seen[seen.len() - 2]]);
    }
}
