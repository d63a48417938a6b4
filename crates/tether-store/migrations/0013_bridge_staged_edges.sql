-- The memberships of Bridge pages already answered, waiting to be merged
-- into `edges` (see `bridge.rs`, "Staged memberships"). A page's records are
-- written when it is pushed; its memberships land here in the same
-- transaction and are merged, many pages at a time, moments later: a merge
-- of many pages writes each edge-index page it touches once, where writing
-- every page on its own rewrote the same thousand index pages each time.
--
-- A row outlives a crash: the next writer (or `Store::open`) merges it.
-- Every transition that ends a session's pushes (complete, abandon, a newer
-- session) merges the session's rows first.
CREATE TABLE bridge_staged_edges (
    seq           INTEGER PRIMARY KEY,
    connection_id INTEGER NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    run_id        INTEGER NOT NULL,
    -- JSON: the page's memberships (compact, see `StagedEdge`), the holders
    -- pushed again in this session whose earlier memberships go first, and
    -- names from membership refs for groups not pushed yet.
    body          TEXT NOT NULL
);
