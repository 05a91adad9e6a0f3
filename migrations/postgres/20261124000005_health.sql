-- The last live check of each connection (a test, or later a token mint): whether it worked and
-- what went wrong, in plain words. Kept apart from the connection so that a check is not a change.
CREATE TABLE connection_health (
    connection_id  BIGINT  PRIMARY KEY REFERENCES connections(id) ON DELETE CASCADE,
    ok             BIGINT  NOT NULL,
    detail         TEXT    NOT NULL,
    advice         TEXT,
    source         TEXT    NOT NULL,   -- test, token
    checked_at     TEXT    NOT NULL
);
