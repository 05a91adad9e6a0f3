//! connvault's server side. Everything that runs only on the server lives here: configuration,
//! storage, the sealing of secrets, providers, audit and the REST API. It knows nothing about
//! the UI; the `app` crate calls into it.

pub mod access;
pub mod api;
pub mod api_keys;
pub mod assertion;
pub mod attention;
pub mod audit;
pub mod backup;
pub mod broker;
pub mod certs;
pub mod checks;
pub mod config;
pub mod connect;
pub mod connections;
pub mod credential_requests;
pub mod credential;
pub mod db;
pub mod entra;
pub mod environments;
pub mod error;
pub mod events;
pub mod expiry;
pub mod feed;
pub mod flow;
pub mod integrations;
pub mod jobs;
pub mod keyring;
pub mod links;
pub mod logging;
pub mod mail;
pub mod oauth;
pub mod oauth_standin;
pub mod outbound;
pub mod outcome;
pub mod promotion;
pub mod providers;
pub mod proxy;
pub mod ratelimit;
pub mod renewal;
pub mod rotate;
pub mod schema;
pub mod seal;
pub mod secret;
pub mod serve;
pub mod services;
pub mod sessions;
pub mod signing;
pub mod standin;
pub mod startup;
pub mod tokens;
pub mod users;
pub mod webhooks;
pub mod workers;

pub use error::{Error, Result};
pub use services::Services;

#[cfg(test)]
mod layering {
    //! No module imports one that imports it back: the modules form layers (leaves such as
    //! `db`, `seal`, `outbound`; then providers, connections, signing, checks, the broker;
    //! `services`; the API and startup on top). Read from the sources: every `crate::MODULE`
    //! outside comments, string literals and `#[cfg(test)]` code is an edge.

    use std::collections::{BTreeMap, BTreeSet};
    use std::path::Path;

    /// The code of a file as the compiler builds it outside tests, without comments and strings.
    fn code(text: &str) -> String {
        let text = text.split("#[cfg(test)]").next().unwrap_or_default();
        let mut out = String::new();
        for line in text.lines() {
            let line = line.trim_start();
            if line.starts_with("//") {
                continue;
            }
            let (mut in_string, mut escaped) = (false, false);
            for c in line.chars() {
                match (in_string, c) {
                    (true, _) if escaped => escaped = false,
                    (true, '\\') => escaped = true,
                    (true, '"') => in_string = false,
                    (true, _) => {}
                    (false, '"') => in_string = true,
                    (false, c) => out.push(c),
                }
            }
            out.push('\n');
        }
        out
    }

    fn edges() -> BTreeMap<String, BTreeSet<String>> {
        fn walk(dir: &Path, top: Option<&str>, edges: &mut BTreeMap<String, BTreeSet<String>>) {
            for entry in std::fs::read_dir(dir).unwrap().map(Result::unwrap) {
                let path = entry.path();
                let name = path.file_stem().unwrap().to_string_lossy().to_string();
                let module = top.map(str::to_string).unwrap_or_else(|| name.clone());
                if path.is_dir() {
                    walk(&path, Some(&module), edges);
                } else if path.extension().is_some_and(|e| e == "rs") && !(top.is_none() && name == "lib") {
                    let code = code(&std::fs::read_to_string(&path).unwrap());
                    let out = edges.entry(module.clone()).or_default();
                    for (i, _) in code.match_indices("crate::") {
                        let target: String = code[i + 7..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                        if target != module && !target.is_empty() {
                            out.insert(target);
                        }
                    }
                }
            }
        }
        let mut edges = BTreeMap::new();
        walk(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), None, &mut edges);
        edges
    }

    /// A path from `from` back to `to`, if there is one.
    fn path(edges: &BTreeMap<String, BTreeSet<String>>, from: &str, to: &str, seen: &mut BTreeSet<String>) -> Option<Vec<String>> {
        for next in edges.get(from).into_iter().flatten() {
            if next == to {
                return Some(vec![next.clone()]);
            }
            if seen.insert(next.clone()) {
                if let Some(mut rest) = path(edges, next, to, seen) {
                    rest.insert(0, next.clone());
                    return Some(rest);
                }
            }
        }
        None
    }

    #[test]
    fn no_module_imports_one_that_imports_it_back() {
        let edges = edges();
        assert!(edges.len() > 30 && edges["broker"].contains("signing"), "read the sources: {edges:?}");
        let cycles: Vec<String> = edges
            .keys()
            .filter_map(|m| path(&edges, m, m, &mut BTreeSet::new()).map(|p| format!("{m} -> {}", p.join(" -> "))))
            .collect();
        assert!(cycles.is_empty(), "modules that import themselves back:\n{}", cycles.join("\n"));
    }

    #[test]
    fn a_planted_cycle_is_found() {
        let mut edges = edges();
        edges.get_mut("db").unwrap().insert("services".into());
        let found = path(&edges, "db", "db", &mut BTreeSet::new()).expect("services -> db, so db -> services closes a circle");
        assert_eq!(found.first().map(String::as_str), Some("services"));
        assert_eq!(found.last().map(String::as_str), Some("db"));
    }
}
