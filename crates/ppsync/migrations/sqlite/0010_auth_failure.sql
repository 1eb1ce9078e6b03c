-- A rejected grant (the refresh token refused, no credentials): one row while it lasts, its
-- `since` the first failure's time (the episode's notification id holds it). Removed by the next
-- pass the API answers, or by `ppsync auth login`/`import`.
CREATE TABLE auth_failure (
    id INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    since TEXT NOT NULL,
    last_at TEXT NOT NULL,
    error TEXT NOT NULL
);
