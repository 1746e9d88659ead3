-- Rooms and their events. Every event is a signed PDU kept verbatim (its
-- redacted form once redacted); stream_ordering is the order this server
-- accepted events in, and the position clients paginate and sync by.
CREATE TABLE rooms (
    room_id TEXT PRIMARY KEY NOT NULL,
    room_version TEXT NOT NULL,
    creator TEXT NOT NULL,
    -- The latest event: the next local event's only prev_event.
    head_event_id TEXT NOT NULL,
    head_depth INTEGER NOT NULL,
    -- Listed in the public room directory.
    published INTEGER NOT NULL DEFAULT 0,
    created_ts INTEGER NOT NULL
);

CREATE TABLE events (
    stream_ordering INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    room_id TEXT NOT NULL,
    sender TEXT NOT NULL,
    event_type TEXT NOT NULL,
    state_key TEXT,
    -- For m.room.member events: the membership it sets.
    membership TEXT,
    depth INTEGER NOT NULL,
    origin_server_ts INTEGER NOT NULL,
    json TEXT NOT NULL,
    redacted_by TEXT
);
CREATE INDEX events_by_room ON events (room_id, stream_ordering);
CREATE INDEX state_events_by_key ON events (room_id, event_type, state_key, stream_ordering)
    WHERE state_key IS NOT NULL;
CREATE INDEX memberships_by_user ON events (state_key, room_id, stream_ordering)
    WHERE event_type = 'm.room.member';

-- The state of each room after its latest event.
CREATE TABLE current_state (
    room_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    state_key TEXT NOT NULL,
    event_id TEXT NOT NULL,
    membership TEXT,
    PRIMARY KEY (room_id, event_type, state_key)
);
CREATE INDEX current_memberships_by_user ON current_state (state_key, membership)
    WHERE event_type = 'm.room.member';

-- PUT /send and /redact transaction ids, so a retried request returns the same event.
CREATE TABLE event_txns (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    txn_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    created_ts INTEGER NOT NULL,
    PRIMARY KEY (user_id, device_id, txn_id)
);

-- Rooms a user has left and asked to forget.
CREATE TABLE forgotten_rooms (
    user_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    PRIMARY KEY (user_id, room_id)
);
