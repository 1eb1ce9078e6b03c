-- Many firms (ppsync firm add/list/remove): the registry lives in the home database (the one
-- database_url names); each firm's mirror, cursors, tokens and history live in a store of its own
-- (a sibling SQLite file, or a PostgreSQL schema named after the firm). `settings` is a TOML
-- fragment laid over the config for that firm (budget, schedule, resources, notify, api_base_url).
CREATE TABLE firms (
    name TEXT PRIMARY KEY NOT NULL,
    client_id TEXT NOT NULL,
    client_secret TEXT NOT NULL,
    settings TEXT NOT NULL DEFAULT '',
    created_at TIMESTAMPTZ NOT NULL
);

-- Which `ppsync run` instance ran a cycle (NULL: the CLI).
ALTER TABLE sync_cycles ADD COLUMN instance TEXT;
