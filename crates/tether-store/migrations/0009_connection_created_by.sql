-- Who created a connection: the web admin, an API key, the CLI. NULL for
-- connections created before this migration (shown as "unknown").
ALTER TABLE connections ADD COLUMN created_by TEXT;
