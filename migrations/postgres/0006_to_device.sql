-- Messages sent straight to devices (PUT /sendToDevice), kept until the
-- device syncs past them.
CREATE TABLE to_device_messages (
    stream_id BIGINT NOT NULL,
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    sender TEXT NOT NULL,
    event_type TEXT NOT NULL,
    content TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id, stream_id)
);

-- Transaction ids of sendToDevice requests, so a retry delivers nothing twice.
CREATE TABLE to_device_txns (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    txn_id TEXT NOT NULL,
    created_ts BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id, txn_id)
);
INSERT INTO stream_positions (stream, position) VALUES ('to_device', 0);
