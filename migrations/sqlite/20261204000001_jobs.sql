-- The durable job queue (in the style of crates.io's background jobs): a job is inserted in
-- the same transaction as the change that causes it, and runs at least once. On PostgreSQL a
-- worker holds the job's row lock (FOR UPDATE SKIP LOCKED) while it runs, so several servers
-- on one database never run the same job at once, and a server that dies mid-run releases it
-- with its connection; on SQLite the one process marks it running. A failed run is tried
-- again at run_at (back-off per kind) until the kind's attempts are used up (state failed).
-- payload is JSON that never carries a secret (it names rows; sealed data stays in them).
CREATE TABLE jobs (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    kind         TEXT    NOT NULL,
    payload      TEXT    NOT NULL,
    state        TEXT    NOT NULL DEFAULT 'queued',  -- queued, running (SQLite), done, failed
    attempts     INTEGER  NOT NULL DEFAULT 0,
    run_at       TEXT    NOT NULL,
    last_error   TEXT,
    -- At most one queued job per key (a scheduled check of one connection, one day's expiry scan).
    dedupe_key   TEXT,
    created_at   TEXT    NOT NULL,
    updated_at   TEXT    NOT NULL
);
CREATE INDEX jobs_due ON jobs(kind, state, run_at, id);
CREATE UNIQUE INDEX jobs_dedupe ON jobs(dedupe_key) WHERE state IN ('queued', 'running');

-- Email goes through the queue: every message is kept here, sealed, with its delivery state
-- (outbox: no mail server, an owner passes it on; queued: waiting or being retried; sent;
-- failed: the attempts are used up).
ALTER TABLE outbox ADD COLUMN delivery TEXT NOT NULL DEFAULT 'outbox';
ALTER TABLE outbox ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE outbox ADD COLUMN last_error TEXT;
ALTER TABLE outbox ADD COLUMN sent_at TEXT;
ALTER TABLE admin_requests ADD COLUMN outbox_id INTEGER;

-- Health over time: since when a connection fails (NULL while it works), and when the
-- scheduled check runs next.
ALTER TABLE connection_health ADD COLUMN failing_since TEXT;
CREATE TABLE health_schedule (
    connection_id  INTEGER  PRIMARY KEY REFERENCES connections(id) ON DELETE CASCADE,
    next_check_at  TEXT    NOT NULL
);
CREATE INDEX health_schedule_due ON health_schedule(next_check_at);

-- Expiry warnings already sent: one row per object, threshold (days) and expiry, so each
-- warning goes out once even when the scan runs on several servers or again after a crash.
CREATE TABLE expiry_warnings (
    object_kind    TEXT    NOT NULL,   -- certificate, secret
    object_id      INTEGER  NOT NULL,
    expires_at     TEXT    NOT NULL,
    days           INTEGER  NOT NULL,
    created_at     TEXT    NOT NULL,
    PRIMARY KEY (object_kind, object_id, expires_at, days)
);

-- Signed webhooks (Standard Webhooks): subscriptions per environment, their signing secrets
-- sealed (place: webhooks, id, secret / previous_secret), one delivery per event and
-- subscription, and each attempt of it.
CREATE TABLE webhooks (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    environment_id   INTEGER  NOT NULL REFERENCES environments(id) ON DELETE CASCADE,
    url              TEXT    NOT NULL,
    description      TEXT    NOT NULL DEFAULT '',
    event_types      TEXT    NOT NULL,          -- JSON array; ["*"] is every type
    enabled          INTEGER  NOT NULL DEFAULT 1,
    disabled_reason  TEXT,
    sealed_secret    BLOB   NOT NULL,
    sealed_previous  BLOB,
    previous_until   TEXT,
    key_id           TEXT    NOT NULL,
    failing_since    TEXT,
    created_by       TEXT    NOT NULL,
    created_by_user  INTEGER,
    created_at       TEXT    NOT NULL,
    updated_at       TEXT    NOT NULL
);
CREATE INDEX webhooks_env ON webhooks(environment_id, enabled);
CREATE TABLE webhook_deliveries (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    webhook_id     INTEGER  NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE,
    message_id     TEXT    NOT NULL,            -- webhook-id: the same on every attempt
    event_type     TEXT    NOT NULL,
    payload        TEXT    NOT NULL,
    state          TEXT    NOT NULL DEFAULT 'pending',  -- pending, delivered, failed
    attempts       INTEGER  NOT NULL DEFAULT 0,
    last_status    INTEGER,
    last_error     TEXT,
    enqueued_at    TEXT    NOT NULL,
    delivered_at   TEXT,
    created_at     TEXT    NOT NULL,
    updated_at     TEXT    NOT NULL
);
CREATE INDEX webhook_deliveries_hook ON webhook_deliveries(webhook_id, id);
CREATE TABLE webhook_attempts (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id    INTEGER  NOT NULL REFERENCES webhook_deliveries(id) ON DELETE CASCADE,
    started_at     TEXT    NOT NULL,
    latency_ms     INTEGER  NOT NULL,
    status         INTEGER,
    error          TEXT,
    response_body  TEXT
);
CREATE INDEX webhook_attempts_delivery ON webhook_attempts(delivery_id, id);

-- Per environment: how often every connection is checked (hours; 0 = never), and how many days
-- before a certificate expires connvault starts its renewal by itself (0 = never).
ALTER TABLE environments ADD COLUMN check_every_hours INTEGER NOT NULL DEFAULT 6;
ALTER TABLE environments ADD COLUMN renew_days_before INTEGER NOT NULL DEFAULT 0;
