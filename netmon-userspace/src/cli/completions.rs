//! `netmon completions SHELL` (clap_complete) and `netmon man` (clap_mangen:
//! roff on stdout, e.g. `netmon man > /usr/share/man/man1/netmon.1`; with a
//! subcommand name, that subcommand's page, `netmon-usage.1`).
use std::io::Write as _;

use anyhow::Context as _;
use clap::CommandFactory as _;

/// `netmon completions` arguments.
#[derive(Debug, clap::Args)]
pub struct CompletionsArgs {
    /// Shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// `netmon man` arguments.
#[derive(Debug, clap::Args)]
pub struct ManArgs {
    /// A subcommand's page instead of the main one.
    pub subcommand: Option<String>,
}

/// Prints the completion script.
///
/// # Errors
/// I/O errors.
pub fn completions(args: &CompletionsArgs) -> anyhow::Result<()> {
    let mut cmd = crate::cli::Cli::command();
    let mut buf = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "netmon", &mut buf);
    let mut out = std::io::stdout().lock();
    out.write_all(&buf)?;
    out.flush()?;
    Ok(())
}

/// Prints the man page (roff).
///
/// # Errors
/// Unknown subcommand, I/O errors.
pub fn man(args: &ManArgs) -> anyhow::Result<()> {
    let cmd = crate::cli::Cli::command();
    let page = match &args.subcommand {
        None => cmd,
        Some(name) => {
            let sub = cmd
                .find_subcommand(name)
                .cloned()
                .with_context(|| format!("no subcommand {name:?}"))?;
            // One page per run: leaking the short name is harmless.
            sub.name(clap::builder::Str::from(
                format!("netmon-{name}").leak() as &'static str
            ))
        }
    };
    let mut buf = Vec::new();
    clap_mangen::Man::new(page).render(&mut buf)?;
    let mut out = std::io::stdout().lock();
    out.write_all(&buf)?;
    out.flush()?;
    Ok(())
}
