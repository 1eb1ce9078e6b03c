-- Records to read by id (`GET /{resource}/{id}`) because the list leaves fields out (an email's
-- body_html, a payment's refundedAmount). A row is queued in the transaction that writes a new or
-- changed record, with the content hash the list gave it; the by-id rendering is stored only if
-- the record still has that hash (a later listing re-queues it otherwise), and the row goes in the
-- same transaction. A queue, not a flag, so a killed process resumes exactly where it was.
CREATE TABLE detail_queue (
    resource TEXT NOT NULL,
    id TEXT COLLATE "C" NOT NULL,
    hash BIGINT NOT NULL,
    queued_at TIMESTAMPTZ NOT NULL,
    next_at TIMESTAMPTZ NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    last_error TEXT,
    PRIMARY KEY (resource, id)
);
CREATE INDEX detail_queue_next ON detail_queue (next_at);

-- Every API request of this firm, whichever process made it (the daemon, a CLI pass beside it,
-- another instance), written before it is sent: one budget per firm. `answered_at` is set when
-- the answer came (a request counts in the window until then, or, for a process that died
-- meanwhile, until `sent_at` plus the request timeout). Instants in Unix milliseconds. Rows older
-- than the window are deleted as new ones come.
CREATE TABLE request_ledger (
    holder TEXT NOT NULL,
    seq BIGINT NOT NULL,
    sent_at BIGINT NOT NULL,
    answered_at BIGINT,
    PRIMARY KEY (holder, seq)
);
CREATE INDEX request_ledger_sent ON request_ledger (sent_at);
