//! JSON Schema helpers for the OpenAPI document, used by the types that describe themselves
//! (domain types write their schema next to their validation code). A leaf: it imports no
//! other module of the crate, so any module may use it.

use serde_json::{json, Value};
use utoipa::openapi::extensions::Extensions;
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, Schema, SchemaType};
use utoipa::openapi::{RefOr, Required};

/// A schema written by hand, as JSON Schema (2020-12, as OpenAPI 3.1 uses it): for the rules
/// that derive attributes cannot state (`const`, `if`/`then`, `not`, patterns built from the
/// validation code, ...). Every keyword is kept as written.
pub fn json_schema(value: Value) -> RefOr<Schema> {
    let Value::Object(map) = value else { panic!("a JSON Schema is an object: {value}") };
    if let Some(Value::String(r)) = map.get("$ref").filter(|_| map.len() == 1) {
        return RefOr::Ref(utoipa::openapi::Ref::new(r.clone()));
    }
    let keywords: Extensions = map.into_iter().collect();
    RefOr::T(Schema::Object(ObjectBuilder::new().schema_type(SchemaType::AnyValue).extensions(Some(keywords)).build()))
}

/// `{"$ref": "#/components/schemas/NAME"}` for a type's component.
pub fn schema_ref<T: utoipa::ToSchema>() -> Value {
    json!({"$ref": format!("#/components/schemas/{}", T::name())})
}

/// Implements `PartialSchema` and `ToSchema` for a type whose schema is written by hand:
/// `hand_schema!(Type, "ComponentName", || json!({...}), [Dependency, ...])`, the dependencies
/// being the types the schema refers to (so that their components are in the document too).
macro_rules! hand_schema {
    ($ty:ty, $name:literal, $schema:expr $(, [$($dep:ty),* $(,)?])?) => {
        impl utoipa::PartialSchema for $ty {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                $crate::schema::json_schema(($schema)())
            }
        }
        impl utoipa::ToSchema for $ty {
            fn name() -> std::borrow::Cow<'static, str> {
                std::borrow::Cow::Borrowed($name)
            }
            #[allow(unused)]
            fn schemas(schemas: &mut Vec<(String, utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>)>) {
                $($(
                    schemas.push((<$dep as utoipa::ToSchema>::name().into(), <$dep as utoipa::PartialSchema>::schema()));
                    <$dep as utoipa::ToSchema>::schemas(schemas);
                )*)?
            }
        }
    };
}
pub(crate) use hand_schema;

/// Schema helpers for fields that derive attributes cannot describe (`#[schema(schema_with = ...)]`).
pub mod fields {
    use serde_json::json;
    use utoipa::openapi::schema::Schema;
    use utoipa::openapi::RefOr;

    use super::json_schema;

    /// An RFC 3339 instant that may be null.
    pub fn optional_date_time() -> RefOr<Schema> {
        json_schema(json!({"type": ["string", "null"], "format": "date-time"}))
    }

    /// Any JSON value.
    pub fn any() -> RefOr<Schema> {
        json_schema(json!({}))
    }
}

/// White space as Rust's `char::is_whitespace` (and `str::trim`) sees it, for patterns that
/// mirror the validation code.
pub const WS: &str = r"\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000";
/// Control characters as `char::is_control` sees them.
pub const CONTROL: &str = r"\x00-\x1f\x7f-\x9f";

/// `pattern` for text that is not blank (holds a character that is not white space).
pub fn not_blank() -> String {
    format!("[^{WS}]")
}

/// One parameter of an operation.
pub fn param(name: &str, at: ParameterIn, required: bool, schema: Value, description: Option<&str>) -> Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(at)
        .required(if required { Required::True } else { Required::False })
        .description(description)
        .schema(Some(json_schema(schema)))
        .build()
}

/// An optional query parameter.
pub fn query(name: &str, schema: Value, description: &str) -> Parameter {
    param(name, ParameterIn::Query, false, schema, Some(description))
}

/// Declares a set of parameters (`params(Type)` in an operation's annotation).
macro_rules! params_doc {
    ($ty:ty, $params:expr) => {
        impl utoipa::IntoParams for $ty {
            fn into_params(_: impl Fn() -> Option<utoipa::openapi::path::ParameterIn>) -> Vec<utoipa::openapi::path::Parameter> {
                ($params)()
            }
        }
    };
}
pub(crate) use params_doc;
