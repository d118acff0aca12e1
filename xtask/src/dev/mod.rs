//! `cargo xtask dev`, `up` and `down`: the stack in containers.

use anyhow::Result;
use clap::Args;
use xshell::Shell;

use crate::config::Config;

#[derive(Debug, Args)]
pub struct DevCmd {}

impl DevCmd {
    pub fn run(self, _sh: &Shell, _config: &Config) -> Result<()> {
        anyhow::bail!("dev is not written yet")
    }
}

#[derive(Debug, Args)]
pub struct UpCmd {}

impl UpCmd {
    pub fn run(self, _sh: &Shell, _config: &Config) -> Result<()> {
        anyhow::bail!("up is not written yet")
    }
}

#[derive(Debug, Args)]
pub struct DownCmd {}

impl DownCmd {
    pub fn run(self, _sh: &Shell, _config: &Config) -> Result<()> {
        anyhow::bail!("down is not written yet")
    }
}
