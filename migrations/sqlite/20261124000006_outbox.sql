-- Emails that were not sent because no SMTP server is configured (CONNVAULT_SMTP_URL unset):
-- an owner reads them at /outbox and passes them on. The whole message is sealed (its place:
-- table outbox, this row's id, field eml, environment 0) because it carries a one-time link;
-- its text part is sealed beside it (field text) for the page. Recipient, subject, size and the
-- attachments' file names (a JSON array) stay readable, so that the list needs no unsealing.
CREATE TABLE outbox (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    to_address   TEXT    NOT NULL,
    subject      TEXT    NOT NULL,
    attachments  TEXT    NOT NULL DEFAULT '[]',
    size         INTEGER NOT NULL,
    sealed_eml   BLOB    NOT NULL,
    sealed_text  BLOB    NOT NULL,
    key_id       TEXT    NOT NULL,
    created_at   TEXT    NOT NULL,
    updated_at   TEXT    NOT NULL
);
-- The updated_since feed (newest first and since_id are served by the primary key).
CREATE INDEX outbox_updated ON outbox(updated_at, id);
CREATE INDEX outbox_key ON outbox(key_id);
