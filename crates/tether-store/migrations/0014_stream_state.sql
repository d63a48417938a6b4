-- Incremental sync (see ARCHITECTURE.md, "Incremental sync").
--
-- A run's mode: `full` (every stream listed from the start, everything not
-- seen marked removed) or `incremental` (streams declared incremental list
-- their changes since their stored state).
ALTER TABLE sync_runs ADD COLUMN mode TEXT NOT NULL DEFAULT 'full';

-- Per connection and (stream, scope): the state the last completed listing
-- returned (a delta link, a sync token). Replaced only when a run completes.
-- `scope` is '' for a stream without one.
CREATE TABLE stream_states (
    connection_id INTEGER NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    stream        TEXT NOT NULL,
    scope         TEXT NOT NULL,
    state         TEXT NOT NULL,
    PRIMARY KEY (connection_id, stream, scope)
) WITHOUT ROWID;

-- Per connection: the pages of its last completed run that carried a
-- validator (an ETag), by (stream, scope, cursor); `cursor` is '' for a
-- first page. What a `not_modified` answer to the validator stands for: the
-- next cursor, the scopes and partitions the page opened, and the keys of
-- the records and edges it yielded (JSON, see `stream_state.rs`).
CREATE TABLE stream_pages (
    connection_id INTEGER NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    stream        TEXT NOT NULL,
    scope         TEXT NOT NULL,
    cursor        TEXT NOT NULL,
    validator     TEXT NOT NULL,
    next_cursor   TEXT,
    scopes        TEXT NOT NULL,
    partitions    TEXT NOT NULL,
    keys          TEXT NOT NULL,
    PRIMARY KEY (connection_id, stream, scope, cursor)
) WITHOUT ROWID;

-- What a run in progress will store when it completes: written with the
-- page that produced it, in the writer's transaction, so a killed run
-- resumes with it; dropped when the run ends without completing.
CREATE TABLE sync_run_states (
    run_id INTEGER NOT NULL REFERENCES sync_runs (id) ON DELETE CASCADE,
    stream TEXT NOT NULL,
    scope  TEXT NOT NULL,
    state  TEXT,
    PRIMARY KEY (run_id, stream, scope)
) WITHOUT ROWID;

CREATE TABLE sync_run_pages (
    run_id      INTEGER NOT NULL REFERENCES sync_runs (id) ON DELETE CASCADE,
    stream      TEXT NOT NULL,
    scope       TEXT NOT NULL,
    cursor      TEXT NOT NULL,
    validator   TEXT NOT NULL,
    next_cursor TEXT,
    scopes      TEXT NOT NULL,
    partitions  TEXT NOT NULL,
    keys        TEXT NOT NULL,
    PRIMARY KEY (run_id, stream, scope, cursor)
) WITHOUT ROWID;

-- The (stream, scope) listings whose stored state the app refused in this
-- run (`SourceError::StateExpired`): listed again from the start.
CREATE TABLE sync_run_expired (
    run_id INTEGER NOT NULL REFERENCES sync_runs (id) ON DELETE CASCADE,
    stream TEXT NOT NULL,
    scope  TEXT NOT NULL,
    PRIMARY KEY (run_id, stream, scope)
) WITHOUT ROWID;
