-- OAuth tokens and the firm registry (client secrets, settings) move out of the mirror's schema
-- into a schema of their own, `<home schema>_secrets` (`public_secrets` by default), so that a
-- grant on the mirror's tables (GRANT SELECT ON ALL TABLES IN SCHEMA acme TO reporting) never
-- reaches a token or a secret. One secrets schema serves a home store and every firm registered
-- in it; tokens are keyed by the schema of the store they belong to. ppsync names the secrets
-- schema on the connection that migrates (`ppsync.secrets_schema`): a firm's schema cannot
-- derive it from its own name. This runs once in each schema (the home's, each firm's), and
-- each moves its own rows.
DO $$
DECLARE
    mirror text := current_schema();
    secrets text := current_setting('ppsync.secrets_schema', true);
BEGIN
    IF secrets IS NULL OR secrets = '' THEN
        RAISE EXCEPTION 'ppsync.secrets_schema is not set: this migration is run by ppsync itself';
    END IF;
    EXECUTE format('CREATE SCHEMA IF NOT EXISTS %I', secrets);
    -- Only its owner (ppsync's user) uses it; a new schema grants nothing to PUBLIC anyway.
    EXECUTE format('REVOKE ALL ON SCHEMA %I FROM PUBLIC', secrets);
    EXECUTE format($sql$
        CREATE TABLE IF NOT EXISTS %I.oauth_tokens (
            -- The schema of the store these tokens are for (the home's, or a firm's).
            schema_name TEXT PRIMARY KEY NOT NULL,
            access_token TEXT NOT NULL,
            refresh_token TEXT NOT NULL,
            expires_at TIMESTAMPTZ NOT NULL,
            updated_at TIMESTAMPTZ NOT NULL
        )$sql$, secrets);
    EXECUTE format($sql$
        CREATE TABLE IF NOT EXISTS %I.firms (
            name TEXT PRIMARY KEY NOT NULL,
            client_id TEXT NOT NULL,
            client_secret TEXT NOT NULL,
            settings TEXT NOT NULL DEFAULT '',
            created_at TIMESTAMPTZ NOT NULL
        )$sql$, secrets);
    EXECUTE format(
        'INSERT INTO %I.oauth_tokens (schema_name, access_token, refresh_token, expires_at, updated_at) '
        'SELECT %L, access_token, refresh_token, expires_at, updated_at FROM %I.oauth_tokens '
        'ON CONFLICT (schema_name) DO NOTHING',
        secrets, mirror, mirror);
    EXECUTE format(
        'INSERT INTO %I.firms (name, client_id, client_secret, settings, created_at) '
        'SELECT name, client_id, client_secret, settings, created_at FROM %I.firms '
        'ON CONFLICT (name) DO NOTHING',
        secrets, mirror);
END
$$;

DROP TABLE oauth_tokens;
DROP TABLE firms;
