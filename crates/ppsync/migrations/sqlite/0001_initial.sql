-- ppsync schema v1 (SQLite). One table per resource, as crates/ppsync/src/resource.rs lists them;
-- the test `schema_matches_resource_table` keeps the two in step. Never edit an applied migration.

CREATE TABLE matters (
    id TEXT PRIMARY KEY NOT NULL,
    created_at TEXT,
    updated_at TEXT,
    deleted_at TEXT,
    synced_at TEXT NOT NULL,
    hash INTEGER NOT NULL,
    seen_run INTEGER NOT NULL,
    data TEXT NOT NULL,
    account_id TEXT,
    number INTEGER,
    display_name TEXT,
    status TEXT,
    open_date TEXT,
    close_date TEXT,
    statute_of_limitation_date TEXT
);
CREATE INDEX matters_updated_at ON matters (updated_at);
CREATE INDEX matters_account_id ON matters (account_id);
CREATE INDEX matters_status ON matters (status);

CREATE TABLE accounts (
    id TEXT PRIMARY KEY NOT NULL,
    created_at TEXT,
    updated_at TEXT,
    deleted_at TEXT,
    synced_at TEXT NOT NULL,
    hash INTEGER NOT NULL,
    seen_run INTEGER NOT NULL,
    data TEXT NOT NULL,
    number INTEGER,
    display_name TEXT,
    company_name TEXT
);
CREATE INDEX accounts_updated_at ON accounts (updated_at);

CREATE TABLE contacts (
    id TEXT PRIMARY KEY NOT NULL,
    created_at TEXT,
    updated_at TEXT,
    deleted_at TEXT,
    synced_at TEXT NOT NULL,
    hash INTEGER NOT NULL,
    seen_run INTEGER NOT NULL,
    data TEXT NOT NULL,
    account_id TEXT,
    display_name TEXT,
    email TEXT,
    is_primary_contact INTEGER,
    status TEXT
);
CREATE INDEX contacts_updated_at ON contacts (updated_at);
CREATE INDEX contacts_account_id ON contacts (account_id);
CREATE INDEX contacts_status ON contacts (status);

CREATE TABLE tasks (
    id TEXT PRIMARY KEY NOT NULL,
    created_at TEXT,
    updated_at TEXT,
    deleted_at TEXT,
    synced_at TEXT NOT NULL,
    hash INTEGER NOT NULL,
    seen_run INTEGER NOT NULL,
    data TEXT NOT NULL,
    account_id TEXT,
    matter_id TEXT,
    subject TEXT,
    status TEXT,
    priority TEXT,
    due_date TEXT
);
CREATE INDEX tasks_updated_at ON tasks (updated_at);
CREATE INDEX tasks_account_id ON tasks (account_id);
CREATE INDEX tasks_matter_id ON tasks (matter_id);
CREATE INDEX tasks_status ON tasks (status);
CREATE INDEX tasks_due_date ON tasks (due_date);

CREATE TABLE notes (
    id TEXT PRIMARY KEY NOT NULL,
    created_at TEXT,
    updated_at TEXT,
    deleted_at TEXT,
    synced_at TEXT NOT NULL,
    hash INTEGER NOT NULL,
    seen_run INTEGER NOT NULL,
    data TEXT NOT NULL,
    account_id TEXT,
    matter_id TEXT,
    subject TEXT,
    date TEXT
);
CREATE INDEX notes_updated_at ON notes (updated_at);
CREATE INDEX notes_account_id ON notes (account_id);
CREATE INDEX notes_matter_id ON notes (matter_id);
CREATE INDEX notes_date ON notes (date);

CREATE TABLE emails (
    id TEXT PRIMARY KEY NOT NULL,
    created_at TEXT,
    updated_at TEXT,
    deleted_at TEXT,
    synced_at TEXT NOT NULL,
    hash INTEGER NOT NULL,
    seen_run INTEGER NOT NULL,
    data TEXT NOT NULL,
    account_id TEXT,
    matter_id TEXT,
    subject TEXT,
    date TEXT
);
CREATE INDEX emails_updated_at ON emails (updated_at);
CREATE INDEX emails_account_id ON emails (account_id);
CREATE INDEX emails_matter_id ON emails (matter_id);
CREATE INDEX emails_date ON emails (date);

CREATE TABLE events (
    id TEXT PRIMARY KEY NOT NULL,
    created_at TEXT,
    updated_at TEXT,
    deleted_at TEXT,
    synced_at TEXT NOT NULL,
    hash INTEGER NOT NULL,
    seen_run INTEGER NOT NULL,
    data TEXT NOT NULL,
    account_id TEXT,
    matter_id TEXT,
    subject TEXT,
    is_all_day INTEGER,
    start_date_time TEXT,
    end_date_time TEXT
);
CREATE INDEX events_updated_at ON events (updated_at);
CREATE INDEX events_account_id ON events (account_id);
CREATE INDEX events_matter_id ON events (matter_id);
CREATE INDEX events_start_date_time ON events (start_date_time);

CREATE TABLE call_logs (
    id TEXT PRIMARY KEY NOT NULL,
    created_at TEXT,
    updated_at TEXT,
    deleted_at TEXT,
    synced_at TEXT NOT NULL,
    hash INTEGER NOT NULL,
    seen_run INTEGER NOT NULL,
    data TEXT NOT NULL,
    account_id TEXT,
    matter_id TEXT,
    subject TEXT,
    date TEXT
);
CREATE INDEX call_logs_updated_at ON call_logs (updated_at);
CREATE INDEX call_logs_account_id ON call_logs (account_id);
CREATE INDEX call_logs_matter_id ON call_logs (matter_id);
CREATE INDEX call_logs_date ON call_logs (date);

CREATE TABLE time_entries (
    id TEXT PRIMARY KEY NOT NULL,
    created_at TEXT,
    updated_at TEXT,
    deleted_at TEXT,
    synced_at TEXT NOT NULL,
    hash INTEGER NOT NULL,
    seen_run INTEGER NOT NULL,
    data TEXT NOT NULL,
    account_id TEXT,
    matter_id TEXT,
    billed_by_user_id TEXT,
    date TEXT,
    hours REAL,
    is_billed INTEGER
);
CREATE INDEX time_entries_updated_at ON time_entries (updated_at);
CREATE INDEX time_entries_account_id ON time_entries (account_id);
CREATE INDEX time_entries_matter_id ON time_entries (matter_id);
CREATE INDEX time_entries_date ON time_entries (date);

CREATE TABLE expenses (
    id TEXT PRIMARY KEY NOT NULL,
    created_at TEXT,
    updated_at TEXT,
    deleted_at TEXT,
    synced_at TEXT NOT NULL,
    hash INTEGER NOT NULL,
    seen_run INTEGER NOT NULL,
    data TEXT NOT NULL,
    account_id TEXT,
    matter_id TEXT,
    date TEXT,
    amount REAL,
    is_billed INTEGER
);
CREATE INDEX expenses_updated_at ON expenses (updated_at);
CREATE INDEX expenses_account_id ON expenses (account_id);
CREATE INDEX expenses_matter_id ON expenses (matter_id);
CREATE INDEX expenses_date ON expenses (date);

CREATE TABLE flat_fees (
    id TEXT PRIMARY KEY NOT NULL,
    created_at TEXT,
    updated_at TEXT,
    deleted_at TEXT,
    synced_at TEXT NOT NULL,
    hash INTEGER NOT NULL,
    seen_run INTEGER NOT NULL,
    data TEXT NOT NULL,
    account_id TEXT,
    matter_id TEXT,
    date TEXT,
    price REAL,
    is_billed INTEGER
);
CREATE INDEX flat_fees_updated_at ON flat_fees (updated_at);
CREATE INDEX flat_fees_account_id ON flat_fees (account_id);
CREATE INDEX flat_fees_matter_id ON flat_fees (matter_id);
CREATE INDEX flat_fees_date ON flat_fees (date);

CREATE TABLE invoices (
    id TEXT PRIMARY KEY NOT NULL,
    created_at TEXT,
    updated_at TEXT,
    deleted_at TEXT,
    synced_at TEXT NOT NULL,
    hash INTEGER NOT NULL,
    seen_run INTEGER NOT NULL,
    data TEXT NOT NULL,
    account_id TEXT,
    matter_id TEXT,
    issue_date TEXT,
    due_date TEXT,
    total REAL,
    total_outstanding REAL
);
CREATE INDEX invoices_updated_at ON invoices (updated_at);
CREATE INDEX invoices_account_id ON invoices (account_id);
CREATE INDEX invoices_matter_id ON invoices (matter_id);
CREATE INDEX invoices_issue_date ON invoices (issue_date);
CREATE INDEX invoices_due_date ON invoices (due_date);

CREATE TABLE payments (
    id TEXT PRIMARY KEY NOT NULL,
    created_at TEXT,
    updated_at TEXT,
    deleted_at TEXT,
    synced_at TEXT NOT NULL,
    hash INTEGER NOT NULL,
    seen_run INTEGER NOT NULL,
    data TEXT NOT NULL,
    account_id TEXT,
    matter_id TEXT,
    date TEXT,
    total_amount REAL,
    status TEXT
);
CREATE INDEX payments_updated_at ON payments (updated_at);
CREATE INDEX payments_account_id ON payments (account_id);
CREATE INDEX payments_matter_id ON payments (matter_id);
CREATE INDEX payments_date ON payments (date);
CREATE INDEX payments_status ON payments (status);

CREATE TABLE users (
    id TEXT PRIMARY KEY NOT NULL,
    created_at TEXT,
    updated_at TEXT,
    deleted_at TEXT,
    synced_at TEXT NOT NULL,
    hash INTEGER NOT NULL,
    seen_run INTEGER NOT NULL,
    data TEXT NOT NULL,
    display_name TEXT,
    email TEXT,
    is_active INTEGER
);
CREATE INDEX users_updated_at ON users (updated_at);

CREATE TABLE items (
    id TEXT PRIMARY KEY NOT NULL,
    created_at TEXT,
    updated_at TEXT,
    deleted_at TEXT,
    synced_at TEXT NOT NULL,
    hash INTEGER NOT NULL,
    seen_run INTEGER NOT NULL,
    data TEXT NOT NULL,
    name TEXT
);
CREATE INDEX items_updated_at ON items (updated_at);

CREATE TABLE expense_categories (
    id TEXT PRIMARY KEY NOT NULL,
    created_at TEXT,
    updated_at TEXT,
    deleted_at TEXT,
    synced_at TEXT NOT NULL,
    hash INTEGER NOT NULL,
    seen_run INTEGER NOT NULL,
    data TEXT NOT NULL,
    name TEXT
);
CREATE INDEX expense_categories_updated_at ON expense_categories (updated_at);

CREATE TABLE bank_accounts (
    id TEXT PRIMARY KEY NOT NULL,
    created_at TEXT,
    updated_at TEXT,
    deleted_at TEXT,
    synced_at TEXT NOT NULL,
    hash INTEGER NOT NULL,
    seen_run INTEGER NOT NULL,
    data TEXT NOT NULL,
    name TEXT,
    type TEXT
);
CREATE INDEX bank_accounts_updated_at ON bank_accounts (updated_at);

CREATE TABLE custom_fields_company (
    id TEXT PRIMARY KEY NOT NULL,
    created_at TEXT,
    updated_at TEXT,
    deleted_at TEXT,
    synced_at TEXT NOT NULL,
    hash INTEGER NOT NULL,
    seen_run INTEGER NOT NULL,
    data TEXT NOT NULL,
    label TEXT,
    value_type TEXT
);
CREATE INDEX custom_fields_company_updated_at ON custom_fields_company (updated_at);

CREATE TABLE custom_fields_matter (
    id TEXT PRIMARY KEY NOT NULL,
    created_at TEXT,
    updated_at TEXT,
    deleted_at TEXT,
    synced_at TEXT NOT NULL,
    hash INTEGER NOT NULL,
    seen_run INTEGER NOT NULL,
    data TEXT NOT NULL,
    label TEXT,
    value_type TEXT
);
CREATE INDEX custom_fields_matter_updated_at ON custom_fields_matter (updated_at);

CREATE TABLE custom_fields_contact (
    id TEXT PRIMARY KEY NOT NULL,
    created_at TEXT,
    updated_at TEXT,
    deleted_at TEXT,
    synced_at TEXT NOT NULL,
    hash INTEGER NOT NULL,
    seen_run INTEGER NOT NULL,
    data TEXT NOT NULL,
    label TEXT,
    value_type TEXT
);
CREATE INDEX custom_fields_contact_updated_at ON custom_fields_contact (updated_at);

CREATE TABLE relationships (
    id TEXT PRIMARY KEY NOT NULL,
    created_at TEXT,
    updated_at TEXT,
    deleted_at TEXT,
    synced_at TEXT NOT NULL,
    hash INTEGER NOT NULL,
    seen_run INTEGER NOT NULL,
    data TEXT NOT NULL,
    contact_id TEXT,
    matter_id TEXT,
    name TEXT
);
CREATE INDEX relationships_updated_at ON relationships (updated_at);
CREATE INDEX relationships_contact_id ON relationships (contact_id);
CREATE INDEX relationships_matter_id ON relationships (matter_id);

CREATE TABLE files (
    id TEXT PRIMARY KEY NOT NULL,
    created_at TEXT,
    updated_at TEXT,
    deleted_at TEXT,
    synced_at TEXT NOT NULL,
    hash INTEGER NOT NULL,
    seen_run INTEGER NOT NULL,
    data TEXT NOT NULL,
    account_id TEXT,
    matter_id TEXT,
    file_name TEXT
);
CREATE INDEX files_updated_at ON files (updated_at);
CREATE INDEX files_account_id ON files (account_id);
CREATE INDEX files_matter_id ON files (matter_id);

CREATE TABLE messages (
    id TEXT PRIMARY KEY NOT NULL,
    created_at TEXT,
    updated_at TEXT,
    deleted_at TEXT,
    synced_at TEXT NOT NULL,
    hash INTEGER NOT NULL,
    seen_run INTEGER NOT NULL,
    data TEXT NOT NULL,
    account_id TEXT,
    matter_id TEXT,
    contact_id TEXT,
    sent_date TEXT
);
CREATE INDEX messages_updated_at ON messages (updated_at);
CREATE INDEX messages_account_id ON messages (account_id);
CREATE INDEX messages_matter_id ON messages (matter_id);
CREATE INDEX messages_contact_id ON messages (contact_id);
CREATE INDEX messages_sent_date ON messages (sent_date);

CREATE TABLE tags_account (
    id TEXT PRIMARY KEY NOT NULL,
    created_at TEXT,
    updated_at TEXT,
    deleted_at TEXT,
    synced_at TEXT NOT NULL,
    hash INTEGER NOT NULL,
    seen_run INTEGER NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX tags_account_updated_at ON tags_account (updated_at);

CREATE TABLE tags_matter (
    id TEXT PRIMARY KEY NOT NULL,
    created_at TEXT,
    updated_at TEXT,
    deleted_at TEXT,
    synced_at TEXT NOT NULL,
    hash INTEGER NOT NULL,
    seen_run INTEGER NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX tags_matter_updated_at ON tags_matter (updated_at);

CREATE TABLE tags_activity (
    id TEXT PRIMARY KEY NOT NULL,
    created_at TEXT,
    updated_at TEXT,
    deleted_at TEXT,
    synced_at TEXT NOT NULL,
    hash INTEGER NOT NULL,
    seen_run INTEGER NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX tags_activity_updated_at ON tags_activity (updated_at);

-- Per-resource sync state. `cursor` is the server time up to which the mirror is complete;
-- `listing` is the resume point of a listing in flight (NULL when none). Both move only in the
-- transaction that commits the records they cover.
CREATE TABLE sync_state (
    resource TEXT PRIMARY KEY NOT NULL,
    cursor TEXT,
    -- Our own clock when the cursor last moved: how long ago the last complete listing was,
    -- whatever the server's clock says.
    cursor_set_at TEXT,
    listing TEXT,
    last_full_at TEXT,
    updated_at TEXT NOT NULL
);

-- The OAuth token pair. Written before a rotated refresh token is used.
CREATE TABLE oauth_tokens (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    access_token TEXT NOT NULL,
    refresh_token TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

-- One row per pass (a CLI `sync` or a daemon cycle).
CREATE TABLE sync_cycles (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    trigger TEXT NOT NULL,
    requests INTEGER NOT NULL DEFAULT 0,
    outcome TEXT NOT NULL DEFAULT 'running'
);

-- One row per resource synced in a pass: the run history.
CREATE TABLE sync_runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    cycle_id INTEGER,
    resource TEXT NOT NULL,
    mode TEXT NOT NULL,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    requests INTEGER NOT NULL DEFAULT 0,
    records_seen INTEGER NOT NULL DEFAULT 0,
    records_changed INTEGER NOT NULL DEFAULT 0,
    records_deleted INTEGER NOT NULL DEFAULT 0,
    outcome TEXT NOT NULL DEFAULT 'running',
    error TEXT
);
CREATE INDEX sync_runs_resource ON sync_runs (resource, id);
CREATE INDEX sync_runs_cycle ON sync_runs (cycle_id);
