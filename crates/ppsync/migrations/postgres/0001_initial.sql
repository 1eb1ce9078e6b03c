-- ppsync schema v1 (PostgreSQL). One table per resource, as crates/ppsync/src/resource.rs lists them;
-- the test `schema_matches_resource_table` keeps the two in step. Never edit an applied migration.
-- Instants are TIMESTAMPTZ, the record as received is JSONB; the SQLite schema stores the same
-- columns as canonical UTC text. Ids sort bytewise (COLLATE "C"), as on SQLite, so exports sort the
-- same on both. The sqlite/ folder's 0002 and 0003 are folded in here.

CREATE TABLE matters (
    id TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    created_at TIMESTAMPTZ,
    updated_at TIMESTAMPTZ,
    deleted_at TIMESTAMPTZ,
    synced_at TIMESTAMPTZ NOT NULL,
    hash BIGINT NOT NULL,
    seen_run BIGINT NOT NULL,
    data JSONB NOT NULL,
    account_id TEXT,
    number BIGINT,
    display_name TEXT,
    status TEXT,
    open_date TIMESTAMPTZ,
    close_date TIMESTAMPTZ,
    statute_of_limitation_date TIMESTAMPTZ
);
CREATE INDEX matters_updated_at ON matters (updated_at);
CREATE INDEX matters_account_id ON matters (account_id);
CREATE INDEX matters_status ON matters (status);

CREATE TABLE accounts (
    id TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    created_at TIMESTAMPTZ,
    updated_at TIMESTAMPTZ,
    deleted_at TIMESTAMPTZ,
    synced_at TIMESTAMPTZ NOT NULL,
    hash BIGINT NOT NULL,
    seen_run BIGINT NOT NULL,
    data JSONB NOT NULL,
    number BIGINT,
    display_name TEXT,
    company_name TEXT
);
CREATE INDEX accounts_updated_at ON accounts (updated_at);

CREATE TABLE contacts (
    id TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    created_at TIMESTAMPTZ,
    updated_at TIMESTAMPTZ,
    deleted_at TIMESTAMPTZ,
    synced_at TIMESTAMPTZ NOT NULL,
    hash BIGINT NOT NULL,
    seen_run BIGINT NOT NULL,
    data JSONB NOT NULL,
    account_id TEXT,
    display_name TEXT,
    email TEXT,
    is_primary_contact BOOLEAN,
    status TEXT
);
CREATE INDEX contacts_updated_at ON contacts (updated_at);
CREATE INDEX contacts_account_id ON contacts (account_id);
CREATE INDEX contacts_status ON contacts (status);

CREATE TABLE tasks (
    id TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    created_at TIMESTAMPTZ,
    updated_at TIMESTAMPTZ,
    deleted_at TIMESTAMPTZ,
    synced_at TIMESTAMPTZ NOT NULL,
    hash BIGINT NOT NULL,
    seen_run BIGINT NOT NULL,
    data JSONB NOT NULL,
    account_id TEXT,
    matter_id TEXT,
    subject TEXT,
    status TEXT,
    priority TEXT,
    due_date TIMESTAMPTZ
);
CREATE INDEX tasks_updated_at ON tasks (updated_at);
CREATE INDEX tasks_account_id ON tasks (account_id);
CREATE INDEX tasks_matter_id ON tasks (matter_id);
CREATE INDEX tasks_status ON tasks (status);
CREATE INDEX tasks_due_date ON tasks (due_date);

CREATE TABLE notes (
    id TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    created_at TIMESTAMPTZ,
    updated_at TIMESTAMPTZ,
    deleted_at TIMESTAMPTZ,
    synced_at TIMESTAMPTZ NOT NULL,
    hash BIGINT NOT NULL,
    seen_run BIGINT NOT NULL,
    data JSONB NOT NULL,
    account_id TEXT,
    matter_id TEXT,
    subject TEXT,
    date TIMESTAMPTZ
);
CREATE INDEX notes_updated_at ON notes (updated_at);
CREATE INDEX notes_account_id ON notes (account_id);
CREATE INDEX notes_matter_id ON notes (matter_id);
CREATE INDEX notes_date ON notes (date);

CREATE TABLE emails (
    id TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    created_at TIMESTAMPTZ,
    updated_at TIMESTAMPTZ,
    deleted_at TIMESTAMPTZ,
    synced_at TIMESTAMPTZ NOT NULL,
    hash BIGINT NOT NULL,
    seen_run BIGINT NOT NULL,
    data JSONB NOT NULL,
    account_id TEXT,
    matter_id TEXT,
    subject TEXT,
    date TIMESTAMPTZ
);
CREATE INDEX emails_updated_at ON emails (updated_at);
CREATE INDEX emails_account_id ON emails (account_id);
CREATE INDEX emails_matter_id ON emails (matter_id);
CREATE INDEX emails_date ON emails (date);

CREATE TABLE events (
    id TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    created_at TIMESTAMPTZ,
    updated_at TIMESTAMPTZ,
    deleted_at TIMESTAMPTZ,
    synced_at TIMESTAMPTZ NOT NULL,
    hash BIGINT NOT NULL,
    seen_run BIGINT NOT NULL,
    data JSONB NOT NULL,
    account_id TEXT,
    matter_id TEXT,
    subject TEXT,
    is_all_day BOOLEAN,
    start_date_time TIMESTAMPTZ,
    end_date_time TIMESTAMPTZ
);
CREATE INDEX events_updated_at ON events (updated_at);
CREATE INDEX events_account_id ON events (account_id);
CREATE INDEX events_matter_id ON events (matter_id);
CREATE INDEX events_start_date_time ON events (start_date_time);

CREATE TABLE call_logs (
    id TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    created_at TIMESTAMPTZ,
    updated_at TIMESTAMPTZ,
    deleted_at TIMESTAMPTZ,
    synced_at TIMESTAMPTZ NOT NULL,
    hash BIGINT NOT NULL,
    seen_run BIGINT NOT NULL,
    data JSONB NOT NULL,
    account_id TEXT,
    matter_id TEXT,
    subject TEXT,
    date TIMESTAMPTZ
);
CREATE INDEX call_logs_updated_at ON call_logs (updated_at);
CREATE INDEX call_logs_account_id ON call_logs (account_id);
CREATE INDEX call_logs_matter_id ON call_logs (matter_id);
CREATE INDEX call_logs_date ON call_logs (date);

CREATE TABLE time_entries (
    id TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    created_at TIMESTAMPTZ,
    updated_at TIMESTAMPTZ,
    deleted_at TIMESTAMPTZ,
    synced_at TIMESTAMPTZ NOT NULL,
    hash BIGINT NOT NULL,
    seen_run BIGINT NOT NULL,
    data JSONB NOT NULL,
    account_id TEXT,
    matter_id TEXT,
    billed_by_user_id TEXT,
    date TIMESTAMPTZ,
    hours DOUBLE PRECISION,
    is_billed BOOLEAN
);
CREATE INDEX time_entries_updated_at ON time_entries (updated_at);
CREATE INDEX time_entries_account_id ON time_entries (account_id);
CREATE INDEX time_entries_matter_id ON time_entries (matter_id);
CREATE INDEX time_entries_date ON time_entries (date);

CREATE TABLE expenses (
    id TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    created_at TIMESTAMPTZ,
    updated_at TIMESTAMPTZ,
    deleted_at TIMESTAMPTZ,
    synced_at TIMESTAMPTZ NOT NULL,
    hash BIGINT NOT NULL,
    seen_run BIGINT NOT NULL,
    data JSONB NOT NULL,
    account_id TEXT,
    matter_id TEXT,
    date TIMESTAMPTZ,
    amount DOUBLE PRECISION,
    is_billed BOOLEAN
);
CREATE INDEX expenses_updated_at ON expenses (updated_at);
CREATE INDEX expenses_account_id ON expenses (account_id);
CREATE INDEX expenses_matter_id ON expenses (matter_id);
CREATE INDEX expenses_date ON expenses (date);

CREATE TABLE flat_fees (
    id TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    created_at TIMESTAMPTZ,
    updated_at TIMESTAMPTZ,
    deleted_at TIMESTAMPTZ,
    synced_at TIMESTAMPTZ NOT NULL,
    hash BIGINT NOT NULL,
    seen_run BIGINT NOT NULL,
    data JSONB NOT NULL,
    account_id TEXT,
    matter_id TEXT,
    date TIMESTAMPTZ,
    price DOUBLE PRECISION,
    is_billed BOOLEAN
);
CREATE INDEX flat_fees_updated_at ON flat_fees (updated_at);
CREATE INDEX flat_fees_account_id ON flat_fees (account_id);
CREATE INDEX flat_fees_matter_id ON flat_fees (matter_id);
CREATE INDEX flat_fees_date ON flat_fees (date);

CREATE TABLE invoices (
    id TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    created_at TIMESTAMPTZ,
    updated_at TIMESTAMPTZ,
    deleted_at TIMESTAMPTZ,
    synced_at TIMESTAMPTZ NOT NULL,
    hash BIGINT NOT NULL,
    seen_run BIGINT NOT NULL,
    data JSONB NOT NULL,
    account_id TEXT,
    matter_id TEXT,
    issue_date TIMESTAMPTZ,
    due_date TIMESTAMPTZ,
    total DOUBLE PRECISION,
    total_outstanding DOUBLE PRECISION
);
CREATE INDEX invoices_updated_at ON invoices (updated_at);
CREATE INDEX invoices_account_id ON invoices (account_id);
CREATE INDEX invoices_matter_id ON invoices (matter_id);
CREATE INDEX invoices_issue_date ON invoices (issue_date);
CREATE INDEX invoices_due_date ON invoices (due_date);

CREATE TABLE payments (
    id TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    created_at TIMESTAMPTZ,
    updated_at TIMESTAMPTZ,
    deleted_at TIMESTAMPTZ,
    synced_at TIMESTAMPTZ NOT NULL,
    hash BIGINT NOT NULL,
    seen_run BIGINT NOT NULL,
    data JSONB NOT NULL,
    account_id TEXT,
    matter_id TEXT,
    date TIMESTAMPTZ,
    total_amount DOUBLE PRECISION,
    status TEXT
);
CREATE INDEX payments_updated_at ON payments (updated_at);
CREATE INDEX payments_account_id ON payments (account_id);
CREATE INDEX payments_matter_id ON payments (matter_id);
CREATE INDEX payments_date ON payments (date);
CREATE INDEX payments_status ON payments (status);

CREATE TABLE users (
    id TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    created_at TIMESTAMPTZ,
    updated_at TIMESTAMPTZ,
    deleted_at TIMESTAMPTZ,
    synced_at TIMESTAMPTZ NOT NULL,
    hash BIGINT NOT NULL,
    seen_run BIGINT NOT NULL,
    data JSONB NOT NULL,
    display_name TEXT,
    email TEXT,
    is_active BOOLEAN
);
CREATE INDEX users_updated_at ON users (updated_at);

CREATE TABLE items (
    id TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    created_at TIMESTAMPTZ,
    updated_at TIMESTAMPTZ,
    deleted_at TIMESTAMPTZ,
    synced_at TIMESTAMPTZ NOT NULL,
    hash BIGINT NOT NULL,
    seen_run BIGINT NOT NULL,
    data JSONB NOT NULL,
    name TEXT
);
CREATE INDEX items_updated_at ON items (updated_at);

CREATE TABLE expense_categories (
    id TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    created_at TIMESTAMPTZ,
    updated_at TIMESTAMPTZ,
    deleted_at TIMESTAMPTZ,
    synced_at TIMESTAMPTZ NOT NULL,
    hash BIGINT NOT NULL,
    seen_run BIGINT NOT NULL,
    data JSONB NOT NULL,
    name TEXT
);
CREATE INDEX expense_categories_updated_at ON expense_categories (updated_at);

CREATE TABLE bank_accounts (
    id TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    created_at TIMESTAMPTZ,
    updated_at TIMESTAMPTZ,
    deleted_at TIMESTAMPTZ,
    synced_at TIMESTAMPTZ NOT NULL,
    hash BIGINT NOT NULL,
    seen_run BIGINT NOT NULL,
    data JSONB NOT NULL,
    name TEXT,
    type TEXT
);
CREATE INDEX bank_accounts_updated_at ON bank_accounts (updated_at);

CREATE TABLE custom_fields_company (
    id TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    created_at TIMESTAMPTZ,
    updated_at TIMESTAMPTZ,
    deleted_at TIMESTAMPTZ,
    synced_at TIMESTAMPTZ NOT NULL,
    hash BIGINT NOT NULL,
    seen_run BIGINT NOT NULL,
    data JSONB NOT NULL,
    label TEXT,
    value_type TEXT
);
CREATE INDEX custom_fields_company_updated_at ON custom_fields_company (updated_at);

CREATE TABLE custom_fields_matter (
    id TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    created_at TIMESTAMPTZ,
    updated_at TIMESTAMPTZ,
    deleted_at TIMESTAMPTZ,
    synced_at TIMESTAMPTZ NOT NULL,
    hash BIGINT NOT NULL,
    seen_run BIGINT NOT NULL,
    data JSONB NOT NULL,
    label TEXT,
    value_type TEXT
);
CREATE INDEX custom_fields_matter_updated_at ON custom_fields_matter (updated_at);

CREATE TABLE custom_fields_contact (
    id TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    created_at TIMESTAMPTZ,
    updated_at TIMESTAMPTZ,
    deleted_at TIMESTAMPTZ,
    synced_at TIMESTAMPTZ NOT NULL,
    hash BIGINT NOT NULL,
    seen_run BIGINT NOT NULL,
    data JSONB NOT NULL,
    label TEXT,
    value_type TEXT
);
CREATE INDEX custom_fields_contact_updated_at ON custom_fields_contact (updated_at);

CREATE TABLE relationships (
    id TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    created_at TIMESTAMPTZ,
    updated_at TIMESTAMPTZ,
    deleted_at TIMESTAMPTZ,
    synced_at TIMESTAMPTZ NOT NULL,
    hash BIGINT NOT NULL,
    seen_run BIGINT NOT NULL,
    data JSONB NOT NULL,
    contact_id TEXT,
    matter_id TEXT,
    name TEXT
);
CREATE INDEX relationships_updated_at ON relationships (updated_at);
CREATE INDEX relationships_contact_id ON relationships (contact_id);
CREATE INDEX relationships_matter_id ON relationships (matter_id);

CREATE TABLE files (
    id TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    created_at TIMESTAMPTZ,
    updated_at TIMESTAMPTZ,
    deleted_at TIMESTAMPTZ,
    synced_at TIMESTAMPTZ NOT NULL,
    hash BIGINT NOT NULL,
    seen_run BIGINT NOT NULL,
    data JSONB NOT NULL,
    account_id TEXT,
    matter_id TEXT,
    file_name TEXT
);
CREATE INDEX files_updated_at ON files (updated_at);
CREATE INDEX files_account_id ON files (account_id);
CREATE INDEX files_matter_id ON files (matter_id);

CREATE TABLE messages (
    id TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    created_at TIMESTAMPTZ,
    updated_at TIMESTAMPTZ,
    deleted_at TIMESTAMPTZ,
    synced_at TIMESTAMPTZ NOT NULL,
    hash BIGINT NOT NULL,
    seen_run BIGINT NOT NULL,
    data JSONB NOT NULL,
    account_id TEXT,
    matter_id TEXT,
    contact_id TEXT,
    sent_date TIMESTAMPTZ
);
CREATE INDEX messages_updated_at ON messages (updated_at);
CREATE INDEX messages_account_id ON messages (account_id);
CREATE INDEX messages_matter_id ON messages (matter_id);
CREATE INDEX messages_contact_id ON messages (contact_id);
CREATE INDEX messages_sent_date ON messages (sent_date);

CREATE TABLE tags_account (
    id TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    created_at TIMESTAMPTZ,
    updated_at TIMESTAMPTZ,
    deleted_at TIMESTAMPTZ,
    synced_at TIMESTAMPTZ NOT NULL,
    hash BIGINT NOT NULL,
    seen_run BIGINT NOT NULL,
    data JSONB NOT NULL
);
CREATE INDEX tags_account_updated_at ON tags_account (updated_at);

CREATE TABLE tags_matter (
    id TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    created_at TIMESTAMPTZ,
    updated_at TIMESTAMPTZ,
    deleted_at TIMESTAMPTZ,
    synced_at TIMESTAMPTZ NOT NULL,
    hash BIGINT NOT NULL,
    seen_run BIGINT NOT NULL,
    data JSONB NOT NULL
);
CREATE INDEX tags_matter_updated_at ON tags_matter (updated_at);

CREATE TABLE tags_activity (
    id TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    created_at TIMESTAMPTZ,
    updated_at TIMESTAMPTZ,
    deleted_at TIMESTAMPTZ,
    synced_at TIMESTAMPTZ NOT NULL,
    hash BIGINT NOT NULL,
    seen_run BIGINT NOT NULL,
    data JSONB NOT NULL
);
CREATE INDEX tags_activity_updated_at ON tags_activity (updated_at);
-- Per-resource sync state. `cursor` is the server time up to which the mirror is complete;
-- `listing` is the resume point of a listing in flight (NULL when none). Both move only in the
-- transaction that commits the records they cover.
CREATE TABLE sync_state (
    resource TEXT PRIMARY KEY NOT NULL,
    cursor TIMESTAMPTZ,
    -- Our own clock when the cursor last moved: how long ago the last complete listing was,
    -- whatever the server's clock says.
    cursor_set_at TIMESTAMPTZ,
    listing TEXT,
    last_full_at TIMESTAMPTZ,
    updated_at TIMESTAMPTZ NOT NULL
);

-- The OAuth token pair. Written before a rotated refresh token is used.
CREATE TABLE oauth_tokens (
    id BIGINT PRIMARY KEY CHECK (id = 1),
    access_token TEXT NOT NULL,
    refresh_token TEXT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);

-- One row per pass (a CLI `sync` or a daemon cycle).
CREATE TABLE sync_cycles (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    started_at TIMESTAMPTZ NOT NULL,
    finished_at TIMESTAMPTZ,
    trigger TEXT NOT NULL,
    requests BIGINT NOT NULL DEFAULT 0,
    outcome TEXT NOT NULL DEFAULT 'running'
);

-- One row per resource synced in a pass: the run history.
CREATE TABLE sync_runs (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    cycle_id BIGINT,
    resource TEXT NOT NULL,
    mode TEXT NOT NULL,
    started_at TIMESTAMPTZ NOT NULL,
    finished_at TIMESTAMPTZ,
    requests BIGINT NOT NULL DEFAULT 0,
    records_seen BIGINT NOT NULL DEFAULT 0,
    records_changed BIGINT NOT NULL DEFAULT 0,
    records_deleted BIGINT NOT NULL DEFAULT 0,
    outcome TEXT NOT NULL DEFAULT 'running',
    error TEXT
);
CREATE INDEX sync_runs_resource ON sync_runs (resource, id);
CREATE INDEX sync_runs_cycle ON sync_runs (cycle_id);

-- Notifications (new tasks, near deadlines), written in the transaction of the records that caused
-- them and delivered at least once by the daemon. `id` is stable (kind, record, due date), so a
-- re-read never enqueues twice and receivers can deduplicate.
CREATE TABLE outbox (
    id TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    kind TEXT NOT NULL,
    resource TEXT NOT NULL,
    record_id TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    -- 'pending', 'delivered', or 'suppressed' (seen during a first backfill: never sent).
    status TEXT NOT NULL DEFAULT 'pending',
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ NOT NULL,
    delivered_at TIMESTAMPTZ,
    last_error TEXT
);
CREATE INDEX outbox_pending ON outbox (status, next_attempt_at);

-- The reconciliation looks for live records not seen since a listing began (`seen_run <`):
-- an index keeps that a range scan instead of reading every row of every table.
CREATE INDEX matters_seen_run ON matters (seen_run);
CREATE INDEX accounts_seen_run ON accounts (seen_run);
CREATE INDEX contacts_seen_run ON contacts (seen_run);
CREATE INDEX tasks_seen_run ON tasks (seen_run);
CREATE INDEX notes_seen_run ON notes (seen_run);
CREATE INDEX emails_seen_run ON emails (seen_run);
CREATE INDEX events_seen_run ON events (seen_run);
CREATE INDEX call_logs_seen_run ON call_logs (seen_run);
CREATE INDEX time_entries_seen_run ON time_entries (seen_run);
CREATE INDEX expenses_seen_run ON expenses (seen_run);
CREATE INDEX flat_fees_seen_run ON flat_fees (seen_run);
CREATE INDEX invoices_seen_run ON invoices (seen_run);
CREATE INDEX payments_seen_run ON payments (seen_run);
CREATE INDEX users_seen_run ON users (seen_run);
CREATE INDEX items_seen_run ON items (seen_run);
CREATE INDEX expense_categories_seen_run ON expense_categories (seen_run);
CREATE INDEX bank_accounts_seen_run ON bank_accounts (seen_run);
CREATE INDEX custom_fields_company_seen_run ON custom_fields_company (seen_run);
CREATE INDEX custom_fields_matter_seen_run ON custom_fields_matter (seen_run);
CREATE INDEX custom_fields_contact_seen_run ON custom_fields_contact (seen_run);
CREATE INDEX relationships_seen_run ON relationships (seen_run);
CREATE INDEX files_seen_run ON files (seen_run);
CREATE INDEX messages_seen_run ON messages (seen_run);
CREATE INDEX tags_account_seen_run ON tags_account (seen_run);
CREATE INDEX tags_matter_seen_run ON tags_matter (seen_run);
CREATE INDEX tags_activity_seen_run ON tags_activity (seen_run);
