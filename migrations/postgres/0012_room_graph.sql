-- The room graph for federation: forward extremities, and the state before
-- and after every event as named state groups (a chain of deltas), so forks
-- can be resolved and the state at any event read.

-- Events no other event refers to yet: the next local event's prev_events.
CREATE TABLE room_extremities (
    room_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    PRIMARY KEY (room_id, event_id)
);

-- A state group is named by the state event that made it (the state after
-- that event) or, for a resolved state, by a hash of what was resolved. Its
-- entries are the changes to its parent; a group without parent holds all.
CREATE TABLE state_groups (
    group_id TEXT PRIMARY KEY NOT NULL,
    room_id TEXT NOT NULL,
    parent_id TEXT,
    -- Groups between this one and its chain's full snapshot.
    chain_length BIGINT NOT NULL
);
CREATE TABLE state_group_entries (
    group_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    state_key TEXT NOT NULL,
    -- Empty: the key was removed (resolution may drop a key).
    event_id TEXT NOT NULL,
    PRIMARY KEY (group_id, event_type, state_key)
);

-- Outliers (events received for their state or auth chain, not as part of
-- the timeline) have negative positions, below every sync token.
ALTER TABLE events ADD COLUMN outlier BIGINT NOT NULL DEFAULT 0;
ALTER TABLE events ADD COLUMN state_before TEXT;
ALTER TABLE events ADD COLUMN state_after TEXT;
ALTER TABLE rooms ADD COLUMN state_group TEXT;

-- Rooms so far were linear: each state event's group extends the previous one's.
INSERT INTO state_groups (group_id, room_id, parent_id, chain_length)
SELECT event_id, room_id,
       LAG(event_id) OVER (PARTITION BY room_id ORDER BY stream_ordering),
       ROW_NUMBER() OVER (PARTITION BY room_id ORDER BY stream_ordering) - 1
FROM events WHERE state_key IS NOT NULL;
INSERT INTO state_group_entries (group_id, event_type, state_key, event_id)
SELECT event_id, event_type, state_key, event_id FROM events WHERE state_key IS NOT NULL;
UPDATE events SET state_after = (
    SELECT s.event_id FROM events s
    WHERE s.room_id = events.room_id AND s.state_key IS NOT NULL
      AND s.stream_ordering <= events.stream_ordering
    ORDER BY s.stream_ordering DESC LIMIT 1);
UPDATE events SET state_before = CASE WHEN state_key IS NULL THEN state_after ELSE (
    SELECT s.event_id FROM events s
    WHERE s.room_id = events.room_id AND s.state_key IS NOT NULL
      AND s.stream_ordering < events.stream_ordering
    ORDER BY s.stream_ordering DESC LIMIT 1) END;
UPDATE rooms SET state_group = (SELECT state_after FROM events WHERE event_id = rooms.head_event_id);
INSERT INTO room_extremities (room_id, event_id) SELECT room_id, head_event_id FROM rooms;
