-- The hub's SCIM 2.0 service provider (/scim/v2, tether-scim):
--
-- `scim_tokens`: the bearer tokens an IdP provisions with. Only the token's
-- SHA-256 is kept; `prefix` (the first characters) names it on the pages.
-- A revoked token stays listed. `created_by` is the actor that made it.
CREATE TABLE scim_tokens (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    name         TEXT NOT NULL,
    prefix       TEXT NOT NULL,
    token_hash   BLOB NOT NULL UNIQUE,
    created_by   TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER,
    revoked_at   INTEGER
);

-- The last provisioning requests (the store keeps the newest 200), for the
-- Identity page: what was asked, the answer's status and outcome, and the
-- token (NULL: no valid token).
CREATE TABLE scim_requests (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    at         INTEGER NOT NULL,
    method     TEXT NOT NULL,
    path       TEXT NOT NULL,
    status     INTEGER NOT NULL,
    outcome    TEXT NOT NULL,
    token_id   INTEGER,
    token_name TEXT
);

-- The SCIM attributes of a workspace user or group that have no column of
-- their own (phone numbers, every email beside the primary one, the
-- enterprise extension, ...): the resource's SCIM document as the provider
-- last wrote it. The columns of `workspace_users` / `workspace_groups` stay
-- authoritative for what they hold. Deleted with the user or group.
CREATE TABLE scim_attributes (
    kind        TEXT NOT NULL CHECK (kind IN ('user', 'group')),
    resource_id INTEGER NOT NULL,
    document    TEXT NOT NULL,
    PRIMARY KEY (kind, resource_id)
);

CREATE TRIGGER scim_attributes_user_deleted AFTER DELETE ON workspace_users
BEGIN
    DELETE FROM scim_attributes WHERE kind = 'user' AND resource_id = OLD.id;
END;

CREATE TRIGGER scim_attributes_group_deleted AFTER DELETE ON workspace_groups
BEGIN
    DELETE FROM scim_attributes WHERE kind = 'group' AND resource_id = OLD.id;
END;
