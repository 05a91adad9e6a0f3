-- Indexes for lists and change feeds (limit + cursor, since_id, updated_since) and the audit
-- filters. Every list pages with a row-value condition such as (name_key, id) > ($1, $2) over
-- an index that matches its ORDER BY.

-- Connections of one environment: by name (the default; the UNIQUE (environment_id, name_key)
-- constraint serves it), since_id, updated_since, and by name within one provider.
CREATE INDEX connections_env_id ON connections(environment_id, id);
CREATE INDEX connections_env_updated ON connections(environment_id, updated_at, id);
CREATE INDEX connections_env_provider_name ON connections(environment_id, provider, name_key);
-- ... which makes the foundation's (environment_id, provider) index redundant.
DROP INDEX connections_env_provider;

-- Audit: newest first by action, in a time window, and as an updated_since feed per environment.
CREATE INDEX audit_events_action ON audit_events(action, id);
CREATE INDEX audit_events_created ON audit_events(created_at, id);
CREATE INDEX audit_events_env_updated ON audit_events(environment_id, updated_at, id);

-- Accounts and API keys: updated_since feeds (by email and by id are served already).
CREATE INDEX users_updated ON users(updated_at, id);
CREATE INDEX api_keys_updated ON api_keys(updated_at, id);
