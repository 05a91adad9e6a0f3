-- What became of the latest answer to a request to a system's admin, for the requester (the
-- connection page, and the email they are sent): when it came, whether its test worked, what
-- the test said, and how many more answers the link takes.
ALTER TABLE admin_requests ADD COLUMN answer_at TEXT;
ALTER TABLE admin_requests ADD COLUMN answer_outcome TEXT CHECK (answer_outcome IN ('ok', 'failed'));
ALTER TABLE admin_requests ADD COLUMN answer_detail TEXT;
ALTER TABLE admin_requests ADD COLUMN answer_advice TEXT;
ALTER TABLE admin_requests ADD COLUMN answer_tries_left INTEGER;
