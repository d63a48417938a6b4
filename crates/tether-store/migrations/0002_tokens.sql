-- The cross-process refresh lease of OAuth connections: while a process
-- refreshes a connection's tokens it holds this row, so no other process sends
-- the (possibly single-use, rotating) refresh token at the same time.
-- `fence` grows with every new holder; a holder releases the row only while
-- its owner and fence still match, so a holder whose lease ran out and was
-- taken over never releases the new holder's lease.
CREATE TABLE token_locks (
    connection_id INTEGER PRIMARY KEY REFERENCES connections (id) ON DELETE CASCADE,
    owner         TEXT NOT NULL,
    fence         INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL
);
