//! Lists and change feeds, the same for every list: a page at a time (`limit`, opaque `cursor`),
//! either in the list's own order or as a change feed for polling tools:
//!
//! - `since_id=N`: records created after id N, in id order;
//! - `updated_since=T`: records created or changed at or after T, in (updated_at, id) order.
//!
//! A cursor names the list and the mode that issued it, so a cursor of one list or mode is
//! refused by another instead of silently skipping or repeating records. Lists describe their
//! table and order with a [`Listing`], narrow it with a [`Filter`] and call [`page`].

use base64::Engine;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};

use crate::db::{format_time, Db};
use crate::error::{Error, FieldError, Result};

pub const DEFAULT_LIMIT: i64 = 100;
pub const MAX_LIMIT: i64 = 1000;

/// One page of a list: `{"items": [...], "next_cursor": "..."|null}`.
#[derive(Debug, Clone, Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass back as `cursor` (with the same `since_id` / `updated_since`) for the next page;
    /// `None` on the last page.
    pub next_cursor: Option<String>,
}

impl<T: utoipa::ToSchema> utoipa::__dev::ComposeSchema for Page<T> {
    fn compose(_: Vec<utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>>) -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        crate::schema::json_schema(serde_json::json!({
            "type": "object",
            "required": ["items", "next_cursor"],
            "properties": {
                "items": {"type": "array", "items": crate::schema::schema_ref::<T>()},
                "next_cursor": {"type": ["string", "null"]}
            }
        }))
    }
}

impl<T: utoipa::ToSchema> utoipa::ToSchema for Page<T> {
    fn name() -> std::borrow::Cow<'static, str> {
        format!("Page_{}", T::name()).into()
    }

    fn schemas(schemas: &mut Vec<(String, utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>)>) {
        schemas.push((T::name().into(), T::schema()));
        T::schemas(schemas);
    }
}

/// Which records a list returns, in which order, and where to continue (`cursor`, from a
/// previous page's `next_cursor`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Feed {
    /// The list's own order: connections by name, environments in promotion order, users by
    /// email, API keys by id, audit events newest first.
    Default { cursor: Option<String> },
    /// Records created after `since_id`, in id order.
    SinceId { since_id: i64, cursor: Option<String> },
    /// Records created or changed at or after `since`, in (updated_at, id) order.
    UpdatedSince { since: DateTime<Utc>, cursor: Option<String> },
}

impl<T> Page<T> {
    /// The same page with each item converted.
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page { items: self.items.into_iter().map(f).collect(), next_cursor: self.next_cursor }
    }

    /// The same page with each item converted, or the first failure.
    pub fn try_map<U>(self, f: impl FnMut(T) -> Result<U>) -> Result<Page<U>> {
        Ok(Page { items: self.items.into_iter().map(f).collect::<Result<_>>()?, next_cursor: self.next_cursor })
    }
}

impl Default for Feed {
    fn default() -> Self {
        Feed::Default { cursor: None }
    }
}

impl Feed {
    /// A feed from typed parameters; `since_id` and `updated_since` together are refused.
    pub fn new(since_id: Option<i64>, updated_since: Option<DateTime<Utc>>, cursor: Option<String>) -> Result<Feed> {
        build(since_id, updated_since, cursor).map_err(|e| Error::Validation(vec![e]))
    }

    /// The cursor to continue from, if any.
    pub fn cursor(&self) -> Option<&str> {
        match self {
            Feed::Default { cursor } | Feed::SinceId { cursor, .. } | Feed::UpdatedSince { cursor, .. } => cursor.as_deref(),
        }
    }

    /// The same feed, continued from `cursor` (a page's `next_cursor`).
    pub fn with_cursor(self, cursor: Option<String>) -> Feed {
        match self {
            Feed::Default { .. } => Feed::Default { cursor },
            Feed::SinceId { since_id, .. } => Feed::SinceId { since_id, cursor },
            Feed::UpdatedSince { since, .. } => Feed::UpdatedSince { since, cursor },
        }
    }

    /// The mode's name, as written into cursors and messages.
    fn mode(&self) -> &'static str {
        match self {
            Feed::Default { .. } => "default",
            Feed::SinceId { .. } => "since_id",
            Feed::UpdatedSince { .. } => "updated_since",
        }
    }
}

fn build(since_id: Option<i64>, updated_since: Option<DateTime<Utc>>, cursor: Option<String>) -> Result<Feed, FieldError> {
    match (since_id, updated_since) {
        (Some(_), Some(_)) => Err(FieldError::new(
            "since_id",
            "since_id and updated_since cannot be combined: pick one (since_id for new records, updated_since for new and changed ones)",
        )),
        (Some(since_id), None) if since_id < 0 => Err(FieldError::new("since_id", "since_id must be a record id: a whole number, 0 or more")),
        (Some(since_id), None) => Ok(Feed::SinceId { since_id, cursor }),
        (None, Some(since)) => Ok(Feed::UpdatedSince { since, cursor }),
        (None, None) => Ok(Feed::Default { cursor }),
    }
}

/// Checks a page size: 1 to 1000, 100 when not given.
pub fn check_limit(limit: Option<i64>) -> Result<i64> {
    let limit = limit.unwrap_or(DEFAULT_LIMIT);
    if (1..=MAX_LIMIT).contains(&limit) {
        Ok(limit)
    } else {
        Err(Error::field("limit", limit_message()))
    }
}

fn limit_message() -> String {
    format!("limit must be a whole number from 1 to {MAX_LIMIT} (default {DEFAULT_LIMIT})")
}

/// Parses an RFC 3339 time (any offset; converted to UTC). A `+` that the query string turned
/// into a space is taken back.
pub fn parse_time(field: &str, text: &str) -> Result<DateTime<Utc>, FieldError> {
    DateTime::parse_from_rfc3339(text)
        .or_else(|e| if text.contains(' ') { DateTime::parse_from_rfc3339(&text.replace(' ', "+")) } else { Err(e) })
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| FieldError::new(field, format!("{field} must be an RFC 3339 time such as 2026-11-24T07:43:00Z; got {text:?}")))
}

/// The list parameters of a REST request, as sent (validated by [`FeedParams::read`]).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct FeedParams {
    pub limit: Option<String>,
    pub cursor: Option<String>,
    pub since_id: Option<String>,
    pub updated_since: Option<String>,
}

crate::schema::params_doc!(FeedParams, || {
    use crate::schema::query;
    use serde_json::json;
    vec![
        query("limit", json!({"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT}), "Records per page (default 100)"),
        query(
            "cursor",
            json!({"type": "string", "minLength": 1}),
            "`next_cursor` of the previous page, as it was issued: any other value is refused (422). A cursor continues only the list and the mode (default order, `since_id` or `updated_since`) that issued it: send the same `since_id` / `updated_since` with it.",
        ),
        query(
            "since_id",
            json!({"type": "integer", "format": "int64", "minimum": 0, "maximum": i64::MAX}),
            "Change feed: records created after this id, in id order. Cannot be combined with `updated_since`.",
        ),
        query(
            "updated_since",
            json!({"type": "string", "format": "date-time"}),
            "Change feed: records created or changed at or after this instant (RFC 3339; converted to UTC), in (updated_at, id) order. Cannot be combined with `since_id`. An empty value is refused, like any other that is not such a time.",
        ),
    ]
});

/// A parameter as sent: an empty value is a value (and refused where it is not valid), not an
/// absent parameter, so that a script's unset variable does not silently widen a list.
fn given(v: &Option<String>) -> Option<&str> {
    v.as_deref()
}

impl FeedParams {
    /// The feed and page size asked for; each bad parameter adds an error to `errors`.
    pub fn read(&self, errors: &mut Vec<FieldError>) -> (Feed, Option<i64>) {
        let limit = given(&self.limit).and_then(|text| match text.parse::<i64>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => Some(n),
            _ => {
                errors.push(FieldError::new("limit", format!("{}; got {text:?}", limit_message())));
                None
            }
        });
        let since_id = given(&self.since_id).and_then(|text| match text.parse::<i64>() {
            Ok(n) if n >= 0 => Some(n),
            _ => {
                errors.push(FieldError::new("since_id", format!("since_id must be a record id: a whole number, 0 or more; got {text:?}")));
                None
            }
        });
        let updated_since = given(&self.updated_since).and_then(|text| parse_time("updated_since", text).map_err(|e| errors.push(e)).ok());
        let feed = build(since_id, updated_since, given(&self.cursor).map(str::to_string)).unwrap_or_else(|e| {
            errors.push(e);
            Feed::default()
        });
        (feed, limit)
    }

    /// [`FeedParams::read`], failing with every bad parameter at once.
    pub fn parse(&self) -> Result<(Feed, Option<i64>)> {
        let mut errors = Vec::new();
        let out = self.read(&mut errors);
        if errors.is_empty() {
            Ok(out)
        } else {
            Err(Error::Validation(errors))
        }
    }
}

/// A value bound to a `$N` placeholder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bind {
    Int(i64),
    Text(String),
}

impl From<i64> for Bind {
    fn from(v: i64) -> Self {
        Bind::Int(v)
    }
}

impl From<String> for Bind {
    fn from(v: String) -> Self {
        Bind::Text(v)
    }
}

impl From<&str> for Bind {
    fn from(v: &str) -> Self {
        Bind::Text(v.to_string())
    }
}

/// Conditions ANDed together. The SQL is constant text; every value is bound.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    clauses: Vec<String>,
    binds: Vec<Bind>,
}

impl Filter {
    pub fn new() -> Filter {
        Filter::default()
    }

    /// Adds a condition: constant SQL in which each `?` stands for the next of `values`.
    pub fn and<const N: usize>(&mut self, clause: &'static str, values: [Bind; N]) -> &mut Self {
        self.push(clause.to_string(), values);
        self
    }

    /// `column IN (...)`; no ids matches nothing.
    pub fn and_in(&mut self, column: &'static str, ids: &[i64]) -> &mut Self {
        if ids.is_empty() {
            self.clauses.push("1 = 0".into());
        } else {
            self.push(format!("{column} IN ({})", vec!["?"; ids.len()].join(", ")), ids.iter().map(|&i| Bind::Int(i)));
        }
        self
    }

    fn push(&mut self, clause: String, values: impl IntoIterator<Item = Bind>) {
        let before = self.binds.len();
        self.binds.extend(values);
        debug_assert_eq!(clause.matches('?').count(), self.binds.len() - before, "placeholders and values of {clause:?}");
        self.clauses.push(clause);
    }

    /// ` WHERE ...` with `$N` placeholders (empty without conditions).
    fn render(&self) -> String {
        if self.clauses.is_empty() {
            return String::new();
        }
        let mut out = String::from(" WHERE ");
        let mut n = 0;
        for (i, clause) in self.clauses.iter().enumerate() {
            if i > 0 {
                out.push_str(" AND ");
            }
            out.push('(');
            for c in clause.chars() {
                if c == '?' {
                    n += 1;
                    out.push_str(&format!("${n}"));
                } else {
                    out.push(c);
                }
            }
            out.push(')');
        }
        out
    }
}

/// A case-insensitive "contains" pattern for `LOWER(column) LIKE ? ESCAPE '\'`.
pub fn contains_pattern(text: &str) -> String {
    let mut p = String::from("%");
    for c in text.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

/// The column a list's own order sorts by; the id breaks ties.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    Id,
    Text(&'static str),
    Int(&'static str),
}

/// How one list is stored and ordered.
#[derive(Debug, Clone, Copy)]
pub struct Listing {
    /// Written into the list's cursors.
    pub name: &'static str,
    /// The columns to read (constant); they include `id`, `updated_at` and the sort column.
    pub columns: &'static str,
    /// The table (constant).
    pub table: &'static str,
    /// The default order.
    pub order: SortKey,
    pub descending: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
enum KeyValue {
    Int(i64),
    Text(String),
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Cursor {
    #[serde(rename = "l")]
    list: String,
    #[serde(rename = "m")]
    mode: String,
    #[serde(rename = "k", default, skip_serializing_if = "Option::is_none")]
    key: Option<KeyValue>,
    #[serde(rename = "i")]
    id: i64,
}

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

fn not_issued() -> Error {
    Error::field("cursor", "the cursor is not one this server issued; start again without it")
}

fn encode(c: &Cursor) -> String {
    B64.encode(serde_json::to_vec(c).expect("a cursor serializes"))
}

fn decode(text: &str, listing: &Listing, feed: &Feed) -> Result<Cursor> {
    let c: Cursor = B64.decode(text).ok().and_then(|b| serde_json::from_slice(&b).ok()).ok_or_else(not_issued)?;
    if c.list != listing.name {
        return Err(Error::field("cursor", format!("this cursor belongs to the {} list, not {}; start again without it", c.list, listing.name)));
    }
    if c.mode != feed.mode() {
        let described = |m: &str| match m {
            "default" => "the default order (no since_id or updated_since)".to_string(),
            other => format!("a {other} feed"),
        };
        return Err(Error::field(
            "cursor",
            format!(
                "this cursor continues {}, but this request asks for {}; send the same since_id or updated_since as for the first page, or start again without the cursor",
                described(&c.mode),
                described(feed.mode())
            ),
        ));
    }
    Ok(c)
}

/// The cursor that continues `listing`'s default order after the record `id` (for a list whose
/// default order is by id).
pub(crate) fn default_cursor_after(listing: &Listing, id: i64) -> String {
    debug_assert_eq!(listing.order, SortKey::Id);
    encode(&Cursor { list: listing.name.into(), mode: Feed::default().mode().into(), key: None, id })
}

/// Reads one page of `listing`, narrowed by `filter`, as `feed` asks. Returns the rows (at most
/// `limit`) and the cursor of the next page.
pub async fn page(db: &Db, listing: &Listing, mut filter: Filter, feed: &Feed, limit: Option<i64>) -> Result<Page<AnyRow>> {
    let limit = check_limit(limit)?;
    let (key, descending) = match feed {
        Feed::Default { .. } => (listing.order, listing.descending),
        Feed::SinceId { since_id, .. } => {
            filter.and("id > ?", [Bind::Int(*since_id)]);
            (SortKey::Id, false)
        }
        Feed::UpdatedSince { since, .. } => {
            filter.and("updated_at >= ?", [Bind::Text(format_time(*since))]);
            (SortKey::Text("updated_at"), false)
        }
    };
    let (cmp, dir) = if descending { ("<", "DESC") } else { (">", "ASC") };
    if let Some(text) = feed.cursor() {
        let c = decode(text, listing, feed)?;
        match (key, c.key) {
            (SortKey::Id, None) => filter.push(format!("id {cmp} ?"), [Bind::Int(c.id)]),
            (SortKey::Text(col), Some(KeyValue::Text(k))) => filter.push(format!("({col}, id) {cmp} (?, ?)"), [Bind::Text(k), Bind::Int(c.id)]),
            (SortKey::Int(col), Some(KeyValue::Int(k))) => filter.push(format!("({col}, id) {cmp} (?, ?)"), [Bind::Int(k), Bind::Int(c.id)]),
            _ => return Err(not_issued()),
        }
    }
    let order = match key {
        SortKey::Id => format!("id {dir}"),
        SortKey::Text(col) | SortKey::Int(col) => format!("{col} {dir}, id {dir}"),
    };
    // Constant text (the listing's SQL, column names, placeholders) only; every value is bound.
    let sql = format!("SELECT {} FROM {}{} ORDER BY {order} LIMIT {}", listing.columns, listing.table, filter.render(), limit + 1);
    let mut query = sqlx::query(AssertSqlSafe(sql));
    for b in filter.binds {
        query = match b {
            Bind::Int(v) => query.bind(v),
            Bind::Text(v) => query.bind(v),
        };
    }
    let mut rows = query.fetch_all(db.pool()).await?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next_cursor = match rows.last() {
        Some(last) if more => {
            let key = match key {
                SortKey::Id => None,
                SortKey::Text(col) => Some(KeyValue::Text(last.try_get(col)?)),
                SortKey::Int(col) => Some(KeyValue::Int(last.try_get(col)?)),
            };
            Some(encode(&Cursor { list: listing.name.into(), mode: feed.mode().into(), key, id: last.try_get("id")? }))
        }
        _ => None,
    };
    Ok(Page { items: rows, next_cursor })
}

/// A page whose records are read in a second step: [`page`] chooses the ids (so that LIMIT
/// counts records, not joined rows), `load` reads those records given the ids as a
/// comma-separated list of integers (for `WHERE id IN (…)`; they come from the database, so the
/// list is safe to format into SQL) and answers them with their ids in any order, and the page
/// keeps the first step's order.
pub async fn page_then_load<T, F, Fut>(db: &Db, listing: &Listing, filter: Filter, feed: &Feed, limit: Option<i64>, load: F) -> Result<Page<T>>
where
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<(i64, T)>>>,
{
    let page = page(db, listing, filter, feed, limit).await?;
    let ids: Vec<i64> = page.items.iter().map(|r| r.try_get("id")).collect::<std::result::Result<_, _>>()?;
    if ids.is_empty() {
        return Ok(Page { items: Vec::new(), next_cursor: page.next_cursor });
    }
    let list = crate::db::id_list(ids.iter().copied());
    let mut by_id: std::collections::BTreeMap<i64, T> = load(list).await?.into_iter().collect();
    Ok(Page { items: ids.iter().filter_map(|id| by_id.remove(id)).collect(), next_cursor: page.next_cursor })
}

/// Every item of a list, reading it a page (of the largest size) at a time: `page` is called
/// with each page's feed position until the list has no next page.
pub async fn read_all<T, F, Fut>(mut page: F) -> crate::error::Result<Vec<T>>
where
    F: FnMut(Feed, Option<i64>) -> Fut,
    Fut: std::future::Future<Output = crate::error::Result<Page<T>>>,
{
    let mut all = Vec::new();
    let mut feed = Feed::default();
    loop {
        let p = page(feed.clone(), Some(MAX_LIMIT)).await?;
        all.extend(p.items);
        match p.next_cursor {
            Some(c) => feed = feed.with_cursor(Some(c)),
            None => return Ok(all),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> FeedParams {
        let get = |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string());
        FeedParams { limit: get("limit"), cursor: get("cursor"), since_id: get("since_id"), updated_since: get("updated_since") }
    }

    fn fields(p: FeedParams) -> Vec<String> {
        match p.parse() {
            Ok(_) => Vec::new(),
            Err(Error::Validation(errors)) => errors.into_iter().map(|e| e.field).collect(),
            Err(other) => panic!("{other}"),
        }
    }

    #[test]
    fn parameters() {
        assert_eq!(params(&[]).parse().unwrap(), (Feed::default(), None));
        assert_eq!(params(&[("limit", "5"), ("since_id", "7")]).parse().unwrap(), (Feed::SinceId { since_id: 7, cursor: None }, Some(5)));
        let (feed, _) = params(&[("updated_since", "2026-11-24T09:43:00+02:00")]).parse().unwrap();
        let Feed::UpdatedSince { since, .. } = feed else { panic!("{feed:?}") };
        assert_eq!(format_time(since), "2026-11-24T07:43:00.000000Z");
        // A `+` turned into a space by the query string still parses.
        assert!(params(&[("updated_since", "2026-11-24T09:43:00 02:00")]).parse().is_ok());
        assert_eq!(fields(params(&[("limit", "0")])), ["limit"]);
        assert_eq!(fields(params(&[("limit", "1001")])), ["limit"]);
        assert_eq!(fields(params(&[("limit", "ten")])), ["limit"]);
        assert_eq!(fields(params(&[("since_id", "-1")])), ["since_id"]);
        assert_eq!(fields(params(&[("since_id", "x"), ("updated_since", "yesterday")])), ["since_id", "updated_since"]);
        assert_eq!(fields(params(&[("since_id", "1"), ("updated_since", "2026-11-24T07:43:00Z")])), ["since_id"]);
        assert!(Feed::new(Some(1), Some(Utc::now()), None).is_err());
    }

    #[test]
    fn filters_number_their_placeholders() {
        let mut f = Filter::new();
        f.and("a = ?", [1.into()]).and_in("id", &[4, 5]).and("b LIKE ? ESCAPE '\\'", ["x".into()]);
        assert_eq!(f.render(), " WHERE (a = $1) AND (id IN ($2, $3)) AND (b LIKE $4 ESCAPE '\\')");
        assert_eq!(f.binds.len(), 4);
        assert_eq!(Filter::new().render(), "");
        assert_eq!(contains_pattern("A_b%"), "%a\\_b\\%%");
    }

    #[test]
    fn cursors_name_their_list_and_mode() {
        let audit = Listing { name: "audit", columns: "", table: "", order: SortKey::Id, descending: true };
        let keys = Listing { name: "api_keys", columns: "", table: "", order: SortKey::Id, descending: false };
        let c = default_cursor_after(&audit, 9);
        assert_eq!(decode(&c, &audit, &Feed::default()).unwrap().id, 9);
        assert!(decode(&c, &keys, &Feed::default()).is_err(), "another list");
        assert!(decode(&c, &audit, &Feed::SinceId { since_id: 1, cursor: None }).is_err(), "another mode");
        assert!(decode("not-a-cursor", &audit, &Feed::default()).is_err());
    }
}
