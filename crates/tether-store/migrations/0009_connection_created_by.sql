-- Who created a connection: the web admin, an API key, the CLI. NULL for
-- connections created before this migration (shown as "unknown").
ALTER TABLE connections ADD COLUMN created_by TEXT;

-- What the OAuth grant said besides the tokens (Slack's `team` and
-- `enterprise`; no secrets): a JSON object, and the scopes granted: a JSON
-- array. Both handed to the connector.
ALTER TABLE connections ADD COLUMN token_fields TEXT NOT NULL DEFAULT '{}';
ALTER TABLE connections ADD COLUMN granted_scopes TEXT NOT NULL DEFAULT '[]';
