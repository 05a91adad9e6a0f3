-- What decides where an API key's call goes and whether it may go there: the key, the account
-- that made it and that account's roles, the environment, the integration and its bound
-- connection. `route_epoch.version` grows with every change to them, made by any connection of
-- any process; the token broker keeps what it read for a key and an integration (its "routes")
-- while the number stays the same, and reads again as soon as it moves (server/src/db.rs,
-- Db::route_epoch). An API key's `last_used_at` alone is left out: it is stamped once a minute
-- and decides nothing.
--
-- SQLite only: on PostgreSQL nothing is kept, every call reads the database. A migration that
-- rebuilds one of these tables (CREATE new, copy, DROP, RENAME) drops its triggers and must
-- create them again; a new api_keys column that decides anything joins the UPDATE OF list.
CREATE TABLE route_epoch (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    version  INTEGER NOT NULL
);
INSERT INTO route_epoch (id, version) VALUES (1, 0);

CREATE TRIGGER api_keys_route_insert AFTER INSERT ON api_keys BEGIN UPDATE route_epoch SET version = version + 1; END;
CREATE TRIGGER api_keys_route_update AFTER UPDATE OF name, prefix, key_hash, grants, allowed_addresses, expires_at, revoked_at, created_by, created_by_user_id, parent_id, created_at, updated_at ON api_keys BEGIN UPDATE route_epoch SET version = version + 1; END;
CREATE TRIGGER api_keys_route_delete AFTER DELETE ON api_keys BEGIN UPDATE route_epoch SET version = version + 1; END;
CREATE TRIGGER users_route_insert AFTER INSERT ON users BEGIN UPDATE route_epoch SET version = version + 1; END;
CREATE TRIGGER users_route_update AFTER UPDATE ON users BEGIN UPDATE route_epoch SET version = version + 1; END;
CREATE TRIGGER users_route_delete AFTER DELETE ON users BEGIN UPDATE route_epoch SET version = version + 1; END;
CREATE TRIGGER user_roles_route_insert AFTER INSERT ON user_roles BEGIN UPDATE route_epoch SET version = version + 1; END;
CREATE TRIGGER user_roles_route_update AFTER UPDATE ON user_roles BEGIN UPDATE route_epoch SET version = version + 1; END;
CREATE TRIGGER user_roles_route_delete AFTER DELETE ON user_roles BEGIN UPDATE route_epoch SET version = version + 1; END;
CREATE TRIGGER environments_route_insert AFTER INSERT ON environments BEGIN UPDATE route_epoch SET version = version + 1; END;
CREATE TRIGGER environments_route_update AFTER UPDATE ON environments BEGIN UPDATE route_epoch SET version = version + 1; END;
CREATE TRIGGER environments_route_delete AFTER DELETE ON environments BEGIN UPDATE route_epoch SET version = version + 1; END;
CREATE TRIGGER integrations_route_insert AFTER INSERT ON integrations BEGIN UPDATE route_epoch SET version = version + 1; END;
CREATE TRIGGER integrations_route_update AFTER UPDATE ON integrations BEGIN UPDATE route_epoch SET version = version + 1; END;
CREATE TRIGGER integrations_route_delete AFTER DELETE ON integrations BEGIN UPDATE route_epoch SET version = version + 1; END;
CREATE TRIGGER connections_route_insert AFTER INSERT ON connections BEGIN UPDATE route_epoch SET version = version + 1; END;
CREATE TRIGGER connections_route_update AFTER UPDATE ON connections BEGIN UPDATE route_epoch SET version = version + 1; END;
CREATE TRIGGER connections_route_delete AFTER DELETE ON connections BEGIN UPDATE route_epoch SET version = version + 1; END;
