-- Integrations an app publishes into an environment, and the connection each is bound to.
-- A binding is the integration's connection_id: one connection per integration per environment.
-- Deleting a bound connection is refused here too (RESTRICT); the application unbinds first when
-- the user forces the delete.
CREATE TABLE integrations (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    environment_id  INTEGER NOT NULL REFERENCES environments(id),
    name            TEXT    NOT NULL,
    name_key        TEXT    NOT NULL,
    provider        TEXT    NOT NULL,
    objects         TEXT    NOT NULL DEFAULT '[]',  -- JSON array of object names
    description     TEXT,
    version         TEXT,
    connection_id   INTEGER REFERENCES connections(id) ON DELETE RESTRICT,
    bound_by        TEXT,
    bound_at        TEXT,
    created_by      TEXT    NOT NULL,
    updated_by      TEXT    NOT NULL,
    created_at      TEXT    NOT NULL,
    updated_at      TEXT    NOT NULL,
    UNIQUE (environment_id, name_key)
);
CREATE INDEX integrations_connection ON integrations(connection_id);
CREATE INDEX integrations_updated ON integrations(updated_at, id);
