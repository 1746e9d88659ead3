//! This server among others (the Server-Server API beyond keys and
//! transport, which [`crate::remote`] holds):
//! - [`history`]: a room's history as other servers may see it;
//! - [`intake`]: PDUs from other servers, verified and taken into rooms;
//! - [`membership`]: joins, leaves and invites across servers;
//! - [`transactions`]: the transactions other servers send, PDUs and EDUs;
//! - [`sender`]: the queue of what this server owes each other server;
//! - [`policy`]: whom this server federates with (allow and deny lists,
//!   room server ACLs).

pub mod history;
pub mod intake;
pub mod membership;
pub mod policy;
pub mod sender;
pub mod transactions;

pub use policy::Policy;
pub use sender::Sender;
