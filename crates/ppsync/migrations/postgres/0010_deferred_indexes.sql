-- Secondary indexes set aside while a resource's first backfill fills its empty table (as on
-- SQLite: one sort each at the end instead of an insert into every index per row). A row is
-- written in the transaction that drops the index and deleted in the one that recreates it, so a
-- killed process never loses an index: opening the store recreates every index listed here.
CREATE TABLE deferred_indexes (
    name TEXT PRIMARY KEY NOT NULL,
    tbl TEXT NOT NULL,
    sql TEXT NOT NULL
);
