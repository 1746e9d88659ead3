//! The Matrix Server-Server protocol as a library: canonical JSON, server keys,
//! event hashing and signing, auth rules, state resolution, X-Matrix request signing.
//! It lands with the rooms and federation issues; it never depends on `homeserver`.
