//! `netmon token create|list|revoke`: bearer tokens of the HTTP API (see
//! [`crate::http::auth`]). Edits the token file named by the config's
//! `[http] tokens` (default [`crate::http::DEFAULT_TOKENS`]); a running
//! daemon picks the change up at the next request.
use std::path::PathBuf;

use crate::cli::output::{OutputArgs, Table, print_json};
use crate::clock::rfc3339_from_unix_ms;
use crate::http::auth;

/// `netmon token` arguments.
#[derive(Debug, clap::Args)]
pub struct TokenArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: TokenAction,
    /// Config file naming the token file (default /etc/netmon/config.toml,
    /// may be missing).
    #[arg(long, value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
    /// Token file (overrides the config's `[http] tokens`).
    #[arg(long, value_name = "FILE", global = true)]
    pub file: Option<PathBuf>,
}

/// `netmon token` actions.
#[derive(Debug, clap::Subcommand)]
pub enum TokenAction {
    /// Create a token and print it once (only its hash is stored).
    Create {
        /// A name to list and revoke it by.
        #[arg(long)]
        name: String,
    },
    /// Tokens with their state (never the secrets).
    List {
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Revoke a token: requests with it get 403, its sessions end.
    Revoke {
        /// The token's name.
        #[arg(long)]
        name: String,
    },
}

/// Runs `netmon token`.
///
/// # Errors
/// A bad config file, a bad name, file errors.
pub fn run(args: &TokenArgs) -> anyhow::Result<()> {
    let path = match &args.file {
        Some(f) => f.clone(),
        None => crate::config::load(args.config.as_deref())?
            .http
            .tokens_path(),
    };
    match &args.action {
        TokenAction::Create { name } => {
            let secret = auth::create(&path, name)?;
            println!("{secret}");
            eprintln!(
                "netmon: token {name:?} created in {}; it is shown only now. Send it as `Authorization: Bearer TOKEN`, or paste it into the dashboard's login.",
                path.display()
            );
            Ok(())
        }
        TokenAction::Revoke { name } => {
            auth::revoke(&path, name)?;
            eprintln!("netmon: token {name:?} revoked");
            Ok(())
        }
        TokenAction::List { output } => {
            let file = auth::load(&path)?;
            if output.resolve() == crate::cli::output::Format::Table {
                let mut t = Table::new(&["NAME", "CREATED", "REVOKED"], &[false, false, false]);
                for e in &file.tokens {
                    t.row(vec![
                        e.name.clone(),
                        rfc3339_from_unix_ms(e.created_unix_ms),
                        e.revoked_unix_ms
                            .map_or_else(|| "-".to_owned(), rfc3339_from_unix_ms),
                    ]);
                }
                t.print()
            } else {
                print_json(&file)
            }
        }
    }
}
