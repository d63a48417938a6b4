-- Edges name their kind by a small integer instead of its text: the kind is
-- part of the primary key and of the account index, so every edge carried
-- its kind's name ("license_assignment") twice. The codes are fixed here and
-- in `identities::edge_kind_code`: 1 membership, 2 role_assignment,
-- 3 license_assignment. (`cargo xtask bench sync`: the smaller index entries
-- make writing edges measurably cheaper.)

CREATE TABLE edges_new (
    connection_id       INTEGER NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    kind                INTEGER NOT NULL,
    target_external_id  TEXT NOT NULL,
    account_external_id TEXT NOT NULL,
    role                TEXT,
    first_seen_run      INTEGER NOT NULL,
    last_seen_run       INTEGER NOT NULL,
    changed_run         INTEGER NOT NULL,
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
CREATE INDEX edges_by_account ON edges (connection_id, account_external_id);
