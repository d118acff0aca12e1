//! `cargo xtask env check`: validates a dotenv file against the spec's rules.

use clap::{Args, Subcommand};

#[derive(Debug, Args)]
pub struct EnvCmd {
    #[command(subcommand)]
    pub cmd: EnvSub,
}

#[derive(Debug, Subcommand)]
pub enum EnvSub {
    /// Check a dotenv file against the spec's rules and report every problem at once.
    Check {
        /// The dotenv file to check (default: `.env` at the repository root).
        #[arg(long)]
        file: Option<std::path::PathBuf>,
        /// Print one JSON object instead of the text report.
        #[arg(long)]
        json: bool,
    },
}

impl EnvCmd {
    pub fn run(self, _sh: &xshell::Shell) -> anyhow::Result<()> {
        anyhow::bail!("env check is not written yet")
    }
}
