//! The state every request handler reaches: configuration, storage and services.

use std::{sync::Arc, time::Duration};

use tokio::sync::broadcast::error::RecvError;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use federation::{auth::RumaAuthorizer, keys::SigningKey};

use crate::{
    account_data::AccountData,
    accounts::Accounts,
    auth::{Sessions, tokens::TokenKeys},
    calls::Calls,
    config::Config,
    directory::Directory,
    ephemeral::{Presence, Receipts, ToDevice, Typing},
    error::{Error, Result},
    filters::Filters,
    media_repo::MediaRepo,
    metrics::Metrics,
    remote::Remote,
    rooms::Rooms,
    servers::{Policy, Sender},
    storage::Store,
    sync::{Change, Notifier, Syncer},
};

/// The server's ed25519 signing key, in the data dir.
pub const SIGNING_KEY_FILE: &str = "signing.key";

/// Shared by all handlers; passed explicitly, never global.
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Store,
    pub sessions: Arc<Sessions>,
    pub accounts: Accounts,
    pub directory: Directory,
    pub account_data: AccountData,
    pub filters: Filters,
    pub rooms: Rooms,
    pub syncer: Syncer,
    pub typing: Arc<Typing>,
    pub receipts: Receipts,
    pub presence: Presence,
    pub to_device: ToDevice,
    pub metrics: Arc<Metrics>,
    pub media: MediaRepo,
    /// Calls: the SFU and the ICE servers handed to clients.
    pub calls: Calls,
    /// Other servers: keys, signed requests, queries.
    pub remote: Arc<Remote>,
    /// Whom this server federates with.
    pub policy: Arc<Policy>,
    /// What this server owes other servers.
    pub sender: Sender,
    /// Cancelled when the server begins to stop: long-polls answer, sockets close.
    pub stopping: CancellationToken,
    /// The open WebSockets, so shutdown can wait for their goodbyes.
    pub sockets: TaskTracker,
}

impl AppState {
    /// Opens the data dir and the database (applying migrations) and builds the services.
    pub async fn open(config: Config) -> Result<Arc<Self>> {
        std::fs::create_dir_all(&config.data_dir).map_err(|e| {
            Error::Internal(format!(
                "cannot create data dir {}: {e}",
                config.data_dir.display()
            ))
        })?;
        let config = Arc::new(config);
        let store = Store::connect(&config.database_url(), config.database_max_connections).await?;
        let keys = TokenKeys::load_or_create(config.token_secret.as_deref(), &config.data_dir)?;
        let lifetime = Duration::from_millis(config.access_token_lifetime_ms);
        let notifier = Arc::new(match &config.redis_url {
            Some(url) => Notifier::redis(url).await?,
            None => Notifier::default(),
        });
        let sessions = Arc::new(Sessions::new(
            store.clone(),
            keys,
            lifetime,
            notifier.clone(),
        ));
        let accounts = Accounts::new(store.clone(), sessions.clone(), config.clone());
        let account_data = AccountData::new(store.clone(), notifier.clone());
        let filters = Filters::new(store.clone());
        let signing_key = Arc::new(SigningKey::load_or_generate(
            &config.data_dir.join(SIGNING_KEY_FILE),
        )?);
        let remote = Arc::new(Remote::new(&config, store.clone(), signing_key.clone())?);
        let directory = Directory::new(store.clone(), &config.server_name, remote.clone())?;
        let server_name = ruma::ServerName::parse(&config.server_name)
            .map_err(|e| Error::Internal(format!("server name: {e}")))?;
        let rooms = Rooms::new(
            store.clone(),
            signing_key,
            server_name,
            Box::new(RumaAuthorizer),
            notifier.clone(),
        );
        let stopping = CancellationToken::new();
        let policy = Arc::new(Policy::new(store.clone(), &config));
        let sender = Sender::new(
            store.clone(),
            remote.clone(),
            policy.clone(),
            stopping.clone(),
            Duration::from_secs(config.federation_retry_max_secs),
        );
        sender.start(&notifier).await?;
        let typing = Typing::new(notifier.clone(), store.clone(), sender.clone());
        let receipts = Receipts::new(store.clone(), notifier.clone(), sender.clone());
        let presence = Presence::new(store.clone(), notifier.clone());
        let to_device = ToDevice::new(
            store.clone(),
            notifier.clone(),
            config.server_name.clone(),
            sender.clone(),
        );
        apply_remote_changes(&notifier, sessions.clone(), typing.clone());
        let media =
            MediaRepo::open(&config, store.clone(), stopping.clone(), remote.clone()).await?;
        let calls = Calls::new(&config, store.clone())?;
        let syncer = Syncer::new(store.clone(), notifier, typing.clone(), stopping.clone());
        Ok(Arc::new(Self {
            config,
            store,
            sessions,
            accounts,
            directory,
            account_data,
            filters,
            rooms,
            syncer,
            typing,
            receipts,
            presence,
            to_device,
            metrics: Arc::new(Metrics::default()),
            media,
            calls,
            remote,
            policy,
            sender,
            stopping,
            sockets: TaskTracker::new(),
        }))
    }
}

/// Applies what other instances announce: ended sessions leave the token
/// cache, typing notices are replayed. If announcements were missed, every
/// cached session is dropped (they reload from the database).
fn apply_remote_changes(notifier: &Notifier, sessions: Arc<Sessions>, typing: Arc<Typing>) {
    let mut remote = notifier.subscribe_remote();
    tokio::spawn(async move {
        loop {
            match remote.recv().await {
                Ok(Change::SessionsEnded(ids)) => sessions.forget_here(&ids),
                Ok(Change::Typing {
                    room_id,
                    user_id,
                    timeout_ms,
                }) => {
                    typing.apply_remote(&room_id, &user_id, timeout_ms.map(Duration::from_millis));
                }
                Ok(Change::Missed) | Err(RecvError::Lagged(_)) => sessions.forget_all_here(),
                Ok(Change::Room { .. } | Change::User(_) | Change::Outbox(_)) => {}
                Err(RecvError::Closed) => break,
            }
        }
    });
}
