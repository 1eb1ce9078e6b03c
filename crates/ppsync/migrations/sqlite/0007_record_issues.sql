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
    first_seen TEXT NOT NULL,
    last_seen TEXT NOT NULL,
    PRIMARY KEY (resource, record_id, field)
);
