-- People and access: API keys and one-time links (SQLite).

CREATE TABLE api_keys (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    name                TEXT    NOT NULL,
    prefix              TEXT    NOT NULL UNIQUE,   -- the short visible part, e.g. cvk_3fa9c2d1
    key_hash            TEXT    NOT NULL,          -- SHA-256 of the whole key; the key itself is never stored
    grants              TEXT    NOT NULL,          -- JSON [{"environment": "DEV"|"*", "resource": "...", "access": "read"|"write"}]
    allowed_addresses   TEXT    NOT NULL DEFAULT '[]', -- JSON list of CIDRs; empty = anywhere
    expires_at          TEXT,
    last_used_at        TEXT,
    revoked_at          TEXT,
    created_by          TEXT    NOT NULL,
    created_by_user_id  INTEGER,
    created_at          TEXT    NOT NULL,
    updated_at          TEXT    NOT NULL
);

CREATE TABLE one_time_links (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    purpose      TEXT    NOT NULL,                 -- setup, admin_response, …
    token_hash   TEXT    NOT NULL UNIQUE,          -- SHA-256 of the token; the token is only in the link
    target_kind  TEXT,
    target_id    INTEGER,
    expires_at   TEXT    NOT NULL,
    used_at      TEXT,
    created_by   TEXT    NOT NULL,
    created_at   TEXT    NOT NULL,
    updated_at   TEXT    NOT NULL
);
