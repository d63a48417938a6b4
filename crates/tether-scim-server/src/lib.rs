//! The SCIM 2.0 service provider protocol (RFC 7643 and RFC 7644), with no
//! database and no provider in it.
//!
//! - [`filter`]: the filter language of RFC 7644 §3.4.2.2 (parsing and
//!   evaluation against a resource's JSON) and attribute paths.
//! - [`patch`]: PATCH operations (RFC 7644 §3.5.2), with the dialects of
//!   Okta and Microsoft Entra ID (see the crate README).
//! - [`query`]: list parameters (`filter`, `sortBy`, `sortOrder`,
//!   `startIndex`, `count`, `attributes`, `excludedAttributes`), sorting,
//!   paging and projection.
//! - [`schema`]: the User (with the enterprise extension) and Group schemas,
//!   and the `ServiceProviderConfig`, `ResourceTypes` and `Schemas`
//!   documents (RFC 7643 §5–7).
//! - [`resource`]: normalising and validating a resource against its schema,
//!   `meta`, ETags (`W/"<version>"`) and preconditions.
//! - [`error`]: SCIM error bodies (RFC 7644 §3.12).
//! - [`server`]: an axum router for `/scim/v2` over a [`server::Backend`]
//!   the host implements.

pub mod error;
pub mod filter;
pub mod patch;
pub mod query;
pub mod resource;
pub mod schema;
pub mod server;

pub use error::{ScimError, ScimType};

/// The media type of SCIM messages (RFC 7644 §3.1).
pub const CONTENT_TYPE: &str = "application/scim+json";

/// Message schema URNs (RFC 7644 §3.1 and following).
pub const LIST_RESPONSE: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
pub const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
pub const ERROR: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
pub const SEARCH_REQUEST: &str = "urn:ietf:params:scim:api:messages:2.0:SearchRequest";
