-- The broker's and the proxy's per-minute usage, counted in memory and added here every second
-- by each server (so a crash loses at most a second of it); the usage.audit job turns finished
-- minutes into one audit event per kind, caller, integration and minute, and deletes them.
CREATE TABLE usage_counts (
    kind            TEXT    NOT NULL,   -- token.use, proxy.use
    caller          TEXT    NOT NULL,
    environment_id  BIGINT  NOT NULL,
    environment     TEXT    NOT NULL,
    integration     TEXT    NOT NULL,
    minute          BIGINT  NOT NULL,   -- minutes since the Unix epoch
    n               BIGINT  NOT NULL,
    PRIMARY KEY (kind, caller, environment_id, integration, minute)
);
