-- The Bridge: apps pushed to by connectors written by others (Iden's Bridge
-- protocol). Each Bridge app is a connection (app key `bridge`), so its
-- records, runs and history are those of any connection; these tables hold
-- what the protocol adds.

-- `definition` is the app whose resource types this app uses: itself, or
-- (for an app made with `clone_from`) the definition of the app it cloned.
CREATE TABLE bridge_apps (
    id            TEXT PRIMARY KEY,
    connection_id INTEGER NOT NULL UNIQUE REFERENCES connections (id) ON DELETE CASCADE,
    name          TEXT NOT NULL,
    definition    TEXT NOT NULL,
    cloned_from   TEXT,
    created_at    INTEGER NOT NULL
);
CREATE INDEX bridge_apps_by_definition ON bridge_apps (definition);

-- Resource types of a definition. `type` is account, group or license, or
-- membership / assignment for the companion type of a group / license type
-- (`companion_of` names it). Definitions outlive a deleted app's connection
-- while clones use them, so there is no foreign key to bridge_apps.
CREATE TABLE bridge_resource_types (
    id           TEXT PRIMARY KEY,
    definition   TEXT NOT NULL,
    slug         TEXT NOT NULL,
    name         TEXT NOT NULL,
    type         TEXT NOT NULL,
    companion_of TEXT,
    created_at   INTEGER NOT NULL,
    UNIQUE (definition, slug)
);

-- A sync session is a sync run of the app's connection.
CREATE TABLE bridge_sessions (
    id         TEXT PRIMARY KEY,
    app_id     TEXT NOT NULL REFERENCES bridge_apps (id) ON DELETE CASCADE,
    run_id     INTEGER NOT NULL UNIQUE REFERENCES sync_runs (id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL
);

-- API keys may expire, be limited to one Bridge app, or be read-only.
ALTER TABLE api_keys ADD COLUMN expires_at INTEGER;
ALTER TABLE api_keys ADD COLUMN bridge_app TEXT;
ALTER TABLE api_keys ADD COLUMN read_only INTEGER NOT NULL DEFAULT 0;
