-- Edges that name their account by an alternate key (holder 1, 2, 3: email,
-- username, DN) until the run's completion resolves them to the account's
-- id (`resolve_account_keys`). Completion asks whether the run wrote any:
-- without this index that question scanned every edge of the connection
-- (a tenth of a second at 100k users, in every run, even for apps that
-- never name accounts so). Resolved edges are deleted, so the index holds
-- only what is unresolved.
CREATE INDEX edges_keyed ON edges (connection_id, last_seen_run) WHERE holder IN (1, 2, 3);
