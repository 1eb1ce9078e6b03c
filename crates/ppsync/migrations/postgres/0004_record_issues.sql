-- What could not be read of a record into its typed columns (the record itself is stored as
-- received; the column is NULL): one row per record and field, with when it was first and last
-- seen. A record without its key cannot be stored: it is listed here under `?<content hash>`,
-- with the start of its text in `sample`. Rows go when the record is received clean again.
CREATE TABLE record_issues (
    resource TEXT NOT NULL,
    record_id TEXT NOT NULL,
    field TEXT NOT NULL,
    problem TEXT NOT NULL,
    sample TEXT,
    first_seen TIMESTAMPTZ NOT NULL,
    last_seen TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (resource, record_id, field)
);

-- jsonb cannot hold \u0000 nor a lone UTF-16 surrogate: such a record's `data` holds them as
-- U+FFFD (so jsonb queries work), and `raw` holds the record exactly as received (export reads
-- it). NULL for every other record.
ALTER TABLE matters ADD COLUMN raw TEXT;
ALTER TABLE accounts ADD COLUMN raw TEXT;
ALTER TABLE contacts ADD COLUMN raw TEXT;
ALTER TABLE tasks ADD COLUMN raw TEXT;
ALTER TABLE notes ADD COLUMN raw TEXT;
ALTER TABLE emails ADD COLUMN raw TEXT;
ALTER TABLE events ADD COLUMN raw TEXT;
ALTER TABLE call_logs ADD COLUMN raw TEXT;
ALTER TABLE time_entries ADD COLUMN raw TEXT;
ALTER TABLE expenses ADD COLUMN raw TEXT;
ALTER TABLE flat_fees ADD COLUMN raw TEXT;
ALTER TABLE invoices ADD COLUMN raw TEXT;
ALTER TABLE payments ADD COLUMN raw TEXT;
ALTER TABLE users ADD COLUMN raw TEXT;
ALTER TABLE items ADD COLUMN raw TEXT;
ALTER TABLE expense_categories ADD COLUMN raw TEXT;
ALTER TABLE bank_accounts ADD COLUMN raw TEXT;
ALTER TABLE custom_fields_company ADD COLUMN raw TEXT;
ALTER TABLE custom_fields_matter ADD COLUMN raw TEXT;
ALTER TABLE custom_fields_contact ADD COLUMN raw TEXT;
ALTER TABLE relationships ADD COLUMN raw TEXT;
ALTER TABLE files ADD COLUMN raw TEXT;
ALTER TABLE messages ADD COLUMN raw TEXT;
ALTER TABLE tags_account ADD COLUMN raw TEXT;
ALTER TABLE tags_matter ADD COLUMN raw TEXT;
ALTER TABLE tags_activity ADD COLUMN raw TEXT;
