//! The contract between Tether's host and its connectors.
//!
//! This crate knows no provider, no database and no HTTP server. It defines:
//!
//! * [`model`]: the identity model every app is mapped into (accounts, groups,
//!   roles, licenses and the edges between them);
//! * [`source`]: the [`Source`] trait a connector implements. A source lists
//!   *one page of one stream* at a time; the host drives the paging, so it owns
//!   concurrency, checkpoints, rate limits and progress;
//! * [`registry`]: the [`ConnectorDescriptor`] each connector crate submits with
//!   `inventory::submit!`, and how the host finds them;
//! * [`error`]: the one error taxonomy every connector maps its app's errors into;
//! * [`http`]: helpers for connector authors: retries that honour `Retry-After`
//!   and rate-limit reset headers, a per-connection request budget, `Link`
//!   header parsing.
//! * [`pacing`]: the pacer the host uses to keep requests under the rate
//!   limits a connector declares.
//! * [`auth`]: how a connector obtains credentials without knowing where they
//!   are stored or how they are refreshed.
//! * [`text`]: the sanitiser every message copied from an app passes before
//!   it is stored or shown.
//! * [`provision`]: the [`Provisioner`] a connector supplies to perform
//!   provisioning tasks (create, suspend, add to a group) in its app.

pub mod auth;
pub mod error;
pub mod fuzz;
pub mod http;
pub mod model;
pub mod pacing;
pub mod provision;
pub mod registry;
pub mod source;
pub mod text;

pub use auth::{AuthKind, Credentials, StaticToken, TokenSource};
pub use error::SourceError;
pub use model::{
    Account, AccountKey, AccountStatus, AccountType, Edge, EdgeKind, Group, Holder, Kind, License,
    Record, Role, TypeKey,
};
pub use pacing::{Pacer, RateLimit};
pub use provision::{
    Applied, ProvisionError, Provisioner, ProvisioningSpec, TargetRef, Task, TaskAction,
};
pub use registry::{
    AuthMethod, ClientAuth, ClientCredentialsSpec, ConnectorContext, ConnectorDescriptor,
    GrantErrorKind, OAuth2Spec, SettingSpec, TokenAnswer, TokenDialect,
};
pub use source::{
    ConnectedIdentity, Cursor, Page, PageRequest, Removal, Source, StreamSpec, StreamState,
    SyncMode,
};

// Re-exported so connector crates use the same version the registry was built with.
pub use inventory;
