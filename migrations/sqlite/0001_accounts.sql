-- Accounts, their devices (one login session each), refresh tokens and
-- user-interactive authentication sessions. Times are Unix milliseconds;
-- flags are 0/1 integers so one query text serves SQLite and PostgreSQL.
CREATE TABLE users (
    user_id TEXT PRIMARY KEY NOT NULL,
    password_hash TEXT,
    displayname TEXT,
    avatar_url TEXT,
    is_admin INTEGER NOT NULL DEFAULT 0,
    deactivated INTEGER NOT NULL DEFAULT 0,
    created_ts INTEGER NOT NULL
);

CREATE TABLE devices (
    user_id TEXT NOT NULL REFERENCES users (user_id),
    device_id TEXT NOT NULL,
    display_name TEXT,
    -- Random per login; access tokens name it, so a new login on the same
    -- device id invalidates the tokens of the previous one.
    session_id TEXT NOT NULL UNIQUE,
    -- Bumped by every refresh: access tokens of older generations are dead.
    token_generation INTEGER NOT NULL DEFAULT 0,
    last_seen_ts INTEGER,
    last_seen_ip TEXT,
    created_ts INTEGER NOT NULL,
    PRIMARY KEY (user_id, device_id)
);

CREATE TABLE refresh_tokens (
    token_hash TEXT PRIMARY KEY NOT NULL,
    session_id TEXT NOT NULL,
    used INTEGER NOT NULL DEFAULT 0,
    created_ts INTEGER NOT NULL
);
CREATE INDEX refresh_tokens_by_session ON refresh_tokens (session_id);

CREATE TABLE uia_sessions (
    session_id TEXT PRIMARY KEY NOT NULL,
    purpose TEXT NOT NULL,
    user_id TEXT,
    completed TEXT NOT NULL DEFAULT '[]',
    created_ts INTEGER NOT NULL
);
