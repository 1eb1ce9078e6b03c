-- What the engine has learned of each endpoint's dialect (page cap, which OData options it
-- honours, ignores or rejects, updated_since semantics, timestamp forms), one JSON document per
-- endpoint (the resource's name; `*` holds firm-wide facts: the request rate, the clock's skew).
CREATE TABLE dialects (
    endpoint TEXT PRIMARY KEY NOT NULL,
    facts TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

-- How the last complete listing of a resource ended: `incomplete` says which records it could not
-- reach (evidence that some exist), `unproven` why completeness could not be proven although
-- nothing was seen missing. NULL: proven complete (or never listed).
ALTER TABLE sync_state ADD COLUMN incomplete TEXT;
ALTER TABLE sync_state ADD COLUMN unproven TEXT;
