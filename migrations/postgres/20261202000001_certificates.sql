-- Certificates, admin requests and minted tokens belong to every provider that signs, not to
-- Salesforce alone: the tables are renamed in place (rows, ids and references kept), minted
-- tokens learn their expiry (from the token answer's expires_in, or the session lifetime), and
-- the admin links change purpose.
ALTER TABLE salesforce_certificates RENAME TO certificates;
ALTER TABLE salesforce_requests RENAME TO admin_requests;
ALTER TABLE salesforce_sessions RENAME TO tokens;
ALTER TABLE tokens ADD COLUMN expires_at TEXT;
ALTER INDEX salesforce_certificates_connection RENAME TO certificates_connection;
ALTER INDEX salesforce_certificates_expiry RENAME TO certificates_expiry;
ALTER INDEX salesforce_requests_connection RENAME TO admin_requests_connection;
UPDATE one_time_links SET purpose = 'admin_request' WHERE purpose = 'salesforce_admin';
