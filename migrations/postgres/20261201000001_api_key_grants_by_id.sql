-- API-key grants name their environment by id (a rename keeps the key working, a new
-- environment with an old name inherits nothing), and a key made by a key records its parent.
--
-- Grants were [{"environment": "DEV"|"*", "resource": ..., "access": ...}]; they become
-- [{"environment_id": 3, ...}] or, for all environments, [{"environment": "*", ...}]. A grant
-- for a name no environment has any more reached nothing and is dropped (it would otherwise
-- pass to the next environment given that name).
UPDATE api_keys SET grants = COALESCE((
    SELECT json_agg(
               CASE WHEN x.g->>'environment' = '*'
                    THEN json_build_object('environment', '*', 'resource', x.g->>'resource', 'access', x.g->>'access')
                    ELSE json_build_object('environment_id', e.id, 'resource', x.g->>'resource', 'access', x.g->>'access')
               END ORDER BY x.ord)::text
    FROM json_array_elements(api_keys.grants::json) WITH ORDINALITY AS x(g, ord)
    LEFT JOIN environments e ON e.name_key = lower(x.g->>'environment')
    WHERE x.g->>'environment' = '*' OR e.id IS NOT NULL
), '[]');

ALTER TABLE api_keys ADD COLUMN parent_id BIGINT REFERENCES api_keys(id);
CREATE INDEX api_keys_parent ON api_keys(parent_id);

-- Keys made by a key before this were recorded as the operator's (no person, no parent); the
-- maker is in created_by as "API key NAME (cvk_xxxxxxxx)". Link them to it, so that they are
-- limited by it (and by the person behind it) and end with it.
UPDATE api_keys SET parent_id = (
    SELECT p.id FROM api_keys p WHERE p.prefix = substr(api_keys.created_by, length(api_keys.created_by) - 12, 12) AND p.id <> api_keys.id
)
WHERE created_by_user_id IS NULL AND created_by LIKE 'API key %(cvk\_%)' ESCAPE '\';
