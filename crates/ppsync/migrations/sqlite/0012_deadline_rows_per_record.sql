-- deadline_rows is kept record by record, in each page's transaction, since this version: the
-- view's description says so (its definition is unchanged).
DROP VIEW upcoming_deadlines;

-- upcoming_deadlines: One row per deadline the engine tracks, past and coming (filter on due_at or local_date): open tasks' due dates (source `Task`), events' starts (`Event`), matters' statute of limitation dates (`Statute of Limitations`) and the custom Date fields `[deadlines]` names on matters, contacts and accounts (source = the field's label) — what `ppsync deadlines --json` lists. due_at is UTC (a date-only deadline's is the start of its local day), due_local the same instant in the firm's zone (RFC 3339 with the offset), local_date its firm-local date, time_zone the zone, all_day whether only the date is meant, due_raw the value as the API sent it. Read from the table deadline_rows, which ppsync keeps in each page's transaction (a record's rows are written with it, a deleted record's removed with its mark), and writes whole when the zone or the sources change (and, on SQLite, at the end of a first backfill).
CREATE VIEW upcoming_deadlines AS
SELECT source, kind, record_table, record_id, title, status,
    matter_id, matter_name, account_id, account_name, assignees,
    due_at, due_raw, due_local, local_date, time_zone, all_day
FROM deadline_rows;
