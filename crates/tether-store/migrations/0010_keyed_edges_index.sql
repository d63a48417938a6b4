-- Edges whose account is named by an alternate key (holder 1, 2, 3: email,
-- username, DN) are looked up at every run's completion to be resolved
-- (`identities::resolve_account_keys`). A partial index holds only those
-- rows, so a connection whose app names accounts by id (most) pays nothing
-- for the lookup, where it scanned every edge before.
CREATE INDEX edges_keyed ON edges (connection_id, last_seen_run) WHERE holder IN (1, 2, 3);
