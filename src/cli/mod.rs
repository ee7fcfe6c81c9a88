//! The `orderflow` command line. Output meant for scripts goes alone on stdout;
//! human messages go to stderr.

pub(crate) mod admin;
mod bench;
mod dotenv;
mod keys;
mod serve;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::auth::token::DEFAULT_TTL_SECS;

/// OrderFlow Connect: delivers approved B2B sales orders into ERP systems.
#[derive(Debug, Parser)]
#[command(name = "orderflow", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the HTTP API and the background workers.
    Serve,
    /// Run the background workers (export delivery, acknowledgement polling) without HTTP.
    Worker,
    /// First run in one command: write .env if missing, migrate, create org `demo` with an admin,
    /// print a token and example requests, then serve.
    Quickstart,
    /// Apply database migrations.
    Migrate,
    /// Write a .env with fresh ENCRYPTION_MASTER_KEY and JWT_SECRET (never overwrites).
    Init,
    /// Encryption keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Organisations.
    Org {
        #[command(subcommand)]
        command: OrgCommand,
    },
    /// Users.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Access tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Connector configs.
    Connector {
        #[command(subcommand)]
        command: ConnectorCommand,
    },
    /// Benchmarks (not run in CI); the last line of output is one JSON object.
    Bench {
        #[command(subcommand)]
        command: bench::BenchCommand,
    },
}

#[derive(Debug, Subcommand)]
enum ConnectorCommand {
    /// Print one connection's decrypted config as JSON (audited).
    Decrypt {
        /// The connection id.
        connection_id: uuid::Uuid,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Print a fresh 32-byte key as 64 hex characters.
    Generate,
    /// Re-encrypt every config still under a previous key with the current one.
    Rotate,
}

#[derive(Debug, Subcommand)]
enum OrgCommand {
    /// Create an org; prints its id.
    Create {
        /// `^[a-z0-9][a-z0-9-]{0,62}$`
        #[arg(long)]
        slug: String,
        /// Display name.
        #[arg(long)]
        name: String,
    },
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Create a user; the password comes from ORDERFLOW_PASSWORD or the first line of stdin.
    Create {
        /// Org slug.
        #[arg(long)]
        org: String,
        /// E-mail (the login name).
        #[arg(long)]
        email: String,
        /// ADMIN, INTEGRATOR, OPS or VIEWER.
        #[arg(long)]
        role: String,
    },
    /// Disable a user: logins and existing tokens stop working.
    Disable {
        /// Org slug.
        #[arg(long)]
        org: String,
        /// E-mail.
        #[arg(long)]
        email: String,
    },
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Print an access token for a user (for scripts and tests).
    Issue {
        /// Org slug.
        #[arg(long)]
        org: String,
        /// E-mail.
        #[arg(long)]
        email: String,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = DEFAULT_TTL_SECS)]
        ttl: u64,
    },
}

/// Parses the command line, runs the command and returns the process exit code.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // One line: the chain of causes, never a backtrace.
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve => serve::serve().await,
        Command::Worker => serve::worker().await,
        Command::Quickstart => serve::quickstart().await,
        Command::Migrate => admin::migrate().await,
        Command::Init => dotenv::init(),
        Command::Keys {
            command: KeysCommand::Generate,
        } => {
            println!("{}", crate::crypto::generate_key_hex());
            Ok(())
        }
        Command::Org {
            command: OrgCommand::Create { slug, name },
        } => admin::org_create(&slug, &name).await,
        Command::User {
            command: UserCommand::Create { org, email, role },
        } => admin::user_create(&org, &email, &role).await,
        Command::User {
            command: UserCommand::Disable { org, email },
        } => admin::user_disable(&org, &email).await,
        Command::Token {
            command: TokenCommand::Issue { org, email, ttl },
        } => admin::token_issue(&org, &email, ttl).await,
        Command::Keys {
            command: KeysCommand::Rotate,
        } => keys::rotate().await,
        Command::Connector {
            command: ConnectorCommand::Decrypt { connection_id },
        } => keys::decrypt(connection_id).await,
        Command::Bench { command } => bench::run(command).await,
    }
}
