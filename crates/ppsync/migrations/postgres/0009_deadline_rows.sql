-- The engine's deadlines, every source (tasks, events, statute dates, the custom Date fields of
-- matters, contacts and accounts that `[deadlines]` names), in the firm's zone and in UTC: what
-- `ppsync deadlines --json` lists, past and coming (PostgreSQL: the same as on SQLite, instants timestamptz,
-- local_date a date, all_day a boolean). Rewritten whole, in one transaction, at the
-- end of a pass that changed a record they come from or under changed sources (zone, fields),
-- and when the daemon starts under changed sources. upcoming_deadlines reads it.
CREATE TABLE deadline_rows (
    source TEXT NOT NULL,
    kind TEXT NOT NULL,
    record_table TEXT NOT NULL,
    record_id TEXT NOT NULL,
    title TEXT,
    status TEXT,
    matter_id TEXT,
    matter_name TEXT,
    account_id TEXT,
    account_name TEXT,
    assignees TEXT,
    due_at TIMESTAMPTZ NOT NULL,
    due_raw TEXT NOT NULL,
    due_local TEXT NOT NULL,
    local_date DATE NOT NULL,
    time_zone TEXT NOT NULL,
    all_day BOOLEAN NOT NULL
);
CREATE INDEX deadline_rows_due_at ON deadline_rows (due_at);
CREATE INDEX deadline_rows_record ON deadline_rows (record_table, record_id);

-- The sources (zone, fields) deadline_rows was written under, when, and how many rows (row_count).
CREATE TABLE deadline_rows_state (
    id INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    sources TEXT NOT NULL,
    refreshed_at TIMESTAMPTZ NOT NULL,
    row_count BIGINT NOT NULL
);

DROP VIEW upcoming_deadlines;

-- upcoming_deadlines: as on SQLite.
CREATE VIEW upcoming_deadlines AS
SELECT source, kind, record_table, record_id, title, status,
    matter_id, matter_name, account_id, account_name, assignees,
    due_at, due_raw, due_local, local_date, time_zone, all_day
FROM deadline_rows;
