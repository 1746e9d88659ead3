-- What this server owes other servers: the events each destination is
-- still to receive, in order, and how sending to each one fares.
CREATE TABLE federation_outbox (
    destination TEXT NOT NULL,
    stream_ordering BIGINT NOT NULL,
    event_id TEXT NOT NULL,
    PRIMARY KEY (destination, stream_ordering)
);

CREATE TABLE destinations (
    destination TEXT PRIMARY KEY NOT NULL,
    -- Failed attempts in a row, and when to try again.
    failures BIGINT NOT NULL DEFAULT 0,
    retry_at BIGINT NOT NULL DEFAULT 0,
    last_error TEXT,
    last_success_ts BIGINT,
    -- The instance sending to it, so several instances never send twice.
    lease_owner TEXT,
    lease_until BIGINT NOT NULL DEFAULT 0
);

-- The room state other servers showed with their invites to rooms this
-- server is not in (what the invitee's client sees of the room).
CREATE TABLE remote_invites (
    room_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    invite_state TEXT NOT NULL,
    PRIMARY KEY (room_id, user_id)
);
