-- What decides where an API key's call goes and whether it may go there: the key, the account
-- that made it and that account's roles, the environment, the integration and its bound
-- connection. `route_epoch.version` grows with every transaction that changes them, on any
-- server sharing the database; the token broker keeps what it read for a key and an
-- integration (its "routes") while the number it reads stays the same (server/src/db.rs,
-- Db::route_epoch: on PostgreSQL every call still waits for a read of the number that began
-- after the call did, one read shared by all the calls waiting). An API key's `last_used_at`
-- alone is left out: it is stamped once a minute and decides nothing.
--
-- The bump is a deferred constraint trigger: it runs at commit, once per transaction (the
-- transaction-local setting remembers it), so the one row is locked only while a transaction
-- commits (never while it waits for other locks: no deadlock through it) and a change of a
-- thousand rows moves it once. A migration that rebuilds one of these tables must create the
-- triggers again; a new api_keys column that decides anything joins the UPDATE OF list.
CREATE TABLE route_epoch (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    version  BIGINT NOT NULL
);
INSERT INTO route_epoch (id, version) VALUES (1, 0);

CREATE FUNCTION route_epoch_bump() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('connvault.route_epoch_moved', true) IS DISTINCT FROM 'yes' THEN
        UPDATE route_epoch SET version = version + 1 WHERE id = 1;
        PERFORM set_config('connvault.route_epoch_moved', 'yes', true);
    END IF;
    RETURN NULL;
END
$$;

CREATE CONSTRAINT TRIGGER api_keys_route_insert AFTER INSERT ON api_keys DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION route_epoch_bump();
CREATE CONSTRAINT TRIGGER api_keys_route_update AFTER UPDATE OF name, prefix, key_hash, grants, allowed_addresses, expires_at, revoked_at, created_by, created_by_user_id, parent_id, created_at, updated_at ON api_keys DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION route_epoch_bump();
CREATE CONSTRAINT TRIGGER api_keys_route_delete AFTER DELETE ON api_keys DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION route_epoch_bump();
CREATE CONSTRAINT TRIGGER users_route AFTER INSERT OR UPDATE OR DELETE ON users DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION route_epoch_bump();
CREATE CONSTRAINT TRIGGER user_roles_route AFTER INSERT OR UPDATE OR DELETE ON user_roles DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION route_epoch_bump();
CREATE CONSTRAINT TRIGGER environments_route AFTER INSERT OR UPDATE OR DELETE ON environments DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION route_epoch_bump();
CREATE CONSTRAINT TRIGGER integrations_route AFTER INSERT OR UPDATE OR DELETE ON integrations DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION route_epoch_bump();
CREATE CONSTRAINT TRIGGER connections_route AFTER INSERT OR UPDATE OR DELETE ON connections DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION route_epoch_bump();
