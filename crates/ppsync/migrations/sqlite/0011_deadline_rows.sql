-- The engine's deadlines, every source (tasks, events, statute dates, the custom Date fields of
-- matters, contacts and accounts that `[deadlines]` names), in the firm's zone and in UTC: what
-- `ppsync deadlines --json` lists, past and coming. Rewritten whole, in one transaction, at the
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
    due_at TEXT NOT NULL,
    due_raw TEXT NOT NULL,
    due_local TEXT NOT NULL,
    local_date TEXT NOT NULL,
    time_zone TEXT NOT NULL,
    all_day INTEGER NOT NULL
);
CREATE INDEX deadline_rows_due_at ON deadline_rows (due_at);
CREATE INDEX deadline_rows_record ON deadline_rows (record_table, record_id);

-- The sources (zone, fields) deadline_rows was written under, when, and how many rows (row_count).
CREATE TABLE deadline_rows_state (
    id INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    sources TEXT NOT NULL,
    refreshed_at TEXT NOT NULL,
    row_count INTEGER NOT NULL
);

DROP VIEW upcoming_deadlines;

-- upcoming_deadlines: One row per deadline the engine tracks, past and coming (filter on due_at or local_date): open tasks' due dates (source `Task`), events' starts (`Event`), matters' statute of limitation dates (`Statute of Limitations`) and the custom Date fields `[deadlines]` names on matters, contacts and accounts (source = the field's label) — what `ppsync deadlines --json` lists. due_at is UTC (a date-only deadline's is the start of its local day), due_local the same instant in the firm's zone (RFC 3339 with the offset), local_date its firm-local date, time_zone the zone, all_day whether only the date is meant, due_raw the value as the API sent it. Read from the table deadline_rows, which ppsync rewrites at the end of every pass that changed a task, event, matter, contact or account, and whenever the zone or the sources change.
CREATE VIEW upcoming_deadlines AS
SELECT source, kind, record_table, record_id, title, status,
    matter_id, matter_name, account_id, account_name, assignees,
    due_at, due_raw, due_local, local_date, time_zone, all_day
FROM deadline_rows;

-- A matter's next deadline (matter_overview) is one index probe: its rows, by when.
CREATE INDEX deadline_rows_matter ON deadline_rows (matter_id, due_at);

DROP VIEW matter_overview;

-- Its next deadline is the engine's (deadline_rows), so it agrees with upcoming_deadlines: the same
-- sources, zone and names. due_at is canonical UTC text, so text order is time order.
-- matter_overview: One row per matter not deleted: its client (account), status, dates, open task count, and next deadline: the first row of upcoming_deadlines for the matter (its tasks, events, statute date and the matter Date fields `[deadlines]` names) at or after the database's current time — next_deadline_at (UTC), next_deadline_source (as in upcoming_deadlines' source), next_deadline_local (in the firm's zone); NULL when none is coming.
CREATE VIEW matter_overview AS
SELECT m.id AS matter_id, m.number, m.display_name, m.status,
    m.account_id, a.display_name AS account_name,
    m.open_date, m.close_date, m.statute_of_limitation_date,
    (SELECT count(*) FROM tasks t
        WHERE t.matter_id = m.id AND t.deleted_at IS NULL AND t.status IS NOT 'Completed') AS open_tasks,
    n.due_at AS next_deadline_at, n.source AS next_deadline_source, n.due_local AS next_deadline_local
FROM matters m
LEFT JOIN accounts a ON a.id = m.account_id AND a.deleted_at IS NULL
LEFT JOIN deadline_rows n ON n.rowid = (
    SELECT d.rowid FROM deadline_rows d
    WHERE d.matter_id = m.id AND d.due_at >= strftime('%Y-%m-%dT%H:%M:%f', 'now') || '000Z'
    ORDER BY d.due_at, d.source LIMIT 1)
WHERE m.deleted_at IS NULL;
