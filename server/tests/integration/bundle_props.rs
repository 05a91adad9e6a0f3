//! Property tests of the promotion bundle parser (`server::promotion::parse`): whatever arrives
//! (random bytes, random JSON, a valid bundle with one thing broken) it answers without
//! panicking, accepts every well-formed bundle, and reports each problem at its path.

use proptest::prelude::*;
use serde_json::{json, Map, Value};
use server::promotion::{digest_of, parse, FORMAT, FORMAT_VERSION};
use server::Error;

/// The error fields of a refused bundle; panics (fails the property) on anything that is not a
/// client error, since a bundle can never cause a server error.
fn refusal_fields(result: Result<server::promotion::Bundle, Error>) -> Option<Vec<String>> {
    match result {
        Ok(_) => None,
        Err(Error::Validation(list)) => {
            assert!(!list.is_empty(), "a validation error names at least one field");
            for e in &list {
                assert!(!e.field.is_empty() && !e.message.is_empty(), "every problem has a path and a message: {e:?}");
            }
            Some(list.into_iter().map(|e| e.field).collect())
        }
        Err(Error::BadRequest(message)) => {
            assert!(!message.is_empty());
            Some(vec!["body".into()])
        }
        Err(other) => panic!("a bundle caused {other:?}, which is not a client error"),
    }
}

/// Any JSON value, a few levels deep.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{0,10}", inner, 0..6).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A JSON object shaped like a bundle, each top-level field either right-looking or random.
fn bundle_shaped() -> impl Strategy<Value = Value> {
    let field = |good: Value| prop_oneof![Just(Some(good)), any_json().prop_map(Some), Just(None)];
    (
        field(json!(FORMAT)),
        field(json!(FORMAT_VERSION)),
        field(json!("DEV")),
        field(json!("2026-11-24T10:00:00Z")),
        field(json!("release@example.com")),
        prop_oneof![prop::collection::vec(any_json(), 0..4).prop_map(|v| Some(Value::Array(v))), Just(None)],
        prop_oneof![prop::collection::vec(any_json(), 0..4).prop_map(|v| Some(Value::Array(v))), Just(None)],
        prop_oneof![prop::collection::vec(any_json(), 0..4).prop_map(|v| Some(Value::Array(v))), Just(None)],
        any::<bool>(),
    )
        .prop_map(|(format, version, source, at, by, integrations, connections, bindings, sign)| {
            let mut m = Map::new();
            for (k, v) in [
                ("format", format),
                ("format_version", version),
                ("source_environment", source),
                ("exported_at", at),
                ("exported_by", by),
                ("integrations", integrations),
                ("connections", connections),
                ("bindings", bindings),
            ] {
                if let Some(v) = v {
                    m.insert(k.into(), v);
                }
            }
            let mut bundle = Value::Object(m);
            if sign {
                bundle["digest"] = json!(digest_of(&bundle));
            }
            bundle
        })
}

/// A valid bundle: unique integration and connection names (http), some integrations bound.
fn valid_bundle() -> impl Strategy<Value = Value> {
    (
        prop::collection::btree_set("[a-z][a-z0-9_]{0,11}", 0..8),
        prop::collection::btree_set("[a-z][a-z0-9_.-]{0,11}", 0..5),
        prop::collection::vec(any::<prop::sample::Index>(), 8),
        prop::collection::vec(prop::collection::btree_set("[A-Z][a-z]{1,8}", 0..4), 8),
    )
        .prop_map(|(integrations, connections, picks, objects)| {
            let connections: Vec<String> = connections.into_iter().map(|c| format!("C{c}")).collect();
            let integrations: Vec<String> = integrations.into_iter().map(|i| format!("I{i}")).collect();
            let mut bindings = Vec::new();
            let list: Vec<Value> = integrations
                .iter()
                .enumerate()
                .map(|(n, name)| {
                    // Every other integration is bound, when there is a connection to bind to.
                    if n % 2 == 0 && !connections.is_empty() {
                        bindings.push(json!({"integration": name, "connection": picks[n].get(&connections)}));
                    }
                    let objects: Vec<Value> =
                        objects[n].iter().enumerate().map(|(k, o)| json!({"name": o, "access": if k % 2 == 0 { "read" } else { "read_write" }})).collect();
                    json!({"name": name, "provider": "http", "objects": objects, "description": null, "version": format!("1.{n}")})
                })
                .collect();
            let descriptors: Vec<Value> = connections
                .iter()
                .enumerate()
                .map(|(n, name)| json!({"name": name, "provider": "http", "settings": {"base_url": format!("https://svc{n}.example.com"), "auth": "bearer"}}))
                .collect();
            let mut bundle = json!({
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "source_environment": "DEV",
                "exported_at": "2026-11-24T10:00:00Z",
                "exported_by": "release@example.com",
                "integrations": list,
                "connections": descriptors,
                "bindings": bindings,
            });
            bundle["digest"] = json!(digest_of(&bundle));
            bundle
        })
}

/// Every string inside `v`, as a JSON pointer to it.
fn string_pointers(v: &Value, at: String, out: &mut Vec<String>) {
    match v {
        Value::String(_) => out.push(at),
        Value::Array(a) => a.iter().enumerate().for_each(|(i, x)| string_pointers(x, format!("{at}/{i}"), out)),
        Value::Object(m) => m.iter().for_each(|(k, x)| string_pointers(x, format!("{at}/{k}"), out)),
        _ => {}
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_are_refused_without_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = refusal_fields(parse(&bytes));
    }

    #[test]
    fn random_json_is_refused_without_panic(v in any_json()) {
        prop_assert!(refusal_fields(parse(v.to_string().as_bytes())).is_some(), "random JSON was accepted as a bundle: {v}");
    }

    #[test]
    fn bundle_shaped_json_is_answered_at_known_paths(v in bundle_shaped()) {
        if let Some(fields) = refusal_fields(parse(v.to_string().as_bytes())) {
            for f in fields {
                let top = f.split(['.', '[']).next().unwrap_or_default().to_string();
                let known = ["body", "format", "format_version", "source_environment", "exported_at", "exported_by", "integrations", "connections", "bindings", "digest"];
                prop_assert!(known.contains(&top.as_str()), "{f} is not a path into the bundle");
            }
        }
    }

    #[test]
    fn valid_bundles_are_accepted(v in valid_bundle()) {
        let parsed = parse(v.to_string().as_bytes());
        prop_assert!(parsed.is_ok(), "a valid bundle was refused: {:?}\n{v}", parsed.err());
        prop_assert_eq!(parsed.unwrap().digest, v["digest"].as_str().unwrap().to_string());
    }

    /// One integration's name broken (and the digest made to match): the problem is reported
    /// at that integration, or at a binding that named it, and nowhere else.
    #[test]
    fn a_bad_item_is_reported_at_its_own_path(mut v in valid_bundle(), pick in any::<prop::sample::Index>(), bad in prop_oneof![Just(""), Just("has space"), Just("-leading"), Just("x/y")]) {
        let n = v["integrations"].as_array().unwrap().len();
        prop_assume!(n > 0);
        let i = pick.index(n);
        v["integrations"][i]["name"] = json!(bad);
        v["digest"] = json!(digest_of(&v));
        let fields = refusal_fields(parse(v.to_string().as_bytes()));
        prop_assert!(fields.is_some(), "a bad name was accepted");
        let fields = fields.unwrap();
        prop_assert!(fields.contains(&format!("integrations[{i}].name")), "{fields:?}");
        for f in fields {
            prop_assert!(f.starts_with(&format!("integrations[{i}].")) || f.starts_with("bindings["), "{f} is not about integrations[{i}]");
        }
    }

    /// Any string changed after export without a new digest: refused, and the digest is named.
    #[test]
    fn an_edit_without_a_new_digest_is_refused(mut v in valid_bundle(), pick in any::<prop::sample::Index>(), text in "[A-Za-z0-9_]{1,8}") {
        let mut pointers = Vec::new();
        string_pointers(&v, String::new(), &mut pointers);
        pointers.retain(|p| p != "/digest");
        let pointer = pick.get(&pointers).clone();
        let target = v.pointer_mut(&pointer).unwrap();
        let changed = format!("{}{text}", target.as_str().unwrap());
        *target = json!(changed);
        let fields = refusal_fields(parse(v.to_string().as_bytes()));
        prop_assert!(fields.as_ref().is_some_and(|f| f.contains(&"digest".to_string())), "editing {pointer} went unnoticed: {fields:?}");
    }
}
