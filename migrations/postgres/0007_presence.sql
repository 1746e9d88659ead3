-- Presence: each user's online state, with its own stream for /sync.
CREATE TABLE presence (
    user_id TEXT PRIMARY KEY NOT NULL,
    state TEXT NOT NULL,
    status_msg TEXT,
    last_active_ts BIGINT NOT NULL,
    stream_id BIGINT NOT NULL
);
CREATE INDEX presence_by_stream ON presence (stream_id);
INSERT INTO stream_positions (stream, position) VALUES ('presence', 0);
