-- Secondary indexes set aside while a resource's first backfill fills its table (random-order
-- inserts into every index of a big table outgrow the page cache; one sort at the end does not).
-- A row is written in the transaction that drops the index and deleted in the transaction that
-- recreates it, so a killed process never loses an index: the store recreates every index listed
-- here when it opens, and the backfill recreates its own in the transaction that completes it.
CREATE TABLE deferred_indexes (
    name TEXT PRIMARY KEY NOT NULL,
    tbl TEXT NOT NULL,
    sql TEXT NOT NULL
);
