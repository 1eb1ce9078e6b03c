-- Views for applications (PostgreSQL). docs/schema.md describes them: it is generated from the SQLite
-- file's comments (the line before each CREATE VIEW: `-- name: purpose`) and the views' columns,
-- and a test keeps it current. The SQLite migration creates the same views with the same columns.
-- Instants are timestamptz, as in the tables. No view reads a clock except matter_overview (its next
-- deadline is the first at or after the database's current time).
-- Created in the firm's schema (the migrator's search_path), like the tables.

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

-- A date the API sent as text, as an instant: no offset means UTC (practicepanther-api.md §4.1);
-- NULL for what is not a date, so one odd value never fails a query on a view.
CREATE FUNCTION ppsync_instant(s TEXT) RETURNS TIMESTAMPTZ LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF s IS NULL OR s !~ '^\d{4}-\d{2}-\d{2}' THEN
        RETURN NULL;
    END IF;
    IF s ~ '[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?\s*(Z|z|[+-]\d{2}(:?\d{2})?)$' THEN
        RETURN s::timestamptz;
    END IF;
    RETURN s::timestamp AT TIME ZONE 'UTC';
EXCEPTION WHEN others THEN
    RETURN NULL;
END
$$;

-- matter_custom_fields: as on SQLite.
CREATE VIEW matter_custom_fields AS
SELECT f.matter_id, f.position,
    f.v -> 'custom_field_ref' ->> 'id' AS field_id,
    f.v -> 'custom_field_ref' ->> 'label' AS label,
    f.ty AS type,
    CASE WHEN coalesce(f.ty, '') NOT IN ('Checkbox', 'Contact', 'Date', 'DateTime', 'Number', 'Currency')
        AND jsonb_typeof(f.v -> 'value_string') = 'string'
        THEN f.v ->> 'value_string' END AS value_text,
    CASE WHEN f.ty IN ('Number', 'Currency') AND jsonb_typeof(f.v -> 'value_number') = 'number'
        THEN (f.v ->> 'value_number')::double precision END AS value_number,
    CASE WHEN f.ty IN ('Date', 'DateTime') AND jsonb_typeof(f.v -> 'value_date_time') = 'string'
        THEN ppsync_instant(f.v ->> 'value_date_time') END AS value_date,
    CASE WHEN f.ty = 'Checkbox' AND jsonb_typeof(f.v -> 'value_boolean') = 'boolean'
        THEN (f.v -> 'value_boolean')::boolean END AS value_bool,
    CASE WHEN f.ty = 'Contact' THEN f.v -> 'contact_ref' ->> 'id' END AS value_contact_id,
    CASE WHEN f.ty = 'Contact' THEN f.v -> 'contact_ref' ->> 'display_name' END AS value_contact_name,
    CASE WHEN f.ty IN ('Date', 'DateTime') AND jsonb_typeof(f.v -> 'value_date_time') = 'string'
        THEN f.v ->> 'value_date_time' END AS value_date_raw
FROM (
    SELECT r.id AS matter_id, e.ordinality - 1 AS position, e.value AS v,
        e.value -> 'custom_field_ref' ->> 'value_type' AS ty
    FROM matters r
    CROSS JOIN LATERAL jsonb_array_elements(CASE WHEN jsonb_typeof(r.data -> 'custom_field_values') = 'array' THEN r.data -> 'custom_field_values' ELSE '[]'::jsonb END) WITH ORDINALITY AS e(value, ordinality)
    WHERE r.deleted_at IS NULL AND jsonb_typeof(e.value) = 'object'
) f;

-- contact_custom_fields: as on SQLite.
CREATE VIEW contact_custom_fields AS
SELECT f.contact_id, f.position,
    f.v -> 'custom_field_ref' ->> 'id' AS field_id,
    f.v -> 'custom_field_ref' ->> 'label' AS label,
    f.ty AS type,
    CASE WHEN coalesce(f.ty, '') NOT IN ('Checkbox', 'Contact', 'Date', 'DateTime', 'Number', 'Currency')
        AND jsonb_typeof(f.v -> 'value_string') = 'string'
        THEN f.v ->> 'value_string' END AS value_text,
    CASE WHEN f.ty IN ('Number', 'Currency') AND jsonb_typeof(f.v -> 'value_number') = 'number'
        THEN (f.v ->> 'value_number')::double precision END AS value_number,
    CASE WHEN f.ty IN ('Date', 'DateTime') AND jsonb_typeof(f.v -> 'value_date_time') = 'string'
        THEN ppsync_instant(f.v ->> 'value_date_time') END AS value_date,
    CASE WHEN f.ty = 'Checkbox' AND jsonb_typeof(f.v -> 'value_boolean') = 'boolean'
        THEN (f.v -> 'value_boolean')::boolean END AS value_bool,
    CASE WHEN f.ty = 'Contact' THEN f.v -> 'contact_ref' ->> 'id' END AS value_contact_id,
    CASE WHEN f.ty = 'Contact' THEN f.v -> 'contact_ref' ->> 'display_name' END AS value_contact_name,
    CASE WHEN f.ty IN ('Date', 'DateTime') AND jsonb_typeof(f.v -> 'value_date_time') = 'string'
        THEN f.v ->> 'value_date_time' END AS value_date_raw
FROM (
    SELECT r.id AS contact_id, e.ordinality - 1 AS position, e.value AS v,
        e.value -> 'custom_field_ref' ->> 'value_type' AS ty
    FROM contacts r
    CROSS JOIN LATERAL jsonb_array_elements(CASE WHEN jsonb_typeof(r.data -> 'custom_field_values') = 'array' THEN r.data -> 'custom_field_values' ELSE '[]'::jsonb END) WITH ORDINALITY AS e(value, ordinality)
    WHERE r.deleted_at IS NULL AND jsonb_typeof(e.value) = 'object'
) f;

-- account_custom_fields: as on SQLite.
CREATE VIEW account_custom_fields AS
SELECT f.account_id, f.position,
    f.v -> 'custom_field_ref' ->> 'id' AS field_id,
    f.v -> 'custom_field_ref' ->> 'label' AS label,
    f.ty AS type,
    CASE WHEN coalesce(f.ty, '') NOT IN ('Checkbox', 'Contact', 'Date', 'DateTime', 'Number', 'Currency')
        AND jsonb_typeof(f.v -> 'value_string') = 'string'
        THEN f.v ->> 'value_string' END AS value_text,
    CASE WHEN f.ty IN ('Number', 'Currency') AND jsonb_typeof(f.v -> 'value_number') = 'number'
        THEN (f.v ->> 'value_number')::double precision END AS value_number,
    CASE WHEN f.ty IN ('Date', 'DateTime') AND jsonb_typeof(f.v -> 'value_date_time') = 'string'
        THEN ppsync_instant(f.v ->> 'value_date_time') END AS value_date,
    CASE WHEN f.ty = 'Checkbox' AND jsonb_typeof(f.v -> 'value_boolean') = 'boolean'
        THEN (f.v -> 'value_boolean')::boolean END AS value_bool,
    CASE WHEN f.ty = 'Contact' THEN f.v -> 'contact_ref' ->> 'id' END AS value_contact_id,
    CASE WHEN f.ty = 'Contact' THEN f.v -> 'contact_ref' ->> 'display_name' END AS value_contact_name,
    CASE WHEN f.ty IN ('Date', 'DateTime') AND jsonb_typeof(f.v -> 'value_date_time') = 'string'
        THEN f.v ->> 'value_date_time' END AS value_date_raw
FROM (
    SELECT r.id AS account_id, e.ordinality - 1 AS position, e.value AS v,
        e.value -> 'custom_field_ref' ->> 'value_type' AS ty
    FROM accounts r
    CROSS JOIN LATERAL jsonb_array_elements(CASE WHEN jsonb_typeof(r.data -> 'company_custom_field_values') = 'array' THEN r.data -> 'company_custom_field_values' ELSE '[]'::jsonb END) WITH ORDINALITY AS e(value, ordinality)
    WHERE r.deleted_at IS NULL AND jsonb_typeof(e.value) = 'object'
) f;

-- matter_assignees: as on SQLite.
CREATE VIEW matter_assignees AS
SELECT r.id AS matter_id, u.ordinality - 1 AS position,
    u.value ->> 'id' AS user_id,
    u.value ->> 'display_name' AS user_name,
    u.value ->> 'email_address' AS user_email
FROM matters r
CROSS JOIN LATERAL jsonb_array_elements(CASE WHEN jsonb_typeof(r.data -> 'assigned_to_users') = 'array' THEN r.data -> 'assigned_to_users' ELSE '[]'::jsonb END) WITH ORDINALITY AS u(value, ordinality)
WHERE r.deleted_at IS NULL AND jsonb_typeof(u.value) = 'object';

-- task_assignees: as on SQLite.
CREATE VIEW task_assignees AS
SELECT r.id AS task_id, u.ordinality - 1 AS position,
    u.value ->> 'id' AS user_id,
    u.value ->> 'display_name' AS user_name,
    u.value ->> 'email_address' AS user_email
FROM tasks r
CROSS JOIN LATERAL jsonb_array_elements(CASE WHEN jsonb_typeof(r.data -> 'assigned_to_users') = 'array' THEN r.data -> 'assigned_to_users' ELSE '[]'::jsonb END) WITH ORDINALITY AS u(value, ordinality)
WHERE r.deleted_at IS NULL AND jsonb_typeof(u.value) = 'object';

-- event_assignees: as on SQLite.
CREATE VIEW event_assignees AS
SELECT r.id AS event_id, u.ordinality - 1 AS position,
    u.value ->> 'id' AS user_id,
    u.value ->> 'display_name' AS user_name,
    u.value ->> 'email_address' AS user_email
FROM events r
CROSS JOIN LATERAL jsonb_array_elements(CASE WHEN jsonb_typeof(r.data -> 'assigned_to_users') = 'array' THEN r.data -> 'assigned_to_users' ELSE '[]'::jsonb END) WITH ORDINALITY AS u(value, ordinality)
WHERE r.deleted_at IS NULL AND jsonb_typeof(u.value) = 'object';

-- matter_tags: as on SQLite.
CREATE VIEW matter_tags AS
SELECT r.id AS matter_id, g.value #>> '{}' AS tag
FROM matters r
CROSS JOIN LATERAL jsonb_array_elements(CASE WHEN jsonb_typeof(r.data -> 'tags') = 'array' THEN r.data -> 'tags' ELSE '[]'::jsonb END) AS g(value)
WHERE r.deleted_at IS NULL AND jsonb_typeof(g.value) = 'string';

-- account_tags: as on SQLite.
CREATE VIEW account_tags AS
SELECT r.id AS account_id, g.value #>> '{}' AS tag
FROM accounts r
CROSS JOIN LATERAL jsonb_array_elements(CASE WHEN jsonb_typeof(r.data -> 'tags') = 'array' THEN r.data -> 'tags' ELSE '[]'::jsonb END) AS g(value)
WHERE r.deleted_at IS NULL AND jsonb_typeof(g.value) = 'string';

-- task_tags: as on SQLite.
CREATE VIEW task_tags AS
SELECT r.id AS task_id, g.value #>> '{}' AS tag
FROM tasks r
CROSS JOIN LATERAL jsonb_array_elements(CASE WHEN jsonb_typeof(r.data -> 'tags') = 'array' THEN r.data -> 'tags' ELSE '[]'::jsonb END) AS g(value)
WHERE r.deleted_at IS NULL AND jsonb_typeof(g.value) = 'string';

-- event_tags: as on SQLite.
CREATE VIEW event_tags AS
SELECT r.id AS event_id, g.value #>> '{}' AS tag
FROM events r
CROSS JOIN LATERAL jsonb_array_elements(CASE WHEN jsonb_typeof(r.data -> 'tags') = 'array' THEN r.data -> 'tags' ELSE '[]'::jsonb END) AS g(value)
WHERE r.deleted_at IS NULL AND jsonb_typeof(g.value) = 'string';

-- open_tasks: as on SQLite.
CREATE VIEW open_tasks AS
SELECT t.id AS task_id, t.subject, t.status, t.priority, t.due_date,
    t.matter_id, m.display_name AS matter_name,
    coalesce(t.account_id, m.account_id) AS account_id, a.display_name AS account_name,
    (SELECT string_agg(u.value ->> 'display_name', ', ' ORDER BY u.ordinality)
        FROM jsonb_array_elements(CASE WHEN jsonb_typeof(t.data -> 'assigned_to_users') = 'array' THEN t.data -> 'assigned_to_users' ELSE '[]'::jsonb END) WITH ORDINALITY AS u(value, ordinality)
        WHERE jsonb_typeof(u.value) = 'object') AS assignees,
    t.created_at, t.updated_at
FROM tasks t
LEFT JOIN matters m ON m.id = t.matter_id AND m.deleted_at IS NULL
LEFT JOIN accounts a ON a.id = coalesce(t.account_id, m.account_id) AND a.deleted_at IS NULL
WHERE t.deleted_at IS NULL AND t.status IS DISTINCT FROM 'Completed';

-- upcoming_deadlines: as on SQLite.
CREATE VIEW upcoming_deadlines AS
SELECT 'Task due date' AS source, 'task' AS kind, 'tasks' AS record_table, t.id AS record_id,
    t.subject AS title, t.matter_id, m.display_name AS matter_name,
    coalesce(t.account_id, m.account_id) AS account_id, a.display_name AS account_name,
    t.due_date AS due_at, t.data ->> 'due_date' AS due_raw
FROM tasks t
LEFT JOIN matters m ON m.id = t.matter_id AND m.deleted_at IS NULL
LEFT JOIN accounts a ON a.id = coalesce(t.account_id, m.account_id) AND a.deleted_at IS NULL
WHERE t.deleted_at IS NULL AND t.due_date IS NOT NULL AND t.status IS DISTINCT FROM 'Completed'
UNION ALL
SELECT 'Event start', 'event', 'events', e.id,
    e.subject, e.matter_id, m.display_name,
    coalesce(e.account_id, m.account_id), a.display_name,
    e.start_date_time, e.data ->> 'start_date_time'
FROM events e
LEFT JOIN matters m ON m.id = e.matter_id AND m.deleted_at IS NULL
LEFT JOIN accounts a ON a.id = coalesce(e.account_id, m.account_id) AND a.deleted_at IS NULL
WHERE e.deleted_at IS NULL AND e.start_date_time IS NOT NULL
UNION ALL
SELECT 'Statute of limitation', 'statute', 'matters', m.id,
    m.display_name, m.id, m.display_name,
    m.account_id, a.display_name,
    m.statute_of_limitation_date, m.data ->> 'statute_of_limitation_date'
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

-- Its next deadline repeats upcoming_deadlines' conditions per source, each on this matter (so each
-- uses its index); matter ids are compared in the default collation, the matter_id indexes'.
-- matter_overview: as on SQLite.
CREATE VIEW matter_overview AS
SELECT m.id AS matter_id, m.number, m.display_name, m.status,
    m.account_id, a.display_name AS account_name,
    m.open_date, m.close_date, m.statute_of_limitation_date,
    (SELECT count(*) FROM tasks t
        WHERE t.matter_id = m.id COLLATE "default" AND t.deleted_at IS NULL AND t.status IS DISTINCT FROM 'Completed') AS open_tasks,
    n.due_at AS next_deadline_at, n.source AS next_deadline_source
FROM matters m
LEFT JOIN accounts a ON a.id = m.account_id AND a.deleted_at IS NULL
LEFT JOIN LATERAL (
    SELECT due_at, source FROM (
        SELECT t.due_date AS due_at, 'Task due date' AS source FROM tasks t
            WHERE t.matter_id = m.id COLLATE "default" AND t.deleted_at IS NULL AND t.status IS DISTINCT FROM 'Completed' AND t.due_date >= CURRENT_TIMESTAMP
        UNION ALL
        SELECT e.start_date_time, 'Event start' FROM events e
            WHERE e.matter_id = m.id COLLATE "default" AND e.deleted_at IS NULL AND e.start_date_time >= CURRENT_TIMESTAMP
        UNION ALL
        SELECT m.statute_of_limitation_date, 'Statute of limitation'
            WHERE m.statute_of_limitation_date >= CURRENT_TIMESTAMP
        UNION ALL
        SELECT ppsync_instant(c.value ->> 'value_date_time'), c.value -> 'custom_field_ref' ->> 'label'
            FROM jsonb_array_elements(CASE WHEN jsonb_typeof(m.data -> 'custom_field_values') = 'array' THEN m.data -> 'custom_field_values' ELSE '[]'::jsonb END) AS c(value)
            WHERE jsonb_typeof(c.value) = 'object'
                AND c.value -> 'custom_field_ref' ->> 'value_type' IN ('Date', 'DateTime')
                AND jsonb_typeof(c.value -> 'value_date_time') = 'string'
                AND ppsync_instant(c.value ->> 'value_date_time') >= CURRENT_TIMESTAMP
    ) d
    ORDER BY due_at, source LIMIT 1
) n ON true
WHERE m.deleted_at IS NULL;
