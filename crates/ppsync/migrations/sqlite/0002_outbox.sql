-- Notifications (new tasks, near deadlines), written in the transaction of the records that caused
-- them and delivered at least once by the daemon. `id` is stable (kind, record, due date), so a
-- re-read never enqueues twice and receivers can deduplicate.
CREATE TABLE outbox (
    id TEXT PRIMARY KEY NOT NULL,
    kind TEXT NOT NULL,
    resource TEXT NOT NULL,
    record_id TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at TEXT NOT NULL,
    -- 'pending', 'delivered', or 'suppressed' (seen during a first backfill: never sent).
    status TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    delivered_at TEXT,
    last_error TEXT
);
CREATE INDEX outbox_pending ON outbox (status, next_attempt_at);
