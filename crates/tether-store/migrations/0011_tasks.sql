-- Provisioning tasks (issue 8): writes the hub asks a connector to make in
-- its app (native connectors run them through the hub's runner; a Bridge
-- app's connector polls its pending tasks and reports the outcome).

CREATE TABLE tasks (
    -- A UUID.
    id                  TEXT PRIMARY KEY,
    connection_id       INTEGER NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    action              TEXT NOT NULL,
    resource_type       TEXT,
    account_external_id TEXT,
    -- A `TargetRef` as JSON, for membership actions.
    target              TEXT,
    payload             TEXT NOT NULL,
    -- Unix ms; the task is `scheduled` until then.
    execute_after       INTEGER,
    idempotency_key     TEXT NOT NULL,
    -- scheduled | pending | running | completed | failed | cancelled
    status              TEXT NOT NULL,
    attempts            INTEGER NOT NULL DEFAULT 0,
    -- When a pending task may next be claimed (after a retryable failure).
    next_attempt_at     INTEGER,
    result              TEXT,
    error_code          TEXT,
    error_message       TEXT,
    created_by          TEXT,
    lease_owner         TEXT,
    lease_expires_at    INTEGER,
    created_at          INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL,
    UNIQUE (connection_id, idempotency_key)
);
CREATE INDEX tasks_by_connection ON tasks (connection_id, status, created_at);
CREATE INDEX tasks_open ON tasks (status, next_attempt_at)
    WHERE status IN ('scheduled', 'pending', 'running');

-- Every transition of a task.
CREATE TABLE task_events (
    id       INTEGER PRIMARY KEY,
    task_id  TEXT NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    at       INTEGER NOT NULL,
    status   TEXT NOT NULL,
    attempt  INTEGER NOT NULL,
    code     TEXT,
    message  TEXT
);
CREATE INDEX task_events_by_task ON task_events (task_id, id);

-- The password of a create_account or reset_password task, sealed with the
-- master key (the task id as associated data); deleted once the task is
-- terminal.
CREATE TABLE task_secrets (
    task_id    TEXT PRIMARY KEY REFERENCES tasks (id) ON DELETE CASCADE,
    nonce      BLOB NOT NULL,
    ciphertext BLOB NOT NULL
);

-- When a task last wrote the row (Unix ms). A sync run that started before
-- then neither overwrites nor revives the row, nor marks it removed.
ALTER TABLE accounts ADD COLUMN provisioned_at INTEGER;
ALTER TABLE resources ADD COLUMN provisioned_at INTEGER;
ALTER TABLE edges ADD COLUMN provisioned_at INTEGER;

-- Provisioning is off until an operator enables it on the connection.
ALTER TABLE connections ADD COLUMN provisioning_enabled INTEGER NOT NULL DEFAULT 0;
