-- Read receipts: the latest event each user has read in each room, per
-- receipt type (m.read, m.read.private) and thread ('' for the main timeline).
CREATE TABLE receipts (
    room_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    receipt_type TEXT NOT NULL,
    thread_id TEXT NOT NULL DEFAULT '',
    event_id TEXT NOT NULL,
    -- The receipted event's stream position: receipts only move forward.
    event_ordering INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    stream_id INTEGER NOT NULL,
    PRIMARY KEY (room_id, user_id, receipt_type, thread_id)
);
CREATE INDEX receipts_by_stream ON receipts (stream_id);
INSERT INTO stream_positions (stream, position) VALUES ('receipts', 0);
