-- Edges name their kind by a small integer instead of its text: the kind is
-- part of the primary key and of the account index, so every edge carried
-- its kind's name ("license_assignment") twice. The codes are fixed here and
-- in `identities::edge_kind_code`: 1 membership, 2 role_assignment,
-- 3 license_assignment. (`cargo xtask bench sync`: the smaller index entries
-- make writing edges measurably cheaper.)
--
-- Edges are written by multi-row upserts (`identities::upsert_edges`, as
-- INSERT OR FAIL). SQLite keeps a statement journal, a copy of every page a
-- statement touches, for any multi-row statement that may abort half-way;
-- an immediate foreign key or a NOT NULL column changed by the DO UPDATE makes
-- it one. So the connection foreign key is deferred (checked at commit; the
-- cascade on delete is unchanged) and the two run columns the upsert updates
-- carry no NOT NULL (the upsert always writes them). Without the journal,
-- writing edges takes about half the time.

CREATE TABLE edges_new (
    connection_id       INTEGER NOT NULL REFERENCES connections (id) ON DELETE CASCADE
                            DEFERRABLE INITIALLY DEFERRED,
    kind                INTEGER NOT NULL,
    target_external_id  TEXT NOT NULL,
    account_external_id TEXT NOT NULL,
    role                TEXT,
    first_seen_run      INTEGER NOT NULL,
    last_seen_run       INTEGER,
    changed_run         INTEGER,
    removed_at          INTEGER,
    PRIMARY KEY (connection_id, kind, target_external_id, account_external_id)
) WITHOUT ROWID;

INSERT INTO edges_new
SELECT connection_id,
       CASE kind WHEN 'membership' THEN 1 WHEN 'role_assignment' THEN 2 WHEN 'license_assignment' THEN 3 END,
       target_external_id, account_external_id, role, first_seen_run, last_seen_run, changed_run, removed_at
FROM edges;

DROP TABLE edges;
ALTER TABLE edges_new RENAME TO edges;
-- The index of edges by account is per connection now, a partial index
-- `edges_by_account_<connection id>` built after the connection's first
-- completed sync (see `Store::ensure_account_index`): a first sync then
-- appends to the primary key only, and the index is built by one sort
-- instead of millions of random inserts. `Store::open` builds it for every
-- connection that has completed a sync, so upgraded databases get theirs.
