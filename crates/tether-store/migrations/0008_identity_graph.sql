-- The identity graph fits every directory (see ARCHITECTURE.md, "The
-- identity graph"):
--
-- * Records carry a resource type (`rtype`): a connection may hold several
--   types of one base kind (a Bridge app's `team` and `project` groups). The
--   empty string is the kind's default type. Groups, roles and licenses are
--   keyed by (kind, type, external id); accounts stay keyed by external id.
-- * Accounts carry their type (human, service, guest), every email the app
--   knows (a JSON array, NULL when there is none besides `email`) and a DN.
-- * An edge's holder is an account or a group (`holder`: 0 an account by id,
--   1/2/3 an account by email/username/DN that the store has not resolved to
--   an id yet, 4 a group), of a type (`holder_type`), and its target has a
--   type (`target_type`). An edge is keyed by its kind, both ends and its
--   scope ('' for none); its role, `inherited` flag and attributes are facets.
--
-- Every existing row is kept: resources and edges get the default types, an
-- account holder by id, no scope, direct. The run columns keep the nullable
-- shape of migration 0007 (no statement journal), and so do the new facets.

CREATE TABLE resources_new (
    connection_id      INTEGER NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    kind               TEXT NOT NULL,
    rtype              TEXT NOT NULL,
    external_id        TEXT NOT NULL,
    name               TEXT NOT NULL,
    description        TEXT,
    parent_external_id TEXT,
    total_seats        INTEGER,
    used_seats         INTEGER,
    attributes         TEXT NOT NULL,
    hash               INTEGER NOT NULL,
    first_seen_run     INTEGER NOT NULL,
    last_seen_run      INTEGER NOT NULL,
    changed_run        INTEGER NOT NULL,
    removed_at         INTEGER,
    PRIMARY KEY (connection_id, kind, rtype, external_id)
) WITHOUT ROWID;

INSERT INTO resources_new
SELECT connection_id, kind, '', external_id, name, description, parent_external_id, total_seats, used_seats,
       attributes, hash, first_seen_run, last_seen_run, changed_run, removed_at
FROM resources;
DROP TABLE resources;
ALTER TABLE resources_new RENAME TO resources;

ALTER TABLE accounts ADD COLUMN rtype TEXT;
ALTER TABLE accounts ADD COLUMN account_type TEXT;
ALTER TABLE accounts ADD COLUMN emails TEXT;
ALTER TABLE accounts ADD COLUMN dn TEXT;

CREATE TABLE edges_new (
    connection_id       INTEGER NOT NULL REFERENCES connections (id) ON DELETE CASCADE
                            DEFERRABLE INITIALLY DEFERRED,
    kind                INTEGER NOT NULL,
    target_type         TEXT NOT NULL,
    target_external_id  TEXT NOT NULL,
    holder              INTEGER NOT NULL,
    holder_type         TEXT NOT NULL,
    holder_external_id  TEXT NOT NULL,
    scope               TEXT NOT NULL,
    role                TEXT,
    inherited           INTEGER,
    attributes          TEXT,
    first_seen_run      INTEGER NOT NULL,
    last_seen_run       INTEGER,
    changed_run         INTEGER,
    removed_at          INTEGER,
    PRIMARY KEY (connection_id, kind, target_type, target_external_id, holder, holder_type, holder_external_id, scope)
) WITHOUT ROWID;

INSERT INTO edges_new
SELECT connection_id, kind, '', target_external_id, 0, '', account_external_id, '', role, 0, NULL,
       first_seen_run, last_seen_run, changed_run, removed_at
FROM edges;
DROP TABLE edges;
ALTER TABLE edges_new RENAME TO edges;
-- Dropping the old table dropped the per-connection indexes by account;
-- `Store::open` rebuilds them on `holder_external_id` for every connection
-- that has completed a sync.
