//! The `teatime` command: serve the homeserver, print its OpenAPI document.

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use homeserver::{
    admin,
    api::admin::{
        AdminRoom, AdminUser, Destinations, FederationLists, RegistrationToken, RegistrationTokens,
        RoomList, ShutdownResult, UserList,
    },
    config::{Config, LogFormat},
    directory::parse_room_id,
    state::AppState,
    storage::FederationRules,
    uia::qualify_user_id,
};
use poem_openapi::types::ToJSON;

#[derive(Parser)]
#[command(name = "teatime", version, about = "TeaTime, a Matrix homeserver")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the homeserver (the default).
    Serve {
        /// A TOML configuration file; `TEATIME_*` variables override it.
        #[arg(long, env = "TEATIME_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Print the OpenAPI document of the client API.
    Openapi,
    /// Administration against the configured database.
    Admin {
        /// A TOML configuration file; `TEATIME_*` variables override it.
        #[arg(long, env = "TEATIME_CONFIG")]
        config: Option<PathBuf>,
        #[command(subcommand)]
        command: AdminCommand,
    },
}

/// The admin API's operations; listings print the API's JSON.
#[derive(Subcommand)]
enum AdminCommand {
    /// Create an account (for instance the first administrator).
    CreateUser {
        /// The localpart of the user id.
        username: String,
        /// Without one, nobody can log in until `reset-password`.
        #[arg(long)]
        password: Option<String>,
        /// Make the user a server administrator.
        #[arg(long)]
        admin: bool,
    },
    /// Set a new password and end the account's sessions.
    ResetPassword {
        /// A user id or a local username.
        user: String,
        #[arg(long)]
        password: String,
        /// Keep the account's sessions.
        #[arg(long)]
        keep_devices: bool,
    },
    /// Deactivate an account.
    Deactivate {
        user: String,
        /// Also forget the display name and avatar.
        #[arg(long)]
        erase: bool,
    },
    /// Reactivate a deactivated account with a new password.
    Reactivate {
        user: String,
        #[arg(long)]
        password: String,
    },
    /// Grant (or with --revoke take away) server administration.
    SetAdmin {
        user: String,
        #[arg(long)]
        revoke: bool,
    },
    /// List accounts with their devices.
    ListUsers {
        #[command(flatten)]
        page: PageArgs,
    },
    /// Show one account with its devices.
    User { user: String },
    /// List rooms with their member counts and servers.
    ListRooms {
        #[command(flatten)]
        page: PageArgs,
    },
    /// Show one room with its members.
    Room { room_id: String },
    /// Make every local member leave a room and block it; --purge deletes it.
    ShutdownRoom {
        room_id: String,
        #[arg(long)]
        purge: bool,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Show the federation allow and deny lists.
    FederationRules,
    /// Replace the federation allow and deny lists.
    SetFederationRules {
        /// A server name pattern to allow (repeatable; `*` is a wildcard).
        #[arg(long)]
        allow: Vec<String>,
        /// A server name pattern to deny (repeatable).
        #[arg(long)]
        deny: Vec<String>,
    },
    /// List the servers this one sends to, with their retry state.
    Destinations,
    /// List registration tokens.
    RegistrationTokens,
    /// Create a registration token (random unless --token is given).
    CreateRegistrationToken {
        #[arg(long)]
        token: Option<String>,
        #[arg(long)]
        uses_allowed: Option<i64>,
        /// Expiry, in milliseconds since the Unix epoch.
        #[arg(long)]
        expiry_time: Option<i64>,
    },
    /// Revoke a registration token.
    RevokeRegistrationToken { token: String },
}

#[derive(clap::Args)]
struct PageArgs {
    /// Part of the id or name to look for.
    #[arg(long)]
    search: Option<String>,
    /// Where the page starts (`next_from` of the previous page).
    #[arg(long)]
    from: Option<String>,
    #[arg(long)]
    limit: Option<i64>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Serve { config: None }) {
        Command::Openapi => {
            println!("{}", homeserver::api::document());
            ExitCode::SUCCESS
        }
        Command::Admin { config, command } => {
            let config = match Config::load(config.as_deref()) {
                Ok(config) => config,
                Err(e) => {
                    eprintln!("teatime: {e}");
                    return ExitCode::from(2);
                }
            };
            match tokio::runtime::Runtime::new()
                .map(|runtime| runtime.block_on(admin(config, command)))
            {
                Ok(Ok(message)) => {
                    println!("{message}");
                    ExitCode::SUCCESS
                }
                Ok(Err(e)) => {
                    eprintln!("teatime admin: {e}");
                    ExitCode::FAILURE
                }
                Err(e) => {
                    eprintln!("teatime: cannot start the async runtime: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Serve { config } => {
            let config = match Config::load(config.as_deref()) {
                Ok(config) => config,
                Err(e) => {
                    eprintln!("teatime: {e}");
                    return ExitCode::from(2);
                }
            };
            init_logging(config.log_format);
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(runtime) => runtime,
                Err(e) => {
                    eprintln!("teatime: cannot start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(serve(config)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = %e, "teatime stopped");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,ruma_state_res=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

async fn admin(config: Config, command: AdminCommand) -> homeserver::error::Result<String> {
    let state = homeserver::state::AppState::open(config).await?;
    let outcome = run_admin(&state, command).await;
    state.store.close().await;
    outcome
}

async fn run_admin(state: &AppState, command: AdminCommand) -> homeserver::error::Result<String> {
    let user_id = |user: &str| qualify_user_id(user, &state.config.server_name);
    let done = || Ok("done".to_owned());
    match command {
        AdminCommand::CreateUser {
            username,
            password,
            admin,
        } => {
            let user_id = state
                .accounts
                .create_user(&username, password, admin)
                .await?;
            Ok(format!(
                "created {user_id}{}",
                if admin { " (administrator)" } else { "" }
            ))
        }
        AdminCommand::ResetPassword {
            user,
            password,
            keep_devices,
        } => {
            state
                .accounts
                .reset_password(&user_id(&user), password, !keep_devices)
                .await?;
            done()
        }
        AdminCommand::Deactivate { user, erase } => {
            state
                .accounts
                .deactivate_user(&user_id(&user), erase)
                .await?;
            done()
        }
        AdminCommand::Reactivate { user, password } => {
            state
                .accounts
                .reactivate_user(&user_id(&user), password)
                .await?;
            done()
        }
        AdminCommand::SetAdmin { user, revoke } => {
            state.accounts.set_admin(&user_id(&user), !revoke).await?;
            done()
        }
        AdminCommand::ListUsers { page } => {
            let users = admin::list_users(
                state,
                page.search.as_deref(),
                page.from.as_deref(),
                page.limit,
            )
            .await?;
            Ok(json(UserList::from(users)))
        }
        AdminCommand::User { user } => Ok(json(AdminUser::from(
            admin::user_details(state, &user_id(&user)).await?,
        ))),
        AdminCommand::ListRooms { page } => {
            let rooms = admin::list_rooms(
                state,
                page.search.as_deref(),
                page.from.as_deref(),
                page.limit,
            )
            .await?;
            Ok(json(RoomList::from(rooms)))
        }
        AdminCommand::Room { room_id } => Ok(json(AdminRoom::detailed(
            admin::room_details(state, &room_id).await?,
        ))),
        AdminCommand::ShutdownRoom {
            room_id,
            purge,
            reason,
        } => {
            let room_id = parse_room_id(&room_id)?;
            let shutdown =
                admin::shutdown_room(state, room_id, "teatime admin", reason, purge).await?;
            Ok(json(ShutdownResult::from(shutdown)))
        }
        AdminCommand::FederationRules => Ok(json(FederationLists::from(
            state.store.federation_rules().await?,
        ))),
        AdminCommand::SetFederationRules { allow, deny } => {
            admin::set_federation_rules(state, FederationRules { allow, deny }).await?;
            Ok(json(FederationLists::from(
                state.store.federation_rules().await?,
            )))
        }
        AdminCommand::Destinations => {
            Ok(json(Destinations::from(state.store.destinations().await?)))
        }
        AdminCommand::RegistrationTokens => Ok(json(RegistrationTokens::from(
            state.store.registration_tokens().await?,
        ))),
        AdminCommand::CreateRegistrationToken {
            token,
            uses_allowed,
            expiry_time,
        } => Ok(json(RegistrationToken::from(
            admin::create_registration_token(state, token, uses_allowed, expiry_time).await?,
        ))),
        AdminCommand::RevokeRegistrationToken { token } => {
            admin::revoke_registration_token(state, &token).await?;
            done()
        }
    }
}

/// The JSON the admin API would answer with, for the terminal.
fn json(value: impl ToJSON) -> String {
    serde_json::to_string_pretty(&value.to_json()).unwrap_or_default()
}

async fn serve(config: Config) -> homeserver::error::Result<()> {
    let server_name = config.server_name.clone();
    // Watch for signals before the listener opens, so a SIGTERM that arrives
    // as soon as the server answers still stops it gracefully.
    let stop_requested = shutdown_signal();
    let server = homeserver::server::start(config).await?;
    tracing::info!(%server_name, addr = %server.addr, "TeaTime is serving the client API");
    stop_requested.await;
    tracing::info!("shutting down");
    server.stop().await
}

/// Installs the SIGINT and SIGTERM handlers now and returns a future that
/// completes when either arrives.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt());
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
    async move {
        match (&mut interrupt, &mut terminate) {
            (Ok(interrupt), Ok(terminate)) => {
                tokio::select! {
                    _ = interrupt.recv() => {}
                    _ = terminate.recv() => {}
                }
            }
            _ => {
                tracing::warn!("cannot watch SIGINT/SIGTERM; stopping only when killed");
                std::future::pending::<()>().await
            }
        }
    }
}
