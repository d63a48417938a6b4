//! The `/scim/v2` router (filled in once the store's workspace users land).
