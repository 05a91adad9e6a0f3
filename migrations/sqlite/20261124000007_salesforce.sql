-- Salesforce connected apps. The certificates are public; their private keys are sealed in
-- connection_secrets (fields private_key and pending_private_key), never here.
-- state: active (signs assertions), pending (a rotation that has not worked yet), retired.
CREATE TABLE salesforce_certificates (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    connection_id    INTEGER NOT NULL REFERENCES connections(id) ON DELETE CASCADE,
    state            TEXT    NOT NULL CHECK (state IN ('active', 'pending', 'retired')),
    origin           TEXT    NOT NULL CHECK (origin IN ('issued', 'uploaded')),
    certificate_pem  TEXT    NOT NULL,
    fingerprint      TEXT    NOT NULL,   -- SHA-256 of the DER, hex
    bits             INTEGER NOT NULL,
    not_after        TEXT    NOT NULL,
    created_by       TEXT    NOT NULL,
    created_at       TEXT    NOT NULL,
    updated_at       TEXT    NOT NULL
);
CREATE INDEX salesforce_certificates_connection ON salesforce_certificates(connection_id, state);
CREATE INDEX salesforce_certificates_expiry ON salesforce_certificates(state, not_after);

-- Requests to a Salesforce admin. The link itself is a one_time_links row (purpose
-- salesforce_admin, target the connection); only its digest is stored.
CREATE TABLE salesforce_requests (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    connection_id   INTEGER NOT NULL REFERENCES connections(id) ON DELETE CASCADE,
    certificate_id  INTEGER REFERENCES salesforce_certificates(id) ON DELETE SET NULL,
    admin_email     TEXT    NOT NULL,
    state           TEXT    NOT NULL CHECK (state IN ('open', 'answered', 'cancelled', 'replaced')),
    requested_by    TEXT    NOT NULL,
    expires_at      TEXT    NOT NULL,
    answered_at     TEXT,
    created_at      TEXT    NOT NULL,
    updated_at      TEXT    NOT NULL
);
CREATE INDEX salesforce_requests_connection ON salesforce_requests(connection_id, state);

-- The session the JWT flow last produced (the token itself is sealed in connection_secrets as
-- access_token) and who it acts as, from userinfo.
CREATE TABLE salesforce_sessions (
    connection_id   INTEGER PRIMARY KEY REFERENCES connections(id) ON DELETE CASCADE,
    instance_url    TEXT    NOT NULL,
    org_id          TEXT,
    user_id         TEXT,
    username        TEXT,
    obtained_at     TEXT    NOT NULL,
    updated_at      TEXT    NOT NULL
);
