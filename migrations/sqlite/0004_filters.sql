-- Filters clients upload (POST /user/{userId}/filter) and name in /sync.

-- Each filter is immutable once stored; its id is the row's key, which
-- AUTOINCREMENT never hands out twice, so an old id never names a new filter.
CREATE TABLE filters (
    filter_id INTEGER PRIMARY KEY AUTOINCREMENT,
    -- The owner: only they may read it or use it.
    user_id TEXT NOT NULL,
    -- The Filter JSON object, as stored.
    filter TEXT NOT NULL,
    created_ts INTEGER NOT NULL
);
CREATE INDEX filters_by_user ON filters (user_id);
