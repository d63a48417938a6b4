-- A pending sign-in's PKCE verifier is a secret for its ten minutes: it is
-- sealed with the master key like an OAuth connect flow's (nonce +
-- ciphertext, AAD the state's SHA-256), no longer kept in clear. Pending
-- sign-ins are short-lived and worth nothing after an upgrade: the table is
-- made anew, and a sign-in started before the upgrade starts again.
DROP TABLE sso_states;
CREATE TABLE sso_states (
    state_hash     BLOB PRIMARY KEY,
    nonce          TEXT NOT NULL,
    verifier_nonce BLOB NOT NULL,
    verifier       BLOB NOT NULL,
    next           TEXT NOT NULL,
    created_at     INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL
);
