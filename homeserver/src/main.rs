//! The `teatime` command: serve the homeserver, print its OpenAPI document.

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use homeserver::config::{Config, LogFormat};

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

#[derive(Subcommand)]
enum AdminCommand {
    /// Create an account (for instance the first administrator).
    CreateUser {
        /// The localpart of the user id.
        username: String,
        #[arg(long)]
        password: String,
        /// Make the user a server administrator.
        #[arg(long)]
        admin: bool,
    },
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
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

async fn admin(config: Config, command: AdminCommand) -> homeserver::error::Result<String> {
    let state = homeserver::state::AppState::open(config).await?;
    let outcome = match command {
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
    };
    state.store.close().await;
    outcome
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
