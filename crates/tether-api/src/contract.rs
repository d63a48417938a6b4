//! The statuses every operation of the description can answer besides its
//! own: what the extractors, the key check and the body limits answer for
//! any request, added here once so no operation forgets one.

use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::{Content, OpenApi, Ref, RefOr, ResponseBuilder};

/// Adds the statuses any operation can answer and that it does not list.
pub(crate) fn complete(doc: &mut OpenApi) {
    for (path, item) in doc.paths.paths.iter_mut() {
        // The Bridge answers `{"detail"}`, the REST API `{"error"}`.
        let bridge = path.starts_with("/org/");
        let body = if bridge { "DetailBody" } else { "ErrorBody" };
        for (method, op) in [
            ("get", &mut item.get),
            ("post", &mut item.post),
            ("put", &mut item.put),
            ("patch", &mut item.patch),
            ("delete", &mut item.delete),
        ] {
            if let Some(op) = op {
                complete_operation(op, method, bridge, body);
            }
        }
    }
}

fn complete_operation(op: &mut Operation, method: &str, bridge: bool, body: &str) {
    let params = op.parameters.as_deref().unwrap_or_default();
    let in_path = params
        .iter()
        .any(|p| matches!(p.parameter_in, ParameterIn::Path));
    let has_body = op.request_body.is_some();
    let mut add = |status: &str, why: &str| {
        op.responses
            .responses
            .entry(status.to_owned())
            .or_insert_with(|| {
                RefOr::T(
                    ResponseBuilder::new()
                        .description(why)
                        .content(
                            "application/json",
                            Content::new(Some(Ref::from_schema_name(body))),
                        )
                        .build(),
                )
            });
    };
    add("401", "missing, invalid, expired or revoked API key");
    if bridge {
        add(
            "403",
            "the key is read-only (and this is not a GET) or limited to another Bridge app",
        );
    } else if method == "get" {
        add("403", "the key is limited to a Bridge app");
    } else {
        add("403", "the key is read-only, or limited to a Bridge app");
    }
    if !params.is_empty() || has_body {
        add("400", "a malformed path parameter, query or body");
    }
    if in_path {
        add("404", "no such resource");
    }
    if has_body {
        add("413", "the body is larger than the hub accepts");
        if !bridge {
            add("415", "the body is not `application/json`");
            add("422", "the body does not have the schema's shape");
        }
    }
}

/// The served description names the hub's own organisation in the Bridge's
/// paths: `tenant_slug` can only be it (another answers 404).
pub(crate) fn pin_tenant(doc: &mut OpenApi, tenant: &str) {
    for (path, item) in doc.paths.paths.iter_mut() {
        if !path.starts_with("/org/") {
            continue;
        }
        for op in [
            &mut item.get,
            &mut item.post,
            &mut item.put,
            &mut item.patch,
            &mut item.delete,
        ]
        .into_iter()
        .flatten()
        {
            for p in op.parameters.iter_mut().flatten() {
                if p.name == "tenant_slug" {
                    p.schema = Some(RefOr::T(
                        ObjectBuilder::new()
                            .schema_type(Type::String)
                            .enum_values(Some([tenant]))
                            .into(),
                    ));
                }
            }
        }
    }
}
