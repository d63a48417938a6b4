-- Webhooks: subscriptions an operator registers, and an outbox of deliveries.
-- A delivery is a row from the moment the event is published, so a process
-- killed with deliveries in flight resumes them at the next start (they are
-- due by `next_attempt_at`).
CREATE TABLE webhook_subscriptions (
    id            INTEGER PRIMARY KEY,
    url           TEXT NOT NULL,
    -- JSON array of event types, or ["*"].
    events        TEXT NOT NULL,
    -- The signing secret, sealed with the master key (bound to the id).
    secret_nonce  BLOB NOT NULL,
    secret        BLOB NOT NULL,
    active        INTEGER NOT NULL DEFAULT 1,
    created_at    INTEGER NOT NULL
);

CREATE TABLE webhook_deliveries (
    id              INTEGER PRIMARY KEY,
    subscription_id INTEGER NOT NULL REFERENCES webhook_subscriptions (id) ON DELETE CASCADE,
    -- The event's id (shared by the deliveries of one event).
    event_id        TEXT NOT NULL,
    event_type      TEXT NOT NULL,
    payload         TEXT NOT NULL,
    -- pending | delivered | failed
    status          TEXT NOT NULL DEFAULT 'pending',
    attempts        INTEGER NOT NULL DEFAULT 0,
    -- Unix ms; while an attempt is in flight, the end of its claim.
    next_attempt_at INTEGER,
    created_at      INTEGER NOT NULL,
    delivered_at    INTEGER
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_subscription ON webhook_deliveries (subscription_id, id);

CREATE TABLE webhook_attempts (
    id          INTEGER PRIMARY KEY,
    delivery_id INTEGER NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    at          INTEGER NOT NULL,
    status_code INTEGER,
    error       TEXT,
    duration_ms INTEGER NOT NULL
);
CREATE INDEX webhook_attempts_delivery ON webhook_attempts (delivery_id, id);
