-- The media repository: each local media id, who uploaded it and where its
-- bytes are (object keys of the media store; content is shared by hash).
CREATE TABLE media (
    media_id TEXT PRIMARY KEY NOT NULL,
    uploader TEXT NOT NULL,
    content_type TEXT,
    filename TEXT,
    -- NULL until the bytes are there (asynchronous and direct uploads).
    size INTEGER,
    object_key TEXT,
    -- A direct upload: the size announced, checked on completion.
    announced_size INTEGER,
    created_ts INTEGER NOT NULL,
    -- An id reserved by /create must be uploaded to before this.
    unused_expires_ts INTEGER
);
CREATE INDEX media_by_uploader ON media (uploader);

-- Thumbnails, made once per size and method and kept.
CREATE TABLE media_thumbnails (
    media_id TEXT NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    method TEXT NOT NULL,
    content_type TEXT NOT NULL,
    object_key TEXT NOT NULL,
    size INTEGER NOT NULL,
    PRIMARY KEY (media_id, width, height, method)
);
