//! The Todo Chatbot's build-and-release tool. This file only parses the command line and
//! dispatches: each command lives in a module of its own.

mod env;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "cargo xtask", about = "Build, check, run and release the Todo Chatbot images")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Validate environment files.
    Env(env::EnvCmd),
}

fn main() {
    let cli = Cli::parse();
    let result = xshell::Shell::new().and_then(|sh| {
        sh.change_dir(project_root());
        Ok(sh)
    });
    let result = result.map_err(anyhow::Error::from).and_then(|sh| match cli.cmd {
        Cmd::Env(cmd) => cmd.run(&sh),
    });
    if let Err(err) = result {
        eprintln!("error: {err:#}");
        std::process::exit(1);
    }
}

/// The workspace root: the xtask crate sits one level below it.
fn project_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}
