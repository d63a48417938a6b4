-- The hub's own workspace identity: the people who may use Tether (not the
-- identities Tether syncs from apps), their groups, and invitations.
--
-- `workspace_users.id` is never reused (AUTOINCREMENT): the audit log names
-- `user:<id>` and a SCIM client keeps ids. `user_name` and `email` are unique
-- without regard to ASCII case (SQLite's NOCASE; RFC 7643 §4.1.1 makes
-- userName case-insensitive). `version` is bumped on every change (the SCIM
-- service provider's ETag is `W/"<version>"`). `role` is what the user holds
-- directly; a group may grant more (`workspace_groups.role`), and the
-- effective role is the highest of them (owner > admin > viewer).
-- `source` says how the user came: `local` (first-run setup, the CLI),
-- `invited`, `scim` (provisioned by an IdP) or `sso`.
CREATE TABLE workspace_users (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    user_name       TEXT NOT NULL COLLATE NOCASE UNIQUE,
    email           TEXT COLLATE NOCASE UNIQUE,
    email_verified  INTEGER NOT NULL DEFAULT 0,
    display_name    TEXT,
    given_name      TEXT,
    family_name     TEXT,
    role            TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'viewer')),
    active          INTEGER NOT NULL DEFAULT 1,
    password_hash   TEXT,
    external_id     TEXT,
    source          TEXT NOT NULL CHECK (source IN ('local', 'invited', 'scim', 'sso')),
    version         INTEGER NOT NULL DEFAULT 1,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    last_sign_in_at INTEGER
);

CREATE TABLE workspace_groups (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    display_name TEXT NOT NULL COLLATE NOCASE UNIQUE,
    external_id  TEXT,
    -- The role the group grants its members, if any.
    role         TEXT CHECK (role IN ('owner', 'admin', 'viewer')),
    version      INTEGER NOT NULL DEFAULT 1,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
);

CREATE TABLE workspace_group_members (
    group_id INTEGER NOT NULL REFERENCES workspace_groups (id) ON DELETE CASCADE,
    user_id  INTEGER NOT NULL REFERENCES workspace_users (id) ON DELETE CASCADE,
    PRIMARY KEY (group_id, user_id)
);
CREATE INDEX workspace_group_members_user ON workspace_group_members (user_id);

-- A one-time link to set a password: an invitation of a new user, or a
-- password reset of an existing one (`purpose`). Only the token's SHA-256 is
-- stored. `invited_by` is the inviting user (NULL: the CLI).
CREATE TABLE workspace_invitations (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id     INTEGER NOT NULL REFERENCES workspace_users (id) ON DELETE CASCADE,
    token_hash  BLOB NOT NULL UNIQUE,
    purpose     TEXT NOT NULL CHECK (purpose IN ('invite', 'reset')),
    role        TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'viewer')),
    invited_by  INTEGER REFERENCES workspace_users (id) ON DELETE SET NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    accepted_at INTEGER
);
CREATE INDEX workspace_invitations_user ON workspace_invitations (user_id);

-- A browser session belongs to a user; deleting the user ends it.
ALTER TABLE web_sessions ADD COLUMN user_id INTEGER REFERENCES workspace_users (id) ON DELETE CASCADE;

-- The one admin password of earlier versions becomes the owner `admin`,
-- and the sessions it had signed in stay signed in as that owner.
INSERT INTO workspace_users (user_name, role, active, password_hash, source, created_at, updated_at)
SELECT 'admin', 'owner', 1, admin_password_hash, 'local', updated_at, updated_at
FROM web_settings WHERE id = 1 AND admin_password_hash IS NOT NULL;

UPDATE web_sessions SET user_id = (SELECT id FROM workspace_users WHERE user_name = 'admin');
DELETE FROM web_sessions WHERE user_id IS NULL;

-- The hash now lives with the owner.
UPDATE web_settings SET admin_password_hash = NULL;
