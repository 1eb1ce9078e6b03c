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

-- A matter's next deadline (matter_overview) is one index probe: its rows, by when.
CREATE INDEX deadline_rows_matter ON deadline_rows (matter_id, due_at);

DROP VIEW matter_overview;

-- Its next deadline is the engine's (deadline_rows), as on SQLite. Matter ids are compared in the
-- default collation (deadline_rows.matter_id's, so its index serves), sources ordered bytewise as
-- on SQLite.
-- matter_overview: as on SQLite.
CREATE VIEW matter_overview AS
SELECT m.id AS matter_id, m.number, m.display_name, m.status,
    m.account_id, a.display_name AS account_name,
    m.open_date, m.close_date, m.statute_of_limitation_date,
    (SELECT count(*) FROM tasks t
        WHERE t.matter_id = m.id COLLATE "default" AND t.deleted_at IS NULL AND t.status IS DISTINCT FROM 'Completed') AS open_tasks,
    n.due_at AS next_deadline_at, n.source AS next_deadline_source, n.due_local AS next_deadline_local
FROM matters m
LEFT JOIN accounts a ON a.id = m.account_id AND a.deleted_at IS NULL
LEFT JOIN LATERAL (
    SELECT d.due_at, d.source, d.due_local FROM deadline_rows d
    WHERE d.matter_id = m.id COLLATE "default" AND d.due_at >= CURRENT_TIMESTAMP
    ORDER BY d.due_at, d.source COLLATE "C" LIMIT 1
) n ON true
WHERE m.deleted_at IS NULL;
