-- Certificates, admin requests and minted tokens belong to every provider that signs, not to
-- Salesforce alone: the tables are renamed in place (rows, ids and references kept), minted
-- tokens learn their expiry (from the token answer's expires_in, or the session lifetime), and
-- the admin links change purpose.
ALTER TABLE salesforce_certificates RENAME TO certificates;
ALTER TABLE salesforce_requests RENAME TO admin_requests;
ALTER TABLE salesforce_sessions RENAME TO tokens;
ALTER TABLE tokens ADD COLUMN expires_at TEXT;
DROP INDEX salesforce_certificates_connection;
DROP INDEX salesforce_certificates_expiry;
DROP INDEX salesforce_requests_connection;
CREATE INDEX certificates_connection ON certificates(connection_id, state);
CREATE INDEX certificates_expiry ON certificates(state, not_after);
CREATE INDEX admin_requests_connection ON admin_requests(connection_id, state);
UPDATE one_time_links SET purpose = 'admin_request' WHERE purpose = 'salesforce_admin';
