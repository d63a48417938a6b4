-- The audit log: who did what and when. Append-only (the triggers refuse
-- updates and deletes); nothing is ever deleted from it (no retention yet).
--
-- `actor` is what the log shows (`api-key:3 (ci)`), `actor_id` the stable
-- part filters match (`api-key:3`), `actor_kind` its kind (`web`,
-- `api-key`, `cli`, `system`, `bridge`). The connection is kept by id and by
-- its name at the time, without a foreign key: an entry outlives a purged
-- connection. `target` names what was acted on besides the connection (a run
-- id, an API key's prefix, a setting's key). `details` is a JSON object of
-- non-secret fields only; `outcome` says how it ended (`ok`, `held`,
-- `failed`, ...).
CREATE TABLE audit_log (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    at              INTEGER NOT NULL,
    actor           TEXT NOT NULL,
    actor_id        TEXT NOT NULL,
    actor_kind      TEXT NOT NULL,
    action          TEXT NOT NULL,
    connection_id   INTEGER,
    connection_name TEXT,
    target          TEXT,
    details         TEXT NOT NULL DEFAULT '{}',
    outcome         TEXT NOT NULL
);

CREATE INDEX audit_log_at ON audit_log (at, id);
CREATE INDEX audit_log_connection ON audit_log (connection_id, id);

CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only');
END;

CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only');
END;
