-- People across apps (see `people.rs` and README, "People across apps").
--
-- A person is the set of accounts, in any connections, that correlation
-- decided belong to one human. `key` is what correlation derived the person
-- from (`d:<external id>` for an account of the directory of record,
-- `e:<email>` for accounts that share an email and no directory account,
-- `a:<connection>:<external id>` for an account alone), so a person keeps
-- its id across re-correlations while what it is anchored on stays.
CREATE TABLE people (
    id            INTEGER PRIMARY KEY,
    key           TEXT NOT NULL UNIQUE,
    display_name  TEXT,
    primary_email TEXT,
    first_seen    INTEGER NOT NULL,
    last_seen     INTEGER NOT NULL
);
CREATE INDEX people_by_email ON people (primary_email COLLATE NOCASE);

-- Which person each account belongs to, and how it was linked:
-- `directory` (the account of the directory of record the person is
-- anchored on), `email`, `rule:<id>` or `manual`. Rewritten by every
-- correlation; `linked_at` kept while the account stays with its person.
CREATE TABLE person_accounts (
    connection_id       INTEGER NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    account_external_id TEXT NOT NULL,
    person_id           INTEGER NOT NULL REFERENCES people (id) ON DELETE CASCADE,
    method              TEXT NOT NULL,
    linked_at           INTEGER NOT NULL,
    PRIMARY KEY (connection_id, account_external_id)
) WITHOUT ROWID;
CREATE INDEX person_accounts_by_person ON person_accounts (person_id);

-- An operator's decisions, applied after every correlation: `link` puts
-- the account in the person whatever correlation says (one per account);
-- `unlink` keeps it out of that person. No foreign key to accounts: a
-- decision outlives the account disappearing for a while.
CREATE TABLE person_overrides (
    connection_id       INTEGER NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    account_external_id TEXT NOT NULL,
    person_id           INTEGER NOT NULL REFERENCES people (id) ON DELETE CASCADE,
    action              TEXT NOT NULL CHECK (action IN ('link', 'unlink')),
    actor               TEXT NOT NULL,
    at                  INTEGER NOT NULL,
    PRIMARY KEY (connection_id, account_external_id, action, person_id)
) WITHOUT ROWID;
CREATE UNIQUE INDEX person_overrides_one_link ON person_overrides (connection_id, account_external_id)
    WHERE action = 'link';

-- Rules the operator edits: `alias` (email `source` is also `target`),
-- `domain` (domain `source` is domain `target`), `username` (an app
-- account's username equals `target`, a pattern over a directory account:
-- `{local}`, `{email}`, `{username}`), optionally only for one connection
-- or one app.
CREATE TABLE correlation_rules (
    id            INTEGER PRIMARY KEY,
    kind          TEXT NOT NULL CHECK (kind IN ('alias', 'domain', 'username')),
    source        TEXT NOT NULL DEFAULT '',
    target        TEXT NOT NULL,
    connection_id INTEGER REFERENCES connections (id) ON DELETE CASCADE,
    app           TEXT,
    created_at    INTEGER NOT NULL
);

-- One row of settings: the directory of record (any connection), the
-- approved email domains (a JSON array; the directory's own domains are
-- approved besides), and after how many days without a sign-in an account
-- is dormant (NULL: not checked).
CREATE TABLE people_settings (
    id                   INTEGER PRIMARY KEY CHECK (id = 1),
    directory_connection INTEGER REFERENCES connections (id) ON DELETE SET NULL,
    approved_domains     TEXT NOT NULL DEFAULT '[]',
    dormant_days         INTEGER DEFAULT 90
);
INSERT INTO people_settings (id) VALUES (1);

-- What correlation found. One open finding per (kind, account); a re-run
-- that finds it again updates it, one that does not resolves it.
CREATE TABLE findings (
    id                  INTEGER PRIMARY KEY,
    kind                TEXT NOT NULL,
    connection_id       INTEGER NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    account_external_id TEXT NOT NULL,
    person_id           INTEGER,
    detail              TEXT,
    first_seen          INTEGER NOT NULL,
    last_seen           INTEGER NOT NULL,
    resolved_at         INTEGER
);
CREATE UNIQUE INDEX findings_one_open ON findings (kind, connection_id, account_external_id)
    WHERE resolved_at IS NULL;
CREATE INDEX findings_by_person ON findings (person_id) WHERE resolved_at IS NULL;
CREATE INDEX person_overrides_by_person ON person_overrides (person_id);
