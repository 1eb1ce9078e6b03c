-- Views for applications (SQLite). docs/schema.md describes them: it is generated from the SQLite
-- file's comments (the line before each CREATE VIEW: `-- name: purpose`) and the views' columns,
-- and a test keeps it current. The PostgreSQL migration creates the same views with the same columns.
-- Instants are canonical UTC text, as in the tables. No view reads a clock except matter_overview (its next
-- deadline is the first at or after the database's current time).

-- One `<table>_current` per mirrored table of the resource table (a store test holds them equal):
-- the rows not deleted at the source.
CREATE VIEW matters_current AS SELECT * FROM matters WHERE deleted_at IS NULL;
CREATE VIEW accounts_current AS SELECT * FROM accounts WHERE deleted_at IS NULL;
CREATE VIEW contacts_current AS SELECT * FROM contacts WHERE deleted_at IS NULL;
CREATE VIEW tasks_current AS SELECT * FROM tasks WHERE deleted_at IS NULL;
CREATE VIEW notes_current AS SELECT * FROM notes WHERE deleted_at IS NULL;
CREATE VIEW emails_current AS SELECT * FROM emails WHERE deleted_at IS NULL;
CREATE VIEW events_current AS SELECT * FROM events WHERE deleted_at IS NULL;
CREATE VIEW call_logs_current AS SELECT * FROM call_logs WHERE deleted_at IS NULL;
CREATE VIEW time_entries_current AS SELECT * FROM time_entries WHERE deleted_at IS NULL;
CREATE VIEW expenses_current AS SELECT * FROM expenses WHERE deleted_at IS NULL;
CREATE VIEW flat_fees_current AS SELECT * FROM flat_fees WHERE deleted_at IS NULL;
CREATE VIEW invoices_current AS SELECT * FROM invoices WHERE deleted_at IS NULL;
CREATE VIEW payments_current AS SELECT * FROM payments WHERE deleted_at IS NULL;
CREATE VIEW users_current AS SELECT * FROM users WHERE deleted_at IS NULL;
CREATE VIEW items_current AS SELECT * FROM items WHERE deleted_at IS NULL;
CREATE VIEW expense_categories_current AS SELECT * FROM expense_categories WHERE deleted_at IS NULL;
CREATE VIEW bank_accounts_current AS SELECT * FROM bank_accounts WHERE deleted_at IS NULL;
CREATE VIEW custom_fields_company_current AS SELECT * FROM custom_fields_company WHERE deleted_at IS NULL;
CREATE VIEW custom_fields_matter_current AS SELECT * FROM custom_fields_matter WHERE deleted_at IS NULL;
CREATE VIEW custom_fields_contact_current AS SELECT * FROM custom_fields_contact WHERE deleted_at IS NULL;
CREATE VIEW relationships_current AS SELECT * FROM relationships WHERE deleted_at IS NULL;
CREATE VIEW files_current AS SELECT * FROM files WHERE deleted_at IS NULL;
CREATE VIEW messages_current AS SELECT * FROM messages WHERE deleted_at IS NULL;
CREATE VIEW tags_account_current AS SELECT * FROM tags_account WHERE deleted_at IS NULL;
CREATE VIEW tags_matter_current AS SELECT * FROM tags_matter WHERE deleted_at IS NULL;
CREATE VIEW tags_activity_current AS SELECT * FROM tags_activity WHERE deleted_at IS NULL;

-- matter_custom_fields: One row per custom field value of a matter (its `custom_field_values`), the value in the column its type reads: value_text (TextBox, TextEditor, DropDownList and unknown types), value_number (Number, Currency), value_date (Date, DateTime; UTC, value_date_raw as sent), value_bool (Checkbox), value_contact_id and _name (Contact).
CREATE VIEW matter_custom_fields AS
SELECT f.matter_id, f.position,
    json_extract(f.v, '$.custom_field_ref.id') AS field_id,
    json_extract(f.v, '$.custom_field_ref.label') AS label,
    f.ty AS type,
    CASE WHEN ifnull(f.ty, '') NOT IN ('Checkbox', 'Contact', 'Date', 'DateTime', 'Number', 'Currency')
        AND json_type(f.v, '$.value_string') = 'text'
        THEN json_extract(f.v, '$.value_string') END AS value_text,
    CASE WHEN f.ty IN ('Number', 'Currency') AND json_type(f.v, '$.value_number') IN ('integer', 'real')
        THEN CAST(json_extract(f.v, '$.value_number') AS REAL) END AS value_number,
    -- Only text that starts with a real calendar date (strftime would read 'now' or a number as a
    -- time, and move 30 February to March); with or without an offset (none = UTC);
    -- milliseconds, in the canonical width.
    CASE WHEN f.ty IN ('Date', 'DateTime') AND json_type(f.v, '$.value_date_time') = 'text'
        AND json_extract(f.v, '$.value_date_time') GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]*'
        AND date(substr(json_extract(f.v, '$.value_date_time'), 1, 10), '+0 days')
            = substr(json_extract(f.v, '$.value_date_time'), 1, 10)
        THEN strftime('%Y-%m-%dT%H:%M:%f', json_extract(f.v, '$.value_date_time')) || '000Z' END AS value_date,
    CASE WHEN f.ty = 'Checkbox' AND json_type(f.v, '$.value_boolean') IN ('true', 'false')
        THEN json_extract(f.v, '$.value_boolean') END AS value_bool,
    CASE WHEN f.ty = 'Contact' THEN json_extract(f.v, '$.contact_ref.id') END AS value_contact_id,
    CASE WHEN f.ty = 'Contact' THEN json_extract(f.v, '$.contact_ref.display_name') END AS value_contact_name,
    CASE WHEN f.ty IN ('Date', 'DateTime') AND json_type(f.v, '$.value_date_time') = 'text'
        THEN json_extract(f.v, '$.value_date_time') END AS value_date_raw
FROM (
    SELECT r.id AS matter_id, e.key AS position, e.value AS v,
        json_extract(e.value, '$.custom_field_ref.value_type') AS ty
    FROM matters r, json_each(r.data, '$.custom_field_values') e
    WHERE r.deleted_at IS NULL AND json_type(r.data, '$.custom_field_values') = 'array' AND e.type = 'object'
) f;

-- contact_custom_fields: One row per custom field value of a contact (its `custom_field_values`), the value in the column its type reads: value_text (TextBox, TextEditor, DropDownList and unknown types), value_number (Number, Currency), value_date (Date, DateTime; UTC, value_date_raw as sent), value_bool (Checkbox), value_contact_id and _name (Contact).
CREATE VIEW contact_custom_fields AS
SELECT f.contact_id, f.position,
    json_extract(f.v, '$.custom_field_ref.id') AS field_id,
    json_extract(f.v, '$.custom_field_ref.label') AS label,
    f.ty AS type,
    CASE WHEN ifnull(f.ty, '') NOT IN ('Checkbox', 'Contact', 'Date', 'DateTime', 'Number', 'Currency')
        AND json_type(f.v, '$.value_string') = 'text'
        THEN json_extract(f.v, '$.value_string') END AS value_text,
    CASE WHEN f.ty IN ('Number', 'Currency') AND json_type(f.v, '$.value_number') IN ('integer', 'real')
        THEN CAST(json_extract(f.v, '$.value_number') AS REAL) END AS value_number,
    -- Only text that starts with a real calendar date (strftime would read 'now' or a number as a
    -- time, and move 30 February to March); with or without an offset (none = UTC);
    -- milliseconds, in the canonical width.
    CASE WHEN f.ty IN ('Date', 'DateTime') AND json_type(f.v, '$.value_date_time') = 'text'
        AND json_extract(f.v, '$.value_date_time') GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]*'
        AND date(substr(json_extract(f.v, '$.value_date_time'), 1, 10), '+0 days')
            = substr(json_extract(f.v, '$.value_date_time'), 1, 10)
        THEN strftime('%Y-%m-%dT%H:%M:%f', json_extract(f.v, '$.value_date_time')) || '000Z' END AS value_date,
    CASE WHEN f.ty = 'Checkbox' AND json_type(f.v, '$.value_boolean') IN ('true', 'false')
        THEN json_extract(f.v, '$.value_boolean') END AS value_bool,
    CASE WHEN f.ty = 'Contact' THEN json_extract(f.v, '$.contact_ref.id') END AS value_contact_id,
    CASE WHEN f.ty = 'Contact' THEN json_extract(f.v, '$.contact_ref.display_name') END AS value_contact_name,
    CASE WHEN f.ty IN ('Date', 'DateTime') AND json_type(f.v, '$.value_date_time') = 'text'
        THEN json_extract(f.v, '$.value_date_time') END AS value_date_raw
FROM (
    SELECT r.id AS contact_id, e.key AS position, e.value AS v,
        json_extract(e.value, '$.custom_field_ref.value_type') AS ty
    FROM contacts r, json_each(r.data, '$.custom_field_values') e
    WHERE r.deleted_at IS NULL AND json_type(r.data, '$.custom_field_values') = 'array' AND e.type = 'object'
) f;

-- account_custom_fields: One row per custom field value of an account (its `company_custom_field_values`), the value in the column its type reads: value_text (TextBox, TextEditor, DropDownList and unknown types), value_number (Number, Currency), value_date (Date, DateTime; UTC, value_date_raw as sent), value_bool (Checkbox), value_contact_id and _name (Contact).
CREATE VIEW account_custom_fields AS
SELECT f.account_id, f.position,
    json_extract(f.v, '$.custom_field_ref.id') AS field_id,
    json_extract(f.v, '$.custom_field_ref.label') AS label,
    f.ty AS type,
    CASE WHEN ifnull(f.ty, '') NOT IN ('Checkbox', 'Contact', 'Date', 'DateTime', 'Number', 'Currency')
        AND json_type(f.v, '$.value_string') = 'text'
        THEN json_extract(f.v, '$.value_string') END AS value_text,
    CASE WHEN f.ty IN ('Number', 'Currency') AND json_type(f.v, '$.value_number') IN ('integer', 'real')
        THEN CAST(json_extract(f.v, '$.value_number') AS REAL) END AS value_number,
    -- Only text that starts with a real calendar date (strftime would read 'now' or a number as a
    -- time, and move 30 February to March); with or without an offset (none = UTC);
    -- milliseconds, in the canonical width.
    CASE WHEN f.ty IN ('Date', 'DateTime') AND json_type(f.v, '$.value_date_time') = 'text'
        AND json_extract(f.v, '$.value_date_time') GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]*'
        AND date(substr(json_extract(f.v, '$.value_date_time'), 1, 10), '+0 days')
            = substr(json_extract(f.v, '$.value_date_time'), 1, 10)
        THEN strftime('%Y-%m-%dT%H:%M:%f', json_extract(f.v, '$.value_date_time')) || '000Z' END AS value_date,
    CASE WHEN f.ty = 'Checkbox' AND json_type(f.v, '$.value_boolean') IN ('true', 'false')
        THEN json_extract(f.v, '$.value_boolean') END AS value_bool,
    CASE WHEN f.ty = 'Contact' THEN json_extract(f.v, '$.contact_ref.id') END AS value_contact_id,
    CASE WHEN f.ty = 'Contact' THEN json_extract(f.v, '$.contact_ref.display_name') END AS value_contact_name,
    CASE WHEN f.ty IN ('Date', 'DateTime') AND json_type(f.v, '$.value_date_time') = 'text'
        THEN json_extract(f.v, '$.value_date_time') END AS value_date_raw
FROM (
    SELECT r.id AS account_id, e.key AS position, e.value AS v,
        json_extract(e.value, '$.custom_field_ref.value_type') AS ty
    FROM accounts r, json_each(r.data, '$.company_custom_field_values') e
    WHERE r.deleted_at IS NULL AND json_type(r.data, '$.company_custom_field_values') = 'array' AND e.type = 'object'
) f;

-- matter_assignees: The users a matter is assigned to (its `assigned_to_users`), in the order listed.
CREATE VIEW matter_assignees AS
SELECT r.id AS matter_id, u.key AS position,
    json_extract(u.value, '$.id') AS user_id,
    json_extract(u.value, '$.display_name') AS user_name,
    json_extract(u.value, '$.email_address') AS user_email
FROM matters r, json_each(r.data, '$.assigned_to_users') u
WHERE r.deleted_at IS NULL AND json_type(r.data, '$.assigned_to_users') = 'array' AND u.type = 'object';

-- task_assignees: The users a task is assigned to (its `assigned_to_users`), in the order listed.
CREATE VIEW task_assignees AS
SELECT r.id AS task_id, u.key AS position,
    json_extract(u.value, '$.id') AS user_id,
    json_extract(u.value, '$.display_name') AS user_name,
    json_extract(u.value, '$.email_address') AS user_email
FROM tasks r, json_each(r.data, '$.assigned_to_users') u
WHERE r.deleted_at IS NULL AND json_type(r.data, '$.assigned_to_users') = 'array' AND u.type = 'object';

-- event_assignees: The users an event is assigned to (its `assigned_to_users`), in the order listed.
CREATE VIEW event_assignees AS
SELECT r.id AS event_id, u.key AS position,
    json_extract(u.value, '$.id') AS user_id,
    json_extract(u.value, '$.display_name') AS user_name,
    json_extract(u.value, '$.email_address') AS user_email
FROM events r, json_each(r.data, '$.assigned_to_users') u
WHERE r.deleted_at IS NULL AND json_type(r.data, '$.assigned_to_users') = 'array' AND u.type = 'object';

-- matter_tags: One row per tag on a matter (its `tags`).
CREATE VIEW matter_tags AS
SELECT r.id AS matter_id, g.value AS tag
FROM matters r, json_each(r.data, '$.tags') g
WHERE r.deleted_at IS NULL AND json_type(r.data, '$.tags') = 'array' AND g.type = 'text';

-- account_tags: One row per tag on an account (its `tags`).
CREATE VIEW account_tags AS
SELECT r.id AS account_id, g.value AS tag
FROM accounts r, json_each(r.data, '$.tags') g
WHERE r.deleted_at IS NULL AND json_type(r.data, '$.tags') = 'array' AND g.type = 'text';

-- task_tags: One row per tag on a task (its `tags`).
CREATE VIEW task_tags AS
SELECT r.id AS task_id, g.value AS tag
FROM tasks r, json_each(r.data, '$.tags') g
WHERE r.deleted_at IS NULL AND json_type(r.data, '$.tags') = 'array' AND g.type = 'text';

-- event_tags: One row per tag on an event (its `tags`).
CREATE VIEW event_tags AS
SELECT r.id AS event_id, g.value AS tag
FROM events r, json_each(r.data, '$.tags') g
WHERE r.deleted_at IS NULL AND json_type(r.data, '$.tags') = 'array' AND g.type = 'text';

-- open_tasks: Tasks neither deleted nor completed, with their matter, client (account) and assigned users' names.
CREATE VIEW open_tasks AS
SELECT t.id AS task_id, t.subject, t.status, t.priority, t.due_date,
    t.matter_id, m.display_name AS matter_name,
    coalesce(t.account_id, m.account_id) AS account_id, a.display_name AS account_name,
    (SELECT group_concat(n, ', ') FROM (
        SELECT json_extract(u.value, '$.display_name') AS n
        FROM json_each(t.data, '$.assigned_to_users') u
        WHERE json_type(t.data, '$.assigned_to_users') = 'array' AND u.type = 'object'
        ORDER BY u.key)) AS assignees,
    t.created_at, t.updated_at
FROM tasks t
LEFT JOIN matters m ON m.id = t.matter_id AND m.deleted_at IS NULL
LEFT JOIN accounts a ON a.id = coalesce(t.account_id, m.account_id) AND a.deleted_at IS NULL
WHERE t.deleted_at IS NULL AND t.status IS NOT 'Completed';

-- upcoming_deadlines: One row per deadline, past and future (filter on due_at with the time you mean): open tasks' due dates, events' starts, matters' statute of limitation dates, and matters' Date and DateTime custom fields (source = the field's label). due_at is UTC; the firm-local time needs the firm's zone, which the view does not know.
CREATE VIEW upcoming_deadlines AS
SELECT 'Task due date' AS source, 'task' AS kind, 'tasks' AS record_table, t.id AS record_id,
    t.subject AS title, t.matter_id, m.display_name AS matter_name,
    coalesce(t.account_id, m.account_id) AS account_id, a.display_name AS account_name,
    t.due_date AS due_at, json_extract(t.data, '$.due_date') AS due_raw
FROM tasks t
LEFT JOIN matters m ON m.id = t.matter_id AND m.deleted_at IS NULL
LEFT JOIN accounts a ON a.id = coalesce(t.account_id, m.account_id) AND a.deleted_at IS NULL
WHERE t.deleted_at IS NULL AND t.due_date IS NOT NULL AND t.status IS NOT 'Completed'
UNION ALL
SELECT 'Event start', 'event', 'events', e.id,
    e.subject, e.matter_id, m.display_name,
    coalesce(e.account_id, m.account_id), a.display_name,
    e.start_date_time, json_extract(e.data, '$.start_date_time')
FROM events e
LEFT JOIN matters m ON m.id = e.matter_id AND m.deleted_at IS NULL
LEFT JOIN accounts a ON a.id = coalesce(e.account_id, m.account_id) AND a.deleted_at IS NULL
WHERE e.deleted_at IS NULL AND e.start_date_time IS NOT NULL
UNION ALL
SELECT 'Statute of limitation', 'statute', 'matters', m.id,
    m.display_name, m.id, m.display_name,
    m.account_id, a.display_name,
    m.statute_of_limitation_date, json_extract(m.data, '$.statute_of_limitation_date')
FROM matters m
LEFT JOIN accounts a ON a.id = m.account_id AND a.deleted_at IS NULL
WHERE m.deleted_at IS NULL AND m.statute_of_limitation_date IS NOT NULL
UNION ALL
SELECT f.label, 'custom_field', 'matters', m.id,
    m.display_name, m.id, m.display_name,
    m.account_id, a.display_name,
    f.value_date, f.value_date_raw
FROM matter_custom_fields f
JOIN matters m ON m.id = f.matter_id
LEFT JOIN accounts a ON a.id = m.account_id AND a.deleted_at IS NULL
WHERE f.type IN ('Date', 'DateTime') AND f.value_date IS NOT NULL;

-- Its next deadline repeats upcoming_deadlines' conditions per source, each correlated to the matter,
-- so each is searched by its index (SQLite does not push the matter into that view's UNION ALL).
-- matter_overview: One row per matter not deleted: its client (account), status, dates, open task count, and next deadline (the first in upcoming_deadlines at or after the database's current time).
CREATE VIEW matter_overview AS
SELECT m.id AS matter_id, m.number, m.display_name, m.status,
    m.account_id, a.display_name AS account_name,
    m.open_date, m.close_date, m.statute_of_limitation_date,
    (SELECT count(*) FROM tasks t
        WHERE t.matter_id = m.id AND t.deleted_at IS NULL AND t.status IS NOT 'Completed') AS open_tasks,
    (SELECT due_at FROM (
        SELECT t.due_date AS due_at, 'Task due date' AS source FROM tasks t
            WHERE t.matter_id = m.id AND t.deleted_at IS NULL AND t.status IS NOT 'Completed' AND t.due_date >= strftime('%Y-%m-%dT%H:%M:%f', 'now') || '000Z'
        UNION ALL
        SELECT e.start_date_time, 'Event start' FROM events e
            WHERE e.matter_id = m.id AND e.deleted_at IS NULL AND e.start_date_time >= strftime('%Y-%m-%dT%H:%M:%f', 'now') || '000Z'
        UNION ALL
        SELECT m.statute_of_limitation_date, 'Statute of limitation'
            WHERE m.statute_of_limitation_date >= strftime('%Y-%m-%dT%H:%M:%f', 'now') || '000Z'
        UNION ALL
        SELECT f.value_date, f.label FROM matter_custom_fields f
            WHERE f.matter_id = m.id AND f.type IN ('Date', 'DateTime') AND f.value_date >= strftime('%Y-%m-%dT%H:%M:%f', 'now') || '000Z'
    ) ORDER BY due_at, source LIMIT 1) AS next_deadline_at,
    (SELECT source FROM (
        SELECT t.due_date AS due_at, 'Task due date' AS source FROM tasks t
            WHERE t.matter_id = m.id AND t.deleted_at IS NULL AND t.status IS NOT 'Completed' AND t.due_date >= strftime('%Y-%m-%dT%H:%M:%f', 'now') || '000Z'
        UNION ALL
        SELECT e.start_date_time, 'Event start' FROM events e
            WHERE e.matter_id = m.id AND e.deleted_at IS NULL AND e.start_date_time >= strftime('%Y-%m-%dT%H:%M:%f', 'now') || '000Z'
        UNION ALL
        SELECT m.statute_of_limitation_date, 'Statute of limitation'
            WHERE m.statute_of_limitation_date >= strftime('%Y-%m-%dT%H:%M:%f', 'now') || '000Z'
        UNION ALL
        SELECT f.value_date, f.label FROM matter_custom_fields f
            WHERE f.matter_id = m.id AND f.type IN ('Date', 'DateTime') AND f.value_date >= strftime('%Y-%m-%dT%H:%M:%f', 'now') || '000Z'
    ) ORDER BY due_at, source LIMIT 1) AS next_deadline_source
FROM matters m
LEFT JOIN accounts a ON a.id = m.account_id AND a.deleted_at IS NULL
WHERE m.deleted_at IS NULL;
