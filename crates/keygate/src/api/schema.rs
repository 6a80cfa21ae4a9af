//! The OpenAPI schemas of the values the edge parses, built from the same
//! rules the parsers apply ([`keygate_core::domain::patterns`]), so that the
//! document says what the server enforces: a generated client or a fuzzer
//! that follows it is never refused for the shape of a value.

use keygate_core::domain::patterns;
use keygate_core::{AppId, Email, KeyName, Mode, Role};
use utoipa::openapi::schema::{
    ArrayBuilder, KnownFormat, Object, ObjectBuilder, Schema, SchemaFormat, SchemaType, Type,
};

fn string() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String)
}

/// `schema`, or `null`: an optional field the server reads `null` in as
/// absent.
fn or_null(schema: Object) -> Object {
    let mut schema = schema;
    schema.schema_type = SchemaType::from_iter([Type::String, Type::Null]);
    schema
}

/// A reverse-domain app id such as `com.example.app`.
pub fn app_id() -> Object {
    string()
        .pattern(Some(patterns::app_id()))
        .max_length(Some(AppId::MAX_LEN))
        .description(Some("A reverse-domain app id such as com.example.app (compared in lower case)"))
        .examples(["com.example.app"])
        .build()
}

/// A name: 1–200 characters with a visible one, no control, zero-width or
/// bidirectional control characters; trimmed.
pub fn name() -> Object {
    string()
        .pattern(Some(patterns::name()))
        .min_length(Some(1))
        .max_length(Some(KeyName::MAX_CHARS))
        .examples(["CI/CD Read Key"])
        .build()
}

/// An email address.
pub fn email() -> Object {
    string()
        .pattern(Some(patterns::email()))
        .max_length(Some(Email::MAX_LEN))
        .examples(["ada@example.com"])
        .build()
}

/// An organization's or a user's id.
pub fn uuid() -> Object {
    string().format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid))).build()
}

/// A key's mode.
pub fn mode() -> Object {
    string().enum_values(Some(Mode::ALL.map(Mode::as_str))).examples(["read"]).build()
}

/// A member's role.
pub fn role() -> Object {
    string().enum_values(Some(Role::ALL.map(Role::as_str))).examples(["write"]).build()
}

/// The longest version a bundle may have.
pub const MAX_VERSION_LEN: usize = 128;

/// What a bundle's version accepts ([`super::bundle`]), as an ECMA-262 pattern: a
/// semantic version 2.0.0 (numbers of at most 19 digits), white space
/// around it trimmed.
pub fn version_pattern() -> String {
    use keygate_core::domain::patterns::SPACE;
    let number = "(0|[1-9][0-9]{0,18})";
    let pre = "(0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*)";
    let build = "[0-9A-Za-z-]+";
    format!(r"^[{SPACE}]*{number}\.{number}\.{number}(-{pre}(\.{pre})*)?(\+{build}(\.{build})*)?[{SPACE}]*$")
}

/// A semantic version ([`super::bundle`]).
pub fn version() -> Object {
    string().pattern(Some(version_pattern())).max_length(Some(MAX_VERSION_LEN)).examples(["1.2.3"]).build()
}

/// An RFC 3339 date-time, such as `2030-01-01T00:00:00Z`.
pub fn date_time() -> Object {
    string().format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime))).build()
}

pub fn optional_app_id() -> Object {
    or_null(app_id())
}

pub fn optional_name() -> Object {
    or_null(name())
}

pub fn optional_mode() -> Object {
    let mut schema = or_null(mode());
    if let Some(values) = schema.enum_values.as_mut() {
        values.push(serde_json::Value::Null);
    }
    schema
}

pub fn optional_date_time() -> Object {
    or_null(date_time())
}

/// A list of at most `max` app ids, or `null`.
pub fn optional_app_ids(max: usize) -> Schema {
    let mut list = ArrayBuilder::new().items(app_id()).max_items(Some(max)).build();
    list.schema_type = SchemaType::from_iter([Type::Array, Type::Null]);
    Schema::Array(list)
}

/// A whole number in `min..=max`, sent as a query parameter.
pub fn integer(min: i64, max: i64) -> Object {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(min as f64))
        .maximum(Some(max as f64))
        .build()
}

/// A whole number in `min..=max`, or `null`.
pub fn optional_integer(min: i64, max: i64) -> Object {
    let mut schema = integer(min, max);
    schema.schema_type = SchemaType::from_iter([Type::Integer, Type::Null]);
    schema
}

/// A query parameter, for the `IntoParams` written by hand where a
/// parameter is required or described and its schema is built here (the
/// derive drops both when given `schema_with`).
pub fn query(
    name: &str,
    required: bool,
    schema: impl Into<utoipa::openapi::RefOr<Schema>>,
    description: &str,
) -> utoipa::openapi::path::Parameter {
    use utoipa::openapi::Required;
    use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Query)
        .required(if required { Required::True } else { Required::False })
        .description((!description.is_empty()).then(|| description.to_owned()))
        .schema(Some(schema))
        .build()
}

/// Raw bytes, such as a bundle's (`type: string, format: binary`).
#[derive(utoipa::ToSchema)]
#[schema(value_type = String, format = Binary)]
#[allow(dead_code, reason = "describes a body; never constructed")]
pub struct Binary(Vec<u8>);
