-- What an incremental run created and updated, by type label (as in
-- sync_run_kinds), counted as it writes by temporary triggers on the
-- writer's connection (`runs::count_changes`). Completion reads these for
-- the kinds the run spared from removal by absence, instead of scanning
-- every record of those kinds (a tenth of a second at 100k users, in a
-- run that changed a few thousand). Rows go when their run completes.
CREATE TABLE sync_run_changes (
    run_id  INTEGER NOT NULL REFERENCES sync_runs (id) ON DELETE CASCADE,
    kind    TEXT NOT NULL,
    created INTEGER NOT NULL DEFAULT 0,
    updated INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (run_id, kind)
) WITHOUT ROWID;
