-- deadline_rows is kept record by record, in each page's transaction, since this version: the
-- view's description says so (its definition is unchanged).
DROP VIEW upcoming_deadlines;

-- upcoming_deadlines: as on SQLite.
CREATE VIEW upcoming_deadlines AS
SELECT source, kind, record_table, record_id, title, status,
    matter_id, matter_name, account_id, account_name, assignees,
    due_at, due_raw, due_local, local_date, time_zone, all_day
FROM deadline_rows;
