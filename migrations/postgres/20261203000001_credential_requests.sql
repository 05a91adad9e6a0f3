-- Requests to a system's admin are of two kinds: a certificate to register (the steps, the
-- certificate, a link for what the admin created) and, new, the credentials people would
-- otherwise type (the steps, a link where the admin enters the secrets). One table, so an open
-- request of either kind replaces the other and the hourly mail limits count both.
ALTER TABLE admin_requests ADD COLUMN kind TEXT NOT NULL DEFAULT 'certificate';

-- An admin's answer that fails its test leaves the link usable, up to 5 failed answers
-- (promise 16): they are counted on the link.
ALTER TABLE one_time_links ADD COLUMN failed_answers BIGINT NOT NULL DEFAULT 0;
