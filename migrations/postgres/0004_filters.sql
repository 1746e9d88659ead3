-- Filters clients upload (POST /user/{userId}/filter) and name in /sync.

-- Each filter is immutable once stored; its id is the row's key, which the
-- sequence never hands out twice, so an old id never names a new filter.
CREATE TABLE filters (
    filter_id BIGSERIAL PRIMARY KEY,
    -- The owner: only they may read it or use it.
    user_id TEXT NOT NULL,
    -- The Filter JSON object, as stored.
    filter TEXT NOT NULL,
    created_ts BIGINT NOT NULL
);
CREATE INDEX filters_by_user ON filters (user_id);
