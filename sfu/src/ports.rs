//! The UDP ports of the configured range that participants' sockets hold.

use std::{
    collections::BTreeSet,
    sync::{Arc, Mutex},
};

/// Ports handed out to peer connections of this process.
#[derive(Default)]
pub(crate) struct PortPool {
    in_use: Mutex<BTreeSet<u16>>,
}

/// A port held by one peer connection; released when dropped.
pub(crate) struct PortLease {
    pool: Arc<PortPool>,
    port: u16,
}

impl PortPool {
    /// Takes `port` if no connection of ours holds it.
    pub(crate) fn take(self: &Arc<Self>, port: u16) -> Option<PortLease> {
        let mut in_use = self.in_use.lock().unwrap_or_else(|e| e.into_inner());
        in_use.insert(port).then(|| PortLease {
            pool: self.clone(),
            port,
        })
    }
}

impl Drop for PortLease {
    fn drop(&mut self) {
        let mut in_use = self.pool.in_use.lock().unwrap_or_else(|e| e.into_inner());
        in_use.remove(&self.port);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_is_leased_once_until_released() {
        let pool = Arc::new(PortPool::default());
        let lease = pool.take(50000).expect("free port");
        assert!(pool.take(50000).is_none());
        assert!(pool.take(50001).is_some());
        drop(lease);
        assert!(pool.take(50000).is_some());
    }
}
