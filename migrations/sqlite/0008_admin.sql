-- Administration: registration tokens, rooms an administrator shut down,
-- and the federation allow and deny lists.
CREATE TABLE registration_tokens (
    token TEXT PRIMARY KEY NOT NULL,
    -- NULL: unlimited.
    uses_allowed INTEGER,
    completed INTEGER NOT NULL DEFAULT 0,
    -- NULL: never expires.
    expiry_ts INTEGER,
    created_ts INTEGER NOT NULL
);

-- Nobody may join these rooms again; their events may have been purged.
CREATE TABLE blocked_rooms (
    room_id TEXT PRIMARY KEY NOT NULL,
    blocked_by TEXT NOT NULL,
    blocked_ts INTEGER NOT NULL
);

-- Server name patterns ('*' matches any run of characters). With any
-- 'allow' pattern, only matching servers federate; 'deny' always wins.
CREATE TABLE federation_rules (
    rule TEXT NOT NULL,
    server_pattern TEXT NOT NULL,
    PRIMARY KEY (rule, server_pattern)
);
