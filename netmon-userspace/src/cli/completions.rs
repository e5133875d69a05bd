//! `netmon completions SHELL` (clap_complete) and `netmon man` (clap_mangen:
//! roff on stdout, e.g. `netmon man > netmon.1`; with a subcommand name,
//! that subcommand's page, `netmon-usage.1`). The main page cites one page
//! per subcommand (`netmon-usage(1)`, ...): `netmon man --out-dir DIR`
//! writes all of them at once, which is how they are installed
//! (`netmon man --out-dir /usr/share/man/man1`).
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
    #[arg(conflicts_with = "out_dir")]
    pub subcommand: Option<String>,
    /// Write every page (netmon.1 and the netmon-SUBCOMMAND.1 pages it
    /// cites) into this directory instead of printing one.
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<std::path::PathBuf>,
}

/// The command whose pages are rendered: without clap's `help`
/// subcommand, so no page cites a `netmon-help(1)` that is never written.
fn man_command() -> clap::Command {
    crate::cli::Cli::command().disable_help_subcommand(true)
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
    if let Some(dir) = &args.out_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        clap_mangen::generate_to(man_command(), dir)
            .with_context(|| format!("writing man pages into {}", dir.display()))?;
        return Ok(());
    }
    let cmd = man_command();
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
