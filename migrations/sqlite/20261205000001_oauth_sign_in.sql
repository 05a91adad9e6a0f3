-- Connect by signing in (OAuth 2.0 authorization code with PKCE). One row per sign-in that a
-- person started: the state's digest (the value itself travels only in the browser), the
-- connection and its version when it started, the person's session (by its digest), the PKCE
-- code verifier (sealed like a connection secret, bound to this table, the connection and its
-- environment), the redirect URI sent, and when it ends. Single use: `used_at` is set by the
-- first callback that presents it. The outcome is kept for the person who signed in, for the
-- connection page they land on (`result_*`).
CREATE TABLE oauth_states (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    state_hash        TEXT    NOT NULL UNIQUE,
    connection_id     INTEGER NOT NULL REFERENCES connections(id) ON DELETE CASCADE,
    connection_stamp  TEXT    NOT NULL,
    session_hash      TEXT    NOT NULL,
    user_id           INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    verifier          BLOB    NOT NULL,
    redirect_uri      TEXT    NOT NULL,
    expires_at        TEXT    NOT NULL,
    used_at           TEXT,
    result_ok         INTEGER,
    result_detail     TEXT,
    result_advice     TEXT,
    created_at        TEXT    NOT NULL
);
CREATE INDEX oauth_states_expiry ON oauth_states(expires_at);
