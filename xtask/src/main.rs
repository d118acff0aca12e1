//! The Todo Chatbot's build-and-release tool. This file only parses the command line and
//! dispatches: each command lives in a module of its own.

mod bases;
mod bench;
mod bench_platforms;
mod bench_runner;
mod build;
mod config;
mod debian;
mod deploy;
mod dev;
mod docker;
mod doctor;
mod engine;
mod env;
mod git;
mod history;
mod interrupt;
mod lock;
mod mirror;
mod owned;
mod plan;
mod platform;
mod release;
mod sbom;
/// The second engine of the tests, also the fresh runner of `bench --fresh-runner`: one file, so
/// that the benchmark measures the very engine the tests check.
#[path = "../../tests/support/second_engine.rs"]
mod second_engine;
mod smoke;
mod store;
mod test;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "cargo xtask",
    // The usage lines name the program as users type it, not as the binary is called.
    bin_name = "cargo xtask",
    about = "Build, check, run and release the Todo Chatbot images"
)]
struct Cli {
    /// The project file to read, relative to the repository root.
    #[arg(long, global = true, default_value = config::DEFAULT_FILE)]
    config: std::path::PathBuf,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Show the local base images, their Debian packages and their age; --refresh checks the
    /// Debian archives now and rebuilds the bases when a package has a newer version.
    Bases(bases::BasesCmd),
    /// Measure builds against `docker buildx bake` and sequential builds; update docs/benchmarks.md.
    Bench(bench::BenchCmd),
    /// Build both images in parallel, tag, label and measure them against their budgets.
    Build(build::BuildCmd),
    /// Render, check and apply a release's Kubernetes manifests.
    Deploy(deploy::DeployCmd),
    /// Run the whole stack in containers with sources watched and reloaded.
    Dev(dev::DevCmd),
    /// Stop the production stack that `up` started; its database's volume stays unless --volumes.
    Down(dev::DownCmd),
    /// Check the prerequisites: one line each, with the fix for what is missing.
    Doctor(doctor::DoctorCmd),
    /// Validate environment files.
    Env(env::EnvCmd),
    /// Make the cosign key pair that signs releases, outside the repository.
    Keygen(release::KeygenCmd),
    /// Show build time and size per image over the latest builds (a table, or an HTML page).
    History(history::HistoryCmd),
    /// Build, check and push both images to a registry, all or nothing.
    Release(release::ReleaseCmd),
    /// Write one SBOM per image with syft; --gate runs the vulnerability gate on them.
    Sbom(sbom::SbomCmd),
    /// Prove the built images work and are safe: the running stack, structure, secrets, lint.
    Smoke(smoke::SmokeCmd),
    /// Start the production stack detached and wait until it is healthy; on a running stack,
    /// recreate only what changed.
    Up(dev::UpCmd),
    /// Run every test: Rust unit and integration tests, and the backend's pytest suite.
    Test(test::TestCmd),
}

fn main() {
    let cli = Cli::parse();
    // The commands that stop cleanly on Ctrl-C take it from their first moment: before the
    // project file is read, a Ctrl-C would otherwise end the process by the signal, not with 130.
    if matches!(
        cli.cmd,
        Cmd::Build(_) | Cmd::Dev(_) | Cmd::Up(_) | Cmd::Smoke(_) | Cmd::Release(_)
    ) {
        interrupt::install();
    }
    let result = xshell::Shell::new().inspect(|sh| sh.change_dir(project_root()));
    let result = result.map_err(anyhow::Error::from).and_then(|sh| {
        // Paths in any project file, `--config` ones too, are relative to the project root.
        let root = sh.current_dir();
        let config = || config::Config::load_in(&root, &root.join(&cli.config));
        match cli.cmd {
            Cmd::Bases(cmd) => cmd.run(&sh, &config()?),
            Cmd::Bench(cmd) => cmd.run(&sh, &cli.config),
            Cmd::Build(cmd) => cmd.run(&sh, &config()?),
            Cmd::Deploy(cmd) => cmd.run(&sh, &config()?),
            Cmd::Dev(cmd) => cmd.run(&sh, &config()?),
            Cmd::Down(cmd) => cmd.run(&sh, &config()?),
            Cmd::Doctor(cmd) => cmd.run(&sh, &config()?),
            Cmd::Env(cmd) => cmd.run(&sh),
            Cmd::Keygen(cmd) => cmd.run(&sh),
            Cmd::History(cmd) => cmd.run(&sh),
            Cmd::Release(cmd) => cmd.run(&sh, &config()?),
            Cmd::Sbom(cmd) => cmd.run(&sh, &config()?),
            Cmd::Smoke(cmd) => cmd.run(&sh, &config()?),
            Cmd::Test(cmd) => cmd.run(&sh),
            Cmd::Up(cmd) => cmd.run(&sh, &config()?),
        }
    });
    if let Err(err) = result {
        if err.is::<interrupt::Interrupted>() {
            std::process::exit(130);
        }
        // A terminal's Ctrl-C reaches the whole process group: a docker child that was running
        // then fails on its own, and its error is a consequence of the interrupt, not a fault.
        // It is still shown, since the cleanup that follows a Ctrl-C may be what failed.
        if interrupt::interrupted() {
            eprintln!("after Ctrl-C: {err:#}");
            std::process::exit(130);
        }
        eprintln!("error: {err:#}");
        std::process::exit(1);
    }
}

/// The project root: the nearest folder at or above the current one that holds `project.toml`
/// (so a copy of the project, as the tests make, is its own root), else the folder above the
/// xtask crate that cargo built.
/// The checkout this binary was built from: the project the unit tests read.
#[cfg(test)]
fn source_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn project_root() -> std::path::PathBuf {
    let built = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf();
    std::env::current_dir()
        .ok()
        .and_then(|cwd| {
            cwd.ancestors()
                .find(|dir| dir.join(config::DEFAULT_FILE).is_file())
                .map(|dir| dir.to_path_buf())
        })
        .unwrap_or(built)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn help_names_the_program_as_users_type_it() {
        let mut cli = super::Cli::command();
        cli.build();
        let build = cli.find_subcommand_mut("build").unwrap();
        let usage = build.render_usage().to_string();
        assert!(usage.contains("cargo xtask build"), "{usage}");
    }
}
