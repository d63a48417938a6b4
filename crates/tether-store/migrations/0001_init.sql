-- Tether's schema. Times are Unix milliseconds. Identities and edges are
-- keyed by the app's external ids and carry the run that first saw, last saw
-- and last changed them; `removed_at` is set when a completed run did not
-- see them, and cleared when they come back.

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value BLOB NOT NULL
);

CREATE TABLE connections (
    id                    INTEGER PRIMARY KEY,
    app                   TEXT NOT NULL,
    display_name          TEXT NOT NULL,
    settings              TEXT NOT NULL,
    auth_kind             TEXT NOT NULL,
    status                TEXT NOT NULL,
    status_reason         TEXT,
    connected_external_id TEXT,
    connected_name        TEXT,
    created_at            INTEGER NOT NULL,
    updated_at            INTEGER NOT NULL,
    UNIQUE (app, display_name)
);

CREATE TABLE connection_events (
    id            INTEGER PRIMARY KEY,
    connection_id INTEGER NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    at            INTEGER NOT NULL,
    from_status   TEXT,
    to_status     TEXT NOT NULL,
    reason        TEXT
);
CREATE INDEX connection_events_by_connection ON connection_events (connection_id, at);

-- One encrypted blob per connection (XChaCha20-Poly1305, the connection id
-- as associated data, so a blob cannot be moved to another connection).
CREATE TABLE credentials (
    connection_id INTEGER PRIMARY KEY REFERENCES connections (id) ON DELETE CASCADE,
    nonce         BLOB NOT NULL,
    ciphertext    BLOB NOT NULL,
    expires_at    INTEGER,
    updated_at    INTEGER NOT NULL
);

CREATE TABLE sync_runs (
    id               INTEGER PRIMARY KEY,
    connection_id    INTEGER NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    status           TEXT NOT NULL,
    started_at       INTEGER NOT NULL,
    finished_at      INTEGER,
    error_code       TEXT,
    error_message    TEXT,
    hold_reason      TEXT,
    requests         INTEGER NOT NULL DEFAULT 0,
    lease_owner      TEXT,
    lease_expires_at INTEGER
);
CREATE INDEX sync_runs_by_connection ON sync_runs (connection_id, id);
-- One run per connection at a time.
CREATE UNIQUE INDEX sync_runs_one_active ON sync_runs (connection_id)
    WHERE status IN ('in_progress', 'completing');

CREATE TABLE sync_run_kinds (
    run_id  INTEGER NOT NULL REFERENCES sync_runs (id) ON DELETE CASCADE,
    kind    TEXT NOT NULL,
    seen    INTEGER NOT NULL DEFAULT 0,
    created INTEGER NOT NULL DEFAULT 0,
    updated INTEGER NOT NULL DEFAULT 0,
    removed INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (run_id, kind)
);

CREATE TABLE sync_run_streams (
    run_id   INTEGER NOT NULL REFERENCES sync_runs (id) ON DELETE CASCADE,
    stream   TEXT NOT NULL,
    status   TEXT NOT NULL,
    reason   TEXT,
    pages    INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (run_id, stream)
);

-- The checkpoint: one row per cursor chain (a stream, a scope of a child
-- stream, or a partition). Written in the same transaction as the page it
-- follows, so a killed run resumes exactly after its last written page.
CREATE TABLE sync_work (
    run_id  INTEGER NOT NULL REFERENCES sync_runs (id) ON DELETE CASCADE,
    id      INTEGER NOT NULL,
    stream  TEXT NOT NULL,
    scope   TEXT,
    cursor  TEXT,
    done    INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (run_id, id)
);

CREATE TABLE accounts (
    connection_id INTEGER NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    external_id   TEXT NOT NULL,
    email         TEXT,
    username      TEXT,
    display_name  TEXT,
    given_name    TEXT,
    family_name   TEXT,
    status        TEXT NOT NULL,
    is_admin      INTEGER NOT NULL,
    last_login_at INTEGER,
    created_at    INTEGER,
    attributes    TEXT NOT NULL,
    hash          INTEGER NOT NULL,
    first_seen_run INTEGER NOT NULL,
    last_seen_run  INTEGER NOT NULL,
    changed_run    INTEGER NOT NULL,
    removed_at     INTEGER,
    PRIMARY KEY (connection_id, external_id)
) WITHOUT ROWID;

-- Groups, roles and licenses: the things an account can hold.
CREATE TABLE resources (
    connection_id      INTEGER NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    kind               TEXT NOT NULL,
    external_id        TEXT NOT NULL,
    name               TEXT NOT NULL,
    description        TEXT,
    parent_external_id TEXT,
    total_seats        INTEGER,
    used_seats         INTEGER,
    attributes         TEXT NOT NULL,
    hash               INTEGER NOT NULL,
    first_seen_run     INTEGER NOT NULL,
    last_seen_run      INTEGER NOT NULL,
    changed_run        INTEGER NOT NULL,
    removed_at         INTEGER,
    PRIMARY KEY (connection_id, kind, external_id)
) WITHOUT ROWID;

CREATE TABLE edges (
    connection_id       INTEGER NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    kind                TEXT NOT NULL,
    target_external_id  TEXT NOT NULL,
    account_external_id TEXT NOT NULL,
    role                TEXT,
    first_seen_run      INTEGER NOT NULL,
    last_seen_run       INTEGER NOT NULL,
    changed_run         INTEGER NOT NULL,
    removed_at          INTEGER,
    PRIMARY KEY (connection_id, kind, target_external_id, account_external_id)
) WITHOUT ROWID;
CREATE INDEX edges_by_account ON edges (connection_id, account_external_id);
