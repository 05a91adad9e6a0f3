-- connvault foundation schema (SQLite).
-- Every record has an integer id and created_at / updated_at as RFC 3339 UTC text
-- ("2026-11-24T07:43:00.123456Z"): the same representation on both backends, so values sort,
-- compare and round-trip identically.

CREATE TABLE environments (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    name                TEXT    NOT NULL,
    name_key            TEXT    NOT NULL UNIQUE,   -- lower(name): names match case-insensitively
    position            INTEGER NOT NULL,
    allow_dev_api_keys  INTEGER NOT NULL DEFAULT 0,
    created_at          TEXT    NOT NULL,
    updated_at          TEXT    NOT NULL
);

CREATE TABLE users (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    email            TEXT    NOT NULL,
    email_key        TEXT    NOT NULL UNIQUE,
    password_hash    TEXT,
    is_owner         INTEGER NOT NULL DEFAULT 0,
    status           TEXT    NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'deactivated')),
    last_sign_in_at  TEXT,
    created_at       TEXT    NOT NULL,
    updated_at       TEXT    NOT NULL
);

CREATE TABLE user_roles (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id         INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    environment_id  INTEGER NOT NULL REFERENCES environments(id) ON DELETE CASCADE,
    role            TEXT    NOT NULL CHECK (role IN ('administrator', 'developer', 'viewer')),
    created_at      TEXT    NOT NULL,
    updated_at      TEXT    NOT NULL,
    UNIQUE (user_id, environment_id)
);

CREATE TABLE sessions (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    token_hash    TEXT    NOT NULL UNIQUE,        -- SHA-256 of the cookie value; the value itself is never stored
    user_id       INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    client_addr   TEXT,
    expires_at    TEXT    NOT NULL,
    last_seen_at  TEXT    NOT NULL,
    created_at    TEXT    NOT NULL,
    updated_at    TEXT    NOT NULL
);
CREATE INDEX sessions_user ON sessions(user_id);

CREATE TABLE audit_events (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    actor_kind      TEXT    NOT NULL,             -- user, api_key, operator, system, link
    actor_id        INTEGER,
    actor_label     TEXT    NOT NULL,
    action          TEXT    NOT NULL,             -- e.g. connection.create
    outcome         TEXT    NOT NULL DEFAULT 'success',
    environment_id  INTEGER,
    environment     TEXT,                         -- name at the time of the event
    object_kind     TEXT,
    object_name     TEXT,
    detail          TEXT    NOT NULL DEFAULT '{}', -- JSON; never a secret value
    client_addr     TEXT,
    created_at      TEXT    NOT NULL,
    updated_at      TEXT    NOT NULL
);
CREATE INDEX audit_events_env ON audit_events(environment_id, id);
CREATE INDEX audit_events_updated ON audit_events(updated_at, id);

-- Append-only: the database itself refuses to change or remove an audit event.
CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END;
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END;

-- The keyring's check value: a known plaintext sealed under the key that sealed everything
-- else. A server started with any other key refuses to start.
CREATE TABLE keyring_check (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    key_id      TEXT    NOT NULL,
    check_blob  BLOB    NOT NULL,
    created_at  TEXT    NOT NULL,
    updated_at  TEXT    NOT NULL
);

CREATE TABLE connections (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    environment_id  INTEGER NOT NULL REFERENCES environments(id),
    name            TEXT    NOT NULL,
    name_key        TEXT    NOT NULL,
    provider        TEXT    NOT NULL,
    settings        TEXT    NOT NULL DEFAULT '{}', -- JSON, non-secret only
    created_by      TEXT    NOT NULL,
    updated_by      TEXT    NOT NULL,
    created_at      TEXT    NOT NULL,
    updated_at      TEXT    NOT NULL,
    UNIQUE (environment_id, name_key)
);
CREATE INDEX connections_env_provider ON connections(environment_id, provider);
CREATE INDEX connections_updated ON connections(updated_at, id);

-- Sealed secret fields. The blob's associated data binds it to this table, the owning
-- connection id, the field name, the environment id and the key id.
CREATE TABLE connection_secrets (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    connection_id  INTEGER NOT NULL REFERENCES connections(id) ON DELETE CASCADE,
    field          TEXT    NOT NULL,
    blob           BLOB    NOT NULL,
    key_id         TEXT    NOT NULL,
    set_by         TEXT    NOT NULL,
    created_at     TEXT    NOT NULL,
    updated_at     TEXT    NOT NULL,
    UNIQUE (connection_id, field)
);
CREATE INDEX connection_secrets_key ON connection_secrets(key_id);
