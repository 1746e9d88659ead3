-- Other servers' signing keys: each server's last key document whose
-- self-signature checked out, trusted until the lesser of its valid_until_ts
-- and seven days after it was fetched.
CREATE TABLE server_keys (
    server_name TEXT PRIMARY KEY NOT NULL,
    document TEXT NOT NULL,
    trusted_until_ts BIGINT NOT NULL,
    fetched_ts BIGINT NOT NULL
);
