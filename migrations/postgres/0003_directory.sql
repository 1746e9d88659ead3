-- Room aliases (the local alias directory) and account data.

-- Aliases on this server's name, each pointing at one room.
CREATE TABLE room_aliases (
    alias TEXT PRIMARY KEY NOT NULL,
    room_id TEXT NOT NULL,
    -- Who created it: the user who may always delete it again.
    creator TEXT NOT NULL,
    created_ts BIGINT NOT NULL
);
CREATE INDEX room_aliases_by_room ON room_aliases (room_id, alias);

-- Per-user configuration: global (room_id = '') or scoped to one room.
CREATE TABLE account_data (
    user_id TEXT NOT NULL,
    room_id TEXT NOT NULL DEFAULT '',
    data_type TEXT NOT NULL,
    -- The JSON object the client stored.
    content TEXT NOT NULL,
    -- The stream position of the write that last set it (stream 'account_data'
    -- in stream_positions): /sync sends what changed since a position.
    stream_id BIGINT NOT NULL,
    PRIMARY KEY (user_id, room_id, data_type)
);
CREATE INDEX account_data_by_stream ON account_data (user_id, stream_id);

-- The latest position of each numbered stream that is not a table's own key.
-- A write takes the next position with UPDATE ... RETURNING inside its
-- transaction: the row lock hands positions out in commit order.
CREATE TABLE stream_positions (
    stream TEXT PRIMARY KEY NOT NULL,
    position BIGINT NOT NULL
);
INSERT INTO stream_positions (stream, position) VALUES ('account_data', 0);
