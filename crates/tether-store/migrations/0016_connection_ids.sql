-- Connection ids are never reused. Without AUTOINCREMENT SQLite gives a new
-- row MAX(id) + 1, so deleting the newest connection would hand its id to
-- the next one, and whatever still names the old id (an audit entry, a
-- webhook consumer, an API client's bookmark) would name another connection.
-- (Rebuilding `connections` with AUTOINCREMENT would need foreign keys off,
-- which a migration's transaction cannot do.) This keeps the highest id ever
-- given; the store inserts connections with the next one.
CREATE TABLE connection_ids (
    singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
    last      INTEGER NOT NULL
);
INSERT INTO connection_ids (singleton, last)
    VALUES (1, COALESCE((SELECT MAX(id) FROM connections), 0));
-- Whatever inserts a connection, with an id or without, moves the mark.
CREATE TRIGGER connection_ids_high_water AFTER INSERT ON connections
BEGIN
    UPDATE connection_ids SET last = MAX(last, NEW.id) WHERE singleton = 1;
END;
