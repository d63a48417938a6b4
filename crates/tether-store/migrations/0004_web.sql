-- The web UI: one row of settings (the admin password's argon2 hash, how
-- long a sign-in lasts, and the generation that "force re-authentication"
-- bumps) and the signed-in browser sessions, stored by the SHA-256 of their id.
CREATE TABLE web_settings (
    id                    INTEGER PRIMARY KEY CHECK (id = 1),
    admin_password_hash   TEXT,
    session_duration_secs INTEGER NOT NULL DEFAULT 86400,
    generation            INTEGER NOT NULL DEFAULT 1,
    updated_at            INTEGER NOT NULL
);
INSERT INTO web_settings (id, updated_at) VALUES (1, 0);

CREATE TABLE web_sessions (
    id_hash    BLOB PRIMARY KEY,
    csrf_token TEXT NOT NULL,
    generation INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX web_sessions_expires_at ON web_sessions (expires_at);
