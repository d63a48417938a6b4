-- REST API keys. Only a SHA-256 hash of each key is kept (keys carry 256
-- random bits, so a fast hash is enough); `prefix` is the non-secret start of
-- the key (`tth_ab12cd34`) so an operator can tell keys apart.
CREATE TABLE api_keys (
    id           INTEGER PRIMARY KEY,
    name         TEXT NOT NULL,
    prefix       TEXT NOT NULL,
    hash         BLOB NOT NULL UNIQUE,
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER,
    revoked_at   INTEGER
);
