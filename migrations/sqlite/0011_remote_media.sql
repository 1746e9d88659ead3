-- Media of other servers, fetched once and kept in the media store.
CREATE TABLE remote_media (
    server_name TEXT NOT NULL,
    media_id TEXT NOT NULL,
    content_type TEXT,
    filename TEXT,
    size INTEGER NOT NULL,
    object_key TEXT NOT NULL,
    fetched_ts INTEGER NOT NULL,
    PRIMARY KEY (server_name, media_id)
);
