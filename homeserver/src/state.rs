//! The state every request handler reaches: configuration, storage and services.

use std::{sync::Arc, time::Duration};

use crate::{
    accounts::Accounts,
    auth::{Sessions, tokens::TokenKeys},
    config::Config,
    error::{Error, Result},
    metrics::Metrics,
    storage::Store,
};

/// Shared by all handlers; passed explicitly, never global.
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Store,
    pub sessions: Arc<Sessions>,
    pub accounts: Accounts,
    pub metrics: Arc<Metrics>,
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
        let sessions = Arc::new(Sessions::new(store.clone(), keys, lifetime));
        let accounts = Accounts::new(store.clone(), sessions.clone(), config.clone());
        Ok(Arc::new(Self {
            config,
            store,
            sessions,
            accounts,
            metrics: Arc::new(Metrics::default()),
        }))
    }
}
