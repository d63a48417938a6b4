-- Single sign-on by OpenID Connect for the hub's own users, as set on the
-- Identity settings page (the `[sso]` section of the config file wins over
-- it). One row at most. The client secret is sealed with the master key
-- like connection credentials (nonce + ciphertext, AAD `sso:client_secret`).
CREATE TABLE sso_settings (
    id                INTEGER PRIMARY KEY CHECK (id = 1),
    issuer            TEXT NOT NULL,
    client_id         TEXT NOT NULL,
    secret_nonce      BLOB NOT NULL,
    secret_ciphertext BLOB NOT NULL,
    label             TEXT NOT NULL,
    password_disabled INTEGER NOT NULL DEFAULT 0,
    updated_at        INTEGER NOT NULL
);

-- A sign-in started at the IdP and not back yet: the `state` parameter's
-- SHA-256 only, the ID token's expected nonce, the PKCE verifier and where
-- to go afterwards. Taken (deleted) on its one use; dead after expires_at.
CREATE TABLE sso_states (
    state_hash BLOB PRIMARY KEY,
    nonce      TEXT NOT NULL,
    verifier   TEXT NOT NULL,
    next       TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
