-- Records to read by id (`GET /{resource}/{id}`) because the list leaves fields out (an email's
-- body_html, a payment's refundedAmount). A row is queued in the transaction that writes a new or
-- changed record, with the content hash the list gave it; the by-id rendering is stored only if
-- the record still has that hash (a later listing re-queues it otherwise), and the row goes in the
-- same transaction. A queue, not a flag, so a killed process resumes exactly where it was.
CREATE TABLE detail_queue (
    resource TEXT NOT NULL,
    id TEXT NOT NULL,
    hash INTEGER NOT NULL,
    queued_at TEXT NOT NULL,
    next_at TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    PRIMARY KEY (resource, id)
);
CREATE INDEX detail_queue_next ON detail_queue (next_at);
