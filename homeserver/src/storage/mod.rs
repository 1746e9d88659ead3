//! Persistence behind one interface for SQLite and PostgreSQL.
//!
//! Both run through sqlx's `Any` driver with the same query text: `$N`
//! placeholders work in both, and columns stick to TEXT and 64-bit integers.
//! Dialect differences live in the migrations under `migrations/<backend>/`.

mod account_data;
mod admin;
mod devices;
mod directory;
mod events;
mod federation_queue;
mod filters;
mod media;
mod presence;
mod receipts;
mod server_keys;
mod state;
mod sync;
mod to_device;
mod uia;
mod users;

use std::{str::FromStr, sync::Arc, time::Duration};

use sqlx::{
    AnyPool, Executor, SqlSafeStr,
    any::{AnyConnectOptions, AnyPoolOptions},
    migrate::{Migration, MigrationType, Migrator},
};

pub use account_data::{AccountDataRow, GLOBAL_ACCOUNT_DATA};
pub use admin::{FederationRules, RegistrationTokenRow, RoomSummary, UserSummary};
pub use devices::{DeviceRow, NewDevice, RefreshOutcome};
pub use directory::{AliasRow, DirectoryRoom, PublishedRoom};
pub use events::{
    Appended, EventRange, NewEvent, NewRoom, Placed, RoomAfter, RoomRow, StoredEvent,
};
pub use federation_queue::DestinationRow;
pub use media::{MediaRow, ThumbnailRow};
pub use presence::PresenceRow;
pub use receipts::ReceiptRow;
use state::insert_state_groups;
pub use state::{ChainEntry, NewStateGroup, StateIds, merge_chain};
pub use sync::MembershipRow;
pub use to_device::ToDeviceMessage;
pub use users::UserRow;

use crate::error::Result;

/// Which database server a [`Store`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A pool of database connections with the queries the homeserver needs.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    write_order: Arc<tokio::sync::Mutex<()>>,
}

/// A write transaction, holding this process's turn to write.
pub(crate) struct WriteTx {
    tx: sqlx::Transaction<'static, sqlx::Any>,
    _order: tokio::sync::OwnedMutexGuard<()>,
}

impl WriteTx {
    /// Commits, then lets the next writer in.
    async fn commit(self) -> Result<()> {
        self.tx.commit().await?;
        Ok(())
    }
}

impl std::ops::Deref for WriteTx {
    type Target = sqlx::AnyConnection;
    fn deref(&self) -> &Self::Target {
        &self.tx
    }
}

impl std::ops::DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.tx
    }
}

/// Migrations compiled into the binary, one list per backend: `(version, name, sql)`.
const SQLITE_MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "accounts",
        include_str!("../../../migrations/sqlite/0001_accounts.sql"),
    ),
    (
        2,
        "rooms",
        include_str!("../../../migrations/sqlite/0002_rooms.sql"),
    ),
    (
        3,
        "directory",
        include_str!("../../../migrations/sqlite/0003_directory.sql"),
    ),
    (
        4,
        "filters",
        include_str!("../../../migrations/sqlite/0004_filters.sql"),
    ),
    (
        5,
        "receipts",
        include_str!("../../../migrations/sqlite/0005_receipts.sql"),
    ),
    (
        6,
        "to_device",
        include_str!("../../../migrations/sqlite/0006_to_device.sql"),
    ),
    (
        7,
        "presence",
        include_str!("../../../migrations/sqlite/0007_presence.sql"),
    ),
    (
        8,
        "admin",
        include_str!("../../../migrations/sqlite/0008_admin.sql"),
    ),
    (
        9,
        "media",
        include_str!("../../../migrations/sqlite/0009_media.sql"),
    ),
    (
        10,
        "server_keys",
        include_str!("../../../migrations/sqlite/0010_server_keys.sql"),
    ),
    (
        11,
        "remote_media",
        include_str!("../../../migrations/sqlite/0011_remote_media.sql"),
    ),
    (
        12,
        "room_graph",
        include_str!("../../../migrations/sqlite/0012_room_graph.sql"),
    ),
    (
        13,
        "federation_queue",
        include_str!("../../../migrations/sqlite/0013_federation_queue.sql"),
    ),
];
const POSTGRES_MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "accounts",
        include_str!("../../../migrations/postgres/0001_accounts.sql"),
    ),
    (
        2,
        "rooms",
        include_str!("../../../migrations/postgres/0002_rooms.sql"),
    ),
    (
        3,
        "directory",
        include_str!("../../../migrations/postgres/0003_directory.sql"),
    ),
    (
        4,
        "filters",
        include_str!("../../../migrations/postgres/0004_filters.sql"),
    ),
    (
        5,
        "receipts",
        include_str!("../../../migrations/postgres/0005_receipts.sql"),
    ),
    (
        6,
        "to_device",
        include_str!("../../../migrations/postgres/0006_to_device.sql"),
    ),
    (
        7,
        "presence",
        include_str!("../../../migrations/postgres/0007_presence.sql"),
    ),
    (
        8,
        "admin",
        include_str!("../../../migrations/postgres/0008_admin.sql"),
    ),
    (
        9,
        "media",
        include_str!("../../../migrations/postgres/0009_media.sql"),
    ),
    (
        10,
        "server_keys",
        include_str!("../../../migrations/postgres/0010_server_keys.sql"),
    ),
    (
        11,
        "remote_media",
        include_str!("../../../migrations/postgres/0011_remote_media.sql"),
    ),
    (
        12,
        "room_graph",
        include_str!("../../../migrations/postgres/0012_room_graph.sql"),
    ),
    (
        13,
        "federation_queue",
        include_str!("../../../migrations/postgres/0013_federation_queue.sql"),
    ),
];

impl Store {
    /// Connects to `url` (`sqlite:` or `postgres://`) and applies pending migrations.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            Backend::Postgres
        };
        let options = AnyConnectOptions::from_str(url)?;
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL lets readers run beside the writer; FULL syncs every
                        // commit so an acknowledged write survives even a power cut;
                        // writers queue for the lock instead of failing at once.
                        conn.execute(
                            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                             PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON;",
                        )
                        .await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        let store = Store {
            pool,
            backend,
            write_order: Arc::default(),
        };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<()> {
        let sources = match self.backend {
            Backend::Sqlite => SQLITE_MIGRATIONS,
            Backend::Postgres => POSTGRES_MIGRATIONS,
        };
        let migrations = sources
            .iter()
            .map(|(version, name, sql)| {
                Migration::new(
                    *version,
                    (*name).into(),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    false,
                )
            })
            .collect();
        // The migrator takes a database lock (an advisory lock on PostgreSQL), so
        // several instances starting at once apply each migration exactly once.
        Migrator::with_migrations(migrations)
            .run(&self.pool)
            .await?;
        Ok(())
    }

    /// Which database this store uses.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Succeeds when the database answers a trivial query.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Starts a transaction that will write. Write transactions run one at
    /// a time, so stream positions become visible in order: a reader that
    /// sees position N has seen everything below N (`/sync` relies on it).
    /// SQLite also takes its write lock up front: upgrading a read
    /// transaction later fails at once when another writer got there first.
    async fn begin_write(&self) -> Result<WriteTx> {
        let order = self.write_order.clone().lock_owned().await;
        let tx = match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => {
                let mut tx = self.pool.begin().await?;
                // Other instances sharing the database take turns too, so
                // positions become visible in order across all of them.
                sqlx::query("SELECT pg_advisory_xact_lock(7263000)")
                    .execute(&mut *tx)
                    .await?;
                tx
            }
        };
        Ok(WriteTx { tx, _order: order })
    }

    /// Closes every connection (for shutdown).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
