//! What the OpenAPI document says about every operation at once (SPEC §5): the error
//! answers any bearer-token call can give, the error answers of body and query
//! parsing, and the `Idempotency-Key` header of the creation calls. Applied to the
//! document after `utoipa-axum` has collected the routes, so no operation can miss it.

use utoipa::openapi::path::{Operation, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::{ContentBuilder, OpenApi, PathItem, Ref, RefOr, Required, ResponseBuilder};
use utoipa::{PartialSchema, ToSchema};

use super::error::ErrorBody;
use crate::model::ProjectSettings;

/// The `POST` calls that honour `Idempotency-Key` (SPEC §5: a repeat with the same key
/// within 24 h answers the first answer and writes nothing).
pub const IDEMPOTENT: &[&str] = &[
    "/api/v1/projects/{key}/customers",
    "/api/v1/projects/{key}/email-requests",
    "/api/v1/projects/{key}/signups",
    "/api/v1/projects/{key}/automation/customers",
    "/api/v1/customers",
    "/api/v1/projects/{key}/customers/{email}/resend",
    "/api/v1/resend-skipped",
];

/// Completes `doc`: error schemas, error answers and the idempotency header.
pub fn complete(doc: &mut OpenApi) {
    let components = doc.components.get_or_insert_with(Default::default);
    for (name, schema) in [
        (ErrorBody::name(), ErrorBody::schema()),
        (
            super::error::ErrorDetail::name(),
            super::error::ErrorDetail::schema(),
        ),
    ] {
        components
            .schemas
            .entry(name.into_owned())
            .or_insert(schema);
    }
    // `Project` is `{key, name}` with the settings flattened in (`allOf`); the settings'
    // own schema must then allow the other members, or every project answer violates
    // it. (Reading settings stays strict: that is serde's `deny_unknown_fields`.)
    if let Some(RefOr::T(Schema::Object(settings))) =
        components.schemas.get_mut(&*ProjectSettings::name())
    {
        settings.additional_properties = None;
    }
    for (path, item) in doc.paths.paths.iter_mut() {
        let idempotent = IDEMPOTENT.contains(&path.as_str());
        for (method, op) in operations(item) {
            document_errors(op, method);
            if idempotent && method == "post" {
                add_idempotency_key(op);
            }
        }
    }
}

/// The operations of one path, with their method names.
fn operations(item: &mut PathItem) -> Vec<(&'static str, &mut Operation)> {
    [
        ("get", item.get.as_mut()),
        ("put", item.put.as_mut()),
        ("post", item.post.as_mut()),
        ("delete", item.delete.as_mut()),
        ("patch", item.patch.as_mut()),
    ]
    .into_iter()
    .filter_map(|(m, op)| op.map(|op| (m, op)))
    .collect()
}

/// Adds the error answers an operation can give when absent.
fn document_errors(op: &mut Operation, method: &str) {
    let secured = op.security.as_ref().is_some_and(|s| !s.is_empty());
    let has_body = op.request_body.is_some();
    let mut add = |status: &str, description: &str| {
        op.responses
            .responses
            .entry(status.to_owned())
            .or_insert_with(|| error_response(description));
    };
    if secured {
        add("401", "No token, or a token that is not valid");
        add("403", "The token's role may not do this");
    }
    if has_body {
        add("400", "The body is malformed");
        add("413", "The body is too large");
        add("415", "The body has the wrong media type");
        add("422", "A field is not valid");
    }
    if method == "get" && secured {
        // Query strings are checked: an unknown or malformed parameter is 400 or 422.
        add("400", "A query parameter is malformed");
        add("422", "A query parameter is not valid");
    }
}

fn error_response(description: &str) -> RefOr<utoipa::openapi::Response> {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name(ErrorBody::name())))
                .build(),
        )
        .build()
        .into()
}

fn add_idempotency_key(op: &mut Operation) {
    let parameter = ParameterBuilder::new()
        .name("Idempotency-Key")
        .parameter_in(ParameterIn::Header)
        .required(Required::False)
        .description(Some(
            "A repeat with the same key within 24 h answers the first answer and writes nothing",
        ))
        .schema(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .max_length(Some(255)),
        ))
        .build();
    op.parameters
        .get_or_insert_with(Vec::new)
        .push(RefOr::T(parameter));
    op.responses
        .responses
        .entry("422".to_owned())
        .or_insert_with(|| error_response("A field or the Idempotency-Key is not valid"));
}
