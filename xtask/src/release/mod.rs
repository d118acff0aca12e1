//! `cargo xtask release`: a checked, all-or-nothing release to a registry.

use anyhow::Result;
use clap::Args;
use xshell::Shell;

use crate::config::Config;

#[derive(Debug, Args)]
pub struct ReleaseCmd {}

impl ReleaseCmd {
    pub fn run(self, _sh: &Shell, _config: &Config) -> Result<()> {
        anyhow::bail!("release is not written yet")
    }
}
