-- The media repository: each local media id, who uploaded it and where its
-- bytes are (object keys of the media store; content is shared by hash).
CREATE TABLE media (
    media_id TEXT PRIMARY KEY NOT NULL,
    uploader TEXT NOT NULL,
    content_type TEXT,
    filename TEXT,
    -- NULL until the bytes are there (asynchronous and direct uploads).
    size BIGINT,
    object_key TEXT,
    -- A direct upload: the size announced, checked on completion.
    announced_size BIGINT,
    created_ts BIGINT NOT NULL,
    -- An id reserved by /create must be uploaded to before this.
    unused_expires_ts BIGINT
);
CREATE INDEX media_by_uploader ON media (uploader);

-- Thumbnails, made once per size and method and kept.
CREATE TABLE media_thumbnails (
    media_id TEXT NOT NULL,
    width BIGINT NOT NULL,
    height BIGINT NOT NULL,
    method TEXT NOT NULL,
    content_type TEXT NOT NULL,
    object_key TEXT NOT NULL,
    size BIGINT NOT NULL,
    PRIMARY KEY (media_id, width, height, method)
);
