//! TeaTime, a Matrix homeserver.
//!
//! A tour of the modules, from the edge inwards:
//! - [`server`] assembles the HTTP application and runs it; [`http`] holds the
//!   plain middleware (CORS, JSON bodies, Matrix errors, metrics).
//! - [`servers`] is federation: transactions in, the queue out, joins,
//!   invites and history across servers, and the federation policy;
//!   [`remote`] signs, sends and checks the requests between servers.
//! - [`ws`] is the WebSocket at `/_teatime/ws`, fed by the same sync; it
//!   also carries call signalling to [`calls`], which runs the `sfu` crate.
//! - [`web_client`] serves the built browser client at `/`.
//! - [`api`] is the documented Client-Server API: thin poem-openapi handlers.
//! - [`rooms`] builds, signs, authorises and stores room events (with the
//!   `federation` crate) and serves the read paths with history visibility.
//! - [`ephemeral`] keeps typing notices and read receipts.
//! - [`sync`] answers `/sync` from the event and account-data streams and
//!   wakes long-polls through its notifier.
//! - [`accounts`] is the account service; [`uia`] its user-interactive auth;
//!   [`auth`] hashes passwords, issues and checks tokens, limits failures.
//! - [`directory`] keeps room aliases and the published room directory;
//!   [`account_data`] the per-user configuration clients store; [`filters`]
//!   the filters they upload for `/sync`.
//! - [`storage`] is the database (SQLite or PostgreSQL) behind one interface.
//! - [`config`] reads the file and `TEATIME_*` variables; [`error`] is the one
//!   error type and its mapping to Matrix errors; [`state`] ties it together.

pub mod account_data;
pub mod accounts;
pub mod admin;
pub mod api;
pub mod auth;
pub mod calls;
pub mod config;
pub mod directory;
pub mod ephemeral;
pub mod error;
pub mod filters;
pub mod http;
pub mod media_repo;
pub mod metrics;
pub mod remote;
pub mod rooms;
pub mod server;
pub mod servers;
pub mod state;
pub mod storage;
pub mod sync;
pub mod uia;
pub mod web_client;
pub mod ws;
