-- OAuth authorization states: single use, short-lived, bound to the browser
-- session that started the flow and to the connection being made.
CREATE TABLE oauth_states (
    state_hash    BLOB PRIMARY KEY,
    connection_id INTEGER NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    session_hash  BLOB NOT NULL,
    purpose       TEXT NOT NULL,
    verifier_nonce BLOB,
    verifier      BLOB,
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    used_at       INTEGER
);
